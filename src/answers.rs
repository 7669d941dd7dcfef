//! Every response harp-rs writes itself, byte for byte as HaRP does (R1), the silent drop, and
//! how a request header is read (HaRP keeps the last of repeated headers). A leaf room: the
//! gateway and the control API both answer through it, and it depends on neither.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use socket2::SockRef;
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// HaRP keeps the last occurrence of a repeated header.
pub fn last_header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(name)
        .iter()
        .next_back()
        .map(http::HeaderValue::as_bytes)
}

/// HaRP's own verdicts: `text/plain`, no charset, no trailing newline.
pub fn harp_body(status: u16) -> &'static str {
    match status {
        401 => "401 Unauthorized",
        403 => "403 Forbidden",
        404 => "404 Not Found",
        _ => "503 Service Unavailable (HaRP)",
    }
}

/// HAProxy's built-in error pages, which HaRP's clients see after forwarding fails.
pub fn haproxy_page(status: u16) -> &'static str {
    match status {
        400 => "<html><body><h1>400 Bad request</h1>\nYour browser sent an invalid request.\n</body></html>\n",
        403 => "<html><body><h1>403 Forbidden</h1>\nRequest forbidden by administrative rules.\n</body></html>\n",
        408 => "<html><body><h1>408 Request Time-out</h1>\nYour browser didn't send a complete request in time.\n</body></html>\n",
        502 => "<html><body><h1>502 Bad Gateway</h1>\nThe server returned an invalid or incomplete response.\n</body></html>\n",
        504 => "<html><body><h1>504 Gateway Time-out</h1>\nThe server didn't respond in time.\n</body></html>\n",
        _ => "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n",
    }
}

fn canonical_status(status: u16) -> u16 {
    match status {
        400 | 403 | 408 | 502 | 504 => status,
        _ => 503,
    }
}

/// Write a complete response with a fixed body.
pub async fn write(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Bytes,
    extra: &[(&'static str, &'static str)],
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(3 + extra.len()))?;
    resp.insert_header("content-type", content_type)?;
    resp.insert_header("content-length", body.len().to_string())?;
    for (k, v) in extra {
        resp.insert_header(*k, *v)?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

pub async fn write_harp(session: &mut Session, status: u16) -> Result<()> {
    write(
        session,
        status,
        "text/plain",
        Bytes::from_static(harp_body(status).as_bytes()),
        &[],
    )
    .await
}

pub async fn write_haproxy(session: &mut Session, status: u16) -> Result<()> {
    let status = canonical_status(status);
    write(
        session,
        status,
        "text/html",
        Bytes::from_static(haproxy_page(status).as_bytes()),
        &[("cache-control", "no-cache")],
    )
    .await
}

/// Arrange for the client connection to end with a TCP reset and no HTTP bytes (HaRP's
/// `silent-drop`, Q22). The caller then fails the request so Pingora closes the socket.
pub fn arm_reset(session: &Session) {
    let Some(stream) = session.stream() else {
        return;
    };
    let fd = stream.id();
    if fd < 0 {
        return;
    }
    // SAFETY: fd is the live socket owned by this session's stream, and the borrow ends with
    // this function, before the stream can close it; -1 (no socket) was refused above.
    let socket = unsafe { BorrowedFd::borrow_raw(fd) };
    // Linger on, timeout 0: close() then sends RST instead of FIN and drops unsent data.
    if let Err(e) = SockRef::from(&socket).set_linger(Some(Duration::ZERO)) {
        log::debug!("SO_LINGER on fd {fd} failed: {e}");
    }
}
