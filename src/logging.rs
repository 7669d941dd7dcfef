//! What the log tells the operator. WARN and ERROR are for what needs their attention (an ExApp
//! that refuses or times out, Nextcloud failing, harp's own faults), once per kind of event per
//! minute with a count of the repeats; what clients do (close a WebSocket, reset a connection,
//! give up on a TLS handshake or a request half-sent) is DEBUG. Pingora logs some of those
//! itself at ERROR, before any of harp's hooks can decide; the logger demotes them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// Logs to stderr with millisecond timestamps; every record passes the logger's own filter and
/// `log`'s global level (warning until the settings say otherwise) decides.
pub fn init() {
    let inner = env_logger::Builder::new()
        .filter_level(log::LevelFilter::Trace)
        .format_timestamp_millis()
        .build();
    if log::set_boxed_logger(Box::new(Demote(inner))).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

struct Demote(env_logger::Logger);

/// Pingora's own ERROR lines about a client: a request head or TLS handshake that did not
/// complete because the client went away, reset, or was too slow.
fn is_client_noise(record: &log::Record<'_>) -> bool {
    if record.level() > log::Level::Warn || !record.target().starts_with("pingora") {
        return false;
    }
    let text = match record.args().as_str() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(record.args().to_string()),
    };
    text.starts_with("Fail to proxy: Downstream") || text.starts_with("Downstream handshake")
}

impl log::Log for Demote {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !is_client_noise(record) {
            return self.0.log(record);
        }
        if log::max_level() >= log::LevelFilter::Debug {
            self.0.log(
                &log::Record::builder()
                    .level(log::Level::Debug)
                    .target(record.target())
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line())
                    .args(*record.args())
                    .build(),
            );
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Each kind of event is logged at most once per this window.
const WINDOW: Duration = Duration::from_secs(60);
/// Kinds remembered at most (the keys are bounded anyway: known app labels and error types).
const MAX_KINDS: usize = 1024;

struct Seen {
    last_logged: Instant,
    repeats: u64,
}

static SEEN: LazyLock<Mutex<HashMap<String, Seen>>> = LazyLock::new(Mutex::default);

/// `Some(repeats since the last line)` when an event of kind `key` may be logged now.
fn admit(key: &str, now: Instant) -> Option<u64> {
    let mut seen = SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(s) = seen.get_mut(key) {
        if now.duration_since(s.last_logged) < WINDOW {
            s.repeats += 1;
            return None;
        }
        let repeats = std::mem::take(&mut s.repeats);
        s.last_logged = now;
        return Some(repeats);
    }
    if seen.len() >= MAX_KINDS {
        seen.clear();
    }
    seen.insert(
        key.to_string(),
        Seen {
            last_logged: now,
            repeats: 0,
        },
    );
    Some(0)
}

fn limited(level: log::Level, key: &str, args: fmt::Arguments<'_>) {
    if !log::log_enabled!(level) {
        return;
    }
    match admit(key, Instant::now()) {
        Some(0) => log::log!(level, "{args}"),
        Some(n) => log::log!(
            level,
            "{args} ({n} more like this in the last {}s)",
            WINDOW.as_secs()
        ),
        None => {}
    }
}

/// A WARN line, at most one per `key` per minute, with the count of those left out.
pub fn warn_limited(key: &str, args: fmt::Arguments<'_>) {
    limited(log::Level::Warn, key, args);
}

/// An ERROR line, at most one per `key` per minute, with the count of those left out.
pub fn error_limited(key: &str, args: fmt::Arguments<'_>) {
    limited(log::Level::Error, key, args);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_window_with_the_count_of_repeats() {
        let t0 = Instant::now();
        let key = "test-kind-admit";
        assert_eq!(admit(key, t0), Some(0));
        assert_eq!(admit(key, t0 + Duration::from_secs(1)), None);
        assert_eq!(admit(key, t0 + Duration::from_secs(59)), None);
        assert_eq!(admit("test-kind-other", t0), Some(0));
        assert_eq!(admit(key, t0 + WINDOW), Some(2));
        assert_eq!(admit(key, t0 + WINDOW + Duration::from_secs(1)), None);
    }

    #[test]
    fn pingora_client_errors_are_noise_others_are_not() {
        let check = |level, target: &str, text: &str| {
            is_client_noise(
                &log::Record::builder()
                    .level(level)
                    .target(target)
                    .args(format_args!("{text}"))
                    .build(),
            )
        };
        use log::Level::*;
        assert!(check(
            Error,
            "pingora_proxy",
            "Fail to proxy: Downstream ConnectionClosed x"
        ));
        assert!(check(
            Error,
            "pingora_core::services::listening",
            "Downstream handshake error"
        ));
        assert!(!check(
            Error,
            "pingora_proxy",
            "Fail to proxy: Upstream ConnectTimedout"
        ));
        assert!(!check(
            Error,
            "harp",
            "Fail to proxy: Downstream ConnectionClosed"
        ));
        assert!(!check(
            Error,
            "pingora_core::services::listening",
            "Accept() failed"
        ));
        assert!(!check(
            Debug,
            "pingora_proxy",
            "Fail to proxy: Downstream x"
        ));
    }
}
