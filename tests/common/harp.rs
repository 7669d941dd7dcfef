//! The `harp` process fixture.
//!
//! Every instance gets its own ports, certs dir and log file, so tests can run in parallel.
//! Start-up is blocking (std::process); it is called from the thread that drives
//! `#[tokio::test]`, so the runtime's worker threads keep serving the stubs meanwhile.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::{free_ports, TempDir, KEY};

/// Value that removes a variable from the environment instead of setting it, e.g.
/// `("NC_INSTANCE_URL", UNSET)` or `("HP_SHARED_KEY", UNSET)` with `HP_SHARED_KEY_FILE`.
pub const UNSET: &str = "\u{0}unset";

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Harp {
    child: Child,
    env: BTreeMap<String, String>,
    http: SocketAddr,
    https: SocketAddr,
    frp: SocketAddr,
    ops: SocketAddr,
    certs_dir: PathBuf,
    log_path: PathBuf,
    // Last field: removed after `drop` has printed the log it contains.
    _tmp: TempDir,
}

impl Harp {
    /// Starts `harp` with the default environment overlaid by `env`, and waits until it is
    /// ready. Panics (with harp's output) if it exits or is not ready within 20 s.
    pub fn start(env: &[(&str, &str)]) -> Harp {
        Harp::start_with_args(&[], env)
    }

    pub fn start_with_args(args: &[&str], env: &[(&str, &str)]) -> Harp {
        let mut harp = Harp::spawn(args, env);
        harp.wait_ready();
        harp
    }

    /// Starts `harp` without waiting for it to be ready (for tests of start-up failures).
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Harp {
        let tmp = TempDir::new("harp");
        let env = build_env(&tmp, env);
        let log_path = tmp.join("harp.log");
        let log = File::create(&log_path).expect("create harp log");
        let log_err = log.try_clone().expect("clone log handle");
        let child = command(args, &env)
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .expect("spawn harp");

        let addr = |name: &str| connect_addr(env.get(name).map(String::as_str).unwrap_or(""));
        let certs_dir = PathBuf::from(env.get("HP_CERTS_DIR").cloned().unwrap_or_default());
        Harp {
            child,
            http: addr("HP_EXAPPS_ADDRESS"),
            https: addr("HP_EXAPPS_HTTPS_ADDRESS"),
            frp: addr("HP_FRP_ADDRESS"),
            ops: addr("HP_OPS_ADDRESS"),
            env,
            certs_dir,
            log_path,
            _tmp: tmp,
        }
    }

    /// Ready = the ops heartbeat answers 200 and the HTTP frontend accepts connections.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut heartbeat_ok = false;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Drop prints the log while this panic unwinds.
                panic!("harp exited during start-up with {status}");
            }
            if !heartbeat_ok {
                heartbeat_ok = blocking_get_status(self.ops, "/heartbeat") == Some(200);
            }
            if heartbeat_ok
                && TcpStream::connect_timeout(&self.http, Duration::from_millis(200)).is_ok()
            {
                return;
            }
            if Instant::now() > deadline {
                panic!("harp not ready after {READY_TIMEOUT:?} (heartbeat ok: {heartbeat_ok})");
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    pub fn https_addr(&self) -> SocketAddr {
        self.https
    }

    pub fn ops_addr(&self) -> SocketAddr {
        self.ops
    }

    pub fn frp_addr(&self) -> SocketAddr {
        self.frp
    }

    /// `http://<HTTP frontend><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// `https://<HTTPS frontend><path>`.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://{}{}", self.https, path)
    }

    /// `http://<ops listener><path>`.
    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{}", self.ops, path)
    }

    pub fn certs_dir(&self) -> &Path {
        &self.certs_dir
    }

    /// The effective value of a variable harp was started with.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything harp wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name (`"TERM"`, `"HUP"`, `"INT"`...) with the `kill` command (no libc
    /// in dev-dependencies).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg("-s")
            .arg(sig)
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {sig} {} failed", self.pid());
    }

    /// Waits up to `timeout` for harp to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Harp {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- harp log ({}) -----\n{}\n----- end of harp log -----",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// Runs `harp` to completion (check-config, invalid configuration...) with the same environment
/// defaults as [`Harp::start`]. Panics if it runs longer than 20 s.
pub fn run_harp(args: &[&str], env: &[(&str, &str)]) -> Output {
    let tmp = TempDir::new("harp-run");
    let env = build_env(&tmp, env);
    let mut child = command(args, &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn harp");
    // Drain both pipes concurrently so a chatty harp cannot block on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for harp") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out.join().unwrap_or_default();
            let stderr = err.join().unwrap_or_default();
            panic!(
                "harp {args:?} still running after {RUN_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Defaults, then the caller's entries (later entries win), then `UNSET` entries removed.
fn build_env(tmp: &TempDir, overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
    let ports = free_ports(4);
    let certs = tmp.join("certs");
    std::fs::create_dir_all(&certs).expect("create certs dir");
    let defaults = [
        ("HP_SHARED_KEY", KEY.to_string()),
        ("NC_INSTANCE_URL", "http://127.0.0.1:9".to_string()),
        ("HP_EXAPPS_ADDRESS", format!("127.0.0.1:{}", ports[0])),
        ("HP_EXAPPS_HTTPS_ADDRESS", format!("127.0.0.1:{}", ports[1])),
        ("HP_FRP_ADDRESS", format!("127.0.0.1:{}", ports[2])),
        ("HP_OPS_ADDRESS", format!("127.0.0.1:{}", ports[3])),
        ("HP_CERTS_DIR", certs.display().to_string()),
        // Inside the temp dir and never created: no local Docker socket.
        (
            "HP_DOCKER_SOCKET",
            tmp.join("no-docker.sock").display().to_string(),
        ),
        ("HP_LOG_LEVEL", "info".to_string()),
        ("HP_THREADS", "2".to_string()),
        // Small enough for any descriptor limit a test machine has (2 per connection + 2,560),
        // so no test's log carries harp's "lowered the limit" warning.
        ("HP_MAX_CONNECTIONS", "1000".to_string()),
    ];
    let mut env: BTreeMap<String, String> = defaults
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    for (k, v) in overrides {
        env.insert(k.to_string(), v.to_string());
    }
    env.retain(|_, v| v != UNSET);
    env
}

/// The command with a cleared environment: only PATH from the test process, then `env`.
fn command(args: &[&str], env: &BTreeMap<String, String>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harp"));
    cmd.args(args).env_clear().stdin(Stdio::null());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env);
    cmd
}

/// The address to connect to for a bind address: a wildcard host means loopback. Unparsable
/// values (tests of invalid configuration) map to port 9 so that nothing connects by accident.
fn connect_addr(bind: &str) -> SocketAddr {
    let (host, port) = bind.rsplit_once(':').unwrap_or(("", "9"));
    let port: u16 = port.parse().unwrap_or(9);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host.parse::<std::net::IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => ip,
        _ => [127, 0, 0, 1].into(),
    };
    SocketAddr::new(ip, port)
}

/// Minimal blocking `GET` returning the status code (no reqwest "blocking" feature, and this
/// must not depend on the tokio runtime).
fn blocking_get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace().nth(1)?.parse().ok()
}
