//! `gitops source …`: acquire sources as artifacts, serve a store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use gitops_source::{
    ArtifactServer, ArtifactStore, GitAuth, GitReference, GitSource, ObjectRef, ProxySettings,
    Source as _, SourceError,
};

/// The source kinds.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Acquire a Git repository at a reference as an artifact; prints
    /// `{"revision","digest","size","path"}`.
    Git(GitArgs),
    /// Acquire an OCI artifact (Flux's OCIRepository); prints the same JSON as `git`.
    Oci(OciArgs),
    /// Acquire a chart from a Helm repository (HTTP(S) index or `oci://`); prints the same
    /// JSON as `git`.
    Helm(HelmArgs),
    /// Acquire an S3-compatible bucket; prints the same JSON as `git`.
    Bucket(BucketArgs),
    /// Serve an artifact store over HTTP (GET and HEAD of files, ranges; no listings).
    Serve {
        /// The store directory.
        dir: PathBuf,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:9090")]
        addr: std::net::SocketAddr,
    },
}

/// Arguments of `gitops source git`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("reference").args(["branch", "tag", "semver", "ref_name"])))]
pub struct GitArgs {
    /// The repository URL (`https://`, `http://`, `ssh://`, `git://`, `file://`).
    pub url: String,
    /// A branch.
    #[arg(long)]
    pub branch: Option<String>,
    /// A tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// A semver range over the tags (Masterminds syntax, e.g. `>=1.0.0 <2.0.0`).
    #[arg(long)]
    pub semver: Option<String>,
    /// A full reference name, e.g. `refs/pull/1/head`.
    #[arg(long)]
    pub ref_name: Option<String>,
    /// A commit (alone, or with --branch).
    #[arg(long, conflicts_with_all = ["tag", "semver", "ref_name"])]
    pub commit: Option<String>,
    /// An ignore pattern (gitignore syntax); repeatable; replaces Flux's default exclusions.
    #[arg(long = "ignore", value_name = "PATTERN")]
    pub ignore: Vec<String>,
    /// Only this directory ends up in the artifact; repeatable.
    #[arg(long = "sparse", value_name = "DIR")]
    pub sparse: Vec<String>,
    /// Fetch and include submodules, recursively.
    #[arg(long)]
    pub recurse_submodules: bool,
    /// HTTP Basic user name.
    #[arg(long, requires = "password", conflicts_with = "bearer_token")]
    pub username: Option<String>,
    /// HTTP Basic password (or set GITOPS_GIT_PASSWORD).
    #[arg(
        long,
        env = "GITOPS_GIT_PASSWORD",
        hide_env_values = true,
        requires = "username"
    )]
    pub password: Option<String>,
    /// HTTP bearer token (or set GITOPS_GIT_BEARER_TOKEN).
    #[arg(long, env = "GITOPS_GIT_BEARER_TOKEN", hide_env_values = true)]
    pub bearer_token: Option<String>,
    /// PEM file of CA certificates to trust for HTTPS.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS.
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM client key for mutual TLS.
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// SSH private key file.
    #[arg(long, requires = "known_hosts")]
    pub ssh_key: Option<PathBuf>,
    /// Passphrase of the SSH key (or set GITOPS_SSH_PASSPHRASE).
    #[arg(
        long,
        env = "GITOPS_SSH_PASSPHRASE",
        hide_env_values = true,
        requires = "ssh_key"
    )]
    pub ssh_passphrase: Option<String>,
    /// known_hosts file; required for SSH.
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// An HTTP(S) or SOCKS5 proxy (default: HTTPS_PROXY / HTTP_PROXY / ALL_PROXY).
    #[arg(long)]
    pub proxy: Option<String>,
    /// Verify signatures before building the artifact: the commit (`head`), the annotated tag
    /// (`tag`) or both (`tag-and-head`); SSH signatures only.
    #[arg(long, value_enum, requires = "verify_keys")]
    pub verify: Option<VerifyArg>,
    /// Trusted SSH public keys (authorized_keys format) for `--verify`.
    #[arg(long, requires = "verify")]
    pub verify_keys: Option<PathBuf>,
    /// Limit for each Git operation (`30s`, `2m`, or seconds).
    #[arg(long, default_value = "60s", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Namespace of the artifact in the store.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Name of the artifact in the store (default: the repository's name).
    #[arg(long)]
    pub name: Option<String>,
    /// The artifact store directory; the archive lands in `gitrepository/<namespace>/<name>/`.
    #[arg(long)]
    pub out: PathBuf,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 30s or 2m"))?;
    match unit {
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("invalid duration {text:?}: unit must be s, m or h")),
    }
}

/// Runs `gitops source`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Git(args) => git(args),
        Command::Serve { dir, addr } => serve(dir, addr),
        Command::Oci(args) => oci(args),
        Command::Helm(args) => helm(args),
        Command::Bucket(args) => bucket(args),
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// The repository name from its URL: `https://h/org/app.git` gives `app`.
fn repo_name(url: &str) -> String {
    let last = url
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("repository");
    let name: String = last
        .trim_end_matches(".git")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() {
        "repository".to_owned()
    } else {
        name
    }
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What `--verify` checks.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum VerifyArg {
    /// The commit.
    Head,
    /// The annotated tag.
    Tag,
    /// The annotated tag and the commit.
    TagAndHead,
}

fn git(args: GitArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.clone().unwrap_or_else(|| repo_name(&args.url));
    let object = ObjectRef::new("GitRepository", &args.namespace, &name)?;
    let mut source = GitSource::new(args.url.clone(), object);
    source.reference = GitReference {
        branch: args.branch,
        tag: args.tag,
        semver: args.semver,
        name: args.ref_name,
        commit: args.commit,
    };
    if !args.ignore.is_empty() {
        source.ignore = Some(args.ignore.join("\n"));
    }
    source.sparse_checkout = args.sparse;
    source.recurse_submodules = args.recurse_submodules;
    source.timeout = args.timeout;
    source.proxy = args.proxy.map(|address| ProxySettings {
        address,
        basic: None,
    });
    if let (Some(mode), Some(keys)) = (args.verify, &args.verify_keys) {
        use gitops_source::{GitVerification, VerifyMode};
        source.verify = Some(GitVerification {
            mode: match mode {
                VerifyArg::Head => VerifyMode::Head,
                VerifyArg::Tag => VerifyMode::Tag,
                VerifyArg::TagAndHead => VerifyMode::TagAndHead,
            },
            ssh_authorized_keys: String::from_utf8(read(keys, "trusted keys")?)
                .context("trusted keys are not UTF-8")?,
        });
    }
    source.auth = GitAuth {
        basic: args.username.zip(args.password),
        bearer_token: args.bearer_token,
        ca_pem: args
            .ca_file
            .as_deref()
            .map(|p| read(p, "CA file"))
            .transpose()?,
        client_identity_pem: match (&args.client_cert, &args.client_key) {
            (Some(c), Some(k)) => Some((read(c, "client certificate")?, read(k, "client key")?)),
            _ => None,
        },
        ssh_private_key: args
            .ssh_key
            .as_deref()
            .map(|p| read(p, "SSH key"))
            .transpose()?,
        ssh_passphrase: args.ssh_passphrase,
        known_hosts: args
            .known_hosts
            .as_deref()
            .map(|p| read(p, "known_hosts"))
            .transpose()?,
    };
    let store = ArtifactStore::new(&args.out)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let acquired = runtime
        .block_on(source.acquire(None, &store))
        .map_err(|e: SourceError| anyhow::anyhow!("{}: {e}", e.reason()))?;
    let artifact = acquired.artifact();
    let path = store.local_path(&artifact.path);
    println!(
        "{{\"revision\":{},\"digest\":{},\"size\":{},\"path\":{}}}",
        json_string(&artifact.revision.to_string()),
        json_string(&artifact.digest.to_string()),
        artifact.size,
        json_string(&path.to_string_lossy()),
    );
    Ok(ExitCode::SUCCESS)
}

fn serve(dir: PathBuf, addr: std::net::SocketAddr) -> anyhow::Result<ExitCode> {
    let store = ArtifactStore::new(&dir)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let bound = listener.local_addr()?;
        eprintln!("serving {} on http://{bound}/", store.root().display());
        ArtifactServer::new(&store)
            .serve(listener, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving artifacts")?;
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

/// Arguments of `gitops source oci`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("reference").args(["tag", "semver", "digest"])))]
pub struct OciArgs {
    /// The repository, `oci://host[:port]/repo`.
    pub url: String,
    /// A tag (default `latest`).
    #[arg(long)]
    pub tag: Option<String>,
    /// A semver range over the tags (Masterminds syntax).
    #[arg(long)]
    pub semver: Option<String>,
    /// A regular expression the tags must match before the semver range applies.
    #[arg(long, requires = "semver")]
    pub semver_filter: Option<String>,
    /// A manifest digest `sha256:<hex>`.
    #[arg(long)]
    pub digest: Option<String>,
    /// The layer media type to select (default: the first layer).
    #[arg(long)]
    pub layer_media_type: Option<String>,
    /// Store the selected layer verbatim instead of extracting it.
    #[arg(long)]
    pub copy: bool,
    /// How to reach the registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// An ignore pattern (gitignore syntax); repeatable; replaces Flux's default exclusions.
    #[arg(long = "ignore", value_name = "PATTERN")]
    pub ignore: Vec<String>,
    /// Limit for the whole pull (`30s`, `2m`, or seconds).
    #[arg(long, default_value = "60s", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Namespace of the artifact in the store.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Name of the artifact in the store (default: the repository's last path component).
    #[arg(long)]
    pub name: Option<String>,
    /// The artifact store directory.
    #[arg(long)]
    pub out: PathBuf,
}

/// How to reach an OCI registry: credentials, plain HTTP, trusted CAs (shared by
/// `gitops source oci` and `gitops push artifact`).
#[derive(Debug, clap::Args)]
pub struct RegistryArgs {
    /// Registry user name.
    #[arg(long, requires = "password", conflicts_with = "docker_config")]
    pub username: Option<String>,
    /// Registry password (or set GITOPS_OCI_PASSWORD).
    #[arg(
        long,
        env = "GITOPS_OCI_PASSWORD",
        hide_env_values = true,
        requires = "username"
    )]
    pub password: Option<String>,
    /// A docker config.json to take the registry's credentials from (`auths`, and the
    /// `credHelpers` / `credsStore` credential helpers, run as the docker CLI runs them).
    #[arg(long)]
    pub docker_config: Option<PathBuf>,
    /// Talk plain HTTP to the registry.
    #[arg(long)]
    pub insecure: bool,
    /// PEM file of CA certificates to trust.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS with the registry.
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM client key for mutual TLS with the registry.
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// An HTTP(S) or SOCKS5 proxy for the registry (`socks5://user:pass@host:port`).
    #[arg(long)]
    pub proxy: Option<String>,
}

impl RegistryArgs {
    /// The proxy from `--proxy`, if any.
    pub fn proxy(&self) -> Option<ProxySettings> {
        self.proxy.clone().map(|address| ProxySettings {
            address,
            basic: None,
        })
    }

    /// The credentials for `registry`: Basic, from a docker config.json, or anonymous.
    pub fn auth(&self, registry: &str) -> anyhow::Result<gitops_source::oci::OciAuth> {
        use gitops_source::oci::OciAuth;
        Ok(
            match (&self.username, &self.password, &self.docker_config) {
                (Some(username), Some(password), _) => OciAuth::Basic {
                    username: username.clone(),
                    password: password.clone(),
                },
                (_, _, Some(file)) => OciAuth::from_docker_config_file(file, registry)?,
                _ => OciAuth::Anonymous,
            },
        )
    }

    /// The CA certificates to trust, read from `--ca-file`.
    pub fn ca_pem(&self) -> anyhow::Result<Option<Vec<u8>>> {
        self.ca_file
            .as_deref()
            .map(|p| read(p, "CA file"))
            .transpose()
    }

    /// The client certificate and key for mutual TLS, read from `--client-cert` and
    /// `--client-key`.
    pub fn client_identity_pem(&self) -> anyhow::Result<Option<(Vec<u8>, Vec<u8>)>> {
        match (&self.client_cert, &self.client_key) {
            (Some(c), Some(k)) => Ok(Some((
                read(c, "client certificate")?,
                read(k, "client key")?,
            ))),
            _ => Ok(None),
        }
    }
}

/// Arguments of `gitops source helm`.
#[derive(Debug, clap::Args)]
#[command(disable_version_flag = true)]
pub struct HelmArgs {
    /// The repository: `http(s)://…` (an index.yaml) or `oci://host/path`.
    pub repo_url: String,
    /// The chart name.
    pub chart: String,
    /// A Masterminds version constraint (default `*`: the newest stable version).
    #[arg(long, default_value = "*")]
    pub version: String,
    /// A values file inside the chart, merged in order into values.yaml; repeatable.
    #[arg(long = "values-file", value_name = "PATH")]
    pub values_files: Vec<String>,
    /// Repository user name.
    #[arg(long, requires = "password")]
    pub username: Option<String>,
    /// Repository password (or set GITOPS_HELM_PASSWORD).
    #[arg(
        long,
        env = "GITOPS_HELM_PASSWORD",
        hide_env_values = true,
        requires = "username"
    )]
    pub password: Option<String>,
    /// Plain HTTP for an `oci://` registry.
    #[arg(long)]
    pub insecure: bool,
    /// PEM file of CA certificates to trust.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS with the repository or registry.
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM client key for mutual TLS with the repository or registry.
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Limit for each request (`30s`, `2m`, or seconds).
    #[arg(long, default_value = "60s", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Namespace of the artifact in the store.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The artifact store directory.
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `gitops source bucket`.
#[derive(Debug, clap::Args)]
pub struct BucketArgs {
    /// `host[:port]` or an `http(s)://` URL.
    #[arg(long)]
    pub endpoint: String,
    /// The bucket name.
    #[arg(long)]
    pub bucket: String,
    /// Only keys under this prefix.
    #[arg(long)]
    pub prefix: Option<String>,
    /// The region to sign for.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Access key id.
    #[arg(long, requires = "secret_key")]
    pub access_key: Option<String>,
    /// Secret access key (or set GITOPS_BUCKET_SECRET_KEY).
    #[arg(
        long,
        env = "GITOPS_BUCKET_SECRET_KEY",
        hide_env_values = true,
        requires = "access_key"
    )]
    pub secret_key: Option<String>,
    /// Plain HTTP.
    #[arg(long)]
    pub insecure: bool,
    /// PEM file of CA certificates to trust.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// An HTTP(S) or SOCKS5 proxy for the endpoint (`socks5://user:pass@host:port`).
    #[arg(long)]
    pub proxy: Option<String>,
    /// An ignore pattern (gitignore syntax); repeatable; replaces Flux's default exclusions.
    #[arg(long = "ignore", value_name = "PATTERN")]
    pub ignore: Vec<String>,
    /// Limit for the whole download (`30s`, `2m`, or seconds).
    #[arg(long, default_value = "60s", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Namespace of the artifact in the store.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Name of the artifact in the store (default: the bucket name).
    #[arg(long)]
    pub name: Option<String>,
    /// The artifact store directory.
    #[arg(long)]
    pub out: PathBuf,
}

/// Acquires `source` into the store at `out` and prints `{"revision","digest","size","path"}`.
fn acquire_and_print(source: &dyn gitops_source::Source, out: &Path) -> anyhow::Result<ExitCode> {
    let store = ArtifactStore::new(out)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let acquired = runtime
        .block_on(source.acquire(None, &store))
        .map_err(|e: SourceError| anyhow::anyhow!("{}: {e}", e.reason()))?;
    let artifact = acquired.artifact();
    let path = store.local_path(&artifact.path);
    println!(
        "{{\"revision\":{},\"digest\":{},\"size\":{},\"path\":{}}}",
        json_string(&artifact.revision.to_string()),
        json_string(&artifact.digest.to_string()),
        artifact.size,
        json_string(&path.to_string_lossy()),
    );
    Ok(ExitCode::SUCCESS)
}

fn oci(args: OciArgs) -> anyhow::Result<ExitCode> {
    use gitops_source::oci::{LayerOperation, OciReference, OciRepositoryUrl, OciSource};
    let repo = OciRepositoryUrl::parse(&args.url)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| repo_name(&repo.repository));
    let mut source = OciSource::new(
        args.url.clone(),
        ObjectRef::new("OCIRepository", &args.namespace, &name)?,
    );
    source.reference = OciReference {
        tag: args.tag,
        semver: args.semver,
        semver_filter: args.semver_filter,
        digest: args.digest,
    };
    source.layer_selector.media_type = args.layer_media_type;
    if args.copy {
        source.layer_selector.operation = LayerOperation::Copy;
    }
    source.auth = args.registry.auth(&repo.registry)?;
    source.insecure = args.registry.insecure;
    source.tls.ca_pem = args.registry.ca_pem()?;
    source.tls.client_identity_pem = args.registry.client_identity_pem()?;
    source.proxy = args.registry.proxy();
    if !args.ignore.is_empty() {
        source.ignore = Some(args.ignore.join("\n"));
    }
    source.timeout = args.timeout;
    acquire_and_print(&source, &args.out)
}

fn helm(args: HelmArgs) -> anyhow::Result<ExitCode> {
    use gitops_source::oci::{OciAuth, OciSource};
    use gitops_source::{HelmChartSource, HelmRepositorySource};
    let object = ObjectRef::new("HelmChart", &args.namespace, &args.chart)?;
    let ca_pem = args
        .ca_file
        .as_deref()
        .map(|p| read(p, "CA file"))
        .transpose()?;
    let client_identity_pem = match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => {
            Some((read(cert, "client certificate")?, read(key, "client key")?))
        }
        _ => None,
    };
    if args.repo_url.starts_with("oci://") {
        // Helm stores charts pushed to `oci://host/path` as `host/path/<chart>:<version>`.
        let url = format!("{}/{}", args.repo_url.trim_end_matches('/'), args.chart);
        let mut registry = OciSource::new(
            url,
            ObjectRef::new("HelmRepository", &args.namespace, &args.chart)?,
        );
        registry.auth = match (args.username, args.password) {
            (Some(username), Some(password)) => OciAuth::Basic { username, password },
            _ => OciAuth::Anonymous,
        };
        registry.insecure = args.insecure;
        registry.tls.ca_pem = ca_pem;
        registry.tls.client_identity_pem = client_identity_pem;
        registry.timeout = args.timeout;
        let mut source = HelmChartSource::from_oci(registry, args.version, object);
        source.values_files = args.values_files;
        return acquire_and_print(&source, &args.out);
    }
    let repo_object = ObjectRef::new("HelmRepository", &args.namespace, &args.chart)?;
    let mut repository = HelmRepositorySource::new(args.repo_url.clone(), repo_object);
    repository.http.basic = args.username.zip(args.password);
    repository.http.ca_pem = ca_pem;
    repository.http.client_identity_pem = client_identity_pem;
    repository.http.timeout = args.timeout;
    let mut source = HelmChartSource::from_repository(repository, args.chart, args.version, object);
    source.values_files = args.values_files;
    acquire_and_print(&source, &args.out)
}

fn bucket(args: BucketArgs) -> anyhow::Result<ExitCode> {
    use gitops_source::{BucketCredentials, BucketSource};
    let name = args.name.clone().unwrap_or_else(|| repo_name(&args.bucket));
    let mut source = BucketSource::new(
        args.endpoint,
        args.bucket,
        ObjectRef::new("Bucket", &args.namespace, &name)?,
    );
    source.region = args.region;
    source.prefix = args.prefix;
    source.credentials = args
        .access_key
        .zip(args.secret_key)
        .map(|(access_key, secret_key)| BucketCredentials {
            access_key,
            secret_key,
        });
    source.insecure = args.insecure;
    source.proxy = args.proxy.map(|address| ProxySettings {
        address,
        basic: None,
    });
    source.ca_pem = args
        .ca_file
        .as_deref()
        .map(|p| read(p, "CA file"))
        .transpose()?;
    if !args.ignore.is_empty() {
        source.ignore = Some(args.ignore.join("\n"));
    }
    source.timeout = args.timeout;
    acquire_and_print(&source, &args.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_durations() {
        assert_eq!(repo_name("https://h/org/App.git"), "app");
        assert_eq!(repo_name("ssh://git@h:22/org/my_repo/"), "my_repo");
        assert_eq!(parse_seconds("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_seconds("45"), Ok(Duration::from_secs(45)));
        assert!(parse_seconds("5d").is_err());
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }
}
