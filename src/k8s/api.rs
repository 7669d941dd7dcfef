//! The connection to the Kubernetes API: one kube client built on first use from the `HP_K8S_*`
//! settings, every call bounded by HaRP's 60 s, and every failure sorted into what AppAPI is
//! told (HaRP's texts) and what the operator reads in the log.

use crate::config::K8sSettings;
use kube::Client;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

/// HaRP's total timeout of one API call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a Kubernetes call did not give an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("Kubernetes backend is disabled in HaRP.")]
    Disabled,
    #[error("Kubernetes API server is not configured.")]
    NoApiServer,
    #[error("Kubernetes token is not configured.")]
    NoToken,
    /// No HTTP answer: connection refused, TLS failure, timeout. The detail is for the log.
    #[error("Error communicating with Kubernetes API")]
    Unreachable(String),
    /// The API answered with a status outside 2xx.
    #[error("Status {code}, {message}")]
    Status { code: u16, message: String },
}

impl ApiError {
    /// The status code the API answered, if it answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// The answer AppAPI gets when this error ends a request: HaRP's 503 texts for the
    /// configuration and connection errors, `fallback` (which names the object and status)
    /// for an API status.
    pub fn reply_text(&self, fallback: impl FnOnce(u16) -> String) -> String {
        match self {
            ApiError::Status { code, .. } => fallback(*code),
            other => other.to_string(),
        }
    }

    fn from_kube(e: kube::Error) -> ApiError {
        match e {
            kube::Error::Api(status) => ApiError::Status {
                code: status.code,
                message: status.message.clone(),
            },
            other => ApiError::Unreachable(other.to_string()),
        }
    }
}

/// The API client and the settings it was made from.
pub struct Api {
    settings: K8sSettings,
    /// The client and the token it presents: rebuilt when the token file changes, so a
    /// rotated projected token is used from the next call on.
    client: Mutex<Option<(String, Client)>>,
}

impl Api {
    pub fn new(settings: K8sSettings) -> Api {
        Api {
            settings,
            client: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &K8sSettings {
        &self.settings
    }

    pub fn namespace(&self) -> &str {
        &self.settings.namespace
    }

    /// HaRP's `_ensure_k8s_configured`, then the client: enabled, an API server, and a token
    /// (static, or a readable, non-empty token file, checked on every call as HaRP does).
    pub async fn client(&self) -> Result<Client, ApiError> {
        if !self.settings.enabled {
            return Err(ApiError::Disabled);
        }
        let Some(api_server) = &self.settings.api_server else {
            return Err(ApiError::NoApiServer);
        };
        let token = match &self.settings.bearer_token {
            Some(token) => token.clone(),
            None => self.read_token_file().await?,
        };
        if let Some((current, client)) = &*self.cached() {
            if *current == token {
                return Ok(client.clone());
            }
        }
        let client = build_client(&self.settings, api_server, &token).await?;
        *self.cached() = Some((token, client.clone()));
        Ok(client)
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Option<(String, Client)>> {
        self.client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `HP_K8S_BEARER_TOKEN_FILE`, read on every call as HaRP does (projected tokens rotate).
    async fn read_token_file(&self) -> Result<String, ApiError> {
        let file = &self.settings.bearer_token_file;
        match tokio::fs::read_to_string(file).await {
            Ok(token) if !token.trim().is_empty() => Ok(token.trim().to_string()),
            Ok(_) => {
                log::error!(
                    "Kubernetes token file {} is empty; set HP_K8S_BEARER_TOKEN or \
                     HP_K8S_BEARER_TOKEN_FILE",
                    file.display()
                );
                Err(ApiError::NoToken)
            }
            Err(e) => {
                log::error!(
                    "cannot read the Kubernetes token file {}: {e}; set HP_K8S_BEARER_TOKEN or \
                     HP_K8S_BEARER_TOKEN_FILE",
                    file.display()
                );
                Err(ApiError::NoToken)
            }
        }
    }

    /// Runs one API call with the client, bounded by [`CALL_TIMEOUT`].
    pub async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let client = self.client().await?;
        match tokio::time::timeout(CALL_TIMEOUT, f(client)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let e = ApiError::from_kube(e);
                if let ApiError::Unreachable(detail) = &e {
                    log::error!("Error communicating with Kubernetes API ({what}): {detail}");
                }
                Err(e)
            }
            Err(_) => {
                log::error!(
                    "Error communicating with Kubernetes API ({what}): no answer within {}s",
                    CALL_TIMEOUT.as_secs()
                );
                Err(ApiError::Unreachable("timed out".into()))
            }
        }
    }

    /// `GET /api` answered 200: `reachable` in `/info`.
    pub async fn reachable(&self) -> bool {
        self.call(
            "GET /api",
            |c| async move { c.list_core_api_versions().await },
        )
        .await
        .is_ok()
    }
}

async fn build_client(
    settings: &K8sSettings,
    api_server: &str,
    token: &str,
) -> Result<Client, ApiError> {
    let url: http::Uri = api_server
        .parse()
        .map_err(|_| ApiError::Unreachable(format!("invalid API server URL {api_server:?}")))?;
    let mut config = kube::Config::new(url);
    config.default_namespace = settings.namespace.clone();
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(CALL_TIMEOUT);
    config.write_timeout = Some(CALL_TIMEOUT);
    config.reset_reader_on_write = true;
    config.accept_invalid_certs = !settings.verify_ssl;
    let ca_exists = tokio::fs::metadata(&settings.ca_file).await.is_ok();
    if settings.verify_ssl && (ca_exists || settings.ca_file_explicit) {
        let pem = tokio::fs::read(&settings.ca_file).await.map_err(|e| {
            ApiError::Unreachable(format!(
                "cannot read HP_K8S_CA_FILE {}: {e}",
                settings.ca_file.display()
            ))
        })?;
        let certs = ca_certificates(&pem).map_err(|e| {
            ApiError::Unreachable(format!(
                "HP_K8S_CA_FILE {}: {e}",
                settings.ca_file.display()
            ))
        })?;
        config.root_cert = Some(certs);
        // kube re-reads the file about once a minute, so a rotated CA is picked up.
        config.root_cert_file = Some(settings.ca_file.clone());
    }
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.to_string().into()),
        ..Default::default()
    };
    Client::try_from(config).map_err(|e| ApiError::Unreachable(e.to_string()))
}

/// The certificates of a PEM bundle, DER-encoded.
pub fn ca_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}
