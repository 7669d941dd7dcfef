//! Listener phase, before any Pingora phase: `HP_MAX_CONNECTIONS`, HaRP's HAProxy `maxconn`.
//!
//! A connection over the limit is closed right after `accept`, before a task or a buffer is
//! spent on it, and counted (`harp_connections_refused_total`). The accept loop takes a place
//! for each admitted connection and the connection gives it back when it ends, so the count is
//! that of live connections.

use crate::metrics::Metrics;
use std::sync::Arc;

/// The gateway's connection limit, shared by the HTTP and HTTPS listeners.
#[derive(Clone)]
pub struct Admission {
    max: u64,
    metrics: Arc<Metrics>,
}

impl Admission {
    pub fn new(max: usize, metrics: Arc<Metrics>) -> Self {
        Admission {
            max: max as u64,
            metrics,
        }
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.metrics.gateway_connections.open()
    }

    /// A place for a just-accepted connection, or `None` (counted, and logged at most once a
    /// minute) when `HP_MAX_CONNECTIONS` are open.
    pub fn admit(&self) -> Option<Place> {
        if self.metrics.gateway_connections.try_open(self.max) {
            return Some(Place(self.metrics.clone()));
        }
        crate::logging::warn_limited(
            "connection limit",
            format_args!(
                "HP_MAX_CONNECTIONS={} connections are open on the gateway; closing new ones \
                 until some end",
                self.max
            ),
        );
        None
    }
}

/// An admitted connection's place; dropping it gives the place back.
pub struct Place(Arc<Metrics>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.gateway_connections.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_over_the_limit_until_a_place_is_given_back() {
        let metrics = Arc::new(Metrics::default());
        let admission = Admission::new(2, metrics.clone());
        let first = admission.admit().expect("first place");
        let _second = admission.admit().expect("second place");
        assert!(admission.admit().is_none());
        assert_eq!(metrics.gateway_connections.refused(), 1);
        assert_eq!(metrics.gateway_connections.open(), 2);
        drop(first);
        assert_eq!(metrics.gateway_connections.open(), 1);
        assert!(admission.admit().is_some());
        assert_eq!(metrics.gateway_connections.refused(), 1);
    }
}
