//! Shared test harness for the black-box tests (`mod common;` in each test file).
//!
//! - [`harp`]: the `harp` process fixture (env defaults, readiness, logs on failure).
//! - [`nextcloud`]: a stub of the two AppAPI callbacks harp calls (exapp-meta, user-info).
//! - [`backend`]: ExApp stand-ins (echo, closed port, silent server).
//! - [`frpc`]: `harp tunnel` as a child process, waited on through its log lines.
//! - [`raw`]: raw-socket HTTP client (malformed paths, silent-drop detection) and a WebSocket client.
//!
//! Each test binary uses only part of this, hence the module-wide allows.
#![allow(dead_code, unused_imports)]

pub mod backend;
pub mod docker;
pub mod frpc;
pub mod harp;
pub mod nextcloud;
pub mod raw;

pub use backend::{big_body, ClosedPort, EchoBackend, EchoRequest, SilentBackend};
pub use frpc::TunnelProcess;
pub use harp::{run_harp, Harp, UNSET};
pub use nextcloud::{basic_auth, NcRequest, StubNextcloud};
pub use raw::{
    get, get_from, raw_request, raw_request_from, request, try_ws_connect, ws_connect, RawOutcome,
    WsStream,
};

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The shared key every fixture uses unless a test overrides it.
pub const KEY: &str = "test-key";

/// Route access levels as AppAPI sends them in exapp-meta.
pub const PUBLIC: u8 = 0;
pub const USER: u8 = 1;
pub const ADMIN: u8 = 2;

/// Ports handed to harp (and other servers the tests start by port number) come from this
/// range, below the kernel's ephemeral range (32768-60999 by default). Stubs that bind port 0
/// and every outgoing connection take their port from the ephemeral range, so they can never
/// take a port between our pick and harp's bind; a CI run failed on exactly that race. The
/// fixed tunnel test ports (23000+) lie above the range.
const PICK_RANGE: std::ops::Range<u16> = 15000..23000;

/// Free loopback ports, distinct from each other and from every earlier pick in this test
/// binary. Test binaries run one after another; the start offset comes from the pid so a
/// straggler of the previous binary is unlikely to hold our first picks, and each pick is
/// checked by binding it.
pub fn free_ports(n: usize) -> Vec<u16> {
    static NEXT: std::sync::OnceLock<std::sync::atomic::AtomicU32> = std::sync::OnceLock::new();
    let span = u32::from(PICK_RANGE.end - PICK_RANGE.start);
    let next = NEXT.get_or_init(|| std::sync::atomic::AtomicU32::new(std::process::id() * 397));
    let mut ports = Vec::with_capacity(n);
    for _ in 0..span {
        if ports.len() == n {
            break;
        }
        let port = PICK_RANGE.start + (next.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    assert_eq!(ports.len(), n, "no free ports left in {PICK_RANGE:?}");
    ports
}

pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// A reqwest client for talking to harp: no proxy from the environment (the sandbox may set
/// one), no redirects (tests assert exact statuses).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

/// For the HTTPS frontend: harp serves whatever certificate the test put in its certs dir, so
/// verification is off.
pub fn https_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .build()
        .expect("reqwest client")
}

/// Like [`client`], but connecting from another loopback address (Linux routes all of
/// 127.0.0.0/8 to `lo`). Brute-force strikes are per client IP, so tests that ban an IP can use
/// their own source address, and trusted-proxy tests can choose the peer address.
pub fn client_from(ip: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(ip)
        .build()
        .expect("reqwest client")
}

/// A unique directory under the system temp dir, removed (recursively) on drop. No `tempfile`
/// crate in dev-dependencies, so pid + counter + time keeps parallel tests and binaries apart.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "harp-test-{prefix}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Aborts a spawned server task when the last handle to a stub is dropped, so stubs do not
/// outlive their test (clones of a stub share one `ServerTask`).
pub(crate) struct ServerTask(tokio::task::JoinHandle<()>);

impl ServerTask {
    pub(crate) fn new(handle: tokio::task::JoinHandle<()>) -> ServerTask {
        ServerTask(handle)
    }
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Lower-case header names with every value (lossy UTF-8: tests send non-ASCII bytes on
/// purpose), in arrival order.
pub(crate) fn header_list(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Last value of a header in a `header_list`, matching the name case-insensitively.
pub(crate) fn last_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .rev()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// All values of a header in a `header_list`, in order.
pub(crate) fn all_headers<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Loopback address for a port.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
