//! Connections that have not got past their first phase yet, counted per client address, and
//! refusals logged at a bounded rate: an address that opens idle connections by the thousand
//! loses its own new connections, not everyone's, and cannot fill the log either.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::limits::REFUSAL_LOG_INTERVAL;

/// Per-address counts of connections in their first phase.
pub struct PreLogin {
    per_ip: Arc<Mutex<HashMap<IpAddr, u32>>>,
    max_per_ip: u32,
}

/// One connection's place in [`PreLogin`]; dropping it gives the place back.
pub struct FirstPhase {
    per_ip: Arc<Mutex<HashMap<IpAddr, u32>>>,
    ip: IpAddr,
}

impl PreLogin {
    pub fn new(max_per_ip: u32) -> PreLogin {
        PreLogin {
            per_ip: Arc::default(),
            max_per_ip,
        }
    }

    /// A place for a new connection from `ip`, or `None` when it has `max_per_ip` already.
    /// The map holds only addresses with a connection in progress, so the connection cap bounds
    /// it.
    pub fn enter(&self, ip: IpAddr) -> Option<FirstPhase> {
        let mut map = self
            .per_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = map.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return None;
        }
        *count += 1;
        Some(FirstPhase {
            per_ip: self.per_ip.clone(),
            ip,
        })
    }

    #[cfg(test)]
    fn count(&self, ip: IpAddr) -> u32 {
        let map = self.per_ip.lock().unwrap();
        map.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for FirstPhase {
    fn drop(&mut self) {
        let mut map = self
            .per_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = map.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// The kinds of refusal logged separately.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    PerAddress = 0,
    Global = 1,
}

/// At most one warning per kind every [`REFUSAL_LOG_INTERVAL`], saying how many were refused
/// since the last one.
pub struct RefusalLog {
    started: Instant,
    /// Per kind: when the last line was written (ms since `started`), and refusals since.
    last_logged: [AtomicU64; 2],
    suppressed: [AtomicU64; 2],
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog {
            started: Instant::now(),
            last_logged: [AtomicU64::new(0), AtomicU64::new(0)],
            suppressed: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }
}

impl RefusalLog {
    pub fn note(&self, kind: Refusal, what: fmt::Arguments<'_>) {
        let i = kind as usize;
        let interval = REFUSAL_LOG_INTERVAL.as_millis() as u64;
        // +interval so the very first refusal is logged.
        let now = self.started.elapsed().as_millis() as u64 + interval;
        let last = self.last_logged[i].load(Ordering::Relaxed);
        if now.saturating_sub(last) < interval
            || self.last_logged[i]
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.suppressed[i].fetch_add(1, Ordering::Relaxed);
            return;
        }
        let earlier = self.suppressed[i].swap(0, Ordering::Relaxed);
        if earlier > 0 {
            log::warn!(
                "tunnel: {what} ({earlier} more refused in the last {}s)",
                REFUSAL_LOG_INTERVAL.as_secs()
            );
        } else {
            log::warn!("tunnel: {what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_per_address_are_bounded_and_given_back() {
        let pre = PreLogin::new(2);
        let a: IpAddr = "127.0.0.3".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        let first = pre.enter(a).unwrap();
        let _second = pre.enter(a).unwrap();
        assert!(
            pre.enter(a).is_none(),
            "a third from the same address is refused"
        );
        assert!(pre.enter(b).is_some(), "another address is not affected");
        drop(first);
        assert_eq!(pre.count(a), 1);
        assert!(pre.enter(a).is_some());
    }
}
