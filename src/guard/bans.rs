//! The brute-force ban list: strikes per client IP inside a sliding window (HaRP §5).
//!
//! Bounded (HaRP Q7): at most `MAX_IPS` addresses are tracked, each keeps only the strikes that can
//! still matter (the newest `count`), and an address idle for a whole window is forgotten.

use moka::sync::Cache;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MAX_IPS: u64 = 100_000;

#[cfg(test)]
impl BanList {
    fn tracked_ips(&self) -> u64 {
        self.strikes.run_pending_tasks();
        self.strikes.entry_count()
    }

    fn kept_strikes(&self, ip: IpAddr) -> usize {
        self.strikes.get(&ip).map_or(0, |e| e.lock().unwrap().len())
    }
}

pub struct BanList {
    strikes: Cache<IpAddr, Arc<Mutex<VecDeque<Instant>>>>,
    window: Duration,
    count: usize,
}

impl BanList {
    pub fn new(window: Duration, count: u32) -> Self {
        let idle = window.max(Duration::from_secs(1));
        BanList {
            strikes: Cache::builder()
                .max_capacity(MAX_IPS)
                .time_to_idle(idle)
                .build(),
            window,
            count: count.max(1) as usize,
        }
    }

    fn prune(&self, list: &mut VecDeque<Instant>, now: Instant) {
        while list
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            list.pop_front();
        }
    }

    pub fn strike(&self, ip: IpAddr) {
        let now = Instant::now();
        let entry = self
            .strikes
            .get_with(ip, || Arc::new(Mutex::new(VecDeque::new())));
        let mut list = entry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.prune(&mut list, now);
        list.push_back(now);
        while list.len() > self.count {
            list.pop_front();
        }
        drop(list);
        log::info!("brute-force strike recorded for {ip}");
    }

    pub fn is_banned(&self, ip: IpAddr) -> bool {
        let Some(entry) = self.strikes.get(&ip) else {
            return false;
        };
        let mut list = entry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.prune(&mut list, Instant::now());
        list.len() >= self.count
    }

    /// Strikes currently counting against `ip` (for tests and metrics).
    pub fn strikes(&self, ip: IpAddr) -> usize {
        self.strikes.get(&ip).map_or(0, |e| {
            let mut list = e.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            self.prune(&mut list, Instant::now());
            list.len()
        })
    }

    /// Client IPs whose strikes are being counted.
    pub fn tracked_count(&self) -> u64 {
        self.strikes.run_pending_tasks();
        self.strikes.entry_count()
    }

    pub fn banned_count(&self) -> usize {
        self.strikes
            .iter()
            .filter(|(ip, _)| self.is_banned(**ip))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenth_strike_bans_and_window_lifts_it() {
        let b = BanList::new(Duration::from_millis(200), 3);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        b.strike(ip);
        b.strike(ip);
        assert!(!b.is_banned(ip));
        b.strike(ip);
        assert!(b.is_banned(ip));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!b.is_banned(ip));
    }

    #[test]
    fn q7_only_the_strikes_that_can_matter_are_kept() {
        let b = BanList::new(Duration::from_secs(60), 3);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        for _ in 0..50 {
            b.strike(ip);
        }
        assert_eq!(b.kept_strikes(ip), 3);
        assert!(b.is_banned(ip));
    }

    #[test]
    fn q7_addresses_idle_for_a_window_are_forgotten() {
        let b = BanList::new(Duration::from_secs(1), 3);
        for i in 0..100u8 {
            b.strike(IpAddr::from([192, 0, 2, i]));
        }
        assert_eq!(b.tracked_ips(), 100);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(b.tracked_ips(), 0);
    }

    #[test]
    fn zero_window_never_bans() {
        let b = BanList::new(Duration::ZERO, 1);
        let ip: IpAddr = "192.0.2.8".parse().unwrap();
        b.strike(ip);
        assert!(!b.is_banned(ip));
    }
}
