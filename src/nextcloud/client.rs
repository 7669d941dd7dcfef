//! HTTP client for Nextcloud's two HaRP callbacks: `exapp-meta` and `user-info`.
//!
//! Every call is bounded by `HP_NC_TIMEOUT` (25 s by default, 5 s to connect). This module only
//! talks to Nextcloud; caching lives in `cache.rs`.

use super::record::{AccessLevel, ExAppRecord, SchemaError};
use crate::metrics::Metrics;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A Nextcloud user as `user-info` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user_id: String,
    pub access_level: AccessLevel,
}

/// Why `exapp-meta` gave no record.
#[derive(Debug)]
pub enum MetaError {
    /// 401 or 404: Nextcloud does not know the app (or the key is wrong).
    NotFound,
    /// Anything else: network, timeout, other status, wrong content type, schema.
    Failed(String),
}

/// Why `user-info` gave no user.
#[derive(Debug)]
pub enum UserError {
    /// 4xx: the caller is anonymous.
    Anonymous,
    /// 5xx, 3xx, network, timeout, schema: the end user gets 401 (or anonymous on PUBLIC routes).
    Failed(String),
}

pub struct NextcloudClient {
    /// Call and cache counters; shared with the ops listener.
    pub metrics: Arc<Metrics>,
    http: reqwest::Client,
    base_url: String,
    meta_url: String,
    user_url: String,
    key: HeaderValue,
    /// Whether the "Nextcloud redirects" warning has been logged (once per process).
    redirect_warned: AtomicBool,
}

/// Request headers never forwarded to user-info: they describe the client's own connection.
const NOT_FORWARDED: [&str; 11] = [
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "transfer-encoding",
    "te",
    "trailer",
    "expect",
    "accept-encoding",
];

const SHARED_KEY_HEADER: HeaderName = HeaderName::from_static("harp-shared-key");

impl NextcloudClient {
    pub fn new(
        base_url: &str,
        key: &str,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(100)
            .redirect(redirect_policy())
            .build()
            .map_err(|e| format!("cannot build the Nextcloud HTTP client: {e}"))?;
        let key = HeaderValue::from_str(key)
            .map_err(|_| "the shared key is not a valid header value".to_string())?;
        Ok(NextcloudClient {
            metrics,
            http,
            base_url: base_url.to_string(),
            meta_url: format!("{base_url}/index.php/apps/app_api/harp/exapp-meta"),
            user_url: format!("{base_url}/index.php/apps/app_api/harp/user-info"),
            key,
            redirect_warned: AtomicBool::new(false),
        })
    }

    pub async fn exapp_meta(&self, app_id_lower: &str) -> Result<ExAppRecord, MetaError> {
        let result = self.fetch_exapp_meta(app_id_lower).await;
        match &result {
            Ok(_) => self.metrics.exapp_meta_ok.inc(),
            Err(MetaError::NotFound) => self.metrics.exapp_meta_not_found.inc(),
            Err(MetaError::Failed(_)) => self.metrics.exapp_meta_failed.inc(),
        }
        result
    }

    /// Whether Nextcloud answers HTTP at all (`status.php`), for the readiness probe.
    pub async fn probe(&self) -> Result<u16, String> {
        let url = format!("{}/status.php", self.base_url);
        let call = self.http.get(url).send();
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Ok(Ok(resp)) => Ok(resp.status().as_u16()),
            Ok(Err(e)) => Err(format!("Nextcloud is unreachable: {}", e.without_url())),
            Err(_) => Err("Nextcloud did not answer within 5 s".into()),
        }
    }

    async fn fetch_exapp_meta(&self, app_id_lower: &str) -> Result<ExAppRecord, MetaError> {
        let resp = self
            .http
            .get(&self.meta_url)
            .query(&[("appId", app_id_lower)])
            .header(SHARED_KEY_HEADER, self.key.clone())
            .send()
            .await
            .map_err(|e| {
                MetaError::Failed(format!("exapp-meta request failed: {}", e.without_url()))
            })?;
        self.warn_if_redirected(&resp, &self.meta_url);
        let status = resp.status().as_u16();
        if status == 401 || status == 404 {
            return Err(MetaError::NotFound);
        }
        if !(200..300).contains(&status) {
            return Err(MetaError::Failed(format!("exapp-meta answered {status}")));
        }
        let body = read_json_body(resp).await.map_err(MetaError::Failed)?;
        ExAppRecord::from_json(&body)
            .map_err(|SchemaError(e)| MetaError::Failed(format!("exapp-meta: {e}")))
    }

    /// Ask who the client is, forwarding its credentials (cookies, Authorization, ...).
    pub async fn user_info(
        &self,
        app_id_lower: &str,
        client_headers: &HeaderMap,
    ) -> Result<User, UserError> {
        let result = self.fetch_user_info(app_id_lower, client_headers).await;
        match &result {
            Ok(_) => self.metrics.user_info_ok.inc(),
            Err(UserError::Anonymous) => self.metrics.user_info_anonymous.inc(),
            Err(UserError::Failed(_)) => self.metrics.user_info_failed.inc(),
        }
        result
    }

    async fn fetch_user_info(
        &self,
        app_id_lower: &str,
        client_headers: &HeaderMap,
    ) -> Result<User, UserError> {
        let mut headers = HeaderMap::with_capacity(client_headers.len() + 1);
        for name in client_headers.keys() {
            if NOT_FORWARDED.contains(&name.as_str()) || name == SHARED_KEY_HEADER {
                continue;
            }
            // HaRP's header parser keeps the last value of a repeated header.
            if let Some(last) = client_headers.get_all(name).iter().next_back() {
                headers.insert(name.clone(), last.clone());
            }
        }
        headers.insert(SHARED_KEY_HEADER, self.key.clone());
        let resp = self
            .http
            .get(&self.user_url)
            .query(&[("appId", app_id_lower)])
            .headers(headers)
            .send()
            .await
            .map_err(|e| {
                UserError::Failed(format!("user-info request failed: {}", e.without_url()))
            })?;
        self.warn_if_redirected(&resp, &self.user_url);
        let status = resp.status().as_u16();
        if (400..500).contains(&status) {
            return Err(UserError::Anonymous);
        }
        if !(200..300).contains(&status) {
            return Err(UserError::Failed(format!("user-info answered {status}")));
        }
        let body = read_json_body(resp).await.map_err(UserError::Failed)?;
        parse_user(&body).map_err(UserError::Failed)
    }
}

impl NextcloudClient {
    /// A followed redirect works, but costs a round trip per call, and across a scheme change
    /// the user's cookie and Authorization are not passed on (so users look anonymous): say once
    /// which base URL to configure instead.
    fn warn_if_redirected(&self, resp: &reqwest::Response, asked: &str) {
        if resp.url().as_str().starts_with(asked)
            || self.redirect_warned.swap(true, Ordering::Relaxed)
        {
            return;
        }
        log::warn!(
            "Nextcloud redirects harp's calls to {}; set NC_INSTANCE_URL to that address",
            resp.url().origin().ascii_serialization()
        );
    }
}

/// Follows a redirect only to the same host (an `http://` `NC_INSTANCE_URL` that Nextcloud's web
/// server sends to `https://`), so the shared key and the user's credentials never go to another
/// host, and never to a URL already asked in this chain: Nextcloud answers user-info with a 302
/// to itself when the `nc_sameSiteCookielax` cookie is missing, which must fail at once (401)
/// rather than loop.
fn redirect_policy() -> reqwest::redirect::Policy {
    const MAX_REDIRECTS: usize = 3;
    reqwest::redirect::Policy::custom(|attempt| {
        let next = attempt.url();
        let same_host = attempt
            .previous()
            .first()
            .is_some_and(|first| first.host_str() == next.host_str());
        let seen = attempt.previous().iter().any(|url| url == next);
        if same_host && !seen && attempt.previous().len() <= MAX_REDIRECTS {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// Nextcloud callbacks are small JSON documents; anything else is a failure.
const MAX_CALLBACK_BODY: usize = 4 << 20;

async fn read_json_body(resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let is_json = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if !is_json {
        return Err("Nextcloud did not answer with application/json".into());
    }
    if resp
        .content_length()
        .is_some_and(|l| l as usize > MAX_CALLBACK_BODY)
    {
        return Err("Nextcloud's answer is too large".into());
    }
    let mut resp = resp;
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading Nextcloud's answer failed: {}", e.without_url()))?
    {
        if body.len() + chunk.len() > MAX_CALLBACK_BODY {
            return Err("Nextcloud's answer is too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn parse_user(body: &[u8]) -> Result<User, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("user-info: not JSON: {e}"))?;
    let user_id = match v.get("user_id") {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err("user-info: `user_id` must be a string".into()),
    };
    let access_level =
        v.get("access_level")
            .and_then(|l| match l {
                serde_json::Value::Number(n) => n.as_i64(),
                serde_json::Value::String(s) => s.parse().ok(),
                _ => None,
            })
            .filter(|l| (0..=2).contains(l))
            .ok_or("user-info: `access_level` must be 0, 1 or 2")? as AccessLevel;
    Ok(User {
        user_id,
        access_level,
    })
}

pub type SharedUser = Arc<User>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_parsing_follows_the_schema() {
        assert_eq!(
            parse_user(br#"{"user_id":"u","access_level":1}"#).unwrap(),
            User {
                user_id: "u".into(),
                access_level: 1
            }
        );
        assert_eq!(parse_user(br#"{"access_level":0}"#).unwrap().user_id, "");
        assert!(parse_user(br#"{"user_id":"u"}"#).is_err());
        assert!(parse_user(br#"{"user_id":"u","access_level":3}"#).is_err());
    }
}
