//! harp-rs: a drop-in replacement for Nextcloud's HaRP, built on Pingora.
//!
//! One process serves what HaRP needed HAProxy, a Python SPOE agent, frps and shell supervision
//! for: the `/exapps/` gateway (`gateway`), AppAPI's control API (`control`), and their shared
//! state (`state`: Nextcloud client and caches, brute-force guard).

pub mod answers;
pub mod certs;
pub mod config;
pub mod control;
pub mod docker;
pub mod doctor;
pub mod gateway;
pub mod guard;
pub mod k8s;
pub mod listeners;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod nextcloud;
pub mod ops;
pub(crate) mod pydantic;
pub mod reload;
pub mod reply;
pub mod server;
pub mod state;
pub mod tunnel;
