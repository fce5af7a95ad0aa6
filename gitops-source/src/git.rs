//! `GitSource`: a Git repository at a reference, as Flux's `GitRepository` acquires it.
//!
//! The work runs on gix (gitoxide) in a blocking task:
//!
//! 1. **Resolve** with one `ls-refs` round trip the commit the reference points to: branch <
//!    tag < semver < ref name < commit (highest precedence; may be combined with a branch), as
//!    in Flux. With no reference at all the remote's `HEAD` is used, as `git clone` does.
//! 2. **Short cut**: if the revision equals the last artifact's, the configuration (ignore
//!    rules, sparse directories, submodules) is unchanged and the archive still is in the
//!    store, report [`Acquired::Unchanged`] without fetching a pack.
//! 3. **Fetch** into a temporary bare repository: shallow (depth 1) and single-ref for branch,
//!    tag, semver and ref name; the branch's (or all branches') history for a commit.
//! 4. **Check out** the commit's tree ourselves (gix has no sparse checkout): only the listed
//!    directories when sparse; symlinks are not written (artifacts never hold them); submodule
//!    commits are fetched and checked out recursively when asked.
//! 5. **Archive** with Flux's ignore layering into the store as `<commit>.tar.gz`, then GC.
//!
//! Transports: `https://`, `http://` (reqwest with rustls; custom CA, client certificate,
//! Basic or bearer auth, proxy from the spec or the usual environment variables), `ssh://`
//! (the `ssh` binary, run with our key and a REQUIRED `known_hosts`, with strict host key
//! checking, never the user's own ssh or git configuration), `git://` and `file://` (which
//! runs `git-upload-pack`). Every operation runs under the spec's timeout.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use gix::bstr::ByteSlice;
use sha2::Digest as _;

use crate::artifact::{Acquired, Artifact, Source};
use crate::error::SourceError;
use crate::revision::{Digest, Revision};
use crate::semver::Constraints;
use crate::sourceignore::IgnoreRules;
use crate::store::{ArtifactStore, ObjectRef};

/// The metadata key holding the fingerprint of the configuration an artifact was built with;
/// a change (ignore rules, sparse directories, submodules) forces a rebuild, like Flux's
/// `observedIgnore` / `observedSparseCheckout` / `observedRecurseSubmodules`.
pub const CONFIG_DIGEST_KEY: &str = "source.gitops.dev/config-digest";
/// Metadata key: what was verified and by which key (`commit <id> by SHA256:…`), when the
/// source verifies signatures.
pub const VERIFIED_KEY: &str = "source.gitops.dev/verified";

/// Which revision of the repository to acquire. Precedence (lowest to highest): branch, tag,
/// semver, name, commit; `commit` may be combined with `branch`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitReference {
    /// A branch name, such as `main`.
    pub branch: Option<String>,
    /// A tag name, such as `v1.2.3`.
    pub tag: Option<String>,
    /// A Masterminds semver range over the tags, such as `>=1.0.0 <2.0.0`.
    pub semver: Option<String>,
    /// A full reference name, such as `refs/pull/1/head`.
    pub name: Option<String>,
    /// A commit id (40 hex characters).
    pub commit: Option<String>,
}

/// Credentials and TLS settings for the remote. `Debug` never prints secret values.
#[derive(Clone, Default)]
pub struct GitAuth {
    /// HTTP Basic credentials (`username`, `password`).
    pub basic: Option<(String, String)>,
    /// An HTTP bearer token (`Authorization: Bearer …`).
    pub bearer_token: Option<String>,
    /// PEM CA certificates to trust for HTTPS (Flux's `ca.crt`), in addition to the system's
    /// trust roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key for mutual TLS (`tls.crt` + `tls.key`).
    pub client_identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// An SSH private key (`identity`).
    pub ssh_private_key: Option<Vec<u8>>,
    /// The passphrase of the SSH key (`password`).
    pub ssh_passphrase: Option<String>,
    /// `known_hosts` lines; REQUIRED for SSH (unknown or changed host keys are refused).
    pub known_hosts: Option<Vec<u8>>,
}

impl fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitAuth")
            .field("basic_username", &self.basic.as_ref().map(|b| &b.0))
            .field("basic_password", &self.basic.as_ref().map(|_| "<redacted>"))
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("ca_pem", &self.ca_pem.is_some())
            .field("client_identity_pem", &self.client_identity_pem.is_some())
            .field("ssh_private_key", &self.ssh_private_key.is_some())
            .field(
                "ssh_passphrase",
                &self.ssh_passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("known_hosts", &self.known_hosts.is_some())
            .finish()
    }
}

/// An HTTP(S) or SOCKS5 proxy for the Git transport (Flux's `proxySecretRef`). Without one,
/// `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` from the environment apply.
#[derive(Clone)]
pub struct ProxySettings {
    /// `http://host:port`, `https://…` or `socks5://…`.
    pub address: String,
    /// Optional proxy credentials.
    pub basic: Option<(String, String)>,
}

impl ProxySettings {
    /// The proxy URL with the credentials as its user info (how reqwest, oci-client and
    /// object_store take proxy credentials, for HTTP and SOCKS5 proxies alike).
    pub(crate) fn url_with_credentials(&self) -> Result<String, SourceError> {
        let mut url = url::Url::parse(&self.address).map_err(|e| {
            SourceError::InvalidSpec(format!("proxy address {:?}: {e}", self.address))
        })?;
        if let Some((user, password)) = &self.basic {
            let refused = || {
                SourceError::InvalidSpec(format!(
                    "proxy address {:?} cannot carry credentials",
                    self.address
                ))
            };
            url.set_username(user).map_err(|()| refused())?;
            url.set_password(Some(password)).map_err(|()| refused())?;
        }
        Ok(url.to_string())
    }
}

impl fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A password in the address's user info is redacted too.
        let address = match url::Url::parse(&self.address) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("redacted"));
                url.to_string()
            }
            Ok(_) => self.address.clone(),
            Err(_) => "<unparsable>".to_owned(),
        };
        f.debug_struct("ProxySettings")
            .field("address", &address)
            .field("basic_username", &self.basic.as_ref().map(|b| &b.0))
            .finish()
    }
}

/// A Git repository at a reference, acquired as an artifact (Flux's `GitRepository`).
#[derive(Debug, Clone)]
pub struct GitSource {
    /// The repository URL.
    pub url: String,
    /// The reference to acquire.
    pub reference: GitReference,
    /// Credentials and TLS settings.
    pub auth: GitAuth,
    /// A spec-level ignore list (gitignore syntax) replacing Flux's default exclusions.
    pub ignore: Option<String>,
    /// Only these directories of the repository end up in the artifact.
    pub sparse_checkout: Vec<String>,
    /// Fetch and check out submodules, recursively.
    pub recurse_submodules: bool,
    /// The limit for each Git operation (resolve, fetch).
    pub timeout: Duration,
    /// An explicit proxy; overrides the environment.
    pub proxy: Option<ProxySettings>,
    /// Verify the commit and/or tag signature before building the artifact (Flux's
    /// `spec.verify`); see [`crate::signature`].
    pub verify: Option<crate::signature::GitVerification>,
    /// The object the artifacts belong to in the store.
    pub object: ObjectRef,
}

impl GitSource {
    /// A source for `url` with default settings (remote `HEAD`, 60 s timeout, no auth), storing
    /// its artifacts under `object`.
    pub fn new(url: impl Into<String>, object: ObjectRef) -> Self {
        GitSource {
            url: url.into(),
            reference: GitReference::default(),
            auth: GitAuth::default(),
            ignore: None,
            sparse_checkout: Vec::new(),
            recurse_submodules: false,
            timeout: Duration::from_secs(60),
            proxy: None,
            verify: None,
            object,
        }
    }

    /// The fingerprint of everything besides the revision that shapes the archive.
    pub fn config_digest(&self) -> Digest {
        let mut h = sha2::Sha256::new();
        h.update(b"ignore\0");
        h.update(self.ignore.as_deref().unwrap_or("\u{1}").as_bytes());
        h.update(b"\0sparse\0");
        for dir in &self.sparse_checkout {
            h.update(normalise_dir(dir).as_bytes());
            h.update(b"\0");
        }
        h.update(if self.recurse_submodules {
            b"\0sub1"
        } else {
            b"\0sub0"
        });
        // Changing what is verified (or against which keys) rebuilds, and so re-verifies.
        if let Some(v) = &self.verify {
            h.update(format!("\0verify{:?}\0", v.mode).as_bytes());
            h.update(v.ssh_authorized_keys.as_bytes());
        }
        Digest::from_sha256(h)
    }

    /// The URL with credentials removed, for errors and logs.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }
}

fn normalise_dir(dir: &str) -> String {
    dir.trim_matches('/').trim_start_matches("./").to_owned()
}

/// The URL without secrets: no password ever; no user name for HTTP(S), where tokens are often
/// passed as the user. SSH keeps its user name (`ssh://git@host/...`), which is not a secret.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_password(None);
            if u.scheme() != "ssh" {
                let _ = u.set_username("");
            }
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[async_trait::async_trait]
impl Source for GitSource {
    async fn acquire(
        &self,
        last: Option<&Artifact>,
        store: &ArtifactStore,
    ) -> Result<Acquired, SourceError> {
        let this = self.clone();
        let last = last.cloned();
        let store = store.clone();
        let interrupt = Arc::new(AtomicBool::new(false));
        let flag = interrupt.clone();
        let task =
            tokio::task::spawn_blocking(move || this.acquire_blocking(last.as_ref(), &store, flag));
        // Resolve and fetch each get the timeout; checkout and archive are local work bounded by
        // the repository's size, so the whole task gets twice the limit plus a local allowance.
        let limit = self.timeout.saturating_mul(2) + Duration::from_secs(300);
        match tokio::time::timeout(limit, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(SourceError::Git {
                url: self.display_url(),
                message: format!("the acquisition task failed: {join}"),
            }),
            Err(_) => {
                interrupt.store(true, Ordering::SeqCst);
                Err(SourceError::Timeout {
                    url: self.display_url(),
                    operation: "git acquire",
                    after: limit,
                })
            }
        }
    }
}

/// What the resolve step found.
#[derive(Debug, Clone)]
struct Resolved {
    /// The revision name (`main`, `v1.2.3`, `refs/pull/1/head`) or none for a bare commit.
    revision_name: Option<String>,
    /// The commit, when known before fetching (everything but commit-only references).
    commit: Option<gix::ObjectId>,
    /// The refspec to fetch.
    fetch_spec: String,
    /// Whether the fetch may be shallow.
    shallow: bool,
    /// Human description of the reference for errors.
    describe: String,
}

/// A temporary workspace holding the bare repository, the checkout and any ssh helpers.
struct Workspace {
    dir: tempfile::TempDir,
    /// Set when the caller gave up (timeout): gix stops at the next check.
    interrupt: Arc<AtomicBool>,
    ssh_stderr: Option<PathBuf>,
    overrides: Vec<String>,
}

impl GitSource {
    fn reference_kind(&self) -> Result<(), SourceError> {
        if let Some(commit) = &self.reference.commit {
            let ok = commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return Err(SourceError::InvalidSpec(format!(
                    "commit {commit:?} must be 40 hex characters"
                )));
            }
        }
        Ok(())
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
        move |source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn prepare_workspace(&self, interrupt: Arc<AtomicBool>) -> Result<Workspace, SourceError> {
        let dir = tempfile::Builder::new()
            .prefix("gitops-git-")
            .tempdir()
            .map_err(Self::io(Path::new("<temp dir>")))?;
        let mut overrides = vec![
            "core.logAllRefUpdates=false".to_owned(),
            "user.name=gitops".to_owned(),
            "user.email=gitops@localhost".to_owned(),
            "protocol.version=2".to_owned(),
        ];
        let mut ssh_stderr = None;
        if self.is_ssh() {
            let (command, stderr) = self.write_ssh_wrapper(dir.path())?;
            overrides.push(format!("core.sshCommand={}", command.display()));
            ssh_stderr = Some(stderr);
        }
        Ok(Workspace {
            dir,
            interrupt,
            ssh_stderr,
            overrides,
        })
    }

    fn is_ssh(&self) -> bool {
        self.url.starts_with("ssh://")
    }

    /// Writes an `ssh` wrapper that pins our key, our `known_hosts` and strict checking, and
    /// keeps ssh's stderr so failures can be classified.
    fn write_ssh_wrapper(&self, dir: &Path) -> Result<(PathBuf, PathBuf), SourceError> {
        use std::os::unix::fs::PermissionsExt;
        let url = self.display_url();
        let Some(known_hosts) = &self.auth.known_hosts else {
            return Err(SourceError::InvalidSpec(format!(
                "SSH URL {url} needs known_hosts: unknown host keys are never accepted"
            )));
        };
        let bin = dir.join("bin");
        fs::create_dir_all(&bin).map_err(Self::io(&bin))?;
        let write_private = |name: &str, bytes: &[u8]| -> Result<PathBuf, SourceError> {
            let path = dir.join(name);
            let mut file = fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode_private()
                .open(&path)
                .map_err(Self::io(&path))?;
            file.write_all(bytes).map_err(Self::io(&path))?;
            if !bytes.ends_with(b"\n") {
                file.write_all(b"\n").map_err(Self::io(&path))?;
            }
            Ok(path)
        };
        let kh = write_private("known_hosts", known_hosts)?;
        let stderr = dir.join("ssh.stderr");
        let mut opts = vec![
            "-F /dev/null".to_owned(),
            format!("-o UserKnownHostsFile='{}'", kh.display()),
            "-o GlobalKnownHostsFile=/dev/null".to_owned(),
            "-o StrictHostKeyChecking=yes".to_owned(),
            "-o PasswordAuthentication=no".to_owned(),
            "-o KbdInteractiveAuthentication=no".to_owned(),
            format!("-o ConnectTimeout={}", self.timeout.as_secs().max(1)),
        ];
        let mut env = String::new();
        if let Some(key) = &self.auth.ssh_private_key {
            let key = write_private("identity", key)?;
            opts.push(format!("-o IdentityFile='{}'", key.display()));
            opts.push("-o IdentitiesOnly=yes".to_owned());
            opts.push("-o IdentityAgent=none".to_owned());
        }
        if let Some(passphrase) = &self.auth.ssh_passphrase {
            let pass = write_private("passphrase", passphrase.as_bytes())?;
            let askpass = dir.join("askpass");
            fs::write(
                &askpass,
                format!("#!/bin/sh\nhead -n1 '{}'\n", pass.display()),
            )
            .map_err(Self::io(&askpass))?;
            fs::set_permissions(&askpass, fs::Permissions::from_mode(0o700))
                .map_err(Self::io(&askpass))?;
            env = format!(
                "SSH_ASKPASS='{}' SSH_ASKPASS_REQUIRE=force DISPLAY=gitops ",
                askpass.display()
            );
            opts.push("-o BatchMode=no".to_owned());
        } else {
            opts.push("-o BatchMode=yes".to_owned());
        }
        // Named `ssh` so gix recognises the OpenSSH variant (port and protocol options).
        let wrapper = bin.join("ssh");
        let script = format!(
            "#!/bin/sh\n{env}exec ssh {} \"$@\" 2>>'{}'\n",
            opts.join(" "),
            stderr.display()
        );
        fs::write(&wrapper, script).map_err(Self::io(&wrapper))?;
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o700))
            .map_err(Self::io(&wrapper))?;
        Ok((wrapper, stderr))
    }

    /// The URL gix connects to: for SSH without a user, Flux's default user `git`.
    fn connect_url(&self) -> String {
        if self.is_ssh()
            && let Ok(mut u) = url::Url::parse(&self.url)
            && u.username().is_empty()
        {
            let _ = u.set_username("git");
            return u.to_string();
        }
        self.url.clone()
    }

    fn open_repo(&self, ws: &Workspace, name: &str) -> Result<gix::Repository, SourceError> {
        let path = ws.dir.path().join(name);
        let open = gix::open::Options::isolated()
            .config_overrides(ws.overrides.iter().map(String::as_str));
        let repo = gix::ThreadSafeRepository::init_opts(
            &path,
            gix::create::Kind::Bare,
            gix::create::Options::default(),
            open,
        )
        .map_err(|e| SourceError::Git {
            url: self.display_url(),
            message: format!("creating a temporary repository: {}", flatten(&e)),
        })?;
        let mut repo = repo.to_thread_local();
        repo.object_cache_size_if_unset(64 * 1024 * 1024);
        Ok(repo)
    }

    fn transport_options(
        &self,
        repo: &gix::Repository,
        url: &str,
    ) -> Option<Box<dyn std::any::Any>> {
        let options = repo.transport_options(url, None).ok().flatten()?;
        let mut http = match options
            .downcast::<gix::protocol::transport::client::blocking_io::http::Options>()
        {
            Ok(http) => http,
            Err(other) => return Some(other),
        };
        http.connect_timeout = Some(self.timeout);
        http.low_speed_limit_bytes_per_second = 1;
        http.low_speed_time_seconds = self.timeout.as_secs().max(1);
        let auth = self.auth.clone();
        let proxy = self.proxy.clone();
        let timeout = self.timeout;
        let header = if let Some(token) = &auth.bearer_token {
            Some(format!("Bearer {token}"))
        } else {
            auth.basic.as_ref().map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            })
        };
        let backend = gix::protocol::transport::client::blocking_io::http::reqwest::Options {
            configure_client: Some(Box::new(move |mut builder: reqwest::blocking::ClientBuilder| {
                // Each request, body included, must finish within the operation's limit.
                    builder = builder.timeout(timeout).connect_timeout(timeout);
                if let Some(ca) = &auth.ca_pem {
                    let certs = reqwest::Certificate::from_pem_bundle(ca).map_err(gix::Error::from_error)?;
                    builder = builder.tls_certs_merge(certs);
                }
                if let Some((cert, key)) = &auth.client_identity_pem {
                    let identity = crate::tls::identity(cert, key).map_err(gix::Error::from_error)?;
                    builder = builder.identity(identity);
                }
                if let Some(p) = &proxy {
                    let mut proxy = reqwest::Proxy::all(&p.address).map_err(gix::Error::from_error)?;
                    if let Some((u, pw)) = &p.basic {
                        proxy = proxy.basic_auth(u, pw);
                    }
                    builder = builder.proxy(proxy);
                }
                Ok(builder)
            })),
            configure_request: header.map(|value| {
                Box::new(move |req: &mut reqwest::blocking::Request| {
                    let value = reqwest::header::HeaderValue::from_str(&value).map_err(gix::Error::from_error)?;
                    req.headers_mut().insert(reqwest::header::AUTHORIZATION, value);
                    Ok(())
                })
                    as Box<gix::protocol::transport::client::blocking_io::http::reqwest::ConfigureRequestFn>
            }),
        };
        http.backend = Some(Arc::new(std::sync::Mutex::new(backend)));
        Some(http)
    }

    /// Connects with `refspecs`, lists the matching remote refs (one `ls-refs`), and, when
    /// `fetch` is true, receives the pack.
    fn connect_and_fetch(
        &self,
        ws: &Workspace,
        repo: &gix::Repository,
        url: &str,
        refspecs: &[String],
        shallow: bool,
        decide: &mut dyn FnMut(&[gix::protocol::handshake::Ref]) -> Result<bool, SourceError>,
    ) -> Result<bool, SourceError> {
        let describe = refspecs.join(", ");
        let err = |e: gix::Error| self.classify(ws, &e, &describe);
        let remote = repo
            .remote_at(url)
            .map_err(|e| {
                SourceError::InvalidSpec(format!("URL {}: {}", redact_url(url), flatten(&e)))
            })?
            .with_refspecs(
                refspecs.iter().map(String::as_str),
                gix::remote::Direction::Fetch,
            )
            .map_err(|e| {
                SourceError::InvalidSpec(format!("refspecs {describe}: {}", flatten(&e)))
            })?;
        let mut connection = remote.connect(gix::remote::Direction::Fetch).map_err(err)?;
        if let Some(options) = self.transport_options(repo, url) {
            connection = connection.with_transport_options(options);
        }
        // Credentials are sent up front (Basic or bearer); a 401 means they were refused, and we
        // never fall back to helpers or prompts.
        let connection =
            connection.with_credentials(|_action| Err(gix::Error::from_error(CredentialsRejected)));
        let prepare = connection
            .prepare_fetch(
                gix::progress::Discard,
                gix::remote::ref_map::Options::default(),
            )
            .map_err(err)?;
        if !decide(&prepare.ref_map().remote_refs)? {
            return Ok(false);
        }
        let prepare = if shallow {
            prepare.with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(
                std::num::NonZeroU32::MIN,
            ))
        } else {
            prepare
        };
        prepare
            .receive(gix::progress::Discard, &ws.interrupt)
            .map_err(err)?;
        Ok(true)
    }

    fn classify(&self, ws: &Workspace, error: &gix::Error, what: &str) -> SourceError {
        let url = self.display_url();
        let mut message = flatten(error);
        if let Some(stderr) = &ws.ssh_stderr
            && let Ok(text) = fs::read_to_string(stderr)
            && !text.trim().is_empty()
        {
            let text = text.trim().to_owned();
            if text.contains("Host key verification failed")
                || text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
                || text.contains("No ED25519 host key is known")
                || text.contains("host key is known")
            {
                return SourceError::HostKeyMismatch { url, message: text };
            }
            if text.contains("Permission denied")
                || text.contains("Too many authentication failures")
            {
                return SourceError::AuthenticationFailed { url, message: text };
            }
            message = format!("{message}; ssh: {text}");
        }
        let lower = message.to_lowercase();
        let auth_required = error.iter_errors().any(|e| {
            e.is::<CredentialsRejected>()
                || e.is::<gix::protocol::transport::client::AuthenticationRequired>()
                || e.downcast_ref::<std::io::Error>().is_some_and(|io| {
                    io.get_ref().is_some_and(|inner| {
                        inner.is::<gix::protocol::transport::client::AuthenticationRequired>()
                    })
                })
        });
        // A TLS server asking for a client certificate we do not have (or refusing ours) is an
        // authentication failure too.
        let tls_client_auth = lower.contains("certificaterequired")
            || lower.contains("certificate required")
            || lower.contains("badcertificate")
            || lower.contains("unknownca");
        if auth_required
            || tls_client_auth
            || lower.contains("authentication required")
            || lower.contains("status 401")
            || lower.contains("401 unauthorized")
        {
            return SourceError::AuthenticationFailed { url, message };
        }
        if lower.contains("timed out") || lower.contains("timeout") || lower.contains("interrupted")
        {
            return SourceError::Timeout {
                url,
                operation: "git fetch",
                after: self.timeout,
            };
        }
        if lower.contains("connection refused")
            || lower.contains("connect")
            || lower.contains("dns")
            || lower.contains("network")
            || lower.contains("tls")
            || lower.contains("certificate")
            || lower.contains("broken pipe")
            || lower.contains("unexpected end")
        {
            return SourceError::Network { url, message };
        }
        if lower.contains("not found")
            || lower.contains("does not appear to be a git repository")
            || lower.contains("404")
        {
            return SourceError::ReferenceNotFound {
                url,
                reference: format!("{what} ({message})"),
            };
        }
        SourceError::Git { url, message }
    }

    fn resolve_spec(&self) -> Resolved {
        let r = &self.reference;
        if let Some(commit) = &r.commit {
            return match &r.branch {
                Some(branch) => Resolved {
                    revision_name: Some(branch.clone()),
                    commit: None,
                    fetch_spec: format!("+refs/heads/{branch}:refs/heads/{branch}"),
                    shallow: false,
                    describe: format!("commit {commit} on branch {branch}"),
                },
                None => Resolved {
                    revision_name: None,
                    commit: None,
                    fetch_spec: "+refs/heads/*:refs/heads/*".to_owned(),
                    shallow: false,
                    describe: format!("commit {commit}"),
                },
            };
        }
        if let Some(name) = &r.name {
            return Resolved {
                revision_name: Some(name.clone()),
                commit: None,
                fetch_spec: format!("+{name}:{name}"),
                shallow: true,
                describe: format!("ref {name}"),
            };
        }
        if let Some(range) = &r.semver {
            return Resolved {
                revision_name: None,
                commit: None,
                fetch_spec: "+refs/tags/*:refs/tags/*".to_owned(),
                shallow: true,
                describe: format!("semver {range}"),
            };
        }
        if let Some(tag) = &r.tag {
            return Resolved {
                revision_name: Some(tag.clone()),
                commit: None,
                fetch_spec: format!("+refs/tags/{tag}:refs/tags/{tag}"),
                shallow: true,
                describe: format!("tag {tag}"),
            };
        }
        if let Some(branch) = &r.branch {
            return Resolved {
                revision_name: Some(branch.clone()),
                commit: None,
                fetch_spec: format!("+refs/heads/{branch}:refs/heads/{branch}"),
                shallow: true,
                describe: format!("branch {branch}"),
            };
        }
        Resolved {
            revision_name: None,
            commit: None,
            fetch_spec: "+HEAD:refs/remotes/origin/HEAD".to_owned(),
            shallow: true,
            describe: "HEAD".to_owned(),
        }
    }

    fn unchanged(
        &self,
        last: Option<&Artifact>,
        store: &ArtifactStore,
        revision: &Revision,
    ) -> Option<Artifact> {
        let last = last?;
        let config = self.config_digest().to_string();
        (last.revision == *revision
            && last.metadata.get(CONFIG_DIGEST_KEY) == Some(&config)
            && store.exists(&last.path))
        .then(|| last.clone())
    }

    fn acquire_blocking(
        &self,
        last: Option<&Artifact>,
        store: &ArtifactStore,
        interrupt: Arc<AtomicBool>,
    ) -> Result<Acquired, SourceError> {
        self.reference_kind()?;
        let url = self.display_url();
        let mut resolved = self.resolve_spec();
        // A commit is immutable: the same commit with the same configuration is the same artifact.
        if let Some(commit) = &self.reference.commit {
            let revision = Revision::git(
                resolved.revision_name.as_deref(),
                &commit.to_ascii_lowercase(),
            )
            .map_err(|e| SourceError::InvalidSpec(e.to_string()))?;
            if let Some(artifact) = self.unchanged(last, store, &revision) {
                return Ok(Acquired::Unchanged(artifact));
            }
        }
        let ws = self.prepare_workspace(interrupt)?;
        let repo = self.open_repo(&ws, "repo.git")?;
        let connect_url = self.connect_url();
        let mut shortcut: Option<Artifact> = None;
        // Semver (unless a ref name or commit takes precedence): list the tags, pick one, then
        // fetch just that tag.
        let semver = self
            .reference
            .semver
            .as_ref()
            .filter(|_| self.reference.name.is_none() && self.reference.commit.is_none());
        if let Some(range) = semver {
            let constraints =
                Constraints::parse(range).map_err(|e| SourceError::InvalidSpec(e.to_string()))?;
            let mut chosen: Option<(String, gix::ObjectId)> = None;
            self.connect_and_fetch(
                &ws,
                &repo,
                &connect_url,
                std::slice::from_ref(&resolved.fetch_spec),
                true,
                &mut |refs| {
                    let tags: Vec<(String, gix::ObjectId)> = refs
                        .iter()
                        .filter_map(|r| {
                            let (name, target) = ref_target(r)?;
                            Some((name.strip_prefix("refs/tags/")?.to_owned(), target))
                        })
                        .collect();
                    if let Some((name, _)) =
                        constraints.select_highest(tags.iter().map(|t| t.0.as_str()))
                    {
                        chosen = tags.iter().find(|t| t.0 == name).cloned();
                    }
                    Ok(false)
                },
            )?;
            let Some((tag, commit)) = chosen else {
                return Err(SourceError::NoMatchingTag {
                    url,
                    range: range.clone(),
                });
            };
            resolved.revision_name = Some(tag.clone());
            resolved.commit = Some(commit);
            resolved.fetch_spec = format!("+refs/tags/{tag}:refs/tags/{tag}");
            resolved.describe = format!("tag {tag} (semver {range})");
            let revision = Revision::git(Some(&tag), &commit.to_string())
                .map_err(|e| SourceError::InvalidSpec(e.to_string()))?;
            if let Some(artifact) = self.unchanged(last, store, &revision) {
                return Ok(Acquired::Unchanged(artifact));
            }
        }
        let wanted_ref = fetch_source(&resolved.fetch_spec);
        let is_commit = self.reference.commit.is_some();
        let mut remote_head_branch: Option<String> = None;
        let fetched = self.connect_and_fetch(
            &ws,
            &repo,
            &connect_url,
            std::slice::from_ref(&resolved.fetch_spec),
            resolved.shallow,
            &mut |refs| {
                if is_commit {
                    if resolved.revision_name.is_some()
                        && !refs
                            .iter()
                            .any(|r| ref_target(r).is_some_and(|(n, _)| n == wanted_ref))
                    {
                        return Err(SourceError::ReferenceNotFound {
                            url: url.clone(),
                            reference: resolved.describe.clone(),
                        });
                    }
                    return Ok(true);
                }
                let Some((_, target)) = refs
                    .iter()
                    .filter_map(ref_target)
                    .find(|(n, _)| *n == wanted_ref)
                else {
                    return Err(SourceError::ReferenceNotFound {
                        url: url.clone(),
                        reference: resolved.describe.clone(),
                    });
                };
                if wanted_ref == "HEAD" {
                    remote_head_branch = refs.iter().find_map(|r| match r {
                        gix::protocol::handshake::Ref::Symbolic {
                            full_ref_name,
                            target,
                            ..
                        } if full_ref_name == "HEAD" => Some(
                            target
                                .to_str_lossy()
                                .trim_start_matches("refs/heads/")
                                .to_owned(),
                        ),
                        _ => None,
                    });
                }
                if let Some(expected) = resolved.commit
                    && expected != target
                {
                    // The tag moved between listing and fetching: take what the remote has now.
                    tracing::debug!(%expected, %target, "tag moved while resolving");
                }
                resolved.commit = Some(target);
                let name = resolved
                    .revision_name
                    .clone()
                    .or_else(|| remote_head_branch.clone())
                    .unwrap_or_else(|| "HEAD".to_owned());
                let revision = Revision::git(Some(&name), &target.to_string())
                    .map_err(|e| SourceError::InvalidSpec(e.to_string()))?;
                if let Some(artifact) = self.unchanged(last, store, &revision) {
                    shortcut = Some(artifact);
                    return Ok(false);
                }
                Ok(true)
            },
        )?;
        if let Some(artifact) = shortcut {
            tracing::debug!(url = %url, revision = %artifact.revision, "remote unchanged, no fetch");
            return Ok(Acquired::Unchanged(artifact));
        }
        debug_assert!(fetched, "a fetch happens unless the short cut was taken");
        let commit_id = match &self.reference.commit {
            Some(hex) => {
                let id = gix::ObjectId::from_hex(hex.to_ascii_lowercase().as_bytes())
                    .map_err(|e| SourceError::InvalidSpec(format!("commit {hex}: {e}")))?;
                if repo.find_commit(id).is_err() {
                    return Err(SourceError::ReferenceNotFound {
                        url,
                        reference: resolved.describe.clone(),
                    });
                }
                id
            }
            None => {
                // Read what was actually fetched; peel annotated tags to the commit.
                let local = repo
                    .find_reference(fetch_destination(&resolved.fetch_spec))
                    .map_err(|e| SourceError::Git {
                        url: url.clone(),
                        message: format!("reading fetched {}: {}", resolved.describe, flatten(&e)),
                    })?
                    .into_fully_peeled_id()
                    .map_err(|e| SourceError::Git {
                        url: url.clone(),
                        message: format!("peeling {}: {}", resolved.describe, flatten(&e)),
                    })?;
                local.detach()
            }
        };
        let name = match (&self.reference.commit, &resolved.revision_name) {
            (Some(_), name) => name.clone(),
            (None, Some(name)) => Some(name.clone()),
            (None, None) => Some(remote_head_branch.unwrap_or_else(|| "HEAD".to_owned())),
        };
        let revision = Revision::git(name.as_deref(), &commit_id.to_string())
            .map_err(|e| SourceError::InvalidSpec(e.to_string()))?;
        let verified = match &self.verify {
            Some(v) => self
                .verify_signatures(&repo, v, commit_id, &resolved.fetch_spec)
                .map_err(|source| SourceError::Verification {
                    url: url.clone(),
                    source,
                })?,
            None => Vec::new(),
        };
        let checkout = ws.dir.path().join("checkout");
        fs::create_dir_all(&checkout).map_err(Self::io(&checkout))?;
        let sparse: Vec<String> = self
            .sparse_checkout
            .iter()
            .map(|d| normalise_dir(d))
            .collect();
        let mut submodules = Vec::new();
        checkout_tree(&repo, commit_id, &checkout, &sparse, &mut submodules).map_err(
            |message| SourceError::Git {
                url: url.clone(),
                message: format!("checking out {}: {message}", commit_id),
            },
        )?;
        if self.recurse_submodules && !submodules.is_empty() {
            self.checkout_submodules(&ws, &checkout, &submodules, 0)?;
        }
        let rules = IgnoreRules::load(&checkout, self.ignore.as_deref())?;
        let file = format!("{commit_id}.tar.gz");
        let (stored, summary) = store.archive_dir(&self.object, &file, &checkout, Some(&rules))?;
        let mut metadata = BTreeMap::new();
        metadata.insert(
            CONFIG_DIGEST_KEY.to_owned(),
            self.config_digest().to_string(),
        );
        if !verified.is_empty() {
            metadata.insert(VERIFIED_KEY.to_owned(), verified.join(", "));
        }
        let artifact = Artifact {
            revision,
            digest: stored.digest,
            size: stored.size,
            url: store.url_for(&stored.path),
            path: stored.path,
            metadata,
            last_update_time: jiff::Timestamp::now(),
        };
        tracing::info!(
            url = %url,
            revision = %artifact.revision,
            digest = %artifact.digest,
            files = summary.files,
            "git artifact written"
        );
        if let Err(error) = store.gc(&self.object, Some(&artifact.path)) {
            tracing::warn!(%error, "artifact garbage collection failed");
        }
        Ok(Acquired::New(artifact))
    }

    /// Verifies what `verify.mode` asks for; returns `<object> by <key fingerprint>` lines.
    fn verify_signatures(
        &self,
        repo: &gix::Repository,
        verify: &crate::signature::GitVerification,
        commit_id: gix::ObjectId,
        fetch_spec: &str,
    ) -> Result<Vec<String>, crate::signature::VerifyError> {
        use crate::signature::{VerifyError, VerifyMode, split_trailing_signature};
        let mut verified = Vec::new();
        let read_err = |object: &str, e: &dyn std::error::Error| VerifyError::Invalid {
            object: object.to_owned(),
            message: format!("reading the object: {e}"),
        };
        if matches!(verify.mode, VerifyMode::Tag | VerifyMode::TagAndHead) {
            let local = fetch_destination(fetch_spec);
            let not_a_tag = || VerifyError::NotATag {
                mode: verify.mode,
                reference: local.to_owned(),
            };
            let Some(tag) = local.strip_prefix("refs/tags/") else {
                return Err(not_a_tag());
            };
            let object = format!("tag {tag}");
            let id = repo
                .find_reference(local)
                .map_err(|e| read_err(&object, &e))?
                .target()
                .try_id()
                .map(|id| id.to_owned())
                .ok_or_else(not_a_tag)?;
            let found = repo.find_object(id).map_err(|e| read_err(&object, &e))?;
            if found.kind != gix::object::Kind::Tag {
                return Err(not_a_tag());
            }
            let Some((signed, signature)) = split_trailing_signature(&found.data) else {
                return Err(VerifyError::Unsigned { object });
            };
            let key =
                crate::signature::verify(&object, signed, signature, &verify.ssh_authorized_keys)?;
            verified.push(format!("{object} by {key}"));
        }
        if matches!(verify.mode, VerifyMode::Head | VerifyMode::TagAndHead) {
            let object = format!("commit {commit_id}");
            let found = repo
                .find_object(commit_id)
                .map_err(|e| read_err(&object, &e))?;
            let (signature, signed) =
                gix::objs::CommitRefIter::signature(&found.data, commit_id.kind())
                    .map_err(|e| read_err(&object, &e))?
                    .ok_or_else(|| VerifyError::Unsigned {
                        object: object.clone(),
                    })?;
            let signed = signed.to_bstring();
            let key = crate::signature::verify(
                &object,
                &signed,
                &signature,
                &verify.ssh_authorized_keys,
            )?;
            verified.push(format!("{object} by {key}"));
        }
        Ok(verified)
    }

    fn checkout_submodules(
        &self,
        ws: &Workspace,
        worktree: &Path,
        gitlinks: &[(PathBuf, gix::ObjectId)],
        depth: usize,
    ) -> Result<(), SourceError> {
        const MAX_DEPTH: usize = 5;
        let url = self.display_url();
        if depth >= MAX_DEPTH {
            return Err(SourceError::Git {
                url,
                message: format!("submodules nested deeper than {MAX_DEPTH} levels"),
            });
        }
        let modules_path = worktree.join(".gitmodules");
        let bytes = fs::read(&modules_path).map_err(Self::io(&modules_path))?;
        let modules =
            gix::submodule::File::from_bytes(&bytes, modules_path.clone(), &Default::default())
                .map_err(|e| SourceError::Git {
                    url: url.clone(),
                    message: format!("parsing .gitmodules: {e}"),
                })?;
        for (index, (path, commit)) in gitlinks.iter().enumerate() {
            let wanted = path.to_string_lossy().replace('\\', "/");
            let name = modules
                .names()
                .find(|n| {
                    modules
                        .path(n)
                        .is_ok_and(|p| p.to_str_lossy().trim_end_matches('/') == wanted)
                })
                .map(|n| n.to_owned());
            let Some(name) = name else {
                return Err(SourceError::Git {
                    url: url.clone(),
                    message: format!("submodule at {wanted} has no entry in .gitmodules"),
                });
            };
            let sub_url = modules.url(name.as_ref()).map_err(|e| SourceError::Git {
                url: url.clone(),
                message: format!("submodule {wanted} URL: {e}"),
            })?;
            let sub_url =
                resolve_submodule_url(&self.connect_url(), &sub_url.to_bstring().to_str_lossy());
            let sub_repo = self.open_repo(ws, &format!("submodule-{depth}-{index}.git"))?;
            let specs = [
                "+refs/heads/*:refs/heads/*".to_owned(),
                "+refs/tags/*:refs/tags/*".to_owned(),
            ];
            self.connect_and_fetch(ws, &sub_repo, &sub_url, &specs, false, &mut |_| Ok(true))?;
            if sub_repo.find_commit(*commit).is_err() {
                return Err(SourceError::ReferenceNotFound {
                    url: redact_url(&sub_url),
                    reference: format!("submodule {wanted} commit {commit}"),
                });
            }
            let dest = worktree.join(path);
            fs::create_dir_all(&dest).map_err(Self::io(&dest))?;
            let mut nested = Vec::new();
            checkout_tree(&sub_repo, *commit, &dest, &[], &mut nested).map_err(|message| {
                SourceError::Git {
                    url: redact_url(&sub_url),
                    message,
                }
            })?;
            if !nested.is_empty() {
                let child = GitSource {
                    url: sub_url.clone(),
                    ..self.clone()
                };
                child.checkout_submodules(ws, &dest, &nested, depth + 1)?;
            }
        }
        Ok(())
    }
}

/// The error our credentials callback raises: the credentials we sent were refused.
#[derive(Debug, thiserror::Error)]
#[error("the server refused the credentials (or required some and none were configured)")]
struct CredentialsRejected;

trait PrivateMode {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateMode for fs::OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

/// Every message in the error's chain, joined.
fn flatten(error: &gix::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in error.iter_errors() {
        let s = e.to_string();
        if !parts.iter().any(|p| p == &s) {
            parts.push(s);
        }
    }
    if parts.is_empty() {
        error.to_string()
    } else {
        parts.join(": ")
    }
}

/// The ref name and the commit (peeled) a listed remote ref points to.
fn ref_target(r: &gix::protocol::handshake::Ref) -> Option<(String, gix::ObjectId)> {
    use gix::protocol::handshake::Ref;
    match r {
        Ref::Peeled {
            full_ref_name,
            object,
            ..
        }
        | Ref::Direct {
            full_ref_name,
            object,
        }
        | Ref::Symbolic {
            full_ref_name,
            object,
            ..
        } => Some((full_ref_name.to_str_lossy().into_owned(), *object)),
        Ref::Unborn { .. } => None,
    }
}

/// `refs/heads/main` from `+refs/heads/main:refs/heads/main`.
fn fetch_source(spec: &str) -> String {
    spec.trim_start_matches('+')
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn fetch_destination(spec: &str) -> &str {
    spec.rsplit(':').next().unwrap_or(spec)
}

/// Resolves a relative submodule URL (`../other.git`) against the superproject's URL.
fn resolve_submodule_url(parent: &str, sub: &str) -> String {
    if !(sub.starts_with("./") || sub.starts_with("../")) {
        return sub.to_owned();
    }
    let mut base = parent.trim_end_matches('/').to_owned();
    let mut rest = sub;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            if let Some(idx) = base.rfind('/') {
                base.truncate(idx);
            }
            rest = r;
        } else {
            break;
        }
    }
    format!("{base}/{rest}")
}

/// Whether `path` (relative, `/`-separated) is inside or on the way to a sparse directory.
fn sparse_wants(sparse: &[String], path: &str, is_dir: bool) -> bool {
    if sparse.is_empty() {
        return true;
    }
    sparse.iter().any(|dir| {
        path == dir
            || path.starts_with(&format!("{dir}/"))
            || (is_dir && dir.starts_with(&format!("{path}/")))
    })
}

/// A file to write during checkout.
struct FileToWrite {
    path: PathBuf,
    oid: gix::ObjectId,
    executable: bool,
}

/// Writes the tree of `commit` into `dest`: regular and executable files and directories;
/// symlinks are left out (artifacts never hold them); gitlinks are collected for submodules.
/// Trees are walked first (creating directories), then blobs are written by a few threads,
/// each with its own handle on the object database.
fn checkout_tree(
    repo: &gix::Repository,
    commit: gix::ObjectId,
    dest: &Path,
    sparse: &[String],
    gitlinks: &mut Vec<(PathBuf, gix::ObjectId)>,
) -> Result<(), String> {
    let commit = repo.find_commit(commit).map_err(|e| flatten(&e))?;
    let tree = commit.tree_id().map_err(|e| flatten(&e))?.detach();
    let mut files = Vec::new();
    walk_tree(repo, tree, dest, "", sparse, gitlinks, &mut files)?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let chunk = files.len().div_ceil(threads).max(1);
    let shared = repo.clone().into_sync();
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                let shared = &shared;
                scope.spawn(move || {
                    let mut repo = shared.to_thread_local();
                    repo.object_cache_size_if_unset(32 * 1024 * 1024);
                    write_files(&repo, part)
                })
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(result) => result?,
                Err(_) => return Err("a checkout thread panicked".to_owned()),
            }
        }
        Ok(())
    })
}

fn write_files(repo: &gix::Repository, files: &[FileToWrite]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    for file in files {
        let object = repo.find_object(file.oid).map_err(|e| flatten(&e))?;
        fs::write(&file.path, &object.data).map_err(|e| format!("{}: {e}", file.path.display()))?;
        if file.executable {
            fs::set_permissions(&file.path, fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("{}: {e}", file.path.display()))?;
        }
    }
    Ok(())
}

fn walk_tree(
    repo: &gix::Repository,
    tree: gix::ObjectId,
    dest: &Path,
    prefix: &str,
    sparse: &[String],
    gitlinks: &mut Vec<(PathBuf, gix::ObjectId)>,
    files: &mut Vec<FileToWrite>,
) -> Result<(), String> {
    use gix::object::tree::EntryKind;
    let entries: Vec<(String, EntryKind, gix::ObjectId)> = {
        let tree = repo.find_tree(tree).map_err(|e| flatten(&e))?;
        let decoded = tree.decode().map_err(|e| e.to_string())?;
        decoded
            .entries
            .iter()
            .map(|e| {
                (
                    e.filename.to_str_lossy().into_owned(),
                    e.mode.kind(),
                    e.oid.to_owned(),
                )
            })
            .collect()
    };
    for (name, kind, oid) in entries {
        // Names from a hostile repository must stay one path component.
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.contains('\0')
        {
            return Err(format!(
                "tree entry {name:?} under {prefix:?} is not a safe file name"
            ));
        }
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let path = dest.join(&name);
        match kind {
            EntryKind::Tree => {
                if !sparse_wants(sparse, &rel, true) {
                    continue;
                }
                fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                walk_tree(repo, oid, &path, &rel, sparse, gitlinks, files)?;
            }
            EntryKind::Blob | EntryKind::BlobExecutable => {
                if sparse_wants(sparse, &rel, false) {
                    files.push(FileToWrite {
                        path,
                        oid,
                        executable: kind == EntryKind::BlobExecutable,
                    });
                }
            }
            EntryKind::Link => {}
            EntryKind::Commit => {
                if sparse_wants(sparse, &rel, true) {
                    gitlinks.push((PathBuf::from(&rel), oid));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_carry_credentials_and_debug_hides_them() {
        let p = ProxySettings {
            address: "socks5://127.0.0.1:1080".into(),
            basic: Some(("u".into(), "s3cret".into())),
        };
        assert_eq!(
            p.url_with_credentials().expect("valid"),
            "socks5://u:s3cret@127.0.0.1:1080"
        );
        assert!(!format!("{p:?}").contains("s3cret"));
        let inline = ProxySettings {
            address: "http://u:inline-pass@proxy:3128".into(),
            basic: None,
        };
        assert_eq!(
            inline.url_with_credentials().expect("valid"),
            "http://u:inline-pass@proxy:3128/"
        );
        assert!(!format!("{inline:?}").contains("inline-pass"));
        assert!(matches!(
            ProxySettings {
                address: "not a url".into(),
                basic: None
            }
            .url_with_credentials(),
            Err(SourceError::InvalidSpec(_))
        ));
    }

    #[test]
    fn submodule_urls_resolve_against_the_parent() {
        assert_eq!(
            resolve_submodule_url("http://h/org/app.git", "../lib.git"),
            "http://h/org/lib.git"
        );
        assert_eq!(
            resolve_submodule_url("file:///srv/app", "./sub"),
            "file:///srv/app/sub"
        );
        assert_eq!(
            resolve_submodule_url("http://h/a", "https://x/y"),
            "https://x/y"
        );
    }

    #[test]
    fn sparse_selection() {
        let sparse = vec!["apps/web".to_owned()];
        assert!(sparse_wants(&sparse, "apps", true));
        assert!(sparse_wants(&sparse, "apps/web", true));
        assert!(sparse_wants(&sparse, "apps/web/a.yaml", false));
        assert!(!sparse_wants(&sparse, "apps/api", true));
        assert!(!sparse_wants(&sparse, "README.md", false));
        assert!(!sparse_wants(&sparse, "apps/web.yaml", false));
    }

    #[test]
    fn auth_debug_redacts_secrets() {
        let auth = GitAuth {
            basic: Some(("user".into(), "hunter2".into())),
            bearer_token: Some("tok-secret".into()),
            ssh_passphrase: Some("pass-secret".into()),
            ..Default::default()
        };
        let shown = format!("{auth:?}");
        assert!(shown.contains("user"));
        assert!(
            !shown.contains("hunter2")
                && !shown.contains("tok-secret")
                && !shown.contains("pass-secret")
        );
        assert_eq!(redact_url("https://u:p@h/r.git"), "https://h/r.git");
        assert_eq!(redact_url("https://tok@h/r.git"), "https://h/r.git");
        assert_eq!(redact_url("ssh://git:pw@h/r.git"), "ssh://git@h/r.git");
    }

    #[test]
    fn config_digest_tracks_ignore_sparse_and_submodules() {
        let obj = ObjectRef::new("gitrepository", "ns", "n").expect("valid");
        let a = GitSource::new("file:///x", obj);
        let mut b = a.clone();
        assert_eq!(a.config_digest(), b.config_digest());
        b.ignore = Some("*.md".into());
        assert_ne!(a.config_digest(), b.config_digest());
        let mut c = a.clone();
        c.sparse_checkout = vec!["apps".into()];
        assert_ne!(a.config_digest(), c.config_digest());
        let mut d = a.clone();
        d.recurse_submodules = true;
        assert_ne!(a.config_digest(), d.config_digest());
    }
}
