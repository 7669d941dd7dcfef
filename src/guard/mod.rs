//! Who is asking and whether they are still welcome: client IP behind trusted proxies and the
//! brute-force ban list. Pure in-memory state; never does I/O.

pub mod bans;
pub mod client_ip;

pub use bans::BanList;
pub use client_ip::ClientIpResolver;
