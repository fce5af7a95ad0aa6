//! `TestCluster`: an in-process Kubernetes API server that follows the documented API semantics.
//!
//! It serves discovery, the built-in kinds this toolkit and kube-runtime use, and the kinds of
//! the CustomResourceDefinitions created in it, on `127.0.0.1`, with the verbs, resourceVersion
//! and watch rules, server-side apply (managedFields, conflicts, force), strategic merge patch,
//! defaulting, immutable fields and `Status` error bodies of kube-apiserver. What it simplifies
//! or leaves out is listed in `FIDELITY.md` at the crate root.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use gitops_testkit::cluster::{TestCluster, TestClusterOptions};
//! let cluster = TestCluster::start(TestClusterOptions::default()).await?;
//! let client = cluster.client().await?;
//! # drop(client); Ok(()) }
//! ```

// `ApiError` carries a whole `Status` (details, causes); it is returned, not propagated deep.
#![allow(clippy::result_large_err)]

mod builtin;
mod controllers;
mod crd;
mod patch;
mod registry;
mod selectors;
mod server;
mod shape;
mod ssa;
mod status;
mod store;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use serde_json::Value;

pub use status::ApiError;

/// Errors of starting or talking to a [`TestCluster`].
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Binding the listener failed.
    #[error("binding the test cluster listener on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Building a kube client from the kubeconfig failed.
    #[error("building a kube client for the test cluster at {url}: {message}")]
    Client {
        /// The server URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// Generating the TLS certificate authority or server certificate failed.
    #[error("setting up TLS for the test cluster: {message}")]
    Tls {
        /// What failed.
        message: String,
    },
    /// Writing the kubeconfig failed.
    #[error("writing the kubeconfig {path}: {source}")]
    Kubeconfig {
        /// Where.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// What an authorizer decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// The (possibly impersonated) user name.
    pub user: String,
    /// The user's groups.
    pub groups: Vec<String>,
    /// The verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, `impersonate`).
    pub verb: String,
    /// The API group (`""` for core).
    pub group: String,
    /// The resource (plural), e.g. `deployments`; `users`/`groups` for impersonation.
    pub resource: String,
    /// The subresource, e.g. `status`.
    pub subresource: String,
    /// The namespace (`""` when cluster-scoped or across namespaces).
    pub namespace: String,
    /// The object name (`""` for collections).
    pub name: String,
}

/// Decides whether a request is allowed. The default allows everything.
pub trait Authorizer: Send + Sync + 'static {
    /// `Ok(())` to allow; `Err(reason)` to deny with 403.
    fn authorize(&self, attributes: &Attributes) -> Result<(), String>;
}

/// Allows every request.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _: &Attributes) -> Result<(), String> {
        Ok(())
    }
}

/// An authorizer that allows everything except the requests matching one of its deny rules.
#[derive(Debug, Default, Clone)]
pub struct DenyRules {
    rules: Vec<(String, String, String)>,
}

impl DenyRules {
    /// No rules: allows all.
    pub fn new() -> Self {
        Self::default()
    }

    /// Denies `verb` on `resource` for `user`; `"*"` matches anything.
    pub fn deny(mut self, user: &str, verb: &str, resource: &str) -> Self {
        self.rules
            .push((user.to_string(), verb.to_string(), resource.to_string()));
        self
    }
}

impl Authorizer for DenyRules {
    fn authorize(&self, a: &Attributes) -> Result<(), String> {
        let m = |rule: &str, v: &str| rule == "*" || rule == v;
        let res = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        if self
            .rules
            .iter()
            .any(|(u, v, r)| m(u, &a.user) && m(v, &a.verb) && (m(r, &a.resource) || m(r, &res)))
        {
            return Err("denied by rule".into());
        }
        Ok(())
    }
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Delay the request, then serve it.
    Latency(Duration),
    /// Answer with this 5xx status code and a `Status` body.
    ServerError(u16),
    /// Answer 429 with `Retry-After: seconds`.
    TooManyRequests {
        /// The `Retry-After` seconds.
        retry_after: u64,
    },
    /// Answer 409 Conflict as a stale resourceVersion would.
    Conflict,
    /// Drop the connection without an answer.
    ConnectionReset,
    /// For a watch: close the stream after this long.
    CloseWatch(Duration),
}

/// A fault injected into matching requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Verb to match (`None`: any).
    pub verb: Option<String>,
    /// Resource (plural) to match (`None`: any).
    pub resource: Option<String>,
    /// Object name to match (`None`: any).
    pub name: Option<String>,
    /// What to do.
    pub action: FaultAction,
    /// How many requests it applies to (`None`: all).
    pub times: Option<usize>,
}

impl Fault {
    /// A fault on every request with `verb` to `resource`.
    pub fn new(verb: &str, resource: &str, action: FaultAction) -> Self {
        Fault {
            verb: Some(verb.to_string()),
            resource: Some(resource.to_string()),
            name: None,
            action,
            times: None,
        }
    }

    /// Only for this object name.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// Only for the next `n` matching requests.
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }
}

/// One logged request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`) or the HTTP method for non-resource paths.
    pub verb: String,
    /// The path.
    pub path: String,
    /// The raw query string.
    pub query: String,
    /// The effective user.
    pub user: String,
    /// The HTTP status code answered.
    pub status: u16,
}

/// Options of [`TestCluster::start`].
#[derive(Clone)]
pub struct TestClusterOptions {
    /// Address to listen on (default `127.0.0.1:0`).
    pub addr: SocketAddr,
    /// Simulate workload controllers (rollouts complete, Jobs finish, Pods run). Off by default:
    /// objects then stay unready, which is what tests of health timeouts need.
    pub simulate_controllers: bool,
    /// How long the simulated controllers wait before reporting a rollout complete.
    pub rollout_delay: Duration,
    /// Run the namespace lifecycle (delete a namespace's contents, then the namespace) and
    /// the garbage collector (ownerReferences). On by default.
    pub namespace_lifecycle: bool,
    /// Who may do what (default: everything allowed).
    pub authorizer: Arc<dyn Authorizer>,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// How many watch events are kept; older resourceVersions answer 410 Gone.
    pub history_limit: usize,
    /// Serve HTTPS with a freshly generated CA (in the kubeconfig as
    /// `certificate-authority-data`) instead of plain HTTP.
    pub tls: bool,
}

impl Default for TestClusterOptions {
    fn default() -> Self {
        TestClusterOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            simulate_controllers: false,
            rollout_delay: Duration::from_millis(200),
            namespace_lifecycle: true,
            authorizer: Arc::new(AllowAll),
            bookmark_interval: Duration::from_secs(1),
            history_limit: 20_000,
            tls: false,
        }
    }
}

impl std::fmt::Debug for TestClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClusterOptions")
            .field("addr", &self.addr)
            .field("simulate_controllers", &self.simulate_controllers)
            .field("rollout_delay", &self.rollout_delay)
            .field("namespace_lifecycle", &self.namespace_lifecycle)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// The user the kubeconfig's token authenticates as.
pub const ADMIN_USER: &str = "testcluster-admin";
const ADMIN_TOKEN: &str = "testcluster-admin-token";

/// A running in-process Kubernetes API server. Dropping it stops it.
pub struct TestCluster {
    inner: Arc<server::Inner>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    controllers: Option<tokio::task::JoinHandle<()>>,
    ca: Option<crate::servers::TestCa>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("addr", &self.addr)
            .finish()
    }
}

/// Installs the aws-lc-rs rustls provider (ignoring "already installed").
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

impl TestCluster {
    /// Starts the server and returns once it accepts connections.
    pub async fn start(options: TestClusterOptions) -> Result<Self, ClusterError> {
        let listener = tokio::net::TcpListener::bind(options.addr)
            .await
            .map_err(|source| ClusterError::Bind {
                addr: options.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ClusterError::Bind {
            addr: options.addr,
            source,
        })?;
        let (ca, acceptor) = if options.tls {
            install_crypto_provider();
            let tls_err = |e: crate::servers::ServerError| ClusterError::Tls {
                message: e.to_string(),
            };
            let ca = crate::servers::TestCa::generate().map_err(tls_err)?;
            let config = ca.server_config(false).map_err(tls_err)?;
            (Some(ca), Some(tokio_rustls::TlsAcceptor::from(config)))
        } else {
            (None, None)
        };
        let inner = Arc::new(server::Inner::new(options.clone()));
        let task = tokio::spawn(server::serve(listener, inner.clone(), acceptor));
        let controllers = Some(tokio::spawn(controllers::run(inner.clone())));
        tracing::debug!(%addr, "test cluster listening");
        Ok(TestCluster {
            inner,
            addr,
            task,
            controllers,
            ca,
        })
    }

    /// The server URL (`http://127.0.0.1:PORT`, or `https://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA certificate (PEM) the server's certificate chains to, with TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_ref().map(|ca| ca.cert_pem())
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig for this cluster (context `testcluster`, a bearer token for [`ADMIN_USER`]).
    pub fn kubeconfig(&self) -> kube::config::Kubeconfig {
        // The YAML below is produced by us and always parses.
        kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml())
            .expect("the generated kubeconfig is valid YAML")
    }

    /// The kubeconfig as YAML text, for files and kubectl.
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
            "apiVersion: v1\nkind: Config\nclusters:\n- name: testcluster\n  cluster:\n    server: {url}{ca}\ncontexts:\n- name: testcluster\n  context:\n    cluster: testcluster\n    user: {ADMIN_USER}\n    namespace: default\ncurrent-context: testcluster\nusers:\n- name: {ADMIN_USER}\n  user:\n    token: {ADMIN_TOKEN}\npreferences: {{}}\n",
            url = self.url()
        )
    }

    /// Writes the kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: &std::path::Path) -> Result<(), ClusterError> {
        std::fs::write(path, self.kubeconfig_yaml()).map_err(|source| ClusterError::Kubeconfig {
            path: path.to_path_buf(),
            source,
        })
    }

    /// A `kube::Client` for this cluster, authenticated as [`ADMIN_USER`].
    pub async fn client(&self) -> Result<kube::Client, ClusterError> {
        install_crypto_provider();
        let err = |message: String| ClusterError::Client {
            url: self.url(),
            message,
        };
        let config = kube::Config::from_custom_kubeconfig(
            self.kubeconfig(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| err(e.to_string()))?;
        kube::Client::try_from(config).map_err(|e| err(e.to_string()))
    }

    /// Replaces the authorizer.
    pub fn set_authorizer(&self, authorizer: Arc<dyn Authorizer>) {
        self.inner.set_authorizer(authorizer);
    }

    /// Injects a fault.
    pub fn inject(&self, fault: Fault) {
        self.inner.faults_mut().push(fault);
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.inner.faults_mut().clear();
    }

    /// The requests served so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.requests()
    }

    /// Forgets the logged requests.
    pub fn clear_requests(&self) {
        self.inner.clear_requests();
    }

    /// Every stored object, as the API would return it.
    pub fn snapshot(&self) -> Vec<Value> {
        self.inner.snapshot()
    }

    /// The current resourceVersion (the global revision counter).
    pub fn resource_version(&self) -> u64 {
        self.inner.current_rv()
    }

    /// Completes every pending rollout, Job and Pod now (as the simulated controllers would,
    /// even when they are off).
    pub fn complete_rollouts(&self) {
        controllers::reconcile_all(&self.inner, true);
    }

    /// Marks a Job failed (condition `Failed`, reason `BackoffLimitExceeded`).
    pub fn fail_job(&self, namespace: &str, name: &str) -> Result<(), ApiError> {
        controllers::fail_job(&self.inner, namespace, name)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.inner.shutdown();
        self.task.abort();
        if let Some(c) = self.controllers.take() {
            c.abort();
        }
    }
}
