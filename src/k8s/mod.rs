//! The Kubernetes backend: AppAPI's `/k8s/exapp/*` lifecycle endpoints (HaRP 0.4's contract,
//! docs/kubernetes.md), `/info`'s `kubernetes` status, and where a Kubernetes ExApp is reached.
//!
//! Owns: request validation (`payload`, `names`), the objects harp creates (`objects`), the API
//! client and its errors (`api`), `wait_for_start`'s pod rules (`readiness`) and the upstream
//! resolution the gateway asks for on a cache miss (`upstream`).
//! Must never: touch objects outside `HP_K8S_NAMESPACE` or other than the `nc-app-*` ones a
//! request names, send the API a name or value it would refuse for a reason harp can see first,
//! wait on the API without a timeout (60 s a call), or run on a cached request's path.

mod api;
mod endpoints;
mod names;
mod objects;
mod payload;
mod readiness;
mod upstream;

pub use api::{ca_certificates, ApiError};
pub use endpoints::Exposed;
pub use upstream::{ResolveError, Upstream};

use crate::config::K8sSettings;
use crate::reply::Reply;
use std::time::Duration;

/// The `/k8s/exapp/<operation>` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Exists,
    Create,
    Start,
    Stop,
    WaitForStart,
    Remove,
    InstallCertificates,
    Expose,
}

impl Operation {
    pub fn from_path(operation: &str) -> Option<Operation> {
        Some(match operation {
            "exists" => Operation::Exists,
            "create" => Operation::Create,
            "start" => Operation::Start,
            "stop" => Operation::Stop,
            "wait_for_start" => Operation::WaitForStart,
            "remove" => Operation::Remove,
            "install_certificates" => Operation::InstallCertificates,
            "expose" => Operation::Expose,
            _ => return None,
        })
    }
}

/// What an operation produced: an answer, or (for `expose`) an upstream the caller must bind to
/// the ExApp's record before answering.
pub enum Outcome {
    Reply(Reply),
    Exposed(Exposed),
}

/// How long `/info` waits for the API server.
const INFO_BUDGET: Duration = Duration::from_secs(4);

/// `/info`'s `kubernetes` object, fields in HaRP's order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KubernetesInfo {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
}

/// The backend, built once at start from the `HP_K8S_*` settings.
pub struct Kubernetes {
    api: api::Api,
    budgets: endpoints::WaitBudgets,
}

impl Kubernetes {
    pub fn new(settings: K8sSettings) -> Kubernetes {
        let budgets = endpoints::WaitBudgets {
            image_pull: settings.image_pull_timeout,
            start: settings.start_timeout,
            poll: readiness::POLL_INTERVAL.min(settings.start_timeout / 2),
        };
        Kubernetes {
            api: api::Api::new(settings),
            budgets,
        }
    }

    pub fn enabled(&self) -> bool {
        self.api.settings().enabled
    }

    /// `/info`'s `kubernetes` object, as HaRP: `enabled`, and when enabled the API server and
    /// whether `GET /api` answered. AppAPI gives `/info` 5 s, so the API gets 4.
    pub async fn info(&self) -> KubernetesInfo {
        if !self.enabled() {
            return KubernetesInfo {
                enabled: false,
                api_server: None,
                reachable: None,
            };
        }
        let api_server = self.api.settings().api_server.clone().unwrap_or_default();
        let reachable = tokio::time::timeout(INFO_BUDGET, self.api.reachable())
            .await
            .unwrap_or(false);
        KubernetesInfo {
            enabled: true,
            api_server: Some(api_server),
            reachable: Some(reachable),
        }
    }

    /// Serves one operation. `body` is the raw request body.
    pub async fn handle(&self, operation: Operation, body: &[u8]) -> Outcome {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Outcome::Reply(Reply::text(400, "Invalid JSON body"));
        };
        let api = &self.api;
        let reply = match operation {
            Operation::Exists => endpoints::exists(api, &value).await,
            Operation::Create => endpoints::create(api, &value).await,
            Operation::Start => endpoints::scale(api, &value, 1).await,
            Operation::Stop => endpoints::scale(api, &value, 0).await,
            Operation::WaitForStart => endpoints::wait_for_start(api, &value, self.budgets).await,
            Operation::Remove => endpoints::remove(api, &value).await,
            Operation::InstallCertificates => endpoints::install_certificates(&value),
            Operation::Expose => match endpoints::expose(api, &value).await {
                Ok(exposed) => return Outcome::Exposed(exposed),
                Err(reply) => reply,
            },
        };
        Outcome::Reply(reply)
    }

    /// Where the ExApp `app_id` (lower case) is reached, `Ok(None)` when it has no Kubernetes
    /// objects or the backend is off.
    pub async fn resolve(&self, app_id: &str) -> Result<Option<Upstream>, ResolveError> {
        upstream::resolve(&self.api, app_id).await
    }

    /// The settings, for `harp doctor`.
    pub fn settings(&self) -> &K8sSettings {
        self.api.settings()
    }

    /// Whether the API answers `GET /api` with this configuration, and why not.
    pub async fn check_api(&self) -> Result<(), ApiError> {
        self.api
            .call(
                "GET /api",
                |c| async move { c.list_core_api_versions().await },
            )
            .await
            .map(|_| ())
    }

    /// One `SelfSubjectAccessReview`: may harp's identity do `verb` on `resource` (in `group`) in
    /// its namespace (or cluster-wide when `namespaced` is false)?
    pub async fn may(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        namespaced: bool,
    ) -> Result<bool, ApiError> {
        use k8s_openapi::api::authorization::v1::{
            ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
        };
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.to_string()),
                    group: Some(group.to_string()),
                    resource: Some(resource.to_string()),
                    namespace: namespaced.then(|| self.api.namespace().to_string()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = self
            .api
            .call("POST SelfSubjectAccessReview", move |c| async move {
                kube::Api::<SelfSubjectAccessReview>::all(c)
                    .create(&kube::api::PostParams::default(), &review)
                    .await
            })
            .await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}

#[async_trait::async_trait]
impl crate::nextcloud::UpstreamOverride for Kubernetes {
    async fn upstream(
        &self,
        app_lower: &str,
    ) -> Result<Option<(crate::nextcloud::Host, u16)>, String> {
        match self.resolve(app_lower).await {
            Ok(Some(up)) => Ok(Some((crate::nextcloud::Host::parse(&up.host), up.port))),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The verbs harp needs, as (verb, API group, resource, namespaced), for `harp doctor` and the
/// least-privilege Role in deploy/kubernetes/.
pub const NEEDED_PERMISSIONS: &[(&str, &str, &str, bool)] = &[
    ("get", "apps", "deployments", true),
    ("list", "apps", "deployments", true),
    ("create", "apps", "deployments", true),
    ("patch", "apps", "deployments", true),
    ("delete", "apps", "deployments", true),
    ("get", "", "services", true),
    ("list", "", "services", true),
    ("create", "", "services", true),
    ("delete", "", "services", true),
    ("create", "", "persistentvolumeclaims", true),
    ("delete", "", "persistentvolumeclaims", true),
    ("list", "", "pods", true),
    ("list", "", "nodes", false),
];

/// How long one `wait_for_start` may take at most (for logs and tests).
pub fn max_wait(settings: &K8sSettings) -> Duration {
    settings.image_pull_timeout + settings.start_timeout
}

/// What `harp check-config` reports about the Kubernetes settings beyond their syntax: that an
/// API server is known and the CA and token files can be read. Empty when disabled.
pub fn config_problems(settings: &K8sSettings) -> Vec<String> {
    let mut problems = Vec::new();
    if !settings.enabled {
        return problems;
    }
    if settings.api_server.is_none() {
        problems.push(
            "HP_K8S_API_SERVER: not set, and harp is not in a pod (KUBERNETES_SERVICE_HOST is \
             unset); set the API server's URL"
                .to_string(),
        );
    }
    let ca_present = settings.ca_file.exists();
    if settings.verify_ssl && (settings.ca_file_explicit || ca_present) {
        match std::fs::read(&settings.ca_file) {
            Ok(pem) => {
                if let Err(e) = ca_certificates(&pem) {
                    problems.push(format!(
                        "HP_K8S_CA_FILE={}: {e}",
                        settings.ca_file.display()
                    ));
                }
            }
            Err(e) => problems.push(format!(
                "HP_K8S_CA_FILE={}: cannot be read: {e}",
                settings.ca_file.display()
            )),
        }
    }
    if settings.bearer_token.is_none() {
        match std::fs::read_to_string(&settings.bearer_token_file) {
            Ok(token) if !token.trim().is_empty() => {}
            Ok(_) => problems.push(format!(
                "HP_K8S_BEARER_TOKEN_FILE={}: the file is empty; set HP_K8S_BEARER_TOKEN or \
                 point HP_K8S_BEARER_TOKEN_FILE at a token",
                settings.bearer_token_file.display()
            )),
            Err(e) => problems.push(format!(
                "HP_K8S_BEARER_TOKEN_FILE={}: cannot be read: {e}; set HP_K8S_BEARER_TOKEN or \
                 point HP_K8S_BEARER_TOKEN_FILE at a token",
                settings.bearer_token_file.display()
            )),
        }
    }
    problems
}
