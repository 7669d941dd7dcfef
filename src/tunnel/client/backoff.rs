//! Reconnect timing (spec §11), as pure state so it is tested without waiting:
//!
//! * [`Backoff`]: the pause after the n-th consecutive failed login: 2 s, 4 s, 8 s, … capped
//!   (10 s before the first successful login, 20 s after), plus 0–10 % jitter so a fleet of
//!   ExApps does not reconnect in lock step after a HaRP restart.
//! * [`Cycles`]: the pause before re-logging in after a working session ended: none for the
//!   first, a short one for the next few within a minute, then doubling up to 20 s, so a server
//!   that accepts and then drops the client is not hammered.

use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use super::limits::{
    CYCLE_DELAY_CAP, CYCLE_SHORT_COUNT, CYCLE_SHORT_DELAY, CYCLE_WINDOW, LOGIN_RETRY_BASE,
};

/// `d` plus a random 0–10 %.
pub fn jitter(d: Duration) -> Duration {
    let mut byte = [0u8; 1];
    // Jitter is best effort: without randomness it is simply zero.
    let _ = SystemRandom::new().fill(&mut byte);
    d + d.mul_f64(f64::from(byte[0]) / 255.0 / 10.0)
}

pub struct Backoff {
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(cap: Duration) -> Backoff {
        Backoff { cap, failures: 0 }
    }

    /// The pause after one more failure (without jitter).
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        LOGIN_RETRY_BASE.saturating_mul(1 << exp).min(self.cap)
    }
}

pub struct Cycles {
    last_end: Option<Instant>,
    recent: u32,
}

impl Default for Cycles {
    fn default() -> Self {
        Cycles::new()
    }
}

impl Cycles {
    pub fn new() -> Cycles {
        Cycles {
            last_end: None,
            recent: 0,
        }
    }

    /// The pause before re-logging in after a session that ended at `now` (without jitter).
    pub fn next_delay(&mut self, now: Instant) -> Duration {
        let within_window = self
            .last_end
            .is_some_and(|t| now.duration_since(t) < CYCLE_WINDOW);
        self.last_end = Some(now);
        self.recent = if within_window { self.recent + 1 } else { 0 };
        match self.recent {
            0 => Duration::ZERO,
            n if n <= CYCLE_SHORT_COUNT => CYCLE_SHORT_DELAY,
            n => CYCLE_SHORT_DELAY
                .saturating_mul(1 << (n - CYCLE_SHORT_COUNT).min(16))
                .min(CYCLE_DELAY_CAP),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::client::limits::{FIRST_LOGIN_RETRY_CAP, RELOGIN_RETRY_CAP};

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn login_retries_double_up_to_the_cap() {
        let mut first = Backoff::new(FIRST_LOGIN_RETRY_CAP);
        let got: Vec<f64> = (0..6).map(|_| secs(first.next_delay())).collect();
        assert_eq!(got, [2.0, 4.0, 8.0, 10.0, 10.0, 10.0]);
        let mut again = Backoff::new(RELOGIN_RETRY_CAP);
        let got: Vec<f64> = (0..6).map(|_| secs(again.next_delay())).collect();
        assert_eq!(got, [2.0, 4.0, 8.0, 16.0, 20.0, 20.0]);
        for _ in 0..100 {
            again.next_delay();
        }
        assert_eq!(again.next_delay(), RELOGIN_RETRY_CAP);
    }

    #[test]
    fn session_cycles_start_at_once_then_slow_down() {
        let mut cycles = Cycles::new();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let got: Vec<f64> = (0..8).map(|i| secs(cycles.next_delay(at(i)))).collect();
        assert_eq!(got, [0.0, 0.25, 0.25, 0.25, 0.5, 1.0, 2.0, 4.0]);
        // A session that lasted longer than the window starts over.
        assert_eq!(cycles.next_delay(at(200)), Duration::ZERO);
        let mut long = Cycles::new();
        let mut last = Duration::ZERO;
        for i in 0..40 {
            last = long.next_delay(at(i));
        }
        assert_eq!(last, CYCLE_DELAY_CAP);
    }

    #[test]
    fn jitter_adds_at_most_ten_percent() {
        for _ in 0..50 {
            let d = jitter(Duration::from_secs(10));
            assert!(d >= Duration::from_secs(10) && d <= Duration::from_secs(11));
        }
    }
}
