//! Stub of the two Nextcloud endpoints harp calls (appapi-contract.md §9.1, §9.2).
//!
//! Behaviour is changed at run time through a cloneable handle, and every request is recorded
//! so tests can count calls (caches, singleflight) and inspect what harp sent (B11, B16).
//! Answers mimic Nextcloud 34 / AppAPI 34: the same 401 body for an unknown app and a wrong key,
//! 400 without `appId`, 405 for non-GET, JSON with `\/` escaping, and `Set-Cookie` on every
//! answer (harp must never relay it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};

use super::{all_headers, header_list, last_header, ServerTask, KEY};

pub const EXAPP_META_PATH: &str = "/index.php/apps/app_api/harp/exapp-meta";
pub const USER_INFO_PATH: &str = "/index.php/apps/app_api/harp/user-info";
pub const JSON_CT: &str = "application/json; charset=utf-8";
pub const BAD_KEY_BODY: &str = r#"{"message":"Harp shared key is not valid"}"#;
/// Body of Nextcloud's 401 for wrong Basic credentials.
pub const BAD_LOGIN_BODY: &str = r#"{"message":""}"#;
/// Sent with every answer; a test can assert that clients never see it.
pub const NC_SET_COOKIE: &str = "ocstubinstance=must-not-leak; path=/; HttpOnly";

/// One request as the stub received it.
#[derive(Clone, Debug)]
pub struct NcRequest {
    pub method: String,
    pub path: String,
    /// Raw query string (`None` when the target had no `?`).
    pub query: Option<String>,
    /// Lower-case names, every value, in arrival order.
    pub headers: Vec<(String, String)>,
    /// `"exapp-meta"`, `"user-info"` or `"other"`.
    pub endpoint: String,
}

impl NcRequest {
    /// Last value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        last_header(&self.headers, name)
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        all_headers(&self.headers, name)
    }

    /// The decoded `appId` query parameter.
    pub fn app_id(&self) -> Option<String> {
        query_param(self.query.as_deref(), "appId")
    }
}

/// A canned answer.
#[derive(Clone, Debug)]
struct Canned {
    status: u16,
    body: Vec<u8>,
    content_type: String,
    delay: Duration,
}

#[derive(Default)]
struct Inner {
    key: String,
    apps: HashMap<String, Value>,
    app_responses: HashMap<String, Canned>,
    users: HashMap<String, Canned>,
    user_info_default: Option<Canned>,
    gzip: bool,
    requests: Vec<NcRequest>,
}

type Shared = Arc<Mutex<Inner>>;

#[derive(Clone)]
pub struct StubNextcloud {
    addr: SocketAddr,
    inner: Shared,
    _server: Arc<ServerTask>,
}

impl StubNextcloud {
    /// Starts on 127.0.0.1:<random> inside the current tokio runtime, expecting [`KEY`].
    pub async fn start() -> StubNextcloud {
        StubNextcloud::start_with_key(KEY).await
    }

    pub async fn start_with_key(key: &str) -> StubNextcloud {
        let inner: Shared = Arc::new(Mutex::new(Inner {
            key: key.to_string(),
            ..Inner::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind stub nextcloud");
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StubNextcloud {
            addr,
            inner,
            _server: Arc::new(ServerTask::new(task)),
        }
    }

    /// `http://127.0.0.1:<port>`: the value for NC_INSTANCE_URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:<port>/index.php/` (B11: harp must strip it).
    pub fn url_with_index(&self) -> String {
        format!("http://{}/index.php/", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// Registers an ExApp (Nextcloud matches the id case-sensitively; harp sends it lower-cased)
    /// and drops any canned response for it.
    pub fn set_app(&self, app_id: &str, record: Value) {
        let mut inner = self.lock();
        inner.app_responses.remove(app_id);
        inner.apps.insert(app_id.to_string(), record);
    }

    /// Answers exapp-meta for `app_id` with exactly this (after the key check), e.g. 500, 404,
    /// a non-JSON content type or a slow answer. The app also counts as known for user-info.
    pub fn set_app_response(
        &self,
        app_id: &str,
        status: u16,
        body: &str,
        content_type: &str,
        delay: Duration,
    ) {
        self.lock().app_responses.insert(
            app_id.to_string(),
            Canned {
                status,
                body: body.as_bytes().to_vec(),
                content_type: content_type.to_string(),
                delay,
            },
        );
    }

    /// A valid record answered after `delay` (singleflight tests).
    pub fn set_app_delayed(&self, app_id: &str, record: Value, delay: Duration) {
        self.set_app_response(app_id, 200, &nc_json(&record), JSON_CT, delay);
    }

    /// Forgets the app: exapp-meta answers 401 again.
    pub fn remove_app(&self, app_id: &str) {
        let mut inner = self.lock();
        inner.apps.remove(app_id);
        inner.app_responses.remove(app_id);
    }

    /// Maps a credential (an `oc_sessionPassphrase` cookie value, or a whole `Authorization`
    /// header value such as `Basic dTpw`) to a user-info answer.
    pub fn set_user(&self, credential: &str, status: u16, body: Value, delay: Duration) {
        self.lock().users.insert(
            credential.to_string(),
            Canned {
                status,
                body: nc_json(&body).into_bytes(),
                content_type: JSON_CT.to_string(),
                delay,
            },
        );
    }

    /// Shorthand: the credential is user `user_id` with `access_level`.
    pub fn set_user_level(&self, credential: &str, user_id: &str, access_level: u8) {
        self.set_user(
            credential,
            200,
            json!({"user_id": user_id, "access_level": access_level}),
            Duration::ZERO,
        );
    }

    /// Every user-info request (with a valid key) gets this answer, whatever the credentials:
    /// failure tests (500, 503 maintenance, slow answers).
    pub fn set_user_info_default(&self, status: u16, body: Value, delay: Duration) {
        self.lock().user_info_default = Some(Canned {
            status,
            body: nc_json(&body).into_bytes(),
            content_type: JSON_CT.to_string(),
            delay,
        });
    }

    pub fn clear_user_info_default(&self) {
        self.lock().user_info_default = None;
    }

    /// Gzip 200 answers when the request accepts gzip, as Nextcloud does (§9).
    pub fn set_gzip(&self, on: bool) {
        self.lock().gzip = on;
    }

    pub fn requests(&self) -> Vec<NcRequest> {
        self.lock().requests.clone()
    }

    /// Recorded requests for `"exapp-meta"`, `"user-info"` or `"other"`.
    pub fn requests_for(&self, endpoint: &str) -> Vec<NcRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .cloned()
            .collect()
    }

    pub fn count(&self, endpoint: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .count()
    }

    pub fn clear(&self) {
        self.lock().requests.clear();
    }

    /// An exapp-meta body. `routes`: `(url regex, access level, bruteforce_protection statuses)`.
    pub fn record(
        token: &str,
        version: &str,
        host: &str,
        port: u16,
        routes: &[(&str, u8, &[u16])],
    ) -> Value {
        let routes: Vec<Value> = routes
            .iter()
            .map(|(url, level, bf)| {
                json!({"url": url, "access_level": level, "bruteforce_protection": bf})
            })
            .collect();
        json!({
            "exapp_token": token,
            "exapp_version": version,
            "host": host,
            "port": port,
            "routes": routes,
        })
    }
}

/// `Basic base64(user:password)`, the credential string for [`StubNextcloud::set_user`].
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn handle(State(inner): State<Shared>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    // A Nextcloud that has moved: `/moved/...` is redirected to `/...` (not recorded).
    if let Some(rest) = parts
        .uri
        .path_and_query()
        .and_then(|p| p.as_str().strip_prefix("/moved"))
    {
        return Response::builder()
            .status(301)
            .header("location", rest)
            .body(Body::empty())
            .unwrap();
    }
    let path = parts.uri.path().to_string();
    // Nextcloud also serves the pretty URLs without /index.php; the recorded path tells them apart.
    let endpoint = match path.as_str() {
        EXAPP_META_PATH | "/apps/app_api/harp/exapp-meta" => "exapp-meta",
        USER_INFO_PATH | "/apps/app_api/harp/user-info" => "user-info",
        _ => "other",
    };
    let headers = header_list(&parts.headers);
    let request = NcRequest {
        method: parts.method.to_string(),
        path,
        query: parts.uri.query().map(str::to_string),
        headers,
        endpoint: endpoint.to_string(),
    };

    // Decide under the lock, sleep and answer outside it.
    let (canned, gzip) = {
        let mut inner = inner.lock().unwrap();
        inner.requests.push(request.clone());
        (decide(&inner, &request), inner.gzip)
    };
    tokio::time::sleep(canned.delay).await;

    let accepts_gzip = request
        .header_all("accept-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("gzip"));
    let mut builder = Response::builder()
        .status(canned.status)
        .header("set-cookie", NC_SET_COOKIE);
    if !canned.content_type.is_empty() {
        builder = builder.header("content-type", &canned.content_type);
    }
    // A redirect goes back to the same URL, as Nextcloud's answer to a missing
    // `nc_sameSiteCookielax` cookie does.
    if (300..400).contains(&canned.status) {
        let target = match &request.query {
            Some(query) => format!("{}?{query}", request.path),
            None => request.path.clone(),
        };
        builder = builder.header("location", target);
    }
    let body = if gzip && accepts_gzip && canned.status == 200 {
        builder = builder.header("content-encoding", "gzip");
        gzip_stored(&canned.body)
    } else {
        canned.body
    };
    builder.body(Body::from(body)).unwrap()
}

fn decide(inner: &Inner, req: &NcRequest) -> Canned {
    let empty = |status| Canned {
        status,
        body: Vec::new(),
        content_type: "text/html; charset=UTF-8".to_string(),
        delay: Duration::ZERO,
    };
    let json = |status, body: &str| Canned {
        status,
        body: body.as_bytes().to_vec(),
        content_type: JSON_CT.to_string(),
        delay: Duration::ZERO,
    };
    if req.endpoint == "other" {
        // Nextcloud's own health document, which `harp doctor` reads.
        if req.path == "/status.php" {
            return json(
                200,
                r#"{"installed":true,"maintenance":false,"version":"34.0.1.0"}"#,
            );
        }
        return empty(404);
    }
    if req.method != "GET" {
        return empty(405);
    }
    let Some(app_id) = req.app_id() else {
        return empty(400);
    };
    // PHP joins repeated headers with ", ", so a duplicated key header never matches.
    let sent_key = req.header_all("harp-shared-key").join(", ");
    if sent_key.is_empty() || sent_key != inner.key {
        return json(401, BAD_KEY_BODY);
    }
    let known = inner.apps.contains_key(&app_id) || inner.app_responses.contains_key(&app_id);

    if req.endpoint == "exapp-meta" {
        if let Some(canned) = inner.app_responses.get(&app_id) {
            return canned.clone();
        }
        return match inner.apps.get(&app_id) {
            Some(record) => json(200, &nc_json(record)),
            None => json(401, BAD_KEY_BODY),
        };
    }

    // user-info
    if let Some(canned) = &inner.user_info_default {
        return canned.clone();
    }
    if !known {
        return json(401, BAD_KEY_BODY);
    }
    let cookie = session_cookie(req).filter(|c| !c.is_empty());
    let authorization = req.header("authorization");
    // Like Nextcloud, a session wins over an Authorization header.
    let found = cookie
        .as_deref()
        .and_then(|c| inner.users.get(c))
        .or_else(|| authorization.and_then(|a| inner.users.get(a)));
    match found {
        Some(canned) => canned.clone(),
        None if cookie.is_some() || authorization.is_some() => json(401, BAD_LOGIN_BODY),
        None => json(200, r#"{"user_id":"","access_level":0}"#),
    }
}

/// The last `oc_sessionPassphrase` cookie across all Cookie headers.
fn session_cookie(req: &NcRequest) -> Option<String> {
    req.header_all("cookie")
        .iter()
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == "oc_sessionPassphrase")
        .map(|(_, value)| value.to_string())
        .next_back()
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let uri: http::Uri = format!("/?{}", query?).parse().ok()?;
    let Query(map) = Query::<HashMap<String, String>>::try_from_uri(&uri).ok()?;
    map.get(name).cloned()
}

/// JSON as PHP's json_encode writes it in Nextcloud: `/` as `\/`, `<` `>` hex-escaped. These
/// characters only occur inside strings in serialised JSON, so plain replacement is exact.
pub fn nc_json(value: &Value) -> String {
    value
        .to_string()
        .replace('/', "\\/")
        .replace('<', "\\u003C")
        .replace('>', "\\u003E")
}

/// A valid gzip stream using stored (uncompressed) deflate blocks: enough to prove harp
/// decompresses, without a compression crate.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none())); // BFINAL, BTYPE=00
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
