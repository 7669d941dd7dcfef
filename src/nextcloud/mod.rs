//! Everything harp-rs asks Nextcloud: ExApp records and users, behind bounded caches.
//! Never called from the data plane without a timeout.

pub mod cache;
pub mod client;
pub mod record;
pub mod route_regex;

pub use cache::{ExAppDirectory, LookupError, SessionCache, SessionError, UpstreamOverride};
pub use client::{NextcloudClient, User};
pub use record::{ExAppRecord, Host, Route};
