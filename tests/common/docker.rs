//! This machine's Docker engine for the Docker tests (tests/docker.rs, tests/docker_deploy.rs):
//! whether it answers (else the tests skip, loudly), the docker CLI, names no other run uses,
//! a guard that removes what a test made, and harp's answers on the control channel.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::TempDir;

pub const SOCKET: &str = "/var/run/docker.sock";
/// HaRP's bundled-frpc port, which harp-rs maps to the local socket when nothing listens there.
pub const LOCAL_ENGINE: u16 = 24000;
/// Debian's static busybox, the userland of every test image.
pub const BUSYBOX: &str = "/bin/busybox";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name no other run or test uses: lower case, digits, valid for Docker and as an app id
/// (given such a prefix).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// True when this machine's engine answers its ping; false (after a loud message naming what
/// goes `untested`) when there is none. An engine that answers but cannot be used as the tests
/// need (127.0.0.1:24000 taken, no busybox) fails the test instead.
pub async fn real_engine(untested: &str) -> bool {
    let skip = |why: String| {
        eprintln!(
            "SKIPPED: no Docker engine reachable ({why}); {untested} is not tested against a \
             real engine"
        );
        false
    };
    if !Path::new(SOCKET).exists() {
        return skip(format!("no {SOCKET}"));
    }
    let ping = docker_raw("GET", "/_ping").await;
    if ping.0 != 200 {
        return skip(format!("ping answered {ping:?}"));
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", LOCAL_ENGINE)).is_err(),
        "something listens on 127.0.0.1:{LOCAL_ENGINE}, so harp cannot map that port to the local \
         Docker socket; stop it to run these tests"
    );
    assert!(
        Path::new(BUSYBOX).exists(),
        "the test images need {BUSYBOX}: apt-get install busybox-static"
    );
    true
}

/// One HTTP/1.0 request straight to the engine's socket, bypassing harp: (status, body), or
/// (0, "") when the engine does not answer within 60 s.
pub async fn docker_raw(method: &str, target: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = tokio::net::UnixStream::connect(SOCKET).await.ok()?;
        let request = format!("{method} {target} HTTP/1.0\r\nHost: docker\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    };
    tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or((0, String::new()))
}

/// Runs the docker CLI, panicking with its output on failure or after 300 s.
pub async fn docker_cli(args: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("docker").args(args).output(),
    )
    .await
    .unwrap_or_else(|_| panic!("docker {args:?} still running after 300 s"))
    .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds `tag` from the Dockerfile in `context`, labelled `harp-rs-test=<tag>`.
pub async fn build_image(context: &TempDir, tag: &str) {
    docker_cli(&[
        "build",
        "-q",
        "--label",
        &format!("harp-rs-test={tag}"),
        "-t",
        tag,
        context.path().to_str().unwrap(),
    ])
    .await;
}

/// `docker <kind> inspect <name>` succeeds.
async fn inspectable(kind: &str, name: &str) -> bool {
    tokio::process::Command::new("docker")
        .args([kind, "inspect", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

pub async fn image_exists(reference: &str) -> bool {
    inspectable("image", reference).await
}

pub async fn volume_exists(volume: &str) -> bool {
    inspectable("volume", volume).await
}

/// Containers, volumes, networks and images a test made, removed on drop (also when the test
/// fails).
#[derive(Default)]
pub struct Cleanup {
    containers: Mutex<Vec<String>>,
    volumes: Mutex<Vec<String>>,
    networks: Mutex<Vec<String>>,
    images: Mutex<Vec<String>>,
}

impl Cleanup {
    pub fn container(&self, name: &str) {
        self.containers.lock().unwrap().push(name.to_string());
    }

    pub fn volume(&self, name: &str) {
        self.volumes.lock().unwrap().push(name.to_string());
    }

    pub fn network(&self, name: &str) {
        self.networks.lock().unwrap().push(name.to_string());
    }

    pub fn image(&self, reference: &str) {
        self.images.lock().unwrap().push(reference.to_string());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let run = |what: &[&str], names: &Mutex<Vec<String>>| {
            let names = names.lock().map(|n| n.clone()).unwrap_or_default();
            if !names.is_empty() {
                let _ = Command::new("docker")
                    .args(what)
                    .args(&names)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        };
        // In this order: a container holds its volumes, networks and image.
        run(&["rm", "-f", "-v"], &self.containers);
        run(&["volume", "rm", "-f"], &self.volumes);
        run(&["network", "rm"], &self.networks);
        run(&["rmi", "-f"], &self.images);
    }
}

/// One answer of harp, read whole.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    pub async fn read(resp: reqwest::Response) -> Answer {
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp.text().await.expect("body");
        Answer {
            status,
            content_type,
            body,
        }
    }

    /// Sends `req` and reads the answer, panicking when there is none.
    pub async fn of(req: reqwest::RequestBuilder) -> Answer {
        Answer::read(req.send().await.expect("request to harp")).await
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// A `/docker/exapp/*` text answer (HaRP's `web.Response(text=...)`).
    #[track_caller]
    pub fn assert_text(&self, status: u16, body: &str) {
        assert_eq!(
            (self.status, self.body.as_str()),
            (status, body),
            "content-type {}",
            self.content_type
        );
        assert_eq!(self.content_type, "text/plain; charset=utf-8");
    }

    /// A `/docker/exapp/*` JSON answer (HaRP's `web.json_response`).
    #[track_caller]
    pub fn assert_json(&self, status: u16, body: Value) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.content_type, "application/json; charset=utf-8");
        assert_eq!(self.json(), body);
    }

    #[track_caller]
    pub fn assert_no_content(&self) {
        assert_eq!((self.status, self.body.as_str()), (204, ""));
    }
}
