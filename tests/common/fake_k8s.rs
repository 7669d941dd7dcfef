//! A fake Kubernetes API server for the Kubernetes backend's tests.
//!
//! harp's `src/k8s/` talks to the API server through `kube::Api<K>` with k8s-openapi types, so
//! the fake answers what a real kube-apiserver (1.33) answers for those calls: the same paths,
//! status codes and `kind: Status` error bodies (kube turns them into `kube::Error::Api` with the
//! same `code`, `reason` and message), the same defaulting, validation messages and
//! server-assigned metadata, and objects that deserialize into the k8s-openapi types (every
//! stored object went through them). Tests can then check harp against what a cluster would
//! answer without running one.
//!
//! There are no controllers: a Deployment with `spec.replicas >= 1` simply reports that many
//! Pods, whose state the test picks with [`FakeK8s::set_pod`], and its `status` follows them.
//! Services get cluster IPs in 127.0.100.0/22 so traffic a test routes to them stays on
//! loopback.
//!
//! Failure injection: [`FakeK8s::fail`] (any status for matching requests), [`FakeK8s::deny`]
//! (RBAC refusals, which SelfSubjectAccessReview reports too), [`FakeK8s::stop`] (connections
//! refused, open ones cut), and a token change with [`FakeK8s::set_token`].

// Each test binary uses part of the API (tests/k8s.rs includes this file directly).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use regex::Regex;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The token [`FakeOptions::default`] expects.
pub const DEFAULT_TOKEN: &str = "test-token";
/// The user RBAC refusals name (a service account, as harp runs in a cluster).
pub const FAKE_USER: &str = "system:serviceaccount:nextcloud-exapps:harp";
/// The node every scheduled Pod runs on.
pub const FAKE_NODE: &str = "fake-node";
/// The service CIDR cluster IPs come from: loopback, so tests can listen on them.
pub const SERVICE_CIDR: &str = "127.0.100.0/22";
/// kube-apiserver's default `--service-node-port-range`.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<i64> = 30000..=32767;

/// How to start a [`FakeK8s`].
#[derive(Clone, Debug)]
pub struct FakeOptions {
    /// The Bearer token every request must present.
    pub token: String,
    /// Serve HTTPS with a certificate from a fresh CA ([`FakeK8s::ca_pem`]).
    pub tls: bool,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            token: DEFAULT_TOKEN.to_string(),
            tls: false,
        }
    }
}

/// The state of the Pods of a Deployment, as the kubelet would report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodState {
    /// Phase Running; `ready` drives the Ready condition and `containerStatuses[].ready`.
    Running { ready: bool },
    /// A container waits: phase Pending (ErrImagePull, ImagePullBackOff, ContainerCreating,
    /// CreateContainerConfigError...), except CrashLoopBackOff, which is phase Running with
    /// restarts and a terminated `lastState`, as on a real node.
    Waiting { reason: String, message: String },
    /// Scheduled, nothing reported by the kubelet yet: phase Pending, no container statuses.
    /// The default for a new Deployment.
    NoContainerStatus,
    /// Not scheduled: phase Pending, condition PodScheduled=False reason Unschedulable.
    Unschedulable { message: String },
    /// Phase Succeeded, containers terminated with exit code 0.
    Succeeded,
    /// Phase Failed with a Pod-level reason and message (e.g. Evicted), containers terminated
    /// with exit code 1.
    Failed { reason: String, message: String },
}

impl PodState {
    pub fn waiting(reason: &str, message: &str) -> PodState {
        PodState::Waiting {
            reason: reason.to_string(),
            message: message.to_string(),
        }
    }

    pub fn failed(reason: &str, message: &str) -> PodState {
        PodState::Failed {
            reason: reason.to_string(),
            message: message.to_string(),
        }
    }
}

/// The fake API server; clones share it, and it stops when the last clone is dropped.
#[derive(Clone)]
pub struct FakeK8s {
    inner: Arc<Server>,
}

struct Server {
    addr: SocketAddr,
    tls: Option<TlsMaterial>,
    state: Shared,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// A duplicate of the listening socket, so [`FakeK8s::stop`] can close it at once (an
    /// aborted task drops its listener only when the runtime next polls it).
    listen_fd: Mutex<Option<OwnedFd>>,
    conns: Registry,
}

impl Server {
    fn stop(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        if let Some(fd) = lock(&self.listen_fd).take() {
            // SAFETY: `fd` is an open descriptor we own; shutdown(2) only changes the socket's
            // state (on Linux a listening socket stops accepting: connects are refused).
            unsafe {
                libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR);
            }
        }
        self.conns.shutdown_all();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

type Shared = Arc<Mutex<St>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeK8s {
    /// Binds 127.0.0.1:<random> and serves on the current tokio runtime.
    pub async fn start(opts: FakeOptions) -> FakeK8s {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake API server");
        let addr = listener.local_addr().expect("fake API server address");
        let listen_fd = listener
            .as_fd()
            .try_clone_to_owned()
            .expect("dup the listening socket");
        let tls = opts.tls.then(TlsMaterial::generate);
        let state: Shared = Arc::new(Mutex::new(St::new(opts.token, addr.port())));
        let conns = Registry::default();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(Box<dyn Io>, SocketAddr)>();
        let acceptor = tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.config.clone()));
        let registry = conns.clone();
        let accept = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(conn) => conn,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let Ok(id) = registry.add(&tcp) else { continue };
                let tracked = Tracked {
                    io: tcp,
                    id,
                    registry: registry.clone(),
                };
                match &acceptor {
                    None => {
                        let _ = tx.send((Box::new(tracked) as Box<dyn Io>, peer));
                    }
                    // Handshakes run on their own tasks so a silent client cannot hold up others.
                    Some(acceptor) => {
                        let (acceptor, tx) = (acceptor.clone(), tx.clone());
                        tokio::spawn(async move {
                            let handshake = acceptor.accept(tracked);
                            if let Ok(Ok(tls)) =
                                tokio::time::timeout(Duration::from_secs(10), handshake).await
                            {
                                let _ = tx.send((Box::new(tls) as Box<dyn Io>, peer));
                            }
                        });
                    }
                }
            }
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let serve = tokio::spawn(async move {
            let _ = axum::serve(ChannelListener { rx, local: addr }, app).await;
        });
        FakeK8s {
            inner: Arc::new(Server {
                addr,
                tls,
                state,
                tasks: Mutex::new(vec![accept, serve]),
                listen_fd: Mutex::new(Some(listen_fd)),
                conns,
            }),
        }
    }

    fn st(&self) -> MutexGuard<'_, St> {
        lock(&self.inner.state)
    }

    /// `http://127.0.0.1:PORT`, or `https://...` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.inner.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.inner.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// PEM of the CA that signed the server certificate (SANs 127.0.0.1 and localhost).
    pub fn ca_pem(&self) -> Option<String> {
        self.inner.tls.as_ref().map(|t| t.ca_pem.clone())
    }

    /// DER of the same CA (what `kube::Config::root_cert` takes).
    pub fn ca_der(&self) -> Option<Vec<u8>> {
        self.inner.tls.as_ref().map(|t| t.ca_der.clone())
    }

    pub fn token(&self) -> String {
        self.st().token.clone()
    }

    /// Later requests must present this Bearer token (a rotated service-account token).
    pub fn set_token(&self, token: &str) {
        self.st().token = token.to_string();
    }

    /// A kube client config for this server: its URL, current token, CA (with TLS), and
    /// `nextcloud-exapps` as the default namespace.
    pub fn kube_config(&self) -> kube::Config {
        let mut config = kube::Config::new(self.url().parse().expect("fake API server URL"));
        config.default_namespace = "nextcloud-exapps".to_string();
        config.auth_info.token = Some(self.token().into());
        if let Some(der) = self.ca_der() {
            config.root_cert = Some(vec![der]);
        }
        config
    }

    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.kube_config()).expect("kube client for the fake")
    }

    /// A kubeconfig file's text for this server (token user, CA data with TLS).
    pub fn kubeconfig_yaml(&self) -> String {
        use base64::Engine as _;
        let ca = match self.ca_pem() {
            Some(pem) => format!(
                "\n    certificate-authority-data: {}",
                base64::engine::general_purpose::STANDARD.encode(pem)
            ),
            None => String::new(),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}{ca}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: nextcloud-exapps\n\
             current-context: fake\nusers:\n- name: fake\n  user:\n    token: {}\n",
            self.url(),
            self.token()
        )
    }

    /// The state every Pod of Deployment `deployment` (in any namespace) reports from now on.
    pub fn set_pod(&self, deployment: &str, pod: PodState) {
        let mut st = self.st();
        let rv = st.bump();
        st.pod_rvs.insert(deployment.to_string(), rv);
        st.pod_states.insert(deployment.to_string(), pod);
        st.refresh_deployments(deployment);
    }

    /// Every request with this method (`"*"` for any) whose path starts with `path_prefix` is
    /// answered `status` with a `kind: Status` body, before authentication and routing, until
    /// [`FakeK8s::clear_failures`]. Mind that kube retries 429, 503 and 504 by default.
    pub fn fail(&self, method: &str, path_prefix: &str, status: u16) {
        self.add_failure(method, path_prefix, status, None);
    }

    /// Like [`FakeK8s::fail`], for the next `times` matching requests only.
    pub fn fail_times(&self, method: &str, path_prefix: &str, status: u16, times: usize) {
        self.add_failure(method, path_prefix, status, Some(times));
    }

    fn add_failure(&self, method: &str, prefix: &str, status: u16, remaining: Option<usize>) {
        self.st().failures.push(Failure {
            method: method.to_string(),
            prefix: prefix.to_string(),
            status,
            remaining,
        });
    }

    pub fn clear_failures(&self) {
        self.st().failures.clear();
    }

    /// RBAC forbids `verb` (get, list, watch, create, update, patch, delete, deletecollection;
    /// `"*"` for all) on `resource` (the plural: deployments, services, ...; `"*"` for all):
    /// such requests get 403 Forbidden, and SelfSubjectAccessReviews for them `allowed: false`.
    pub fn deny(&self, verb: &str, resource: &str) {
        self.st()
            .denied
            .push((verb.to_string(), resource.to_string()));
    }

    pub fn allow_all(&self) {
        self.st().denied.clear();
    }

    /// The stored Deployment named `name` (first namespace in order if several).
    pub fn deployment(&self, name: &str) -> Option<Value> {
        self.st().find_any(Kind::Deployment, name)
    }

    pub fn service(&self, name: &str) -> Option<Value> {
        self.st().find_any(Kind::Service, name)
    }

    pub fn pvc(&self, name: &str) -> Option<Value> {
        self.st().find_any(Kind::Pvc, name)
    }

    /// Any object by resource plural (deployments, services, persistentvolumeclaims, pods,
    /// nodes), namespace (ignored for nodes) and name.
    pub fn object(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let kind = Kind::from_plural(resource)?;
        let ns = if kind.namespaced() { namespace } else { "" };
        self.st().find(kind, ns, name)
    }

    /// The Pods the fake reports in `namespace` right now.
    pub fn pods(&self, namespace: &str) -> Vec<Value> {
        self.st().all_objects(Kind::Pod, Some(namespace))
    }

    /// Removes an object behind harp's back (an admin's `kubectl delete`); true if it existed.
    pub fn remove(&self, resource: &str, namespace: &str, name: &str) -> bool {
        let Some(kind) = Kind::from_plural(resource) else {
            return false;
        };
        let ns = if kind.namespaced() { namespace } else { "" };
        let mut st = self.st();
        let gone = st
            .objects
            .remove(&(kind, ns.to_string(), name.to_string()))
            .is_some();
        if gone {
            st.bump();
            st.sweep_pvcs();
        }
        gone
    }

    /// Seeds an object (Deployment, Service, PersistentVolumeClaim or Node, by its `kind`) as if
    /// someone else had created it: defaulted, given server metadata and allocations, not
    /// validated. `metadata.namespace` defaults to `default`. Replaces an existing one.
    pub fn put(&self, obj: Value) {
        let kind = obj["kind"]
            .as_str()
            .and_then(Kind::from_kind)
            .unwrap_or_else(|| panic!("put: unsupported kind in {obj}"));
        self.st().seed(kind, obj);
    }

    /// Seeds a Service (e.g. one harp does not manage).
    pub fn put_service(&self, mut obj: Value) {
        obj["kind"] = "Service".into();
        obj["apiVersion"] = "v1".into();
        self.put(obj);
    }

    pub fn put_node(&self, mut obj: Value) {
        obj["kind"] = "Node".into();
        obj["apiVersion"] = "v1".into();
        self.put(obj);
    }

    /// Fills `status.loadBalancer.ingress` of Service `service` (any namespace) as a cloud
    /// controller would: an `ip` (with `ipMode: VIP`) or, if `ip` is not an address, a
    /// `hostname`.
    pub fn set_lb_ingress(&self, service: &str, ip: &str) {
        let mut st = self.st();
        let keys: Vec<Key> = st
            .objects
            .keys()
            .filter(|k| k.0 == Kind::Service && k.2 == service)
            .cloned()
            .collect();
        let ingress = if ip.parse::<IpAddr>().is_ok() {
            json!({"ip": ip, "ipMode": "VIP"})
        } else {
            json!({"hostname": ip})
        };
        for key in keys {
            let rv = st.bump();
            let obj = st.objects.get_mut(&key).expect("service");
            obj["status"]["loadBalancer"] = json!({ "ingress": [ingress.clone()] });
            obj["metadata"]["resourceVersion"] = rv.to_string().into();
        }
    }

    /// Every request: `"METHOD /path"`, plus `?` and the query with its parameters
    /// percent-decoded (`GET /api/v1/namespaces/ns/pods?labelSelector=app=x`).
    pub fn requests(&self) -> Vec<String> {
        self.st().requests.clone()
    }

    pub fn clear_requests(&self) {
        let mut st = self.st();
        st.requests.clear();
        st.content_types.clear();
    }

    /// The Content-Type of each request that had a body, in order.
    pub fn content_types(&self) -> Vec<String> {
        self.st().content_types.clone()
    }

    /// Warnings sent back (`Warning: 299` headers), e.g. `unknown field "spec.foo"`.
    pub fn warnings(&self) -> Vec<String> {
        self.st().warnings.clone()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.st().rv
    }

    /// Closes the listener (connections are refused from now on) and cuts open connections.
    pub fn stop(&self) {
        self.inner.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Transport: plain or TLS connections handed to axum, each tracked so stop() can cut it.

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct ChannelListener {
    rx: tokio::sync::mpsc::UnboundedReceiver<(Box<dyn Io>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for ChannelListener {
    type Io = Box<dyn Io>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Open connections by id: a duplicate descriptor of each, to shut it down from outside.
#[derive(Clone, Default)]
struct Registry(Arc<Mutex<(u64, HashMap<u64, std::net::TcpStream>)>>);

impl Registry {
    fn add(&self, io: &tokio::net::TcpStream) -> std::io::Result<u64> {
        let dup = std::net::TcpStream::from(io.as_fd().try_clone_to_owned()?);
        let mut g = lock(&self.0);
        g.0 += 1;
        let id = g.0;
        g.1.insert(id, dup);
        Ok(id)
    }

    fn remove(&self, id: u64) {
        lock(&self.0).1.remove(&id);
    }

    fn shutdown_all(&self) {
        let conns: Vec<_> = lock(&self.0).1.drain().collect();
        for (_, conn) in conns {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A connection that leaves the registry when dropped (so its duplicate does not keep it open).
struct Tracked {
    io: tokio::net::TcpStream,
    id: u64,
    registry: Registry,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

struct TlsMaterial {
    ca_pem: String,
    ca_der: Vec<u8>,
    config: Arc<rustls::ServerConfig>,
}

impl TlsMaterial {
    /// A fresh CA and a server certificate for 127.0.0.1 and localhost (ECDSA: rcgen with ring
    /// cannot generate RSA keys; kube accepts either).
    fn generate() -> TlsMaterial {
        use rcgen::{
            BasicConstraints, CertificateParams, DistinguishedName, DnType,
            ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fake-kubernetes-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let mut params =
            CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
            .expect("server key DER");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key_der)
            .expect("server TLS config");
        TlsMaterial {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().to_vec(),
            config: Arc::new(config),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests and replies.

struct Req {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    content_type: String,
    body: Vec<u8>,
}

impl Req {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }

    fn media_type(&self) -> String {
        self.content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }
}

struct Reply {
    code: u16,
    body: Value,
    text: Option<&'static str>,
    warnings: Vec<String>,
}

/// Ok and Err both carry the answer; Err short-circuits with `?`.
type Answer = Result<Reply, Reply>;

impl Reply {
    fn json(code: u16, body: Value) -> Reply {
        Reply {
            code,
            body,
            text: None,
            warnings: Vec::new(),
        }
    }

    fn text(code: u16, text: &'static str) -> Reply {
        Reply {
            code,
            body: Value::Null,
            text: Some(text),
            warnings: Vec::new(),
        }
    }

    fn with_warnings(mut self, warnings: Vec<String>) -> Reply {
        self.warnings = warnings;
        self
    }

    fn into_response(self) -> Response {
        let mut builder = Response::builder().status(self.code);
        let bytes = match self.text {
            Some(text) => {
                builder = builder.header("content-type", "text/plain; charset=utf-8");
                text.as_bytes().to_vec()
            }
            None => {
                builder = builder.header("content-type", "application/json");
                serde_json::to_vec(&self.body).expect("serialize reply")
            }
        };
        for warning in &self.warnings {
            builder = builder.header("warning", format!("299 - {}", q(warning)));
        }
        if self.code == 429 {
            builder = builder.header("retry-after", "1");
        }
        builder.body(Body::from(bytes)).expect("reply")
    }
}

async fn handle(State(state): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    };
    let req = Req {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parse_query(parts.uri.query().unwrap_or("")),
        content_type: header("content-type"),
        body: body.to_vec(),
    };
    let authorization = header("authorization");
    let reply = lock(&state).serve(&req, &authorization);
    reply.into_response()
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Status bodies, as apimachinery's `errors` package builds them.

fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Reply {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    Reply::json(code, body)
}

fn details(kind: Kind, name: &str, kind_field: &str) -> Value {
    let mut d = json!({"name": name, "kind": kind_field});
    if !kind.group().is_empty() {
        d["group"] = kind.group().into();
    }
    d
}

fn unauthorized() -> Reply {
    status(401, "Unauthorized", "Unauthorized", None)
}

fn not_found(kind: Kind, name: &str) -> Reply {
    status(
        404,
        "NotFound",
        &format!("{} {} not found", kind.resource_q(), q(name)),
        Some(details(kind, name, kind.plural())),
    )
}

fn not_found_path() -> Reply {
    status(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

fn already_exists(kind: Kind, name: &str) -> Reply {
    status(
        409,
        "AlreadyExists",
        &format!("{} {} already exists", kind.resource_q(), q(name)),
        Some(details(kind, name, kind.plural())),
    )
}

fn conflict(kind: Kind, name: &str, why: &str) -> Reply {
    status(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {} {}: {why}",
            kind.resource_q(),
            q(name)
        ),
        Some(details(kind, name, kind.plural())),
    )
}

const MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

fn bad_request(message: &str) -> Reply {
    status(400, "BadRequest", message, None)
}

fn method_not_allowed() -> Reply {
    status(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        Some(json!({})),
    )
}

fn unsupported_media(accepted: &str) -> Reply {
    status(
        415,
        "UnsupportedMediaType",
        &format!(
            "the body of the request was in an unknown format - accepted media types include: {accepted}"
        ),
        None,
    )
}

fn forbidden(kind: Kind, verb: &str, ns: Option<&str>, name: Option<&str>) -> Reply {
    let subject = match name {
        Some(n) => format!("{} {}", kind.resource_q(), q(n)),
        None => kind.resource_q(),
    };
    let scope = match ns {
        Some(ns) if kind.namespaced() => format!("in the namespace {}", q(ns)),
        _ => "at the cluster scope".to_string(),
    };
    status(
        403,
        "Forbidden",
        &format!(
            "{subject} is forbidden: User {} cannot {verb} resource {} in API group {} {scope}",
            q(FAKE_USER),
            q(kind.plural()),
            q(kind.group())
        ),
        Some(details(kind, name.unwrap_or(""), kind.plural())),
    )
}

/// The answer [`FakeK8s::fail`] injects.
fn injected(code: u16) -> Reply {
    let (reason, message) = match code {
        400 => ("BadRequest", "the server rejected our request for an unknown reason"),
        401 => ("Unauthorized", "Unauthorized"),
        403 => ("Forbidden", "forbidden: injected by the fake API server"),
        404 => ("NotFound", "the server could not find the requested resource"),
        405 => (
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ),
        409 => ("Conflict", "the server reported a conflict"),
        410 => ("Expired", "the resource version is too old"),
        415 => ("UnsupportedMediaType", "the media type is not supported"),
        422 => ("Invalid", "the server rejected our request due to an error in our request"),
        429 => ("TooManyRequests", "Too many requests, please try again later."),
        500 => (
            "InternalError",
            "Internal error occurred: injected by the fake API server",
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
        504 => (
            "Timeout",
            "the server was unable to return a response in the time allotted, but may still be processing the request",
        ),
        _ => ("", "an error on the server has prevented the request from succeeding"),
    };
    status(code, reason, message, Some(json!({})))
}

// ---------------------------------------------------------------------------------------------
// Resource kinds.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Deployment,
    Service,
    Pvc,
    Pod,
    Node,
}

type Key = (Kind, String, String);

impl Kind {
    fn from_plural(plural: &str) -> Option<Kind> {
        Some(match plural {
            "deployments" => Kind::Deployment,
            "services" => Kind::Service,
            "persistentvolumeclaims" => Kind::Pvc,
            "pods" => Kind::Pod,
            "nodes" => Kind::Node,
            _ => return None,
        })
    }

    fn from_kind(kind: &str) -> Option<Kind> {
        [
            Kind::Deployment,
            Kind::Service,
            Kind::Pvc,
            Kind::Pod,
            Kind::Node,
        ]
        .into_iter()
        .find(|k| k.kind() == kind)
    }

    /// Namespaced resources under `/api/v1/namespaces/{ns}/`.
    fn core_namespaced(plural: &str) -> Option<Kind> {
        Kind::from_plural(plural).filter(|k| matches!(k, Kind::Service | Kind::Pvc | Kind::Pod))
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::Deployment => "deployments",
            Kind::Service => "services",
            Kind::Pvc => "persistentvolumeclaims",
            Kind::Pod => "pods",
            Kind::Node => "nodes",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::Service => "Service",
            Kind::Pvc => "PersistentVolumeClaim",
            Kind::Pod => "Pod",
            Kind::Node => "Node",
        }
    }

    fn group(self) -> &'static str {
        match self {
            Kind::Deployment => "apps",
            _ => "",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Kind::Deployment => "apps/v1",
            _ => "v1",
        }
    }

    fn namespaced(self) -> bool {
        self != Kind::Node
    }

    /// `deployments.apps`, `services`: how NotFound and AlreadyExists name the resource.
    fn resource_q(self) -> String {
        match self.group() {
            "" => self.plural().to_string(),
            g => format!("{}.{g}", self.plural()),
        }
    }

    /// `Deployment.apps`, `Service`: how Invalid names the kind.
    fn kind_q(self) -> String {
        match self.group() {
            "" => self.kind().to_string(),
            g => format!("{}.{g}", self.kind()),
        }
    }

    fn verbs(self) -> &'static [&'static str] {
        match self {
            Kind::Pod => &["get", "list", "watch", "delete"],
            Kind::Node => &["get", "list", "watch"],
            _ => &[
                "get",
                "list",
                "watch",
                "create",
                "update",
                "patch",
                "delete",
                "deletecollection",
            ],
        }
    }

    /// Decodes into the k8s-openapi type and back: what a Go server keeps of a body (wrong
    /// types fail, unknown fields go).
    fn roundtrip(self, v: &Value) -> Result<Value, String> {
        use k8s_openapi::api::apps::v1::Deployment;
        use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Service};
        fn rt<T: serde::de::DeserializeOwned + serde::Serialize>(
            v: &Value,
        ) -> Result<Value, String> {
            let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
            serde_json::to_value(typed).map_err(|e| e.to_string())
        }
        match self {
            Kind::Deployment => rt::<Deployment>(v),
            Kind::Service => rt::<Service>(v),
            Kind::Pvc => rt::<PersistentVolumeClaim>(v),
            Kind::Pod => rt::<Pod>(v),
            Kind::Node => rt::<Node>(v),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server state and routing.

struct Failure {
    method: String,
    prefix: String,
    status: u16,
    remaining: Option<usize>,
}

struct St {
    token: String,
    port: u16,
    rv: u64,
    seq: u64,
    objects: BTreeMap<Key, Value>,
    pod_states: HashMap<String, PodState>,
    pod_rvs: HashMap<String, u64>,
    pod_epochs: HashMap<(String, String), u64>,
    failures: Vec<Failure>,
    denied: Vec<(String, String)>,
    requests: Vec<String>,
    content_types: Vec<String>,
    warnings: Vec<String>,
}

static NEXT_CLUSTER_IP: AtomicU32 = AtomicU32::new(0);
static NEXT_NODE_PORT: AtomicU32 = AtomicU32::new(0);

impl St {
    fn new(token: String, port: u16) -> St {
        St {
            token,
            port,
            rv: 1000,
            seq: 0,
            objects: BTreeMap::new(),
            pod_states: HashMap::new(),
            pod_rvs: HashMap::new(),
            pod_epochs: HashMap::new(),
            failures: Vec::new(),
            denied: Vec::new(),
            requests: Vec::new(),
            content_types: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn uid(&mut self) -> String {
        self.seq += 1;
        uuid_from(fnv(format!("uid/{}/{}", self.port, self.seq).as_bytes()))
    }

    fn serve(&mut self, r: &Req, authorization: &str) -> Reply {
        let mut line = format!("{} {}", r.method, r.path);
        if !r.query.is_empty() {
            let query: Vec<String> = r.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            line.push('?');
            line.push_str(&query.join("&"));
        }
        self.requests.push(line);
        if !r.body.is_empty() {
            self.content_types.push(r.content_type.clone());
        }
        if let Some(code) = self.injected_failure(&r.method, &r.path) {
            return injected(code);
        }
        let token = authorization
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        if self.token.is_empty() || token != Some(self.token.as_str()) {
            return unauthorized();
        }
        let reply = self.route(r).unwrap_or_else(|e| e);
        self.warnings.extend(reply.warnings.iter().cloned());
        reply
    }

    fn injected_failure(&mut self, method: &str, path: &str) -> Option<u16> {
        let i = self.failures.iter().position(|f| {
            (f.method == "*" || f.method.eq_ignore_ascii_case(method))
                && path.starts_with(&f.prefix)
        })?;
        let code = self.failures[i].status;
        if let Some(n) = self.failures[i].remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.failures.remove(i);
            }
        }
        Some(code)
    }

    fn is_denied(&self, verb: &str, resource: &str) -> bool {
        self.denied
            .iter()
            .any(|(v, r)| (v == "*" || v == verb) && (r == "*" || r == resource))
    }

    fn route(&mut self, r: &Req) -> Answer {
        let path = r.path.strip_prefix('/').unwrap_or(&r.path).to_string();
        let segs: Vec<&str> = path.split('/').collect();
        match segs.as_slice() {
            ["api"] => read_only(r, api_versions(self.port)),
            ["apis"] => read_only(r, api_groups()),
            ["api", "v1"] => read_only(r, core_v1_resources()),
            ["apis", "apps", "v1"] => read_only(r, apps_v1_resources()),
            ["apis", "authorization.k8s.io", "v1"] => read_only(r, authorization_v1_resources()),
            ["version"] => read_only(r, version_info()),
            ["healthz"] | ["livez"] | ["readyz"] => match r.method.as_str() {
                "GET" => Ok(Reply::text(200, "ok")),
                _ => Err(method_not_allowed()),
            },
            ["api", "v1", "namespaces", ns] => self.namespace(r, ns),
            ["api", "v1", "namespaces", ns, plural, rest @ ..] => {
                match Kind::core_namespaced(plural) {
                    Some(kind) => self.resource(r, kind, Some(ns), rest),
                    None => Err(not_found_path()),
                }
            }
            ["api", "v1", "nodes", rest @ ..] => self.resource(r, Kind::Node, None, rest),
            ["api", "v1", plural] => match Kind::core_namespaced(plural) {
                Some(kind) => self.resource(r, kind, None, &[]),
                None => Err(not_found_path()),
            },
            ["apis", "apps", "v1", "namespaces", ns, "deployments", rest @ ..] => {
                self.resource(r, Kind::Deployment, Some(ns), rest)
            }
            ["apis", "apps", "v1", "deployments"] => self.resource(r, Kind::Deployment, None, &[]),
            ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"] => {
                self.access_review(r)
            }
            _ => Err(not_found_path()),
        }
    }

    /// Namespaces all exist (and are Active): the fake does not model them.
    fn namespace(&mut self, r: &Req, ns: &str) -> Answer {
        if r.method != "GET" {
            return Err(method_not_allowed());
        }
        if self.is_denied("get", "namespaces") {
            return Err(status(
                403,
                "Forbidden",
                &format!(
                    "namespaces {} is forbidden: User {} cannot get resource \"namespaces\" in API group \"\" in the namespace {}",
                    q(ns),
                    q(FAKE_USER),
                    q(ns)
                ),
                Some(json!({"name": ns, "kind": "namespaces"})),
            ));
        }
        if !dns1123_label(ns).is_empty() {
            return Err(status(
                404,
                "NotFound",
                &format!("namespaces {} not found", q(ns)),
                Some(json!({"name": ns, "kind": "namespaces"})),
            ));
        }
        Ok(Reply::json(
            200,
            json!({
                "kind": "Namespace",
                "apiVersion": "v1",
                "metadata": {
                    "name": ns,
                    "uid": uuid_from(fnv(format!("ns/{ns}").as_bytes())),
                    "resourceVersion": "1",
                    "creationTimestamp": "2025-01-01T00:00:00Z",
                    "labels": {"kubernetes.io/metadata.name": ns},
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }),
        ))
    }

    fn resource(&mut self, r: &Req, kind: Kind, ns: Option<&str>, rest: &[&str]) -> Answer {
        if ns == Some("") || rest.iter().any(|s| s.is_empty()) {
            return Err(not_found_path());
        }
        let name = match rest {
            [] => None,
            [name] => Some(*name),
            _ => return Err(not_found_path()),
        };
        let watch = matches!(r.param("watch"), Some("true" | "1"));
        let verb = match (r.method.as_str(), name) {
            ("GET", None) if watch => "watch",
            ("GET", None) => "list",
            ("GET", Some(_)) => "get",
            ("POST", None) => "create",
            ("PUT", Some(_)) => "update",
            ("PATCH", Some(_)) => "patch",
            ("DELETE", Some(_)) => "delete",
            ("DELETE", None) => "deletecollection",
            _ => return Err(method_not_allowed()),
        };
        let all_namespaces = kind.namespaced() && ns.is_none();
        if !kind.verbs().contains(&verb) || (all_namespaces && !matches!(verb, "list" | "watch")) {
            return Err(method_not_allowed());
        }
        if self.is_denied(verb, kind.plural()) {
            return Err(forbidden(kind, verb, ns, name));
        }
        if verb == "watch" {
            return Err(status(
                405,
                "MethodNotAllowed",
                "the fake API server does not implement watch",
                Some(json!({})),
            ));
        }
        let key_ns = ns.unwrap_or("").to_string();
        match (verb, name) {
            ("list", _) => self.list(r, kind, ns),
            ("get", Some(name)) => self
                .find(kind, &key_ns, name)
                .map(|o| Reply::json(200, o))
                .ok_or_else(|| not_found(kind, name)),
            ("create", _) => {
                let input = decode_body(r)?;
                self.create(r, kind, &key_ns, input)
            }
            ("update", Some(name)) => self.update(r, kind, &key_ns, name),
            ("patch", Some(name)) => self.patch(r, kind, &key_ns, name),
            ("delete", Some(name)) => self.delete(r, kind, &key_ns, name),
            ("deletecollection", _) => self.delete_collection(r, kind, &key_ns),
            _ => Err(method_not_allowed()),
        }
    }

    fn find(&self, kind: Kind, ns: &str, name: &str) -> Option<Value> {
        if kind == Kind::Pod {
            return self
                .all_objects(Kind::Pod, Some(ns))
                .into_iter()
                .find(|p| p["metadata"]["name"] == name);
        }
        self.objects
            .get(&(kind, ns.to_string(), name.to_string()))
            .cloned()
    }

    fn find_any(&self, kind: Kind, name: &str) -> Option<Value> {
        self.objects
            .iter()
            .find(|(k, _)| k.0 == kind && k.2 == name)
            .map(|(_, v)| v.clone())
    }

    /// All objects of a kind in `ns` (all namespaces for None), in etcd key order.
    fn all_objects(&self, kind: Kind, ns: Option<&str>) -> Vec<Value> {
        let in_ns = |k: &Key| ns.is_none_or(|ns| k.1 == ns);
        if kind == Kind::Pod {
            return self
                .objects
                .iter()
                .filter(|(k, _)| k.0 == Kind::Deployment && in_ns(k))
                .flat_map(|(k, d)| self.pods_of(&k.1, d))
                .collect();
        }
        self.objects
            .iter()
            .filter(|(k, _)| k.0 == kind && in_ns(k))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn list(&self, r: &Req, kind: Kind, ns: Option<&str>) -> Answer {
        let labels = parse_selector(r.param("labelSelector").unwrap_or(""))
            .map_err(|e| bad_request(&format!("unable to parse requirement: {e}")))?;
        let fields = parse_field_selector(kind, r.param("fieldSelector").unwrap_or(""))?;
        let mut items: Vec<Value> = self
            .all_objects(kind, ns)
            .into_iter()
            .filter(|o| selector_matches(&labels, &o["metadata"]["labels"]))
            .filter(|o| {
                fields
                    .iter()
                    .all(|(f, eq, v)| (field_value(o, f) == v.as_str()) == *eq)
            })
            .collect();
        let start = match r.param("continue").filter(|c| !c.is_empty()) {
            None => 0,
            Some(c) => c
                .strip_prefix("fake-continue-")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| bad_request("continue key is not valid: invalid continue token"))?,
        };
        let total = items.len();
        items = items.into_iter().skip(start).collect();
        let mut meta = json!({"resourceVersion": self.rv.to_string()});
        if let Some(limit) = r
            .param("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|&l| l > 0)
        {
            if items.len() > limit {
                items.truncate(limit);
                meta["continue"] = format!("fake-continue-{}", start + limit).into();
                meta["remainingItemCount"] = (total - start - limit).into();
            }
        }
        for item in &mut items {
            // Items of a typed list carry no apiVersion/kind.
            if let Some(obj) = item.as_object_mut() {
                obj.remove("apiVersion");
                obj.remove("kind");
            }
        }
        Ok(Reply::json(
            200,
            json!({
                "kind": format!("{}List", kind.kind()),
                "apiVersion": kind.api_version(),
                "metadata": meta,
                "items": items,
            }),
        ))
    }

    /// Decode, default, validate: the object as the server would store it, and the warnings.
    fn admit(
        &self,
        r: &Req,
        kind: Kind,
        mut input: Value,
        old: Option<&Value>,
    ) -> Result<(Value, Vec<String>), Reply> {
        let cannot = |e: &str| {
            bad_request(&format!(
                "{} in version \"v1\" cannot be handled as a {}: {e}",
                kind.kind(),
                kind.kind()
            ))
        };
        if !input.is_object() {
            return Err(cannot("json: cannot unmarshal non-object into Go value"));
        }
        for_each_quantity(&mut input, &mut normalize_quantity).map_err(|e| cannot(&e))?;
        let typed = kind.roundtrip(&input).map_err(|e| cannot(&e))?;
        let mut unknown = Vec::new();
        unknown_fields(&input, &typed, "", &mut unknown);
        let unknown: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field {}", q(f)))
            .collect();
        let warnings = match r.param("fieldValidation") {
            Some("Strict") if !unknown.is_empty() => {
                return Err(bad_request(&format!(
                    "strict decoding error: {}",
                    unknown.join(", ")
                )))
            }
            Some("Ignore") => Vec::new(),
            _ => unknown,
        };
        let mut obj = typed;
        apply_defaults(kind, &mut obj);
        let errs = validate(kind, &obj, old);
        if !errs.0.is_empty() {
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            return Err(errs.reply(&kind.kind_q(), kind.group(), kind.kind(), &name));
        }
        let _ = for_each_quantity(&mut obj, &mut canonicalize_quantity);
        Ok((obj, warnings))
    }

    fn create(&mut self, r: &Req, kind: Kind, ns: &str, mut input: Value) -> Answer {
        let body_ns = str_at(&input, "/metadata/namespace");
        if !body_ns.is_empty() && body_ns != ns {
            return Err(bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if input.is_object()
            && str_at(&input, "/metadata/name").is_empty()
            && !str_at(&input, "/metadata/generateName").is_empty()
        {
            self.seq += 1;
            let suffix = safe_encode(fnv(format!("gen/{}/{}", self.port, self.seq).as_bytes()), 5);
            let name = format!("{}{suffix}", str_at(&input, "/metadata/generateName"));
            input["metadata"]["name"] = name.into();
        }
        let (mut obj, warnings) = self.admit(r, kind, input, None)?;
        let name = str_at(&obj, "/metadata/name").to_string();
        let key = (kind, ns.to_string(), name.clone());
        if self.objects.contains_key(&key) {
            return Err(already_exists(kind, &name));
        }
        if kind == Kind::Service {
            self.allocate_service(&key, &mut obj, None)?;
        }
        let dry = r.dry_run();
        let uid = self.uid();
        let rv = if dry { None } else { Some(self.bump()) };
        {
            let meta = entry(&mut obj, "metadata");
            let meta = meta.as_object_mut().expect("metadata object");
            for server_managed in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "managedFields",
                "selfLink",
            ] {
                meta.remove(server_managed);
            }
            meta.insert("namespace".into(), ns.into());
            meta.insert("uid".into(), uid.into());
            meta.insert("creationTimestamp".into(), now_rfc3339().into());
            if let Some(rv) = rv {
                meta.insert("resourceVersion".into(), rv.to_string().into());
            }
            match kind {
                Kind::Deployment => {
                    meta.insert("generation".into(), 1.into());
                    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
                    annotations["deployment.kubernetes.io/revision"] = "1".into();
                }
                Kind::Pvc => {
                    let finalizers = meta.entry("finalizers").or_insert_with(|| json!([]));
                    let protection = json!("kubernetes.io/pvc-protection");
                    if let Some(list) = finalizers.as_array_mut() {
                        if !list.contains(&protection) {
                            list.push(protection);
                        }
                    }
                }
                _ => {}
            }
        }
        obj["status"] = match kind {
            Kind::Deployment => self.deployment_status(&obj),
            Kind::Service => json!({"loadBalancer": {}}),
            Kind::Pvc => json!({"phase": "Pending"}),
            _ => json!({}),
        };
        if !dry {
            self.objects.insert(key, obj.clone());
            self.sweep_pvcs();
        }
        Ok(Reply::json(201, obj).with_warnings(warnings))
    }

    fn stored(&self, kind: Kind, ns: &str, name: &str) -> Result<(Key, Value), Reply> {
        let key = (kind, ns.to_string(), name.to_string());
        match self.objects.get(&key) {
            Some(obj) => Ok((key, obj.clone())),
            None => Err(not_found(kind, name)),
        }
    }

    /// `metadata.resourceVersion` / `metadata.uid` in a body are preconditions.
    fn check_preconditions(
        &self,
        kind: Kind,
        name: &str,
        body: &Value,
        old: &Value,
    ) -> Result<(), Reply> {
        let rv = str_at(body, "/metadata/resourceVersion");
        if !rv.is_empty() && rv != str_at(old, "/metadata/resourceVersion") {
            return Err(conflict(kind, name, MODIFIED));
        }
        let uid = str_at(body, "/metadata/uid");
        if !uid.is_empty() && uid != str_at(old, "/metadata/uid") {
            return Err(conflict(
                kind,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    str_at(old, "/metadata/uid")
                ),
            ));
        }
        Ok(())
    }

    fn update(&mut self, r: &Req, kind: Kind, ns: &str, name: &str) -> Answer {
        let input = decode_body(r)?;
        let (key, old) = self.stored(kind, ns, name)?;
        let body_name = str_at(&input, "/metadata/name");
        if body_name != name {
            return Err(bad_request(&format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = str_at(&input, "/metadata/namespace");
        if !body_ns.is_empty() && body_ns != ns {
            return Err(bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        self.check_preconditions(kind, name, &input, &old)?;
        self.finish_update(r, kind, key, input, old)
    }

    fn patch(&mut self, r: &Req, kind: Kind, ns: &str, name: &str) -> Answer {
        const STRATEGIC: &str = "application/strategic-merge-patch+json";
        const MERGE: &str = "application/merge-patch+json";
        const APPLY: &str = "application/apply-patch+yaml";
        let media = r.media_type();
        let patch: Value = match media.as_str() {
            STRATEGIC | MERGE => serde_json::from_slice(&r.body)
                .map_err(|e| bad_request(&format!("error decoding patch: {e}")))?,
            APPLY => serde_json::from_slice(&r.body)
                .or_else(|_| serde_yaml::from_slice(&r.body))
                .map_err(|e| bad_request(&format!("error decoding YAML: {e}")))?,
            _ => {
                return Err(unsupported_media(
                    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json",
                ))
            }
        };
        if !patch.is_object() {
            return Err(bad_request(
                "json: cannot unmarshal non-object into Go value of type map[string]interface {}",
            ));
        }
        if media == APPLY && r.param("fieldManager").unwrap_or("").is_empty() {
            let mut e = Errs::default();
            e.required("fieldManager", "is required for apply patch");
            return Err(e.reply(
                "PatchOptions.meta.k8s.io",
                "meta.k8s.io",
                "PatchOptions",
                "",
            ));
        }
        let key = (kind, ns.to_string(), name.to_string());
        let Some(old) = self.objects.get(&key).cloned() else {
            if media == APPLY {
                let body_name = str_at(&patch, "/metadata/name");
                if body_name != name {
                    return Err(bad_request(&format!(
                        "the name of the object ({body_name}) does not match the name on the URL ({name})"
                    )));
                }
                return self.create(r, kind, ns, patch);
            }
            return Err(not_found(kind, name));
        };
        let mut merged = old.clone();
        if media == MERGE {
            merge_patch(&mut merged, &patch);
        } else {
            strategic_merge(&mut merged, &patch, &mut Vec::new());
        }
        self.check_preconditions(kind, name, &patch, &old)?;
        self.finish_update(r, kind, key, merged, old)
    }

    fn finish_update(
        &mut self,
        r: &Req,
        kind: Kind,
        key: Key,
        mut new: Value,
        old: Value,
    ) -> Answer {
        // Server-managed metadata and the status come from the stored object.
        {
            let meta = entry(&mut new, "metadata")
                .as_object_mut()
                .expect("metadata object");
            for f in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "generation",
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                match old["metadata"].get(f) {
                    Some(v) => {
                        meta.insert(f.into(), v.clone());
                    }
                    None => {
                        meta.remove(f);
                    }
                }
            }
        }
        new["status"] = old["status"].clone();
        let (mut obj, warnings) = self.admit(r, kind, new, Some(&old))?;
        if kind == Kind::Service {
            self.allocate_service(&key, &mut obj, Some(&old))?;
        }
        if kind == Kind::Deployment {
            if obj["spec"] != old["spec"] {
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                obj["metadata"]["generation"] = generation.into();
            }
            let revision: i64 = str_at(
                &old,
                "/metadata/annotations/deployment.kubernetes.io~1revision",
            )
            .parse()
            .unwrap_or(1);
            let revision = if obj["spec"]["template"] != old["spec"]["template"] {
                revision + 1
            } else {
                revision
            };
            obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                revision.to_string().into();
            obj["status"] = self.deployment_status(&obj);
        }
        if obj == old || r.dry_run() {
            // A no-op write keeps the resourceVersion, as on a real server.
            return Ok(Reply::json(200, obj).with_warnings(warnings));
        }
        obj["metadata"]["resourceVersion"] = self.bump().to_string().into();
        self.objects.insert(key, obj.clone());
        self.sweep_pvcs();
        Ok(Reply::json(200, obj).with_warnings(warnings))
    }

    fn delete(&mut self, r: &Req, kind: Kind, ns: &str, name: &str) -> Answer {
        let options: Value = if r.body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&r.body).map_err(|e| {
                bad_request(&format!("couldn't get version/kind; json parse error: {e}"))
            })?
        };
        if kind == Kind::Pod {
            return self.delete_pod(r, ns, name);
        }
        let (key, old) = self.stored(kind, ns, name)?;
        let pre = &options["preconditions"];
        if let Some(uid) = pre["uid"].as_str() {
            if uid != str_at(&old, "/metadata/uid") {
                return Err(conflict(
                    kind,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        str_at(&old, "/metadata/uid")
                    ),
                ));
            }
        }
        if let Some(rv) = pre["resourceVersion"].as_str() {
            if rv != str_at(&old, "/metadata/resourceVersion") {
                return Err(conflict(
                    kind,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        str_at(&old, "/metadata/resourceVersion")
                    ),
                ));
            }
        }
        let dry = r.dry_run();
        match kind {
            // The pvc-protection finalizer: the claim stays (Terminating) while a Pod uses it.
            Kind::Pvc => {
                let mut obj = old;
                if obj["metadata"].get("deletionTimestamp").is_none() {
                    obj["metadata"]["deletionTimestamp"] = now_rfc3339().into();
                    obj["metadata"]["deletionGracePeriodSeconds"] = 0.into();
                }
                if !dry {
                    obj["metadata"]["resourceVersion"] = self.bump().to_string().into();
                    self.objects.insert(key, obj.clone());
                    self.sweep_pvcs();
                }
                Ok(Reply::json(200, obj))
            }
            // Services come back as the deleted object; Deployments as a Status.
            Kind::Service => {
                if !dry {
                    self.objects.remove(&key);
                    self.bump();
                }
                Ok(Reply::json(200, old))
            }
            _ => {
                if !dry {
                    self.objects.remove(&key);
                    self.bump();
                    self.sweep_pvcs();
                }
                let mut d = details(kind, name, kind.plural());
                d["uid"] = old["metadata"]["uid"].clone();
                Ok(Reply::json(
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d}),
                ))
            }
        }
    }

    /// The ReplicaSet replaces a deleted Pod: the Deployment's Pods get new names.
    fn delete_pod(&mut self, r: &Req, ns: &str, name: &str) -> Answer {
        let mut pod = self
            .find(Kind::Pod, ns, name)
            .ok_or_else(|| not_found(Kind::Pod, name))?;
        let owner = self
            .objects
            .iter()
            .find(|(k, d)| {
                k.0 == Kind::Deployment
                    && k.1 == ns
                    && self
                        .pods_of(ns, d)
                        .iter()
                        .any(|p| p["metadata"]["name"] == name)
            })
            .map(|(k, _)| k.2.clone());
        if !r.dry_run() {
            if let Some(owner) = owner {
                *self.pod_epochs.entry((ns.to_string(), owner)).or_insert(0) += 1;
                self.bump();
            }
        }
        pod["metadata"]["deletionTimestamp"] = now_rfc3339().into();
        pod["metadata"]["deletionGracePeriodSeconds"] = 30.into();
        Ok(Reply::json(200, pod))
    }

    fn delete_collection(&mut self, r: &Req, kind: Kind, ns: &str) -> Answer {
        let list = self.list(r, kind, Some(ns))?;
        let mut deleted = Vec::new();
        let plain = Req {
            method: "DELETE".into(),
            path: r.path.clone(),
            query: r
                .query
                .iter()
                .filter(|(k, _)| k == "dryRun")
                .cloned()
                .collect(),
            content_type: String::new(),
            body: Vec::new(),
        };
        for item in list.body["items"].as_array().into_iter().flatten() {
            let name = str_at(item, "/metadata/name").to_string();
            if let Ok(reply) = self.delete(&plain, kind, ns, &name) {
                if reply.body["kind"] != "Status" {
                    deleted.push(reply.body);
                } else {
                    deleted.push(item.clone());
                }
            }
        }
        Ok(Reply::json(
            200,
            json!({
                "kind": format!("{}List", kind.kind()),
                "apiVersion": kind.api_version(),
                "metadata": {"resourceVersion": self.rv.to_string()},
                "items": deleted,
            }),
        ))
    }

    fn access_review(&mut self, r: &Req) -> Answer {
        if r.method != "POST" {
            return Err(method_not_allowed());
        }
        let mut review = decode_body(r)?;
        let attrs = review["spec"]["resourceAttributes"].clone();
        let non_resource = &review["spec"]["nonResourceAttributes"];
        if attrs.is_null() == non_resource.is_null() {
            let mut e = Errs::default();
            e.required(
                "spec.resourceAttributes",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            );
            return Err(e.reply(
                "SelfSubjectAccessReview.authorization.k8s.io",
                "authorization.k8s.io",
                "SelfSubjectAccessReview",
                "",
            ));
        }
        let allowed = attrs.is_null()
            || !self.is_denied(
                attrs["verb"].as_str().unwrap_or(""),
                attrs["resource"].as_str().unwrap_or(""),
            );
        review["apiVersion"] = "authorization.k8s.io/v1".into();
        review["kind"] = "SelfSubjectAccessReview".into();
        review["metadata"] = json!({"creationTimestamp": null});
        review["status"] = if allowed {
            json!({"allowed": true, "reason": "RBAC: allowed by the fake API server"})
        } else {
            json!({"allowed": false})
        };
        Ok(Reply::json(201, review))
    }

    /// Seeds an object without validation (see [`FakeK8s::put`]).
    fn seed(&mut self, kind: Kind, obj: Value) {
        assert!(kind != Kind::Pod, "put: Pods come from Deployments");
        let mut obj = kind
            .roundtrip(&obj)
            .unwrap_or_else(|e| panic!("put: not a valid {}: {e}", kind.kind()));
        if kind != Kind::Node {
            apply_defaults(kind, &mut obj);
        }
        let _ = for_each_quantity(&mut obj, &mut canonicalize_quantity);
        let ns = if kind.namespaced() {
            match str_at(&obj, "/metadata/namespace") {
                "" => "default".to_string(),
                ns => ns.to_string(),
            }
        } else {
            String::new()
        };
        let name = str_at(&obj, "/metadata/name").to_string();
        assert!(!name.is_empty(), "put: metadata.name is required");
        let key = (kind, ns.clone(), name);
        let old = self.objects.get(&key).cloned();
        if kind == Kind::Service {
            if let Err(e) = self.allocate_service(&key, &mut obj, old.as_ref()) {
                panic!("put: {}", e.body["message"]);
            }
        }
        let uid = self.uid();
        let rv = self.bump();
        let meta = entry(&mut obj, "metadata");
        if kind.namespaced() {
            meta["namespace"] = ns.into();
        }
        if str_at(meta, "/uid").is_empty() {
            meta["uid"] = uid.into();
        }
        if str_at(meta, "/creationTimestamp").is_empty() {
            meta["creationTimestamp"] = now_rfc3339().into();
        }
        meta["resourceVersion"] = rv.to_string().into();
        if kind == Kind::Deployment && meta.get("generation").is_none() {
            meta["generation"] = 1.into();
        }
        if obj.get("status").is_none_or(Value::is_null) {
            obj["status"] = match kind {
                Kind::Service => json!({"loadBalancer": {}}),
                Kind::Pvc => json!({"phase": "Pending"}),
                _ => json!({}),
            };
        }
        if kind == Kind::Deployment {
            obj["status"] = self.deployment_status(&obj);
        }
        self.objects.insert(key, obj);
        self.sweep_pvcs();
    }

    /// Recomputes the status of Deployments named `name` after their Pods changed.
    fn refresh_deployments(&mut self, name: &str) {
        let keys: Vec<Key> = self
            .objects
            .keys()
            .filter(|k| k.0 == Kind::Deployment && k.2 == name)
            .cloned()
            .collect();
        for key in keys {
            let status = self.deployment_status(&self.objects[&key]);
            if self.objects[&key]["status"] != status {
                let rv = self.bump();
                let obj = self.objects.get_mut(&key).expect("deployment");
                obj["status"] = status;
                obj["metadata"]["resourceVersion"] = rv.to_string().into();
            }
        }
    }

    /// Removes Terminating claims no Pod uses any more (the pvc-protection controller).
    fn sweep_pvcs(&mut self) {
        let terminating: Vec<Key> = self
            .objects
            .iter()
            .filter(|(k, v)| k.0 == Kind::Pvc && v["metadata"].get("deletionTimestamp").is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in terminating {
            let in_use = self.objects.iter().any(|(k, d)| {
                k.0 == Kind::Deployment
                    && k.1 == key.1
                    && d["spec"]["replicas"].as_i64().unwrap_or(1) > 0
                    && d["spec"]["template"]["spec"]["volumes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|v| v["persistentVolumeClaim"]["claimName"] == key.2.as_str())
            });
            if !in_use {
                self.objects.remove(&key);
            }
        }
    }

    fn allocate_service(
        &self,
        key: &Key,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), Reply> {
        let mut e = Errs::default();
        let others = || {
            self.objects
                .iter()
                .filter(move |(k, _)| k.0 == Kind::Service && *k != key)
                .map(|(_, v)| v)
        };
        let used_ips: BTreeSet<String> = others()
            .filter_map(|s| s["spec"]["clusterIP"].as_str().map(String::from))
            .collect();
        let used_ports: BTreeSet<i64> = others()
            .flat_map(|s| s["spec"]["ports"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["nodePort"].as_i64())
            .collect();
        let old_spec = old.map(|o| o["spec"].clone()).unwrap_or(Value::Null);
        let spec = entry(obj, "spec");
        let ty = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
        if ty != "ExternalName" {
            let want = spec["clusterIP"].as_str().unwrap_or("").to_string();
            let old_ip = old_spec["clusterIP"].as_str().filter(|s| !s.is_empty());
            let list = |ip: &str| format!("[]string{{{}}}", q(ip));
            let ip = match (old_ip, want.as_str()) {
                (Some(o), "") => Some(o.to_string()),
                (Some(o), w) if w != o => {
                    e.invalid("spec.clusterIPs[0]", list(w), "may not change once set");
                    None
                }
                (Some(o), _) => Some(o.to_string()),
                (None, "") => Some(pick_cluster_ip(&used_ips)),
                (None, "None") => Some("None".to_string()),
                (None, w) => match w.parse::<Ipv4Addr>() {
                    Err(_) => {
                        e.invalid(
                            "spec.clusterIPs[0]",
                            q(w),
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        );
                        None
                    }
                    Ok(a) if !in_service_cidr(a) => {
                        e.invalid(
                            "spec.clusterIPs",
                            list(w),
                            format!("failed to allocate IP {w}: the provided IP ({w}) is not in the valid range. The range of valid IPs is {SERVICE_CIDR}"),
                        );
                        None
                    }
                    Ok(_) if used_ips.contains(w) => {
                        e.invalid(
                            "spec.clusterIPs",
                            list(w),
                            format!("failed to allocate IP {w}: provided IP is already allocated"),
                        );
                        None
                    }
                    Ok(_) => Some(w.to_string()),
                },
            };
            if let Some(ip) = ip {
                spec["clusterIP"] = ip.clone().into();
                spec["clusterIPs"] = json!([ip]);
            }
        }
        let needs = ty == "NodePort"
            || (ty == "LoadBalancer"
                && spec["allocateLoadBalancerNodePorts"].as_bool() != Some(false));
        let old_had = matches!(old_spec["type"].as_str(), Some("NodePort" | "LoadBalancer"));
        let old_ports = old_spec["ports"].as_array().cloned().unwrap_or_default();
        let mut mine = BTreeSet::new();
        for (i, port) in items_mut(spec, "ports").enumerate() {
            let field = format!("spec.ports[{i}].nodePort");
            let given = port["nodePort"].as_i64().filter(|&n| n != 0);
            if !needs {
                if given.is_some() {
                    if old_had {
                        // A type change away from NodePort releases the ports.
                        if let Some(p) = port.as_object_mut() {
                            p.remove("nodePort");
                        }
                    } else {
                        e.forbidden(field, format!("may not be used when `type` is '{ty}'"));
                    }
                }
                continue;
            }
            let np = match given {
                Some(n) if !NODE_PORT_RANGE.contains(&n) => {
                    e.invalid(
                        field,
                        n.to_string(),
                        "provided port is not in the valid range. The range of valid ports is 30000-32767",
                    );
                    continue;
                }
                Some(n) if used_ports.contains(&n) || mine.contains(&n) => {
                    e.invalid(field, n.to_string(), "provided port is already allocated");
                    continue;
                }
                Some(n) => n,
                None => old_ports
                    .iter()
                    .find(|op| op["port"] == port["port"] && op["protocol"] == port["protocol"])
                    .and_then(|op| op["nodePort"].as_i64())
                    .filter(|n| !mine.contains(n))
                    .unwrap_or_else(|| pick_node_port(&used_ports, &mine)),
            };
            mine.insert(np);
            port["nodePort"] = np.into();
        }
        if e.0.is_empty() {
            Ok(())
        } else {
            Err(e.reply("Service", "", "Service", &key.2))
        }
    }

    fn deployment_status(&self, d: &Value) -> Value {
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
        let name = str_at(d, "/metadata/name");
        let ts = match str_at(d, "/metadata/creationTimestamp") {
            "" => now_rfc3339(),
            ts => ts.to_string(),
        };
        let rs = format!("{name}-{}", template_hash(&d["spec"]["template"]));
        let ready =
            replicas > 0 && self.pod_states.get(name) == Some(&PodState::Running { ready: true });
        let available = ready || replicas == 0;
        let mut s = json!({
            "observedGeneration": d["metadata"]["generation"].as_i64().unwrap_or(1),
        });
        if replicas > 0 {
            s["replicas"] = replicas.into();
            s["updatedReplicas"] = replicas.into();
            if ready {
                s["readyReplicas"] = replicas.into();
                s["availableReplicas"] = replicas.into();
            } else {
                s["unavailableReplicas"] = replicas.into();
            }
        }
        let (a_reason, a_message) = if available {
            (
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".to_string(),
            )
        } else {
            (
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".to_string(),
            )
        };
        let (p_reason, p_message) = if available {
            (
                "NewReplicaSetAvailable",
                format!("ReplicaSet {} has successfully progressed.", q(&rs)),
            )
        } else {
            (
                "ReplicaSetUpdated",
                format!("ReplicaSet {} is progressing.", q(&rs)),
            )
        };
        s["conditions"] = json!([
            {"type": "Available", "status": if available { "True" } else { "False" },
             "lastUpdateTime": ts, "lastTransitionTime": ts, "reason": a_reason, "message": a_message},
            {"type": "Progressing", "status": "True",
             "lastUpdateTime": ts, "lastTransitionTime": ts, "reason": p_reason, "message": p_message},
        ]);
        s
    }

    fn pods_of(&self, ns: &str, d: &Value) -> Vec<Value> {
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        if replicas <= 0 {
            return Vec::new();
        }
        let name = str_at(d, "/metadata/name");
        let uid = str_at(d, "/metadata/uid");
        let created = str_at(d, "/metadata/creationTimestamp").to_string();
        let template = &d["spec"]["template"];
        let hash = template_hash(template);
        let rs = format!("{name}-{hash}");
        let state = self
            .pod_states
            .get(name)
            .cloned()
            .unwrap_or(PodState::NoContainerStatus);
        let epoch = self
            .pod_epochs
            .get(&(ns.to_string(), name.to_string()))
            .copied()
            .unwrap_or(0);
        let deploy_rv: u64 = str_at(d, "/metadata/resourceVersion").parse().unwrap_or(0);
        let rv = deploy_rv.max(self.pod_rvs.get(name).copied().unwrap_or(0));
        (0..replicas.min(100))
            .map(|i| {
                let seed = fnv(format!("{uid}/{i}/{epoch}").as_bytes());
                let mut labels = template["metadata"]["labels"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                labels.insert("pod-template-hash".into(), hash.clone().into());
                let mut spec = template["spec"].clone();
                if !matches!(state, PodState::Unschedulable { .. }) {
                    spec["nodeName"] = FAKE_NODE.into();
                }
                let mut metadata = json!({
                    "name": format!("{rs}-{}", safe_encode(seed, 5)),
                    "generateName": format!("{rs}-"),
                    "namespace": ns,
                    "uid": uuid_from(seed),
                    "resourceVersion": rv.to_string(),
                    "creationTimestamp": created,
                    "labels": labels,
                    "ownerReferences": [{
                        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                        "uid": uuid_from(fnv(format!("{uid}/{rs}").as_bytes())),
                        "controller": true, "blockOwnerDeletion": true,
                    }],
                });
                if let Some(a) = template["metadata"]["annotations"].as_object() {
                    metadata["annotations"] = Value::Object(a.clone());
                }
                let status = pod_status(&state, &spec, &created, seed);
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status})
            })
            .collect()
    }
}

fn read_only(r: &Req, body: Value) -> Answer {
    match r.method.as_str() {
        "GET" => Ok(Reply::json(200, body)),
        _ => Err(method_not_allowed()),
    }
}

/// A request body (JSON or YAML) as a value.
fn decode_body(r: &Req) -> Result<Value, Reply> {
    match r.media_type().as_str() {
        "application/json" => serde_json::from_slice(&r.body)
            .map_err(|e| bad_request(&format!("couldn't get version/kind; json parse error: {e}"))),
        "application/yaml" => serde_yaml::from_slice(&r.body)
            .map_err(|e| bad_request(&format!("couldn't get version/kind; yaml parse error: {e}"))),
        _ => Err(unsupported_media(
            "application/json, application/yaml, application/vnd.kubernetes.protobuf",
        )),
    }
}

fn pick_cluster_ip(used: &BTreeSet<String>) -> String {
    let base = u32::from(Ipv4Addr::new(127, 0, 100, 0));
    for _ in 0..1022 {
        let n = NEXT_CLUSTER_IP.fetch_add(1, Ordering::Relaxed) % 1022 + 1;
        let ip = Ipv4Addr::from(base + n).to_string();
        if !used.contains(&ip) {
            return ip;
        }
    }
    panic!("the fake's service CIDR {SERVICE_CIDR} is full");
}

fn in_service_cidr(a: Ipv4Addr) -> bool {
    let base = u32::from(Ipv4Addr::new(127, 0, 100, 0));
    let v = u32::from(a);
    v & 0xffff_fc00 == base && v != base && v != base + 1023
}

fn pick_node_port(used: &BTreeSet<i64>, mine: &BTreeSet<i64>) -> i64 {
    let span = (NODE_PORT_RANGE.end() - NODE_PORT_RANGE.start() + 1) as u32;
    for _ in 0..span {
        let n = NODE_PORT_RANGE.start()
            + i64::from(NEXT_NODE_PORT.fetch_add(1, Ordering::Relaxed) % span);
        if !used.contains(&n) && !mine.contains(&n) {
            return n;
        }
    }
    panic!("the fake's node port range is full");
}

// ---------------------------------------------------------------------------------------------
// Discovery.

fn api_versions(port: u16) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{port}")}],
    })
}

fn api_groups() -> Value {
    let group = |name: &str| {
        let gv = json!({"groupVersion": format!("{name}/v1"), "version": "v1"});
        json!({"name": name, "versions": [gv.clone()], "preferredVersion": gv})
    };
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group("apps"), group("authorization.k8s.io")]})
}

fn api_resource(kind: Kind, short: &[&str]) -> Value {
    json!({
        "name": kind.plural(),
        "singularName": kind.kind().to_ascii_lowercase(),
        "namespaced": kind.namespaced(),
        "kind": kind.kind(),
        "verbs": kind.verbs(),
        "shortNames": short,
    })
}

fn core_v1_resources() -> Value {
    json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace", "verbs": ["get"], "shortNames": ["ns"]},
            api_resource(Kind::Node, &["no"]),
            api_resource(Kind::Pvc, &["pvc"]),
            api_resource(Kind::Pod, &["po"]),
            api_resource(Kind::Service, &["svc"]),
        ],
    })
}

fn apps_v1_resources() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [api_resource(Kind::Deployment, &["deploy"])]})
}

fn authorization_v1_resources() -> Value {
    json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "authorization.k8s.io/v1",
        "resources": [{"name": "selfsubjectaccessreviews", "singularName": "selfsubjectaccessreview", "namespaced": false, "kind": "SelfSubjectAccessReview", "verbs": ["create"]}],
    })
}

fn version_info() -> Value {
    json!({
        "major": "1", "minor": "33",
        "emulationMajor": "1", "emulationMinor": "33",
        "minCompatibilityMajor": "1", "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.0-fake", "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2", "compiler": "gc", "platform": "linux/amd64",
    })
}

// ---------------------------------------------------------------------------------------------
// Pods.

fn pod_status(state: &PodState, spec: &Value, ts: &str, seed: u64) -> Value {
    let containers: Vec<(String, String)> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                str_at(c, "/name").to_string(),
                str_at(c, "/image").to_string(),
            )
        })
        .collect();
    let names: Vec<&str> = containers.iter().map(|(n, _)| n.as_str()).collect();
    let unready = format!("containers with unready status: [{}]", names.join(" "));
    let cond = |ty: &str, ok: bool, reason: Option<&str>, message: Option<&str>| {
        let mut c = json!({"type": ty, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": ts});
        if let Some(reason) = reason {
            c["reason"] = reason.into();
        }
        if let Some(message) = message.filter(|m| !m.is_empty()) {
            c["message"] = message.into();
        }
        c
    };
    let running_conditions = |ready: bool, started: bool, reason: &str| {
        let not_ready = (!ready).then_some(reason);
        let msg = (!ready).then_some(unready.as_str());
        json!([
            cond("PodReadyToStartContainers", started, None, None),
            cond("Initialized", true, None, None),
            cond("Ready", ready, not_ready, msg),
            cond("ContainersReady", ready, not_ready, msg),
            cond("PodScheduled", true, None, None),
        ])
    };
    let container_status = |name: &str, image: &str, state: Value, extra: Value| {
        let mut c = json!({
            "name": name, "image": image, "imageID": "", "ready": false,
            "restartCount": 0, "started": false, "state": state, "lastState": {},
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            c[k] = v.clone();
        }
        if c["imageID"] == "" && c.get("containerID").is_some() {
            c["imageID"] = image_id(image, seed).into();
        }
        c
    };
    let cid = |i: usize| format!("containerd://{}", hex64(seed ^ (i as u64 + 1)));
    let mut status = json!({"qosClass": qos_class(spec)});
    let scheduled = !matches!(state, PodState::Unschedulable { .. });
    if scheduled {
        status["hostIP"] = "127.0.0.1".into();
        status["hostIPs"] = json!([{"ip": "127.0.0.1"}]);
        status["startTime"] = ts.into();
    }
    let pod_ip = format!("127.0.200.{}", seed % 254 + 1);
    let with_ip = |status: &mut Value| {
        status["podIP"] = pod_ip.clone().into();
        status["podIPs"] = json!([{ "ip": pod_ip }]);
    };
    match state {
        PodState::NoContainerStatus => {
            status["phase"] = "Pending".into();
            status["conditions"] = json!([cond("PodScheduled", true, None, None)]);
        }
        PodState::Unschedulable { message } => {
            status["phase"] = "Pending".into();
            status["conditions"] = json!([cond(
                "PodScheduled",
                false,
                Some("Unschedulable"),
                Some(message.as_str())
            )]);
        }
        PodState::Running { ready } => {
            status["phase"] = "Running".into();
            status["conditions"] = running_conditions(*ready, true, "ContainersNotReady");
            with_ip(&mut status);
            status["containerStatuses"] = containers
                .iter()
                .enumerate()
                .map(|(i, (n, img))| {
                    container_status(
                        n,
                        img,
                        json!({"running": {"startedAt": ts}}),
                        json!({"ready": ready, "started": true, "containerID": cid(i)}),
                    )
                })
                .collect();
        }
        PodState::Waiting { reason, message } => {
            let crash = reason == "CrashLoopBackOff";
            let mut waiting = json!({"reason": reason});
            if !message.is_empty() {
                waiting["message"] = message.clone().into();
            }
            status["phase"] = if crash { "Running" } else { "Pending" }.into();
            status["conditions"] = running_conditions(false, crash, "ContainersNotReady");
            if crash {
                with_ip(&mut status);
            }
            status["containerStatuses"] = containers
                .iter()
                .enumerate()
                .map(|(i, (n, img))| {
                    let extra = if crash {
                        json!({
                            "restartCount": 3, "containerID": cid(i),
                            "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                "startedAt": ts, "finishedAt": ts, "containerID": cid(i)}},
                        })
                    } else {
                        json!({})
                    };
                    container_status(n, img, json!({ "waiting": waiting.clone() }), extra)
                })
                .collect();
        }
        PodState::Succeeded | PodState::Failed { .. } => {
            let ok = *state == PodState::Succeeded;
            status["phase"] = if ok { "Succeeded" } else { "Failed" }.into();
            if let PodState::Failed { reason, message } = state {
                status["reason"] = reason.clone().into();
                status["message"] = message.clone().into();
            }
            let reason = if ok { "PodCompleted" } else { "PodFailed" };
            status["conditions"] = json!([
                cond("PodReadyToStartContainers", false, None, None),
                cond("Initialized", true, Some(reason), None),
                cond("Ready", false, Some(reason), None),
                cond("ContainersReady", false, Some(reason), None),
                cond("PodScheduled", true, None, None),
            ]);
            status["containerStatuses"] = containers
                .iter()
                .enumerate()
                .map(|(i, (n, img))| {
                    let terminated = json!({"terminated": {
                        "exitCode": if ok { 0 } else { 1 },
                        "reason": if ok { "Completed" } else { "Error" },
                        "startedAt": ts, "finishedAt": ts, "containerID": cid(i),
                    }});
                    container_status(n, img, terminated, json!({"containerID": cid(i)}))
                })
                .collect();
        }
    }
    status
}

fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let resources = |c: &Value, section: &str| {
        c["resources"][section]
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    if containers
        .iter()
        .all(|c| resources(c, "requests").is_empty() && resources(c, "limits").is_empty())
    {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let limits = resources(c, "limits");
        let requests = resources(c, "requests");
        ["cpu", "memory"].iter().all(|r| {
            limits.contains_key(*r) && requests.get(*r).is_none_or(|q| Some(q) == limits.get(*r))
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn image_id(image: &str, seed: u64) -> String {
    let repo = image.split('@').next().unwrap_or(image);
    let repo = match repo.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => repo,
    };
    let first = repo.split('/').next().unwrap_or("");
    let repo = if !repo.contains('/') {
        format!("docker.io/library/{repo}")
    } else if !first.contains('.') && !first.contains(':') && first != "localhost" {
        format!("docker.io/{repo}")
    } else {
        repo.to_string()
    };
    format!("{repo}@sha256:{}", hex64(fnv(image.as_bytes()) ^ seed))
}

fn template_hash(template: &Value) -> String {
    safe_encode(fnv(template.to_string().as_bytes()), 10)
}

// ---------------------------------------------------------------------------------------------
// Defaulting (the apps/v1 and core/v1 defaulters, for the fields harp's objects use).

/// The elements of the list `v[key]`, if any (without inserting a null as `v[key]` would).
fn items_mut<'a>(v: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    v.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// `v[key]`, made an object if missing or null (`v` is made an object too).
fn entry<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    if !v.is_object() {
        *v = json!({});
    }
    let slot = v
        .as_object_mut()
        .expect("object")
        .entry(key)
        .or_insert(Value::Null);
    if !slot.is_object() {
        *slot = json!({});
    }
    slot
}

fn default(v: &mut Value, key: &str, value: Value) {
    if let Some(obj) = v.as_object_mut() {
        let slot = obj.entry(key).or_insert(Value::Null);
        if slot.is_null() {
            *slot = value;
        }
    }
}

fn apply_defaults(kind: Kind, obj: &mut Value) {
    match kind {
        Kind::Deployment => {
            let spec = entry(obj, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            let strategy = entry(spec, "strategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let ru = entry(strategy, "rollingUpdate");
                default(ru, "maxUnavailable", json!("25%"));
                default(ru, "maxSurge", json!("25%"));
            }
            let template = entry(spec, "template");
            pod_spec_defaults(entry(template, "spec"));
        }
        Kind::Service => {
            let spec = entry(obj, "spec");
            default(spec, "type", json!("ClusterIP"));
            default(spec, "sessionAffinity", json!("None"));
            let ty = spec["type"].as_str().unwrap_or("").to_string();
            if ty != "ExternalName" {
                default(spec, "ipFamilies", json!(["IPv4"]));
                default(spec, "ipFamilyPolicy", json!("SingleStack"));
                default(spec, "internalTrafficPolicy", json!("Cluster"));
            }
            if ty == "NodePort" || ty == "LoadBalancer" {
                default(spec, "externalTrafficPolicy", json!("Cluster"));
            }
            if ty == "LoadBalancer" {
                default(spec, "allocateLoadBalancerNodePorts", json!(true));
            }
            for port in items_mut(spec, "ports") {
                default(port, "protocol", json!("TCP"));
                let p = port["port"].clone();
                default(port, "targetPort", p);
            }
        }
        Kind::Pvc => {
            default(entry(obj, "spec"), "volumeMode", json!("Filesystem"));
        }
        Kind::Pod | Kind::Node => {}
    }
}

fn pod_spec_defaults(spec: &mut Value) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "securityContext", json!({}));
    for field in ["initContainers", "containers"] {
        for c in items_mut(spec, field) {
            default(c, "terminationMessagePath", json!("/dev/termination-log"));
            default(c, "terminationMessagePolicy", json!("File"));
            default(c, "resources", json!({}));
            let image = str_at(c, "/image");
            let last = image.rsplit('/').next().unwrap_or("");
            let policy =
                if !image.contains('@') && (!last.contains(':') || last.ends_with(":latest")) {
                    "Always"
                } else {
                    "IfNotPresent"
                };
            default(c, "imagePullPolicy", json!(policy));
            for port in items_mut(c, "ports") {
                default(port, "protocol", json!("TCP"));
            }
            for env in items_mut(c, "env") {
                if let Some(field_ref) =
                    env.get_mut("valueFrom").and_then(|v| v.get_mut("fieldRef"))
                {
                    default(field_ref, "apiVersion", json!("v1"));
                }
            }
        }
    }
    for volume in items_mut(spec, "volumes") {
        for source in ["configMap", "secret"] {
            if let Some(s) = volume.get_mut(source) {
                default(s, "defaultMode", json!(420));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation, with apimachinery's field error formats.

#[derive(Clone, Copy)]
enum ErrType {
    Invalid,
    Required,
    NotFound,
    Duplicate,
    NotSupported,
    Forbidden,
    TooLong,
}

impl ErrType {
    fn text(self) -> &'static str {
        match self {
            ErrType::Invalid => "Invalid value",
            ErrType::Required => "Required value",
            ErrType::NotFound => "Not found",
            ErrType::Duplicate => "Duplicate value",
            ErrType::NotSupported => "Unsupported value",
            ErrType::Forbidden => "Forbidden",
            ErrType::TooLong => "Too long",
        }
    }

    fn cause(self) -> &'static str {
        match self {
            ErrType::Invalid => "FieldValueInvalid",
            ErrType::Required => "FieldValueRequired",
            ErrType::NotFound => "FieldValueNotFound",
            ErrType::Duplicate => "FieldValueDuplicate",
            ErrType::NotSupported => "FieldValueNotSupported",
            ErrType::Forbidden => "FieldValueForbidden",
            ErrType::TooLong => "FieldValueTooLong",
        }
    }
}

struct FieldError {
    field: String,
    ty: ErrType,
    /// Go-formatted (`"x"` for strings), absent for Required and Forbidden.
    value: Option<String>,
    detail: String,
}

impl FieldError {
    fn body(&self) -> String {
        let mut s = self.ty.text().to_string();
        if let Some(v) = &self.value {
            s.push_str(": ");
            s.push_str(v);
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

#[derive(Default)]
struct Errs(Vec<FieldError>);

impl Errs {
    fn push(&mut self, field: String, ty: ErrType, value: Option<String>, detail: String) {
        self.0.push(FieldError {
            field,
            ty,
            value,
            detail,
        });
    }

    fn invalid(
        &mut self,
        field: impl Into<String>,
        value: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.push(
            field.into(),
            ErrType::Invalid,
            Some(value.into()),
            detail.into(),
        );
    }

    fn required(&mut self, field: impl Into<String>, detail: impl Into<String>) {
        self.push(field.into(), ErrType::Required, None, detail.into());
    }

    fn not_found(&mut self, field: impl Into<String>, value: impl Into<String>) {
        self.push(
            field.into(),
            ErrType::NotFound,
            Some(value.into()),
            String::new(),
        );
    }

    fn duplicate(&mut self, field: impl Into<String>, value: impl Into<String>) {
        self.push(
            field.into(),
            ErrType::Duplicate,
            Some(value.into()),
            String::new(),
        );
    }

    fn unsupported(&mut self, field: impl Into<String>, value: &str, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| q(s)).collect();
        self.push(
            field.into(),
            ErrType::NotSupported,
            Some(q(value)),
            format!("supported values: {}", list.join(", ")),
        );
    }

    fn forbidden(&mut self, field: impl Into<String>, detail: impl Into<String>) {
        self.push(field.into(), ErrType::Forbidden, None, detail.into());
    }

    /// The 422 `reason: Invalid` Status (`Deployment.apps "x" is invalid: ...`).
    fn reply(&self, kind_q: &str, group: &str, kind: &str, name: &str) -> Reply {
        let all: Vec<String> = self
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.body()))
            .collect();
        let joined = if all.len() == 1 {
            all[0].clone()
        } else {
            format!("[{}]", all.join(", "))
        };
        let causes: Vec<Value> = self
            .0
            .iter()
            .map(|e| json!({"reason": e.ty.cause(), "message": e.body(), "field": e.field}))
            .collect();
        let mut d = json!({"name": name, "kind": kind, "causes": causes});
        if !group.is_empty() {
            d["group"] = group.into();
        }
        status(
            422,
            "Invalid",
            &format!("{kind_q} {} is invalid: {joined}", q(name)),
            Some(d),
        )
    }
}

/// Go's `%q` for the strings we quote (JSON escaping is the same for them).
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

/// Go's `%#v` of a `map[string]string`.
fn go_map(v: &Value) -> String {
    match v.as_object() {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let entries: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", q(k), q(v.as_str().unwrap_or(""))))
                .collect();
            format!("map[string]string{{{}}}", entries.join(", "))
        }
    }
}

fn selector_repr(sel: &Value) -> String {
    let exprs = match sel["matchExpressions"].as_array() {
        Some(a) if !a.is_empty() => Value::Array(a.clone()).to_string(),
        _ => "[]v1.LabelSelectorRequirement(nil)".to_string(),
    };
    format!(
        "&v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        go_map(&sel["matchLabels"])
    )
}

/// apimachinery's `RegexError`.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut s = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push_str(&format!("'{e}', "));
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

fn full_match(re: &Regex, s: &str) -> bool {
    re.find(s)
        .is_some_and(|m| m.start() == 0 && m.end() == s.len())
}

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const ENV_VAR_FMT: &str = "[-._a-zA-Z][-._a-zA-Z0-9]*";
const QUANTITY_FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

static RE: LazyLock<HashMap<&'static str, Regex>> = LazyLock::new(|| {
    [
        DNS1123_LABEL_FMT,
        DNS1123_SUBDOMAIN_FMT,
        DNS1035_LABEL_FMT,
        QUALIFIED_NAME_FMT,
        LABEL_VALUE_FMT,
        ENV_VAR_FMT,
        "[-a-z0-9]+",
    ]
    .into_iter()
    .map(|f| (f, Regex::new(f).expect("validation regex")))
    .collect()
});

fn matches_fmt(fmt: &str, s: &str) -> bool {
    full_match(&RE[fmt], s)
}

fn max_len(s: &str, n: usize) -> Option<String> {
    (s.len() > n).then(|| format!("must be no more than {n} characters"))
}

fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs: Vec<String> = max_len(s, 63).into_iter().collect();
    if !matches_fmt(DNS1123_LABEL_FMT, s) {
        errs.push(regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errs
}

fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs: Vec<String> = max_len(s, 253).into_iter().collect();
    if !matches_fmt(DNS1123_SUBDOMAIN_FMT, s) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs: Vec<String> = max_len(s, 63).into_iter().collect();
    if !matches_fmt(DNS1035_LABEL_FMT, s) {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

fn qualified_name(s: &str) -> Vec<String> {
    let parts: Vec<&str> = s.split('/').collect();
    let (prefix, name) = match parts.as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => {
            return vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"],
                )
            )]
        }
    };
    let mut errs = Vec::new();
    match prefix {
        Some("") => errs.push("prefix part must be non-empty".to_string()),
        Some(p) => errs.extend(
            dns1123_subdomain(p)
                .into_iter()
                .map(|e| format!("prefix part {e}")),
        ),
        None => {}
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_string());
    }
    if !name.is_empty() && !matches_fmt(QUALIFIED_NAME_FMT, name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"],
            )
        ));
    }
    errs
}

fn label_value(s: &str) -> Vec<String> {
    let mut errs: Vec<String> = max_len(s, 63).into_iter().collect();
    if !matches_fmt(LABEL_VALUE_FMT, s) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// The pre-1.32 (strict) rule: a name valid here is valid on every cluster version.
fn env_var_name(s: &str) -> Vec<String> {
    if matches_fmt(ENV_VAR_FMT, s) {
        return Vec::new();
    }
    vec![regex_error(
        "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit",
        ENV_VAR_FMT,
        &["my.env-name", "MY_ENV.NAME", "MyEnvName1"],
    )]
}

fn iana_svc_name(s: &str) -> Vec<String> {
    let mut errs: Vec<String> = max_len(s, 15).into_iter().collect();
    if !matches_fmt("[-a-z0-9]+", s) {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

fn validate_labels(map: &Value, field: &str, e: &mut Errs) {
    for (k, v) in map.as_object().into_iter().flatten() {
        for m in qualified_name(k) {
            e.invalid(field, q(k), m);
        }
        let v = v.as_str().unwrap_or("");
        for m in label_value(v) {
            e.invalid(field, q(v), m);
        }
    }
}

fn validate_annotations(map: &Value, field: &str, e: &mut Errs) {
    let mut total = 0;
    for (k, v) in map.as_object().into_iter().flatten() {
        for m in qualified_name(&k.to_ascii_lowercase()) {
            e.invalid(field, q(k), m);
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > 256 * 1024 {
        e.push(
            field.to_string(),
            ErrType::TooLong,
            None,
            "must have at most 262144 bytes".into(),
        );
    }
}

fn validate(kind: Kind, obj: &Value, old: Option<&Value>) -> Errs {
    let mut e = Errs::default();
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap_or("");
    if name.is_empty() {
        e.required("metadata.name", "name or generateName is required");
    } else {
        let rule = if kind == Kind::Service {
            dns1035_label
        } else {
            dns1123_subdomain
        };
        for m in rule(name) {
            e.invalid("metadata.name", q(name), m);
        }
    }
    validate_labels(&meta["labels"], "metadata.labels", &mut e);
    validate_annotations(&meta["annotations"], "metadata.annotations", &mut e);
    match kind {
        Kind::Deployment => validate_deployment(obj, old, &mut e),
        Kind::Service => validate_service(obj, &mut e),
        Kind::Pvc => validate_pvc(obj, old, &mut e),
        Kind::Pod | Kind::Node => {}
    }
    e
}

fn validate_deployment(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    let spec = &obj["spec"];
    if let Some(n) = spec["replicas"].as_i64().filter(|n| *n < 0) {
        e.invalid(
            "spec.replicas",
            n.to_string(),
            "must be greater than or equal to 0",
        );
    }
    let selector = &spec["selector"];
    let template_labels = &spec["template"]["metadata"]["labels"];
    let empty = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.is_empty())
        && selector["matchExpressions"]
            .as_array()
            .is_none_or(|a| a.is_empty());
    if selector.is_null() {
        e.required("spec.selector", "");
    } else if empty {
        e.invalid(
            "spec.selector",
            selector_repr(selector),
            "empty selector is invalid for deployment",
        );
    }
    validate_labels(&selector["matchLabels"], "spec.selector.matchLabels", e);
    for (i, expr) in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let f = format!("spec.selector.matchExpressions[{i}]");
        let op = expr["operator"].as_str().unwrap_or("");
        let values = expr["values"].as_array().map_or(0, Vec::len);
        match op {
            "In" | "NotIn" if values == 0 => e.required(
                format!("{f}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            ),
            "Exists" | "DoesNotExist" if values > 0 => e.forbidden(
                format!("{f}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            _ => e.invalid(
                format!("{f}.operator"),
                q(op),
                "not a valid selector operator",
            ),
        }
        for m in qualified_name(expr["key"].as_str().unwrap_or("")) {
            e.invalid(format!("{f}.key"), q(expr["key"].as_str().unwrap_or("")), m);
        }
    }
    if !selector.is_null() && !empty && !label_selector_matches(selector, template_labels) {
        e.invalid(
            "spec.template.metadata.labels",
            go_map(template_labels),
            "`selector` does not match template `labels`",
        );
    }
    validate_labels(template_labels, "spec.template.metadata.labels", e);
    validate_annotations(
        &spec["template"]["metadata"]["annotations"],
        "spec.template.metadata.annotations",
        e,
    );
    validate_pod_spec(&spec["template"]["spec"], "spec.template.spec", e);
    let strategy = &spec["strategy"];
    match strategy["type"].as_str().unwrap_or("RollingUpdate") {
        "RollingUpdate" => {
            let ru = &strategy["rollingUpdate"];
            let zero = |v: &Value| v.as_i64() == Some(0) || v.as_str() == Some("0%");
            if zero(&ru["maxUnavailable"]) && zero(&ru["maxSurge"]) {
                e.invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    ru["maxUnavailable"].to_string(),
                    "may not be 0 when `maxSurge` is 0",
                );
            }
        }
        "Recreate" => {
            if !strategy["rollingUpdate"].is_null() {
                e.forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                );
            }
        }
        other => e.unsupported("spec.strategy.type", other, &["Recreate", "RollingUpdate"]),
    }
    if let Some(n) = spec["revisionHistoryLimit"].as_i64().filter(|n| *n < 0) {
        e.invalid(
            "spec.revisionHistoryLimit",
            n.to_string(),
            "must be greater than or equal to 0",
        );
    }
    let min_ready = spec["minReadySeconds"].as_i64().unwrap_or(0);
    if min_ready < 0 {
        e.invalid(
            "spec.minReadySeconds",
            min_ready.to_string(),
            "must be greater than or equal to 0",
        );
    }
    if let Some(p) = spec["progressDeadlineSeconds"]
        .as_i64()
        .filter(|p| *p <= min_ready)
    {
        e.invalid(
            "spec.progressDeadlineSeconds",
            p.to_string(),
            "must be greater than minReadySeconds",
        );
    }
    if let Some(old) = old {
        if old["spec"]["selector"] != *selector {
            e.invalid(
                "spec.selector",
                selector_repr(selector),
                "field is immutable",
            );
        }
    }
}

fn validate_pod_spec(spec: &Value, p: &str, e: &mut Errs) {
    let mut volume_names = BTreeSet::new();
    for (i, v) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        let vp = format!("{p}.volumes[{i}]");
        let name = v["name"].as_str().unwrap_or("");
        if name.is_empty() {
            e.required(format!("{vp}.name"), "");
        } else {
            for m in dns1123_label(name) {
                e.invalid(format!("{vp}.name"), q(name), m);
            }
            if !volume_names.insert(name.to_string()) {
                e.duplicate(format!("{vp}.name"), q(name));
            }
        }
        let sources = v
            .as_object()
            .map_or(0, |o| o.keys().filter(|k| *k != "name").count());
        match sources {
            0 => e.required(vp.clone(), "must specify a volume type"),
            1 => {}
            _ => e.forbidden(vp.clone(), "may not specify more than 1 volume type"),
        }
        if let Some(pvc) = v.get("persistentVolumeClaim") {
            if pvc["claimName"].as_str().unwrap_or("").is_empty() {
                e.required(format!("{vp}.persistentVolumeClaim.claimName"), "");
            }
        }
    }
    if spec["containers"].as_array().is_none_or(|c| c.is_empty()) {
        e.required(format!("{p}.containers"), "");
    }
    let mut names = BTreeSet::new();
    let mut port_names = BTreeSet::new();
    for field in ["initContainers", "containers"] {
        for (i, c) in spec[field].as_array().into_iter().flatten().enumerate() {
            validate_container(
                c,
                &format!("{p}.{field}[{i}]"),
                &volume_names,
                &mut names,
                &mut port_names,
                e,
            );
        }
    }
    let restart = spec["restartPolicy"].as_str().unwrap_or("Always");
    if restart != "Always" {
        e.unsupported(format!("{p}.restartPolicy"), restart, &["Always"]);
    }
    if let Some(dns) = spec["dnsPolicy"].as_str() {
        let supported = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
        if !supported.contains(&dns) {
            e.unsupported(format!("{p}.dnsPolicy"), dns, &supported);
        }
    }
    validate_labels(&spec["nodeSelector"], &format!("{p}.nodeSelector"), e);
}

fn validate_container(
    c: &Value,
    cp: &str,
    volumes: &BTreeSet<String>,
    names: &mut BTreeSet<String>,
    port_names: &mut BTreeSet<String>,
    e: &mut Errs,
) {
    let name = c["name"].as_str().unwrap_or("");
    if name.is_empty() {
        e.required(format!("{cp}.name"), "");
    } else {
        for m in dns1123_label(name) {
            e.invalid(format!("{cp}.name"), q(name), m);
        }
        if !names.insert(name.to_string()) {
            e.duplicate(format!("{cp}.name"), q(name));
        }
    }
    if c["image"].as_str().unwrap_or("").trim().is_empty() {
        e.required(format!("{cp}.image"), "");
    }
    if let Some(policy) = c["imagePullPolicy"].as_str() {
        let supported = ["Always", "IfNotPresent", "Never"];
        if !supported.contains(&policy) {
            e.unsupported(format!("{cp}.imagePullPolicy"), policy, &supported);
        }
    }
    for (j, port) in c["ports"].as_array().into_iter().flatten().enumerate() {
        let pp = format!("{cp}.ports[{j}]");
        let number = port["containerPort"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&number) {
            e.invalid(
                format!("{pp}.containerPort"),
                number.to_string(),
                "must be between 1 and 65535, inclusive",
            );
        }
        if let Some(hp) = port["hostPort"].as_i64().filter(|hp| *hp != 0) {
            if !(1..=65535).contains(&hp) {
                e.invalid(
                    format!("{pp}.hostPort"),
                    hp.to_string(),
                    "must be between 1 and 65535, inclusive",
                );
            }
        }
        if let Some(n) = port["name"].as_str().filter(|n| !n.is_empty()) {
            for m in iana_svc_name(n) {
                e.invalid(format!("{pp}.name"), q(n), m);
            }
            if !port_names.insert(n.to_string()) {
                e.duplicate(format!("{pp}.name"), q(n));
            }
        }
        let protocol = port["protocol"].as_str().unwrap_or("TCP");
        if !["SCTP", "TCP", "UDP"].contains(&protocol) {
            e.unsupported(format!("{pp}.protocol"), protocol, &["SCTP", "TCP", "UDP"]);
        }
    }
    for (j, env) in c["env"].as_array().into_iter().flatten().enumerate() {
        let ep = format!("{cp}.env[{j}]");
        let name = env["name"].as_str().unwrap_or("");
        if name.is_empty() {
            e.required(format!("{ep}.name"), "");
        } else {
            for m in env_var_name(name) {
                e.invalid(format!("{ep}.name"), q(name), m);
            }
        }
        if !env["value"].as_str().unwrap_or("").is_empty() && !env["valueFrom"].is_null() {
            e.invalid(
                format!("{ep}.valueFrom"),
                "\"\"",
                "may not be specified when `value` is not empty",
            );
        }
    }
    validate_resources(&c["resources"], &format!("{cp}.resources"), e);
    let mut paths = BTreeSet::new();
    for (j, vm) in c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mp = format!("{cp}.volumeMounts[{j}]");
        let vname = vm["name"].as_str().unwrap_or("");
        if vname.is_empty() {
            e.required(format!("{mp}.name"), "");
        } else if !volumes.contains(vname) {
            e.not_found(format!("{mp}.name"), q(vname));
        }
        let path = vm["mountPath"].as_str().unwrap_or("");
        if path.is_empty() {
            e.required(format!("{mp}.mountPath"), "");
        } else if !paths.insert(path.to_string()) {
            e.invalid(format!("{mp}.mountPath"), q(path), "must be unique");
        }
    }
}

fn is_container_resource(name: &str) -> bool {
    if matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-") {
        return true;
    }
    match name.split_once('/') {
        Some((domain, _)) => {
            qualified_name(name).is_empty()
                && domain != "kubernetes.io"
                && !domain.ends_with(".kubernetes.io")
        }
        None => false,
    }
}

fn validate_resources(res: &Value, rp: &str, e: &mut Errs) {
    let limits = &res["limits"];
    let requests = &res["requests"];
    for (section, map) in [("limits", limits), ("requests", requests)] {
        for (name, qty) in map.as_object().into_iter().flatten() {
            let fp = format!("{rp}.{section}[{name}]");
            if !is_container_resource(name) {
                e.invalid(
                    &fp,
                    q(name),
                    "must be a standard resource type or fully qualified",
                );
            }
            if let Some(v) = qty.as_str().and_then(|s| parse_quantity(s).ok()) {
                if v.nano < 0 {
                    e.invalid(&fp, q(&canonical(&v)), "must be greater than or equal to 0");
                }
            }
        }
    }
    for (name, req) in requests.as_object().into_iter().flatten() {
        let Some(lim) = limits.get(name) else {
            continue;
        };
        let (rs, ls) = (req.as_str().unwrap_or(""), lim.as_str().unwrap_or(""));
        let (Ok(rq), Ok(lq)) = (parse_quantity(rs), parse_quantity(ls)) else {
            continue;
        };
        // Go prints both with Quantity.String(): the canonical form.
        let (rc, lc) = (canonical(&rq), canonical(&lq));
        let overcommit = matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage");
        if !overcommit && rq.nano != lq.nano {
            e.invalid(
                format!("{rp}.requests"),
                q(&rc),
                format!("must be equal to {name} limit of {lc}"),
            );
        } else if rq.nano > lq.nano {
            e.invalid(
                format!("{rp}.requests"),
                q(&rc),
                format!("must be less than or equal to {name} limit of {lc}"),
            );
        }
    }
}

fn validate_service(obj: &Value, e: &mut Errs) {
    let spec = &obj["spec"];
    let ty = spec["type"].as_str().unwrap_or("ClusterIP");
    let types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if !types.contains(&ty) {
        e.unsupported("spec.type", ty, &types);
    }
    let headless = spec["clusterIP"].as_str() == Some("None");
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    if ty == "ExternalName" {
        if spec["externalName"].as_str().unwrap_or("").is_empty() {
            e.required("spec.externalName", "");
        }
    } else if !headless && ports.is_empty() {
        e.required("spec.ports", "");
    }
    let mut names = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        let name = port["name"].as_str().unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            e.required(format!("{pp}.name"), "");
        }
        if !name.is_empty() {
            for m in dns1123_label(name) {
                e.invalid(format!("{pp}.name"), q(name), m);
            }
            if !names.insert(name.to_string()) {
                e.duplicate(format!("{pp}.name"), q(name));
            }
        }
        let number = port["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&number) {
            e.invalid(
                format!("{pp}.port"),
                number.to_string(),
                "must be between 1 and 65535, inclusive",
            );
        }
        let protocol = port["protocol"].as_str().unwrap_or("TCP");
        if !["SCTP", "TCP", "UDP"].contains(&protocol) {
            e.unsupported(format!("{pp}.protocol"), protocol, &["SCTP", "TCP", "UDP"]);
        }
        match &port["targetPort"] {
            Value::Number(n) => {
                let n = n.as_i64().unwrap_or(0);
                if !(1..=65535).contains(&n) {
                    e.invalid(
                        format!("{pp}.targetPort"),
                        n.to_string(),
                        "must be between 1 and 65535, inclusive",
                    );
                }
            }
            Value::String(s) => {
                for m in iana_svc_name(s) {
                    e.invalid(format!("{pp}.targetPort"), q(s), m);
                }
            }
            _ => {}
        }
        if !seen.insert((number, protocol.to_string())) {
            e.duplicate(
                pp.clone(),
                format!(
                    "core.ServicePort{{Name:{}, Protocol:{}, Port:{number}}}",
                    q(name),
                    q(protocol)
                ),
            );
        }
    }
    validate_labels(&spec["selector"], "spec.selector", e);
    if let Some(affinity) = spec["sessionAffinity"].as_str() {
        if !["ClientIP", "None"].contains(&affinity) {
            e.unsupported("spec.sessionAffinity", affinity, &["ClientIP", "None"]);
        }
    }
}

fn validate_pvc(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    let spec = &obj["spec"];
    let modes = spec["accessModes"].as_array().cloned().unwrap_or_default();
    if modes.is_empty() {
        e.required("spec.accessModes", "at least 1 access mode is required");
    }
    let supported = [
        "ReadOnlyMany",
        "ReadWriteMany",
        "ReadWriteOnce",
        "ReadWriteOncePod",
    ];
    for m in &modes {
        let m = m.as_str().unwrap_or("");
        if !supported.contains(&m) {
            e.unsupported("spec.accessModes", m, &supported);
        }
    }
    match spec["resources"]["requests"]["storage"].as_str() {
        None => e.required("spec.resources[storage]", ""),
        Some(s) => {
            if parse_quantity(s).is_ok_and(|v| v.nano <= 0) {
                e.invalid("spec.resources[storage]", q(s), "must be greater than zero");
            }
        }
    }
    if let Some(mode) = spec["volumeMode"].as_str() {
        if !["Block", "Filesystem"].contains(&mode) {
            e.unsupported("spec.volumeMode", mode, &["Block", "Filesystem"]);
        }
    }
    if let Some(sc) = spec["storageClassName"].as_str().filter(|s| !s.is_empty()) {
        for m in dns1123_subdomain(sc) {
            e.invalid("spec.storageClassName", q(sc), m);
        }
    }
    if let Some(old) = old {
        if old["spec"] != *spec {
            e.forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            );
        }
    }
}

/// Fields of `input` that the typed round trip dropped (unknown to the schema), as
/// `spec.template.spec.containers[0].foo`.
fn unknown_fields(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(i), Value::Object(t)) => {
            for (k, v) in i {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match t.get(k) {
                    None => out.push(p),
                    Some(tv) => unknown_fields(v, tv, &p, out),
                }
            }
        }
        (Value::Array(i), Value::Array(t)) => {
            for (n, (iv, tv)) in i.iter().zip(t).enumerate() {
                unknown_fields(iv, tv, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Quantities (apimachinery's resource.Quantity: parsing, and the canonical form it stores).

#[derive(Clone, Copy, PartialEq)]
enum QFormat {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

struct Quantity {
    /// The value in units of 10^-9, rounded up (the finest precision Kubernetes keeps).
    nano: i128,
    format: QFormat,
}

fn parse_quantity(s: &str) -> Result<Quantity, String> {
    let bad = || QUANTITY_FORMAT_ERROR.to_string();
    if s.is_empty() {
        return Err(bad());
    }
    let b = s.as_bytes();
    let mut pos = 0;
    let mut positive = true;
    if b[0] == b'-' || b[0] == b'+' {
        positive = b[0] == b'+';
        pos = 1;
    }
    let int_start = pos;
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let int_part = &s[int_start..pos];
    let mut frac = "";
    if pos < b.len() && b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        frac = &s[start..pos];
    }
    let suffix = &s[pos..];
    // The suffix grammar: letters from the set, then an optional signed exponent.
    let mut i = 0;
    let sb = suffix.as_bytes();
    while i < sb.len() && b"eEinumkKMGTP".contains(&sb[i]) {
        i += 1;
    }
    if i < sb.len() && (sb[i] == b'-' || sb[i] == b'+') {
        i += 1;
    }
    while i < sb.len() && sb[i].is_ascii_digit() {
        i += 1;
    }
    if i != sb.len() {
        return Err(bad());
    }
    let (base2, exponent, format): (bool, i32, QFormat) = match suffix {
        "" => (false, 0, QFormat::DecimalSI),
        "n" => (false, -9, QFormat::DecimalSI),
        "u" => (false, -6, QFormat::DecimalSI),
        "m" => (false, -3, QFormat::DecimalSI),
        "k" => (false, 3, QFormat::DecimalSI),
        "M" => (false, 6, QFormat::DecimalSI),
        "G" => (false, 9, QFormat::DecimalSI),
        "T" => (false, 12, QFormat::DecimalSI),
        "P" => (false, 15, QFormat::DecimalSI),
        "E" => (false, 18, QFormat::DecimalSI),
        "Ki" => (true, 10, QFormat::BinarySI),
        "Mi" => (true, 20, QFormat::BinarySI),
        "Gi" => (true, 30, QFormat::BinarySI),
        "Ti" => (true, 40, QFormat::BinarySI),
        "Pi" => (true, 50, QFormat::BinarySI),
        "Ei" => (true, 60, QFormat::BinarySI),
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => {
            match s[1..].parse::<i32>() {
                Ok(e) => (false, e, QFormat::DecimalExponent),
                Err(_) => return Err("unable to parse quantity's suffix".into()),
            }
        }
        _ => return Err("unable to parse quantity's suffix".into()),
    };
    let too_big = || "quantity is too large for the fake API server".to_string();
    let digits = format!("{int_part}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(too_big());
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| bad())?
    };
    let frac_len = frac.len() as i32;
    let pow10 = |n: i32| 10i128.checked_pow(n as u32);
    let ceil_div = |a: i128, d: i128| (a + d - 1) / d;
    let nano = if base2 {
        let scaled = mantissa
            .checked_mul(1i128 << exponent)
            .and_then(|v| v.checked_mul(1_000_000_000))
            .ok_or_else(too_big)?;
        ceil_div(scaled, pow10(frac_len).ok_or_else(too_big)?)
    } else {
        let shift = exponent - frac_len + 9;
        if shift >= 0 {
            mantissa
                .checked_mul(pow10(shift).ok_or_else(too_big)?)
                .ok_or_else(too_big)?
        } else {
            match pow10(-shift) {
                Some(d) => ceil_div(mantissa, d),
                None => i128::from(mantissa > 0),
            }
        }
    };
    Ok(Quantity {
        nano: if positive { nano } else { -nano },
        format,
    })
}

/// `Quantity.String()` after a round trip through the API server (`1000m` -> `1`,
/// `1024Mi` -> `1Gi`, `0.5` -> `500m`).
fn canonical(q: &Quantity) -> String {
    const NANO: i128 = 1_000_000_000;
    if q.nano == 0 {
        return "0".into();
    }
    let mut format = q.format;
    if format == QFormat::BinarySI && (q.nano.abs() < 1024 * NANO || q.nano % NANO != 0) {
        format = QFormat::DecimalSI;
    }
    if format == QFormat::BinarySI {
        let mut n = q.nano / NANO;
        let mut e = 0;
        while n % 1024 == 0 && e < 6 {
            n /= 1024;
            e += 1;
        }
        return format!("{n}{}", ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][e]);
    }
    let mut m = q.nano;
    let mut exp: i32 = -9;
    while m % 10 == 0 {
        m /= 10;
        exp += 1;
    }
    match exp.rem_euclid(3) {
        1 => {
            m *= 10;
            exp -= 1;
        }
        2 => {
            m *= 100;
            exp -= 2;
        }
        _ => {}
    }
    let suffix = match (format, exp) {
        (QFormat::DecimalExponent, 0) => String::new(),
        (QFormat::DecimalExponent, e) => format!("e{e}"),
        (_, -9) => "n".into(),
        (_, -6) => "u".into(),
        (_, -3) => "m".into(),
        (_, 0) => String::new(),
        (_, 3) => "k".into(),
        (_, 6) => "M".into(),
        (_, 9) => "G".into(),
        (_, 12) => "T".into(),
        (_, 15) => "P".into(),
        (_, 18) => "E".into(),
        (_, e) => format!("e{e}"),
    };
    format!("{m}{suffix}")
}

/// Calls `f` on every quantity: resource requirement maps and `sizeLimit`.
fn for_each_quantity(
    v: &mut Value,
    f: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if matches!(k.as_str(), "requests" | "limits") && child.is_object() {
                    for q in child.as_object_mut().expect("object").values_mut() {
                        f(q)?;
                    }
                } else if k == "sizeLimit" {
                    f(child)?;
                } else {
                    for_each_quantity(child, f)?;
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                for_each_quantity(item, f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Go accepts JSON numbers and null for a Quantity; the string must parse.
fn normalize_quantity(v: &mut Value) -> Result<(), String> {
    match v {
        Value::Number(n) => *v = Value::String(n.to_string()),
        Value::Null => *v = Value::String("0".into()),
        _ => {}
    }
    match v.as_str() {
        Some(s) => parse_quantity(s).map(|_| ()),
        None => Err("json: cannot unmarshal into a Quantity".into()),
    }
}

fn canonicalize_quantity(v: &mut Value) -> Result<(), String> {
    if let Some(p) = v.as_str().and_then(|s| parse_quantity(s).ok()) {
        *v = Value::String(canonical(&p));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Patches.

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The `patchMergeKey` of the lists harp's objects use; other lists are replaced.
fn merge_key(field: &str, path: &[String]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "env"
        | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "ports" => match path.last().map(String::as_str) {
            Some("containers" | "initContainers" | "ephemeralContainers") => "containerPort",
            _ => "port",
        },
        _ => return None,
    })
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// A strategic merge patch: maps merge recursively (null deletes), lists with a merge key merge
/// element by element (`$patch: delete` removes one), `$patch: replace` replaces, other lists
/// are replaced, `finalizers` merge as a set.
fn strategic_merge(target: &mut Value, patch: &Value, path: &mut Vec<String>) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip_directives(patch);
        return;
    }
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().expect("object");
    for (k, pv) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(gone)) = (
                t.get_mut(field).and_then(Value::as_array_mut),
                pv.as_array(),
            ) {
                list.retain(|v| !gone.contains(v));
            }
            continue;
        }
        if pv.is_null() {
            t.remove(k);
            continue;
        }
        match pv {
            Value::Object(inner)
                if inner.get("$patch").and_then(Value::as_str) == Some("delete") =>
            {
                t.remove(k);
            }
            Value::Object(_) => {
                path.push(k.clone());
                strategic_merge(t.entry(k.clone()).or_insert(Value::Null), pv, path);
                path.pop();
            }
            Value::Array(items) => {
                if k == "finalizers" {
                    let list = t.entry(k.clone()).or_insert_with(|| json!([]));
                    if let Some(list) = list.as_array_mut() {
                        for item in items {
                            if !list.contains(item) {
                                list.push(item.clone());
                            }
                        }
                    }
                    continue;
                }
                let Some(mk) = merge_key(k, path) else {
                    t.insert(k.clone(), strip_directives(pv));
                    continue;
                };
                if items
                    .iter()
                    .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
                {
                    let kept: Vec<Value> = items
                        .iter()
                        .filter(|i| i.get("$patch").is_none())
                        .map(strip_directives)
                        .collect();
                    t.insert(k.clone(), Value::Array(kept));
                    continue;
                }
                let mut list = t
                    .get(k)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                path.push(k.clone());
                for item in items {
                    let Some(key) = item.get(mk) else {
                        list.push(strip_directives(item));
                        continue;
                    };
                    if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                        list.retain(|e| e.get(mk) != Some(key));
                    } else if let Some(existing) = list.iter_mut().find(|e| e.get(mk) == Some(key))
                    {
                        strategic_merge(existing, item, path);
                    } else {
                        list.push(strip_directives(item));
                    }
                }
                path.pop();
                t.insert(k.clone(), Value::Array(list));
            }
            _ => {
                t.insert(k.clone(), pv.clone());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Selectors.

enum Requirement {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

static SET_TERM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([^\s()!=,]+)\s+(in|notin)\s*\(([^()]*)\)$").expect("set selector regex")
});

/// A `labelSelector` query: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a)`, `k`, `!k`.
fn parse_selector(s: &str) -> Result<Vec<Requirement>, String> {
    let mut terms = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    let mut out = Vec::new();
    for term in terms.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
        let req = if let Some(k) = term.strip_prefix('!') {
            Requirement::NotExists(k.trim().to_string())
        } else if let Some(c) = SET_TERM.captures(term) {
            let values: Vec<String> = c[3]
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            if &c[2] == "in" {
                Requirement::In(c[1].to_string(), values)
            } else {
                Requirement::NotIn(c[1].to_string(), values)
            }
        } else if let Some((k, v)) = term.split_once("!=") {
            Requirement::Ne(k.trim().to_string(), v.trim().to_string())
        } else if let Some((k, v)) = term.split_once("==") {
            Requirement::Eq(k.trim().to_string(), v.trim().to_string())
        } else if let Some((k, v)) = term.split_once('=') {
            Requirement::Eq(k.trim().to_string(), v.trim().to_string())
        } else {
            Requirement::Exists(term.to_string())
        };
        let (key, values): (&str, Vec<&str>) = match &req {
            Requirement::Eq(k, v) | Requirement::Ne(k, v) => (k, vec![v.as_str()]),
            Requirement::In(k, vs) | Requirement::NotIn(k, vs) => {
                (k, vs.iter().map(String::as_str).collect())
            }
            Requirement::Exists(k) | Requirement::NotExists(k) => (k, vec![]),
        };
        if let Some(m) = qualified_name(key).into_iter().next() {
            return Err(format!("key: Invalid value: {}: {m}", q(key)));
        }
        for (i, v) in values.iter().enumerate() {
            if let Some(m) = label_value(v).into_iter().next() {
                return Err(format!("values[{i}][{key}]: Invalid value: {}: {m}", q(v)));
            }
        }
        out.push(req);
    }
    Ok(out)
}

fn selector_matches(reqs: &[Requirement], labels: &Value) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
        Requirement::Ne(k, v) => get(k) != Some(v.as_str()),
        Requirement::In(k, vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
        Requirement::NotIn(k, vs) => get(k).is_none_or(|l| vs.iter().all(|v| v != l)),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::NotExists(k) => get(k).is_none(),
    })
}

/// A `metav1.LabelSelector` object against labels.
fn label_selector_matches(sel: &Value, labels: &Value) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    let match_labels = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| get(k) == v.as_str());
    let exprs = sel["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e["operator"].as_str().unwrap_or("") {
                "In" => get(key).is_some_and(|l| values.contains(&l)),
                "NotIn" => get(key).is_none_or(|l| !values.contains(&l)),
                "Exists" => get(key).is_some(),
                "DoesNotExist" => get(key).is_none(),
                _ => false,
            }
        });
    match_labels && exprs
}

/// A `fieldSelector` query: `field=v`, `field==v`, `field!=v` on the fields the real server
/// supports for the kind.
fn parse_field_selector(kind: Kind, s: &str) -> Result<Vec<(String, bool, String)>, Reply> {
    let mut supported = vec!["metadata.name", "metadata.namespace"];
    if kind == Kind::Pod {
        supported.extend(["spec.nodeName", "status.phase"]);
    }
    let mut out = Vec::new();
    for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (field, eq, value) = if let Some((k, v)) = term.split_once("!=") {
            (k, false, v)
        } else if let Some((k, v)) = term.split_once("==") {
            (k, true, v)
        } else if let Some((k, v)) = term.split_once('=') {
            (k, true, v)
        } else {
            return Err(bad_request(&format!(
                "invalid selector: '{s}'; can't understand '{term}'"
            )));
        };
        if !supported.contains(&field) {
            let list: Vec<String> = supported.iter().map(|f| q(f)).collect();
            return Err(bad_request(&format!(
                "{} is not a known field selector: only {}",
                q(field),
                list.join(", ")
            )));
        }
        out.push((field.to_string(), eq, value.to_string()));
    }
    Ok(out)
}

fn field_value<'a>(o: &'a Value, field: &str) -> &'a str {
    o.pointer(&format!("/{}", field.replace('.', "/")))
        .and_then(Value::as_str)
        .unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Like Kubernetes' `rand.SafeEncodeString` alphabet (no vowels, no confusable digits).
fn safe_encode(mut h: u64, n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut s = String::with_capacity(n);
    for _ in 0..n {
        s.push(ALPHABET[(h % ALPHABET.len() as u64) as usize] as char);
        h /= ALPHABET.len() as u64;
        if h == 0 {
            h = fnv(s.as_bytes());
        }
    }
    s
}

fn uuid_from(seed: u64) -> String {
    let b = fnv(&seed.to_le_bytes());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        seed >> 32,
        (seed >> 16) & 0xffff,
        seed & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

fn hex64(seed: u64) -> String {
    format!(
        "{:016x}{:016x}{:016x}{:016x}",
        fnv(&seed.to_le_bytes()),
        fnv(&seed.rotate_left(16).to_le_bytes()),
        fnv(&seed.rotate_left(32).to_le_bytes()),
        fnv(&seed.rotate_left(48).to_le_bytes())
    )
}

/// RFC 3339 UTC with seconds, as metav1.Time serializes.
fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
