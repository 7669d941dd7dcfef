//! Prometheus metrics for the ops listener: requests by app, outcome and status, latency,
//! Nextcloud calls and cache hit ratios, AppAPI's Docker calls, brute-force strikes and bans.
//!
//! Counting is a few atomic adds and one short lock per request; label sets are bounded
//! (`MAX_APPS` distinct app labels, the rest count as `other`) so clients cannot grow memory.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const MAX_APPS: usize = 256;
const BUCKETS_SECONDS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0];

/// What harp did with a request, for the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Proxied,
    Denied,
    Dropped,
    Control,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Proxied => "proxied",
            Outcome::Denied => "denied",
            Outcome::Dropped => "dropped",
            Outcome::Control => "control",
            Outcome::Failed => "failed",
        }
    }
}

/// An AppAPI Docker call, for the `via` and `op` labels of `harp_docker_calls_total`: one of the
/// eight `/docker/exapp/*` endpoints or one of the five kinds of Engine API call the passthrough
/// allows. A fixed set, so clients cannot mint label values. The label types are defined here so
/// metrics imports no other room (docs/architecture.md); the docker room maps its operations
/// onto them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerOp {
    Sidecar(SidecarCall),
    Passthrough(PassthroughCall),
}

/// The `op` label of a `/docker/exapp/<operation>` call: the operation's path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidecarCall {
    Exists,
    Create,
    Start,
    Stop,
    WaitForStart,
    Remove,
    InstallCertificates,
    ImageRemove,
}

impl SidecarCall {
    /// In declaration order (`call as usize` indexes it).
    pub const ALL: [SidecarCall; 8] = [
        SidecarCall::Exists,
        SidecarCall::Create,
        SidecarCall::Start,
        SidecarCall::Stop,
        SidecarCall::WaitForStart,
        SidecarCall::Remove,
        SidecarCall::InstallCertificates,
        SidecarCall::ImageRemove,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SidecarCall::Exists => "exists",
            SidecarCall::Create => "create",
            SidecarCall::Start => "start",
            SidecarCall::Stop => "stop",
            SidecarCall::WaitForStart => "wait_for_start",
            SidecarCall::Remove => "remove",
            SidecarCall::InstallCertificates => "install_certificates",
            SidecarCall::ImageRemove => "image_remove",
        }
    }
}

/// The kinds of Engine API call the passthrough's allowlist lets through, as it classifies
/// them: the `op` label of the passthrough's series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassthroughCall {
    Ping,
    ImageInspect,
    ContainerInspect,
    ContainerLogs,
    ImagePull,
}

impl PassthroughCall {
    /// In declaration order (`call as usize` indexes it).
    pub const ALL: [PassthroughCall; 5] = [
        PassthroughCall::Ping,
        PassthroughCall::ImageInspect,
        PassthroughCall::ContainerInspect,
        PassthroughCall::ContainerLogs,
        PassthroughCall::ImagePull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PassthroughCall::Ping => "ping",
            PassthroughCall::ImageInspect => "image_inspect",
            PassthroughCall::ContainerInspect => "container_inspect",
            PassthroughCall::ContainerLogs => "container_logs",
            PassthroughCall::ImagePull => "image_pull",
        }
    }
}

impl DockerOp {
    const COUNT: usize = SidecarCall::ALL.len() + PassthroughCall::ALL.len();

    /// Every operation in exposition order (the sidecar's, then the passthrough's), which is
    /// also the order of `DockerOp::index`.
    pub fn all() -> impl Iterator<Item = DockerOp> {
        let sidecar = SidecarCall::ALL.into_iter().map(DockerOp::Sidecar);
        sidecar.chain(PassthroughCall::ALL.into_iter().map(DockerOp::Passthrough))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DockerOp::Sidecar(call) => call.as_str(),
            DockerOp::Passthrough(call) => call.as_str(),
        }
    }

    /// `"sidecar"` for the `/docker/exapp/*` endpoints, `"passthrough"` for raw Engine calls.
    pub fn via(self) -> &'static str {
        match self {
            DockerOp::Sidecar(_) => "sidecar",
            DockerOp::Passthrough(_) => "passthrough",
        }
    }

    fn index(self) -> usize {
        match self {
            DockerOp::Sidecar(call) => call as usize,
            DockerOp::Passthrough(call) => SidecarCall::ALL.len() + call as usize,
        }
    }
}

/// Requests of one app by (outcome, status).
type RequestCounts = HashMap<(Outcome, u16), u64>;

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Connections to the gateway's listeners: how many are open, how many were refused because
/// the limit was reached. The open count is also what the limit is checked against.
#[derive(Default)]
pub struct ConnectionGauge {
    open: AtomicU64,
    refused: Counter,
}

impl ConnectionGauge {
    /// Takes a place if fewer than `max` are taken; counts a refusal otherwise.
    pub fn try_open(&self, max: u64) -> bool {
        let mut open = self.open.load(Ordering::Relaxed);
        loop {
            if open >= max {
                self.refused.inc();
                return false;
            }
            match self.open.compare_exchange_weak(
                open,
                open + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => open = now,
            }
        }
    }

    /// Gives back a place taken by `try_open`.
    pub fn close(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> u64 {
        self.refused.get()
    }
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<HashMap<String, RequestCounts>>,
    latency_buckets: [Counter; BUCKETS_SECONDS.len()],
    latency_count: Counter,
    latency_sum_us: AtomicU64,
    pub exapp_meta_ok: Counter,
    pub exapp_meta_not_found: Counter,
    pub exapp_meta_failed: Counter,
    pub user_info_ok: Counter,
    pub user_info_anonymous: Counter,
    pub user_info_failed: Counter,
    pub exapp_cache_hits: Counter,
    pub exapp_cache_misses: Counter,
    pub session_cache_hits: Counter,
    pub session_cache_misses: Counter,
    pub strikes: Counter,
    /// By [`DockerOp`], then `[ok, error]`.
    docker_calls: [[Counter; 2]; DockerOp::COUNT],
    /// Connections to `HP_EXAPPS_ADDRESS` and `HP_EXAPPS_HTTPS_ADDRESS` (`HP_MAX_CONNECTIONS`).
    pub gateway_connections: ConnectionGauge,
}

impl Metrics {
    pub fn record_request(&self, app: &str, outcome: Outcome, status: u16, elapsed: Duration) {
        {
            let mut requests = self
                .requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let app = if requests.contains_key(app) || requests.len() < MAX_APPS {
                app
            } else {
                "other"
            };
            let per_app = match requests.get_mut(app) {
                Some(m) => m,
                None => requests.entry(app.to_string()).or_default(),
            };
            *per_app.entry((outcome, status)).or_default() += 1;
        }
        // Each request lands in one bucket; render() makes them cumulative.
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS_SECONDS.iter().position(|le| seconds <= *le) {
            self.latency_buckets[i].inc();
        }
        self.latency_count.inc();
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// One AppAPI Docker call answered with `status` (0: no answer); `ok` when it got an answer
    /// below 400 and nothing failed afterwards (a broken pull stream is an error).
    pub fn record_docker_call(&self, op: DockerOp, status: u16, failed: bool) {
        let ok = !failed && (1..400).contains(&status);
        self.docker_calls[op.index()][usize::from(!ok)].inc();
    }

    /// The Prometheus text exposition; `gauges` are values computed at scrape time.
    pub fn render(&self, gauges: &[(&str, &str, u64)]) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP harp_requests_total Requests by app, outcome and status.\n# TYPE harp_requests_total counter\n");
        {
            let requests = self
                .requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut apps: Vec<_> = requests.iter().collect();
            apps.sort_by(|a, b| a.0.cmp(b.0));
            for (app, by) in apps {
                let mut rows: Vec<_> = by.iter().collect();
                rows.sort_by_key(|((o, s), _)| (o.as_str(), *s));
                for ((outcome, status), n) in rows {
                    let _ = writeln!(
                        out,
                        "harp_requests_total{{app=\"{}\",outcome=\"{}\",status=\"{}\"}} {n}",
                        escape(app),
                        outcome.as_str(),
                        status
                    );
                }
            }
        }
        out.push_str("# HELP harp_request_duration_seconds Time from request head to log line.\n# TYPE harp_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (bucket, le) in self.latency_buckets.iter().zip(BUCKETS_SECONDS) {
            cumulative += bucket.get();
            let _ = writeln!(
                out,
                "harp_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.get();
        let _ = writeln!(
            out,
            "harp_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "harp_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "harp_request_duration_seconds_count {count}");
        let counter = |out: &mut String, name: &str, help: &str, rows: &[(&str, &Counter)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, c) in rows {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {}", c.get());
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {}", c.get());
                }
            }
        };
        counter(
            &mut out,
            "harp_nextcloud_calls_total",
            "Calls to Nextcloud's HaRP callbacks by endpoint and result.",
            &[
                ("endpoint=\"exapp-meta\",result=\"ok\"", &self.exapp_meta_ok),
                (
                    "endpoint=\"exapp-meta\",result=\"not_found\"",
                    &self.exapp_meta_not_found,
                ),
                (
                    "endpoint=\"exapp-meta\",result=\"failed\"",
                    &self.exapp_meta_failed,
                ),
                ("endpoint=\"user-info\",result=\"ok\"", &self.user_info_ok),
                (
                    "endpoint=\"user-info\",result=\"anonymous\"",
                    &self.user_info_anonymous,
                ),
                (
                    "endpoint=\"user-info\",result=\"failed\"",
                    &self.user_info_failed,
                ),
            ],
        );
        let _ = writeln!(
            out,
            "# HELP harp_docker_calls_total AppAPI's Docker calls (the /docker/exapp/* endpoints and \
             the Engine passthrough) by operation and outcome (ok: answered below 400).\n\
             # TYPE harp_docker_calls_total counter"
        );
        for op in DockerOp::all() {
            for (i, outcome) in ["ok", "error"].into_iter().enumerate() {
                let _ = writeln!(
                    out,
                    "harp_docker_calls_total{{via=\"{}\",op=\"{}\",outcome=\"{outcome}\"}} {}",
                    op.via(),
                    op.as_str(),
                    self.docker_calls[op.index()][i].get()
                );
            }
        }
        counter(
            &mut out,
            "harp_cache_lookups_total",
            "Cache lookups by cache and result.",
            &[
                ("cache=\"exapp\",result=\"hit\"", &self.exapp_cache_hits),
                ("cache=\"exapp\",result=\"miss\"", &self.exapp_cache_misses),
                ("cache=\"session\",result=\"hit\"", &self.session_cache_hits),
                (
                    "cache=\"session\",result=\"miss\"",
                    &self.session_cache_misses,
                ),
            ],
        );
        counter(
            &mut out,
            "harp_bruteforce_strikes_total",
            "Brute-force strikes recorded.",
            &[("", &self.strikes)],
        );
        counter(
            &mut out,
            "harp_connections_refused_total",
            "Connections to the gateway closed as soon as accepted because HP_MAX_CONNECTIONS \
             were open.",
            &[("", &self.gateway_connections.refused)],
        );
        let open = self.gateway_connections.open();
        let _ = writeln!(
            out,
            "# HELP harp_connections_open Connections open on the gateway's listeners.\n\
             # TYPE harp_connections_open gauge\nharp_connections_open {open}"
        );
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_labels_are_bounded() {
        let m = Metrics::default();
        for i in 0..(MAX_APPS + 50) {
            m.record_request(
                &format!("app{i}"),
                Outcome::Denied,
                404,
                Duration::from_millis(1),
            );
        }
        let text = m.render(&[]);
        assert!(text.contains("app=\"other\",outcome=\"denied\",status=\"404\"} 50"));
        assert_eq!(text.matches("harp_requests_total{").count(), MAX_APPS + 1);
    }

    #[test]
    fn docker_calls_by_operation_and_outcome() {
        let m = Metrics::default();
        let create = DockerOp::Sidecar(SidecarCall::Create);
        let pull = DockerOp::Passthrough(PassthroughCall::ImagePull);
        m.record_docker_call(create, 201, false);
        m.record_docker_call(create, 409, false);
        m.record_docker_call(pull, 200, false);
        m.record_docker_call(pull, 200, true);
        m.record_docker_call(pull, 0, false);
        let text = m.render(&[]);
        for line in [
            "harp_docker_calls_total{via=\"sidecar\",op=\"create\",outcome=\"ok\"} 1",
            "harp_docker_calls_total{via=\"sidecar\",op=\"create\",outcome=\"error\"} 1",
            "harp_docker_calls_total{via=\"sidecar\",op=\"start\",outcome=\"ok\"} 0",
            "harp_docker_calls_total{via=\"passthrough\",op=\"image_pull\",outcome=\"ok\"} 1",
            "harp_docker_calls_total{via=\"passthrough\",op=\"image_pull\",outcome=\"error\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        assert_eq!(
            text.matches("harp_docker_calls_total{").count(),
            2 * DockerOp::COUNT
        );
        for (i, op) in DockerOp::all().enumerate() {
            assert_eq!(op.index(), i);
        }
    }

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.record_request("a", Outcome::Proxied, 200, Duration::from_millis(3));
        let text = m.render(&[("harp_banned_ips", "Banned.", 2)]);
        assert!(text.contains("harp_request_duration_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(text.contains("harp_request_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("harp_request_duration_seconds_bucket{le=\"+Inf\"} 1"));
        assert!(text.contains("harp_banned_ips 2"));
    }
}
