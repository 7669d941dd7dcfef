//! Raw-socket HTTP/1.1 client and WebSocket helpers.
//!
//! reqwest normalises request targets (`..`, `%2e`, non-ASCII bytes) and hides how a connection
//! ended; the B-checklist needs both the exact bytes on the wire and the difference between an
//! HTTP answer and harp's silent drop (a TCP reset with no HTTP bytes).

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Timeout used by [`get`] and [`request`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawOutcome {
    Response {
        status: u16,
        /// Names as sent (not lower-cased), in order.
        headers: Vec<(String, String)>,
        /// De-chunked when the response was chunked.
        body: Vec<u8>,
    },
    /// Connection reset, or closed before any response byte: harp's silent drop.
    Reset,
    /// Nothing conclusive within the timeout.
    Timeout,
}

impl RawOutcome {
    pub fn is_silent_drop(&self) -> bool {
        matches!(self, RawOutcome::Reset)
    }

    /// The status; panics (showing the outcome) if there was no response.
    pub fn status(&self) -> u16 {
        match self {
            RawOutcome::Response { status, .. } => *status,
            other => panic!("expected an HTTP response, got {other:?}"),
        }
    }

    pub fn body(&self) -> &[u8] {
        match self {
            RawOutcome::Response { body, .. } => body,
            other => panic!("expected an HTTP response, got {other:?}"),
        }
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(self.body()).into_owned()
    }

    /// The body parsed as JSON (e.g. the echo backend's answer).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.body())
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body_str()))
    }

    /// First value of a header, name matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        match self {
            RawOutcome::Response { headers, .. } => headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// Sends `bytes` as-is on a new connection to `addr` and reads one response.
pub async fn raw_request(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> RawOutcome {
    exchange(None, addr, bytes, timeout).await
}

/// Like [`raw_request`], connecting from `source` (any 127.x.y.z address works on Linux), so
/// a test gets its own client IP for strikes and bans.
pub async fn raw_request_from(
    source: IpAddr,
    addr: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> RawOutcome {
    exchange(Some(source), addr, bytes, timeout).await
}

/// `GET <path>` with `Host` (unless given) and `Connection: close`.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawOutcome {
    request(addr, "GET", path.as_bytes(), headers, b"").await
}

/// [`get`] from another loopback source address.
pub async fn get_from(
    source: IpAddr,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> RawOutcome {
    let bytes = build_request(addr, "GET", path.as_bytes(), headers, b"");
    raw_request_from(source, addr, &bytes, DEFAULT_TIMEOUT).await
}

/// Any method; `target` may hold bytes that are not valid in a URI. A non-empty body gets a
/// `Content-Length` unless the caller sets one.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &[u8],
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawOutcome {
    let bytes = build_request(addr, method, target, headers, body);
    raw_request(addr, &bytes, DEFAULT_TIMEOUT).await
}

pub fn build_request(
    addr: SocketAddr,
    method: &str,
    target: &[u8],
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut out = Vec::new();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !has("host") {
        out.extend_from_slice(format!("Host: {addr}\r\n").as_bytes());
    }
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !has("connection") {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    if !body.is_empty() && !has("content-length") && !has("transfer-encoding") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

async fn exchange(
    source: Option<IpAddr>,
    addr: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> RawOutcome {
    let head_only = bytes.starts_with(b"HEAD ");
    let attempt = async {
        let mut stream = connect(source, addr).await;
        if let Err(e) = stream.write_all(bytes).await {
            // Reset while we were still writing: the gateway dropped us.
            return if is_reset(&e) {
                RawOutcome::Reset
            } else {
                panic!("write to {addr}: {e}")
            };
        }
        read_response(&mut stream, head_only).await
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(RawOutcome::Timeout)
}

async fn connect(source: Option<IpAddr>, addr: SocketAddr) -> TcpStream {
    let result = match source {
        None => TcpStream::connect(addr).await,
        Some(ip) => {
            let socket = if ip.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .expect("socket");
            socket
                .bind(SocketAddr::new(ip, 0))
                .unwrap_or_else(|e| panic!("bind {ip}: {e}"));
            socket.connect(addr).await
        }
    };
    result.unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
    )
}

/// Reads the head, then the body by Content-Length, chunked encoding or until close.
async fn read_response(stream: &mut TcpStream, head_only: bool) -> RawOutcome {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos + 4;
        }
        match read_more(stream, &mut buf).await {
            Ok(0) if buf.is_empty() => return RawOutcome::Reset,
            Ok(0) => panic!(
                "connection closed inside the response head: {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(_) => {}
            Err(e) if is_reset(&e) => return RawOutcome::Reset,
            Err(e) => panic!("read: {e}"),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut rest = buf[head_end..].to_vec();

    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let no_body = head_only || status < 200 || status == 204 || status == 304;
    let body = if no_body {
        Vec::new()
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        match read_chunked(stream, &mut rest).await {
            Some(body) => body,
            None => return RawOutcome::Reset,
        }
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().expect("content-length");
        while rest.len() < len {
            match read_more(stream, &mut rest).await {
                Ok(0) => panic!("closed after {} of {len} body bytes", rest.len()),
                Ok(_) => {}
                Err(e) if is_reset(&e) => return RawOutcome::Reset,
                Err(e) => panic!("read: {e}"),
            }
        }
        rest.truncate(len);
        rest
    } else {
        loop {
            match read_more(stream, &mut rest).await {
                Ok(0) => break rest,
                Ok(_) => {}
                Err(e) if is_reset(&e) => return RawOutcome::Reset,
                Err(e) => panic!("read: {e}"),
            }
        }
    };
    RawOutcome::Response {
        status,
        headers,
        body,
    }
}

/// Decodes a chunked body whose first bytes are already in `buf`; `None` on reset.
async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        // Chunk-size line (extensions after ';' ignored).
        let line_end = loop {
            if let Some(i) = find(&buf[pos..], b"\r\n") {
                break pos + i;
            }
            fill(stream, buf).await?;
        };
        let line = String::from_utf8_lossy(&buf[pos..line_end]).into_owned();
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        pos = line_end + 2;
        if size == 0 {
            // Trailers until an empty line.
            loop {
                if let Some(i) = find(&buf[pos..], b"\r\n") {
                    if i == 0 {
                        return Some(body);
                    }
                    pos += i + 2;
                } else {
                    fill(stream, buf).await?;
                }
            }
        }
        while buf.len() < pos + size + 2 {
            fill(stream, buf).await?;
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

/// One more read for the chunked decoder: `None` on reset, panic on a clean early close.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    match read_more(stream, buf).await {
        Ok(0) => panic!("connection closed inside a chunked body"),
        Ok(_) => Some(()),
        Err(e) if is_reset(&e) => None,
        Err(e) => panic!("read: {e}"),
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket (`ws://...`) with extra request headers; panics on failure.
pub async fn ws_connect(url: &str, headers: &[(&str, &str)]) -> WsStream {
    try_ws_connect(url, headers)
        .await
        .unwrap_or_else(|e| panic!("WebSocket connect to {url}: {e}"))
}

/// Like [`ws_connect`] but returns the error, e.g. `Http(response)` when the gateway refuses
/// the upgrade with 403.
pub async fn try_ws_connect(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<WsStream, tokio_tungstenite::tungstenite::Error> {
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    let (stream, _response) = tokio_tungstenite::connect_async(request).await?;
    Ok(stream)
}
