//! `harp doctor`: checks the set-up an admin most often gets wrong and says what to fix —
//! the Nextcloud URL, the shared key, the outer reverse proxy's `/exapps/` location, the running
//! gateway, and the local Docker engine. Read-only: it never changes anything.

use crate::config::Settings;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    vec![
        nextcloud(&client, settings).await,
        shared_key(&client, settings, app).await,
        gateway(&client, settings).await,
        outer_proxy(&client, settings).await,
        docker(settings).await,
    ]
}

async fn nextcloud(client: &reqwest::Client, s: &Settings) -> Check {
    let url = format!("{}/status.php", s.nc_instance_url);
    match client.get(&url).send().await {
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
        .await;
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

async fn gateway(client: &reqwest::Client, s: &Settings) -> Check {
    let url = format!("http://{}/exapps/app_api/info", loopback(s.exapps_address));
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

async fn outer_proxy(client: &reqwest::Client, s: &Settings) -> Check {
    let url = format!("{}/exapps/app_api/info", s.nc_instance_url);
    let sent = client
        .get(&url)
        .header("harp-shared-key", &s.shared_key)
        .send()
        .await;
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

async fn docker(s: &Settings) -> Check {
    let socket = &s.docker_socket;
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
        let mut stream = tokio::net::UnixStream::connect(socket).await?;
        stream
            .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        (&mut stream).take(4096).read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(TIMEOUT, ping).await {
        Ok(Ok(a)) if a.starts_with(b"HTTP/1.0 200") || a.starts_with(b"HTTP/1.1 200") => {
            Check::ok("docker", format!("the engine at {} answers _ping", socket.display()))
        }
        Ok(Ok(_)) => Check::fail("docker", format!("{} answered, but not OK", socket.display()), "check the Docker daemon's health"),
        Ok(Err(e)) => Check::fail(
            "docker",
            format!("{}: {e}", socket.display()),
            "mount the socket (-v /var/run/docker.sock:/var/run/docker.sock) and run harp as a user allowed to use it",
        ),
        Err(_) => Check::fail("docker", format!("{} did not answer in time", socket.display()), "check the Docker daemon"),
    }
}
