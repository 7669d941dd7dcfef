//! The caches in front of Nextcloud: ExApp records (permanent until replaced), the negative
//! cache (15 s, `config::NEGATIVE_CACHE_TTL`), the session cache, and DNS answers for ExApp hosts. Concurrent misses for one key make
//! one call (singleflight through moka's `try_get_with`). Every cache is bounded (HaRP Q7).
//!
//! A caller that has reason to doubt a cached ExApp answer (the tunnel server about to refuse a
//! port) can have it asked again ([`ExAppDirectory::get_current`]), at most once per app every
//! [`RECHECK_INTERVAL`], so a flood of such callers cannot flood Nextcloud.

use super::client::{MetaError, NextcloudClient, User, UserError};
use super::record::{ExAppRecord, Host};
use http::HeaderMap;
use moka::future::Cache;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// At most one re-check of a doubted cached answer per app in this time.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(2);
const MAX_APPS: u64 = 10_000;
/// Records are permanent in HaRP; an app unused for a day is simply fetched again.
const RECORD_IDLE: Duration = Duration::from_secs(24 * 3600);
const MAX_SESSIONS: u64 = 100_000;
const DNS_TTL: Duration = Duration::from_secs(30);
const DNS_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub enum LookupError {
    NotFound,
    Failed(String),
    /// The record is known but where to reach the ExApp could not be found out (a Kubernetes
    /// API error): 503, and nothing is cached.
    Unavailable(String),
}

/// Replaces the address in an ExApp's record with where the app really runs (the Kubernetes
/// backend: AppAPI's record names the app id as host). Asked once per record fetched, never
/// for a cached record.
#[async_trait::async_trait]
pub trait UpstreamOverride: Send + Sync {
    /// `Ok(None)`: keep the record's address.
    async fn upstream(&self, app_lower: &str) -> Result<Option<(Host, u16)>, String>;
}

/// What the record fetch can fail with inside the singleflight.
#[derive(Debug)]
enum FetchError {
    Meta(MetaError),
    Upstream(String),
}

impl FetchError {
    fn to_lookup(&self) -> LookupError {
        match self {
            FetchError::Meta(MetaError::NotFound) => LookupError::NotFound,
            FetchError::Meta(MetaError::Failed(why)) => LookupError::Failed(why.clone()),
            FetchError::Upstream(why) => LookupError::Unavailable(why.clone()),
        }
    }
}

/// ExApp records by lower-case app id.
pub struct ExAppDirectory {
    upstream: Option<Arc<dyn UpstreamOverride>>,
    records: Cache<String, Arc<ExAppRecord>>,
    unknown: moka::sync::Cache<String, ()>,
    /// Apps re-checked within the last `RECHECK_INTERVAL`.
    rechecked: moka::sync::Cache<String, ()>,
    dns: Cache<String, IpAddr>,
}

impl ExAppDirectory {
    /// `negative_ttl`: how long "no such app" is believed (`Settings::negative_cache_ttl`, R7).
    pub fn new(negative_ttl: Duration) -> Self {
        Self::with_ttls(negative_ttl, DNS_TTL)
    }

    fn with_ttls(negative_ttl: Duration, dns_ttl: Duration) -> Self {
        ExAppDirectory {
            upstream: None,
            records: Cache::builder()
                .max_capacity(MAX_APPS)
                .time_to_idle(RECORD_IDLE)
                .build(),
            unknown: moka::sync::Cache::builder()
                .max_capacity(MAX_APPS)
                .time_to_live(negative_ttl)
                .build(),
            rechecked: moka::sync::Cache::builder()
                .max_capacity(MAX_APPS)
                .time_to_live(RECHECK_INTERVAL)
                .build(),
            dns: Cache::builder()
                .max_capacity(MAX_APPS)
                .time_to_live(dns_ttl)
                .build(),
        }
    }

    /// Records fetched from Nextcloud get their address from `upstream` (the Kubernetes
    /// backend).
    pub fn with_upstream_override(mut self, upstream: Arc<dyn UpstreamOverride>) -> Self {
        self.upstream = Some(upstream);
        self
    }

    /// The address override for records AppAPI pushes (`exapp_storage`), if any applies.
    pub async fn override_upstream(&self, app_lower: &str) -> Result<Option<(Host, u16)>, String> {
        match &self.upstream {
            Some(upstream) => upstream.upstream(app_lower).await,
            None => Ok(None),
        }
    }

    /// The record for `app_lower`: cached, or fetched once however many requests wait for it.
    /// A cached answer that `outdated` doubts (it gets the cached record, or `None` for a cached
    /// "not found") is asked from Nextcloud again, at most once per app every
    /// [`RECHECK_INTERVAL`]; within that time the cached answer stands. An answer fetched by
    /// this call is not doubted.
    pub async fn get_current(
        &self,
        nc: &NextcloudClient,
        app_lower: &str,
        outdated: impl FnOnce(Option<&ExAppRecord>) -> bool,
    ) -> Result<Arc<ExAppRecord>, LookupError> {
        if let Some(r) = self.records.get(app_lower).await {
            nc.metrics.exapp_cache_hits.inc();
            if outdated(Some(&r)) && self.may_recheck(app_lower) {
                return self.recheck(nc, app_lower).await;
            }
            return Ok(r);
        }
        nc.metrics.exapp_cache_misses.inc();
        if self.unknown.contains_key(app_lower) {
            if outdated(None) && self.may_recheck(app_lower) {
                return self.recheck(nc, app_lower).await;
            }
            return Err(LookupError::NotFound);
        }
        let fetched = self
            .records
            .try_get_with(app_lower.to_string(), self.fetch(nc, app_lower))
            .await;
        match fetched {
            Ok(r) => Ok(r),
            Err(e) => {
                if let FetchError::Meta(MetaError::NotFound) = &*e {
                    self.unknown.insert(app_lower.to_string(), ());
                }
                Err(e.to_lookup())
            }
        }
    }

    /// The record as Nextcloud has it now, with the address override applied.
    async fn fetch(
        &self,
        nc: &NextcloudClient,
        app_lower: &str,
    ) -> Result<Arc<ExAppRecord>, FetchError> {
        let mut record = nc.exapp_meta(app_lower).await.map_err(FetchError::Meta)?;
        if let Some((host, port)) = self
            .override_upstream(app_lower)
            .await
            .map_err(FetchError::Upstream)?
        {
            record.host = host;
            record.port = port;
        }
        Ok(Arc::new(record))
    }

    /// Claims this app's one re-check per `RECHECK_INTERVAL`.
    fn may_recheck(&self, app_lower: &str) -> bool {
        self.rechecked
            .entry_by_ref(app_lower)
            .or_insert(())
            .is_fresh()
    }

    /// Asks Nextcloud past both caches and caches what it says: a record replaces the cached
    /// one, "not found" replaces it with a negative entry. A failed call changes nothing.
    async fn recheck(
        &self,
        nc: &NextcloudClient,
        app_lower: &str,
    ) -> Result<Arc<ExAppRecord>, LookupError> {
        match self.fetch(nc, app_lower).await {
            Ok(record) => {
                self.unknown.invalidate(app_lower);
                self.records
                    .insert(app_lower.to_string(), record.clone())
                    .await;
                Ok(record)
            }
            Err(e) => {
                if let FetchError::Meta(MetaError::NotFound) = &e {
                    self.records.invalidate(app_lower).await;
                    self.unknown.insert(app_lower.to_string(), ());
                }
                Err(e.to_lookup())
            }
        }
    }

    /// `POST /exapp_storage/<id>`: replace the record and forget a pending "not found".
    pub async fn store(&self, app_lower: String, record: ExAppRecord) {
        self.unknown.invalidate(&app_lower);
        self.records.insert(app_lower, Arc::new(record)).await;
    }

    /// Whether a record for `app_lower` is cached (an app Nextcloud knows).
    pub fn is_known(&self, app_lower: &str) -> bool {
        self.records.contains_key(app_lower)
    }

    pub async fn cached_count(&self) -> u64 {
        self.records.run_pending_tasks().await;
        self.records.entry_count()
    }

    /// App ids remembered as unknown (the negative cache).
    pub fn unknown_count(&self) -> u64 {
        self.unknown.run_pending_tasks();
        self.unknown.entry_count()
    }

    /// `DELETE /exapp_storage/<id>`: true if a record was cached.
    pub async fn remove(&self, app_lower: &str) -> bool {
        self.records.remove(app_lower).await.is_some()
    }

    /// The address to dial for `host`, re-resolved every 30 s (HaRP Q14 caches it forever).
    pub async fn resolve(&self, host: &Host) -> Result<IpAddr, String> {
        match host {
            Host::Ip(ip) => Ok(*ip),
            Host::Name(name) => {
                if let Some(ip) = self.dns.get(name.as_str()).await {
                    return Ok(ip);
                }
                self.dns
                    .try_get_with(name.clone(), resolve_host(name))
                    .await
                    .map_err(|e| (*e).clone())
            }
        }
    }
}

/// First IPv4 answer, else first IPv6 answer, like HaRP.
async fn resolve_host(name: &str) -> Result<IpAddr, String> {
    let lookup = tokio::net::lookup_host((name, 0));
    let addrs: Vec<_> = match tokio::time::timeout(DNS_TIMEOUT, lookup).await {
        Ok(Ok(a)) => a.map(|s| s.ip()).collect(),
        Ok(Err(e)) => return Err(format!("cannot resolve {name:?}: {e}")),
        Err(_) => return Err(format!("resolving {name:?} timed out")),
    };
    addrs
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("{name:?} has no address"))
}

/// The session cache: who a credential belongs to, for `HP_SESSION_LIFETIME`.
///
/// Keyed by a salted SHA-256 of the session cookie and the Authorization header (HaRP Q20), so
/// Basic and Bearer callers are cached too and raw credentials are never kept in memory.
pub struct SessionCache {
    users: Option<Cache<[u8; 32], Arc<User>>>,
    salt: [u8; 32],
}

#[derive(Debug, Clone)]
pub enum SessionError {
    Anonymous,
    Failed(String),
}

impl SessionCache {
    pub fn new(lifetime: Duration) -> Self {
        let mut salt = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .expect("the system random generator is unavailable");
        let users = (!lifetime.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_live(lifetime)
                .build()
        });
        SessionCache { users, salt }
    }

    fn key(&self, cookie: &[u8], authorization: &[u8]) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.salt);
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        ctx.update(&(cookie.len() as u64).to_le_bytes());
        ctx.update(cookie);
        ctx.update(authorization);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    pub async fn cached_count(&self) -> u64 {
        match &self.users {
            Some(users) => {
                users.run_pending_tasks().await;
                users.entry_count()
            }
            None => 0,
        }
    }

    /// The user behind these credentials: cached, or asked from Nextcloud once per key.
    pub async fn user(
        &self,
        nc: &NextcloudClient,
        app_lower: &str,
        cookie: &[u8],
        authorization: &[u8],
        headers: &HeaderMap,
    ) -> Result<Arc<User>, SessionError> {
        let Some(users) = &self.users else {
            return fetch_user(nc, app_lower, headers).await;
        };
        let key = self.key(cookie, authorization);
        if let Some(u) = users.get(&key).await {
            nc.metrics.session_cache_hits.inc();
            return Ok(u);
        }
        nc.metrics.session_cache_misses.inc();
        users
            .try_get_with(key, fetch_user(nc, app_lower, headers))
            .await
            .map_err(|e| (*e).clone())
    }
}

async fn fetch_user(
    nc: &NextcloudClient,
    app_lower: &str,
    headers: &HeaderMap,
) -> Result<Arc<User>, SessionError> {
    match nc.user_info(app_lower, headers).await {
        Ok(u) => Ok(Arc::new(u)),
        Err(UserError::Anonymous) => Err(SessionError::Anonymous),
        Err(UserError::Failed(why)) => Err(SessionError::Failed(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn q14_host_names_are_resolved_again_after_the_ttl() {
        let apps = ExAppDirectory::with_ttls(Duration::from_secs(15), Duration::from_millis(200));
        let host = Host::Name("localhost".into());
        let ip = apps.resolve(&host).await.unwrap();
        assert!(ip.is_loopback());
        assert!(apps.dns.contains_key("localhost"), "the answer is cached");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !apps.dns.contains_key("localhost"),
            "the answer expired and will be asked again"
        );
        assert_eq!(apps.resolve(&host).await.unwrap(), ip);
    }

    #[test]
    fn session_keys_separate_cookie_and_authorization() {
        let c = SessionCache::new(Duration::from_secs(3));
        assert_ne!(c.key(b"ab", b"c"), c.key(b"a", b"bc"));
        assert_eq!(c.key(b"a", b"b"), c.key(b"a", b"b"));
        assert_ne!(
            c.key(b"a", b""),
            SessionCache::new(Duration::from_secs(3)).key(b"a", b"")
        );
    }
}
