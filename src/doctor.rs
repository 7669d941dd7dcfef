//! `harp doctor`: checks the set-up an admin most often gets wrong and says what to fix —
//! the Nextcloud URL, the shared key, the outer reverse proxy's `/exapps/` location, the running
//! gateway, the local Docker engine, and (asking the running harp's ops listener) the FRP tunnels
//! and the Docker engines behind them. Read-only: it never changes anything.

use crate::config::Settings;
use crate::docker::engines;
use crate::docker::target::EngineTarget;
use std::path::Path;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

pub enum Outcome {
    Ok,
    Skipped,
    Fail { fix: String },
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            outcome: Outcome::Ok,
            detail: detail.into(),
        }
    }
    fn skipped(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            outcome: Outcome::Skipped,
            detail: detail.into(),
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            name,
            outcome: Outcome::Fail { fix: fix.into() },
            detail: detail.into(),
        }
    }

    pub fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Fail { .. })
    }

    pub fn render(&self) -> String {
        match &self.outcome {
            Outcome::Ok => format!("ok    {}: {}", self.name, self.detail),
            Outcome::Skipped => format!("skip  {}: {}", self.name, self.detail),
            Outcome::Fail { fix } => {
                format!("FAIL  {}: {}\n      fix: {}", self.name, self.detail, fix)
            }
        }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .expect("an HTTP client with default TLS settings")
}

/// Runs every check; `app` (a registered ExApp id) lets the key be verified against Nextcloud.
pub async fn run(settings: &Settings, app: Option<&str>) -> Vec<Check> {
    let client = http();
    let proxies = connected_proxies(&client, settings).await;
    let key = running_key(&client, settings).await;
    vec![
        nextcloud(&client, settings).await,
        shared_key(&client, settings, app).await,
        gateway(&client, settings, key).await,
        outer_proxy(&client, settings, key).await,
        docker(&settings.docker_socket).await,
        tunnels(&client, settings, app, &proxies).await,
        remote_engines(&client, &proxies).await,
        kubernetes_api(settings).await,
        kubernetes_permissions(settings).await,
    ]
}

/// Does the Kubernetes API answer with harp's configuration, and if not, what to change.
async fn kubernetes_api(s: &Settings) -> Check {
    use crate::k8s::{ApiError, Kubernetes};
    const NAME: &str = "kubernetes";
    if !s.k8s.enabled {
        return Check::skipped(NAME, "HP_K8S_ENABLED is off");
    }
    let k8s = Kubernetes::new(s.k8s.clone());
    let url = s.k8s.api_server.clone().unwrap_or_default();
    match tokio::time::timeout(TIMEOUT, k8s.check_api()).await {
        Ok(Ok(())) => Check::ok(NAME, format!("the API server at {url} answers GET /api")),
        Ok(Err(e @ (ApiError::Disabled | ApiError::NoApiServer | ApiError::NoToken))) => {
            Check::fail(
                NAME,
                e.to_string(),
                "set HP_K8S_API_SERVER and HP_K8S_BEARER_TOKEN(_FILE), or run harp in a pod \
                 with a service account (harp check-config lists what is missing)",
            )
        }
        Ok(Err(ApiError::Unreachable(detail))) => Check::fail(
            NAME,
            format!("{url}: {detail}"),
            if detail.contains("certificate") || detail.contains("tls") || detail.contains("TLS") {
                "the API server's certificate is not trusted: set HP_K8S_CA_FILE to its CA \
                 (or, only for a test cluster, HP_K8S_VERIFY_SSL=false)"
            } else {
                "check HP_K8S_API_SERVER and that this host can reach it"
            },
        ),
        Ok(Err(ApiError::Status { code: 401, .. })) => Check::fail(
            NAME,
            format!("{url} refused the token (401)"),
            "the token is wrong or expired: check HP_K8S_BEARER_TOKEN or \
             HP_K8S_BEARER_TOKEN_FILE",
        ),
        Ok(Err(e)) => Check::fail(
            NAME,
            format!("{url}: {e}"),
            "check the API server's health and harp's RBAC (deploy/kubernetes/role.yaml)",
        ),
        Err(_) => Check::fail(
            NAME,
            format!("{url} did not answer within {}s", TIMEOUT.as_secs()),
            "check HP_K8S_API_SERVER and that this host can reach it",
        ),
    }
}

/// May harp's identity do every verb the backend uses (one `SelfSubjectAccessReview` each)?
async fn kubernetes_permissions(s: &Settings) -> Check {
    use crate::k8s::{Kubernetes, NEEDED_PERMISSIONS};
    const NAME: &str = "kubernetes rbac";
    if !s.k8s.enabled {
        return Check::skipped(NAME, "HP_K8S_ENABLED is off");
    }
    let k8s = Kubernetes::new(s.k8s.clone());
    let mut denied = Vec::new();
    for (verb, group, resource, namespaced) in NEEDED_PERMISSIONS {
        let question = k8s.may(verb, group, resource, *namespaced);
        match tokio::time::timeout(TIMEOUT, question).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => denied.push(format!("{verb} {resource}")),
            Ok(Err(e)) => {
                return Check::skipped(NAME, format!("cannot ask the API server: {e}"));
            }
            Err(_) => return Check::skipped(NAME, "the API server did not answer in time"),
        }
    }
    if denied.is_empty() {
        return Check::ok(
            NAME,
            format!(
                "the token may do all {} verbs harp uses in namespace {:?}",
                NEEDED_PERMISSIONS.len(),
                s.k8s.namespace
            ),
        );
    }
    let only_nodes = denied.iter().all(|d| d.ends_with(" nodes"));
    Check::fail(
        NAME,
        format!("not allowed: {}", denied.join(", ")),
        if only_nodes {
            "only expose type nodeport needs to list nodes: apply \
             deploy/kubernetes/clusterrole-nodes.yaml, or use another expose type"
                .to_string()
        } else {
            format!(
                "grant these verbs to harp's service account in namespace {:?} (the Role in \
                 deploy/kubernetes/role.yaml)",
                s.k8s.namespace
            )
        },
    )
}

async fn nextcloud(client: &reqwest::Client, s: &Settings) -> Check {
    let url = format!("{}/status.php", s.nc_instance_url);
    let sent = client.get(&url).send().await;
    let url = format!("{}/status.php", s.nc_instance_url_for_display());
    match sent.map_err(reqwest::Error::without_url) {
        Ok(r) if r.status().is_success() => {
            let body = r.text().await.unwrap_or_default();
            if body.contains("\"installed\"") {
                Check::ok("nextcloud", format!("{url} answers"))
            } else {
                Check::fail(
                    "nextcloud",
                    format!("{url} answers, but not like Nextcloud"),
                    "point NC_INSTANCE_URL at Nextcloud's base URL (without /index.php)",
                )
            }
        }
        Ok(r) => Check::fail(
            "nextcloud",
            format!("{url} answered {}", r.status()),
            "point NC_INSTANCE_URL at Nextcloud's base URL (without /index.php)",
        ),
        Err(e) => Check::fail(
            "nextcloud",
            format!("{url} is unreachable: {e}"),
            "set NC_INSTANCE_URL to an address harp can reach (inside a container, not localhost)",
        ),
    }
}

async fn shared_key(client: &reqwest::Client, s: &Settings, app: Option<&str>) -> Check {
    let Some(app) = app else {
        return Check::skipped(
            "shared key",
            "Nextcloud answers 401 alike for a wrong key and an unknown app; run `harp doctor --app <id>` with a registered ExApp to verify HP_SHARED_KEY",
        );
    };
    let url = format!(
        "{}/index.php/apps/app_api/harp/exapp-meta",
        s.nc_instance_url
    );
    let app_lower = app.to_ascii_lowercase();
    let sent = client
        .get(&url)
        .query(&[("appId", app_lower.as_str())])
        .header("harp-shared-key", &s.shared_key)
        .send()
        .await
        .map_err(reqwest::Error::without_url);
    match sent {
        Ok(r) if r.status().is_success() => Check::ok("shared key", format!("Nextcloud accepted it for ExApp {app:?}")),
        Ok(r) if r.status().as_u16() == 401 => Check::fail(
            "shared key",
            format!("Nextcloud refused the key for ExApp {app:?} (401)"),
            "make HP_SHARED_KEY equal the HaRP key of the daemon this ExApp is registered with (AppAPI admin settings), and check the app id",
        ),
        Ok(r) => Check::fail("shared key", format!("exapp-meta answered {}", r.status()), "check that AppAPI is enabled in Nextcloud"),
        Err(e) => Check::fail("shared key", format!("exapp-meta is unreachable: {e}"), "fix the nextcloud check first"),
    }
}

fn loopback(mut addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr
}

/// Whether the running harp has this doctor's key, asked on the ops listener: a wrong key sent
/// to the gateway would be a brute-force strike on this host's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunningKey {
    Same,
    Different,
    Unknown,
}

async fn running_key(client: &reqwest::Client, s: &Settings) -> RunningKey {
    let url = format!("http://{}/key-check", loopback(s.ops_address));
    for _ in 0..3 {
        match client
            .get(&url)
            .header("harp-shared-key", &s.shared_key)
            .send()
            .await
        {
            Ok(r) if r.status().as_u16() == 204 => return RunningKey::Same,
            Ok(r) if r.status().as_u16() == 403 => return RunningKey::Different,
            // Another doctor asked within the second.
            Ok(r) if r.status().as_u16() == 429 => {
                tokio::time::sleep(Duration::from_millis(1100)).await;
            }
            _ => return RunningKey::Unknown,
        }
    }
    RunningKey::Unknown
}

const DIFFERENT_KEY: &str =
    "the running harp has a different key; restart it after changing HP_SHARED_KEY";

async fn gateway(client: &reqwest::Client, s: &Settings, key: RunningKey) -> Check {
    let url = format!("http://{}/exapps/app_api/info", loopback(s.exapps_address));
    match key {
        RunningKey::Same => {}
        RunningKey::Different => {
            return Check::fail(
                "gateway",
                "harp's ops listener says HP_SHARED_KEY differs from the running harp's \
                 (not sent to the gateway: a wrong key is a brute-force strike)",
                DIFFERENT_KEY,
            )
        }
        RunningKey::Unknown => {
            return match tokio::net::TcpStream::connect(loopback(s.exapps_address)).await {
                Ok(_) => Check::skipped(
                    "gateway",
                    format!(
                        "{} accepts connections; the key was not checked (the ops listener on \
                         {} does not answer, and a wrong key sent to the gateway is a \
                         brute-force strike)",
                        loopback(s.exapps_address),
                        loopback(s.ops_address)
                    ),
                ),
                Err(e) => Check::fail(
                    "gateway",
                    format!("{}: {e}", loopback(s.exapps_address)),
                    "start harp (`harp`), then run the doctor again",
                ),
            };
        }
    }
    match client
        .get(&url)
        .header("harp-shared-key", &s.shared_key)
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => Check::ok("gateway", format!("{url} answers")),
        Ok(r) => Check::fail(
            "gateway",
            format!("{url} answered {}", r.status()),
            "is another program on HP_EXAPPS_ADDRESS?",
        ),
        Err(e) => Check::fail(
            "gateway",
            format!("{url}: {e}"),
            "start harp (`harp`), then run the doctor again",
        ),
    }
}

async fn outer_proxy(client: &reqwest::Client, s: &Settings, key: RunningKey) -> Check {
    if key == RunningKey::Different {
        return Check::skipped("reverse proxy", format!("not checked: {DIFFERENT_KEY}"));
    }
    let url = format!("{}/exapps/app_api/info", s.nc_instance_url);
    let sent = client
        .get(&url)
        .header("harp-shared-key", &s.shared_key)
        .send()
        .await
        .map_err(reqwest::Error::without_url);
    let url = format!("{}/exapps/app_api/info", s.nc_instance_url_for_display());
    let fix = "forward /exapps/ unchanged from Nextcloud's web server to harp (docs/reverse-proxy/), with WebSocket upgrade and a long read timeout";
    match sent {
        Ok(r) if r.status().is_success() => {
            let body = r.text().await.unwrap_or_default();
            if body.contains("\"docker\"") {
                Check::ok("reverse proxy", format!("{url} reaches harp"))
            } else {
                Check::fail("reverse proxy", format!("{url} answers, but not harp's /info"), fix)
            }
        }
        Ok(r) if r.status().as_u16() == 401 => Check::fail(
            "reverse proxy",
            format!("{url} reaches a HaRP that refuses this key"),
            "the web server forwards /exapps/ to another HaRP instance, or HP_SHARED_KEY differs between them",
        ),
        Ok(r) => Check::fail("reverse proxy", format!("{url} answered {}", r.status()), fix),
        Err(e) => Check::fail("reverse proxy", format!("{url}: {e}"), fix),
    }
}

async fn docker(socket: &Path) -> Check {
    if !socket.exists() {
        return Check::skipped(
            "docker",
            format!(
                "no local engine at {} (remote engines connect through the tunnel)",
                socket.display()
            ),
        );
    }
    let ping = async {
        let target = EngineTarget::Unix(socket.to_path_buf());
        let docker = engines::client_for(&target).map_err(|e| e.to_string())?;
        match engines::with_status(docker.ping()).await {
            (Ok(_), status) => Ok(status == 200),
            // The socket could not be used (refused, not permitted, cut off): the system's own
            // words, as the fix is the admin's. Anything else is an answer that is not OK.
            (Err(e), _) => io_cause(&e).map_or(Ok(false), |io| Err(io.to_string())),
        }
    };
    match tokio::time::timeout(TIMEOUT, ping).await {
        Ok(Ok(true)) => {
            Check::ok("docker", format!("the engine at {} answers _ping", socket.display()))
        }
        Ok(Ok(false)) => Check::fail("docker", format!("{} answered, but not OK", socket.display()), "check the Docker daemon's health"),
        Ok(Err(e)) => Check::fail(
            "docker",
            format!("{}: {e}", socket.display()),
            "mount the socket (-v /var/run/docker.sock:/var/run/docker.sock) and run harp as a user allowed to use it",
        ),
        Err(_) => Check::fail("docker", format!("{} did not answer in time", socket.display()), "check the Docker daemon"),
    }
}

/// The operating system's error under a client error, if there is one: hyper wraps it in
/// "client error (Connect)", which tells an admin nothing.
fn io_cause<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cause = e.source();
    }
    None
}

/// A proxy the running harp reports on its ops listener (`/tunnels`).
#[derive(serde::Deserialize)]
struct Proxy {
    name: String,
    port: u16,
}

#[derive(serde::Deserialize)]
struct Tunnels {
    proxies: Vec<Proxy>,
}

const EXAPP_PORTS: std::ops::RangeInclusive<u16> = 23000..=23999;
const ENGINE_PORTS: std::ops::RangeInclusive<u16> = 24000..=24099;

async fn connected_proxies(client: &reqwest::Client, s: &Settings) -> Result<Vec<Proxy>, String> {
    let url = format!("http://{}/tunnels", loopback(s.ops_address));
    let answer = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !answer.status().is_success() {
        return Err(format!("{url} answered {}", answer.status()));
    }
    let body = answer.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    let tunnels: Tunnels = serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
    Ok(tunnels.proxies)
}

fn listing(proxies: &[Proxy]) -> String {
    if proxies.is_empty() {
        return "none connected".into();
    }
    let names: Vec<String> = proxies
        .iter()
        .map(|p| format!("{} on {}", p.name, p.port))
        .collect();
    format!("connected: {}", names.join(", "))
}

/// The ExApp's port as Nextcloud reports it (exapp-meta).
async fn exapp_port(client: &reqwest::Client, s: &Settings, app: &str) -> Result<u16, String> {
    let url = format!(
        "{}/index.php/apps/app_api/harp/exapp-meta",
        s.nc_instance_url
    );
    let answer = client
        .get(&url)
        .query(&[("appId", app.to_ascii_lowercase())])
        .header("harp-shared-key", &s.shared_key)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !answer.status().is_success() {
        return Err(format!("exapp-meta answered {}", answer.status()));
    }
    let body = answer.bytes().await.map_err(|e| e.to_string())?;
    let record: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    record["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| "exapp-meta has no port".into())
}

async fn tunnels(
    client: &reqwest::Client,
    s: &Settings,
    app: Option<&str>,
    proxies: &Result<Vec<Proxy>, String>,
) -> Check {
    let proxies = match proxies {
        Ok(p) => p,
        Err(e) => {
            return Check::skipped(
                "tunnels",
                format!(
                    "harp's ops listener does not answer ({e}); start harp to check its tunnels"
                ),
            )
        }
    };
    let Some(app) = app else {
        return Check::ok("tunnels", listing(proxies));
    };
    match exapp_port(client, s, app).await {
        Err(e) => Check::skipped("tunnels", format!("port of ExApp {app:?} unknown ({e}); {}", listing(proxies))),
        Ok(port) if !EXAPP_PORTS.contains(&port) => Check::ok(
            "tunnels",
            format!("ExApp {app:?} is reached directly on port {port}, not through a tunnel"),
        ),
        Ok(port) => match proxies.iter().find(|p| p.port == port) {
            Some(p) => Check::ok("tunnels", format!("ExApp {app:?} is connected on port {port} (proxy {:?})", p.name)),
            None => Check::fail(
                "tunnels",
                format!("no tunnel holds port {port}, the port of ExApp {app:?}; {}", listing(proxies)),
                "read the ExApp container's log for frpc errors: it must reach HP_FRP_ADDRESS, use the client certificates of $HP_CERTS_DIR/frp and HP_SHARED_KEY as its token, and (HP_FRP_STRICT_PORTS) name its proxy after the ExApp",
            ),
        },
    }
}

/// Docker engines of remote hosts, connected through the tunnel on 24000-24099.
async fn remote_engines(client: &reqwest::Client, proxies: &Result<Vec<Proxy>, String>) -> Check {
    let engines: Vec<&Proxy> = match proxies {
        Ok(p) => p
            .iter()
            .filter(|p| ENGINE_PORTS.contains(&p.port))
            .collect(),
        Err(_) => return Check::skipped("remote docker", "harp's ops listener does not answer"),
    };
    if engines.is_empty() {
        return Check::skipped(
            "remote docker",
            "no Docker engine connected through a tunnel (ports 24000-24099)",
        );
    }
    let mut answering = Vec::new();
    let mut failing = Vec::new();
    for engine in engines {
        let url = format!("http://127.0.0.1:{}/_ping", engine.port);
        match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => {
                answering.push(format!("{} on {}", engine.name, engine.port));
            }
            Ok(r) => failing.push(format!(
                "{} on {} answered {}",
                engine.name,
                engine.port,
                r.status()
            )),
            Err(e) => failing.push(format!("{} on {}: {e}", engine.name, engine.port)),
        }
    }
    if failing.is_empty() {
        Check::ok(
            "remote docker",
            format!("_ping answered by {}", answering.join(", ")),
        )
    } else {
        Check::fail(
            "remote docker",
            failing.join("; "),
            "on the engine's host, check that the Docker daemon runs and that its frpc forwards to the Docker socket (unix_domain_socket plugin)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn temp_path(name: &str) -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("harp-doctor-{}-{n}-{name}", std::process::id()))
    }

    /// A unix socket that answers each connection's request with `answer`, then closes it.
    fn engine(answer: &'static [u8]) -> PathBuf {
        let path = temp_path("engine.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(answer).await;
            }
        });
        path
    }

    fn failed_with(check: &Check) -> Option<&str> {
        match &check.outcome {
            Outcome::Fail { .. } => Some(&check.detail),
            _ => None,
        }
    }

    #[tokio::test]
    async fn local_engine_ping() {
        let ok = engine(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK");
        let check = docker(&ok).await;
        assert!(matches!(check.outcome, Outcome::Ok), "{}", check.render());
        assert_eq!(
            check.detail,
            format!("the engine at {} answers _ping", ok.display())
        );

        for answer in [
            &b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"",
        ] {
            let socket = engine(answer);
            let check = docker(&socket).await;
            let expected = format!("{} answered, but not OK", socket.display());
            assert_eq!(failed_with(&check), Some(expected.as_str()), "{answer:?}");
        }
    }

    #[tokio::test]
    async fn local_engine_socket_problems_are_named_in_the_systems_words() {
        let not_a_socket = temp_path("plain-file");
        std::fs::write(&not_a_socket, b"").unwrap();
        let check = docker(&not_a_socket).await;
        // connect(2) on a plain file: what the raw probe printed, "Connection refused (os error 111)".
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let expected = format!("{}: {refused}", not_a_socket.display());
        assert_eq!(failed_with(&check), Some(expected.as_str()));

        let missing = temp_path("missing.sock");
        let check = docker(&missing).await;
        assert!(
            matches!(check.outcome, Outcome::Skipped),
            "{}",
            check.render()
        );
    }
}
