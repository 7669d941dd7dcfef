//! `harp tunnel` (our frpc) as a child process, for tests of the whole tunnel path.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// A `harp tunnel` process; its log lines arrive on a channel so tests can wait for events
/// such as "proxy started" instead of sleeping. Killed on drop.
pub struct TunnelProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl TunnelProcess {
    pub fn start(config: &Path) -> TunnelProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_harp"))
            .args(["tunnel", "-c"])
            .arg(config)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start harp tunnel");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        TunnelProcess {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Blocks until a log line contains `needle`; panics with the log so far after [`WAIT`].
    pub fn wait_for_line(&mut self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!(
                    "harp tunnel never logged {needle:?}; its log:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TunnelProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
