//! `gitops source helm` as a real process: a chart from an HTTP repository built by the helm
//! oracle (`helm package` + `helm repo index`, served by `HelmRepoServer`) and from an `oci://`
//! registry the oracle pushed to (`helm push` to Debian's docker-registry). It prints Flux's
//! HelmChart revision (the bare chart version) with the package's digest, and a missing
//! version exits non-zero with the typed reason. Needs `GITOPS_HELM` (scripts/test sets it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gitops_source::Digest;
use gitops_testkit::servers::{HelmRepoServer, OciRegistry};
use serde_json::Value;

const GITOPS: &str = env!("CARGO_BIN_EXE_gitops");

fn helm(args: &[&str]) {
    let helm = std::env::var_os("GITOPS_HELM")
        .expect("GITOPS_HELM must point at the helm 3.17.3 oracle (scripts/test sets it)");
    let home = tempfile::tempdir().expect("tempdir");
    let out = Command::new(helm)
        .args(args)
        .env("HELM_CONFIG_HOME", home.path())
        .env("HELM_CACHE_HOME", home.path())
        .env("HELM_DATA_HOME", home.path())
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A chart `app` packaged by the oracle at 1.0.0, 1.1.0 and 2.0.0-rc.1, indexed.
fn packaged_repo() -> tempfile::TempDir {
    let src = tempfile::tempdir().expect("tempdir");
    let chart = src.path().join("app");
    std::fs::create_dir_all(chart.join("templates")).expect("mkdir");
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: app\nversion: 0.1.0\n",
    )
    .expect("write");
    std::fs::write(chart.join("values.yaml"), "replicas: 1\n").expect("write");
    std::fs::write(
        chart.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  replicas: \"{{ .Values.replicas }}\"\n",
    )
    .expect("write");
    let repo = tempfile::tempdir().expect("tempdir");
    let dir = repo.path().to_str().expect("utf-8");
    for version in ["1.0.0", "1.1.0", "2.0.0-rc.1"] {
        helm(&[
            "package",
            chart.to_str().expect("utf-8"),
            "--version",
            version,
            "-d",
            dir,
        ]);
    }
    helm(&["repo", "index", dir]);
    repo
}

fn source_helm(repo_url: &str, out: &Path, extra: &[&str]) -> Output {
    Command::new(GITOPS)
        .args(["source", "helm", repo_url, "app"])
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .expect("gitops source helm runs")
}

/// Checks the printed JSON: revision, the digest of the stored file, its size and name.
fn assert_printed(run: &Output, revision: &str, package: &Path) -> PathBuf {
    assert!(
        run.status.success(),
        "gitops source helm failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json: Value = serde_json::from_slice(&run.stdout).expect("one JSON object on stdout");
    assert_eq!(json["revision"], revision);
    let path = PathBuf::from(json["path"].as_str().expect("path"));
    let stored = std::fs::read(&path).expect("the printed path exists");
    let expected = std::fs::read(package).expect("the oracle's package");
    // No values files: the package is stored byte for byte.
    assert_eq!(stored, expected);
    assert_eq!(json["digest"], Digest::sha256_of(&expected).to_string());
    assert_eq!(json["size"].as_u64(), Some(expected.len() as u64));
    assert_eq!(
        path.file_name().and_then(|n| n.to_str()),
        Some(format!("app-{revision}.tgz").as_str())
    );
    path
}

fn assert_fails_with(run: &Output, reason: &str) {
    assert!(!run.status.success(), "must exit non-zero");
    assert!(run.stdout.is_empty(), "nothing printed on stdout");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains(reason), "expected {reason}: {stderr}");
}

#[test]
fn chart_from_an_http_repository() {
    let repo = packaged_repo();
    let server = HelmRepoServer::start(repo.path()).expect("helm repository server");
    let out = tempfile::tempdir().expect("tempdir");

    let newest = source_helm(&server.url(), out.path(), &[]);
    assert_printed(&newest, "1.1.0", &repo.path().join("app-1.1.0.tgz"));
    let pre = source_helm(&server.url(), out.path(), &["--version", ">=2.0.0-0"]);
    assert_printed(&pre, "2.0.0-rc.1", &repo.path().join("app-2.0.0-rc.1.tgz"));

    let missing = source_helm(&server.url(), out.path(), &["--version", "9.9.9"]);
    assert_fails_with(&missing, "IndexationFailed");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("9.9.9"));
}

#[test]
fn chart_from_an_oci_registry_pushed_by_helm() {
    let repo = packaged_repo();
    let registry = OciRegistry::start().expect("docker-registry");
    for version in ["1.0.0", "1.1.0", "2.0.0-rc.1"] {
        let package = repo.path().join(format!("app-{version}.tgz"));
        helm(&[
            "push",
            package.to_str().expect("utf-8"),
            &registry.oci_url("charts"),
            "--plain-http",
        ]);
    }
    let url = registry.oci_url("charts");
    let out = tempfile::tempdir().expect("tempdir");

    let newest = source_helm(&url, out.path(), &["--insecure"]);
    assert_printed(&newest, "1.1.0", &repo.path().join("app-1.1.0.tgz"));
    let exact = source_helm(&url, out.path(), &["--insecure", "--version", "1.0.0"]);
    assert_printed(&exact, "1.0.0", &repo.path().join("app-1.0.0.tgz"));

    let missing = source_helm(&url, out.path(), &["--insecure", "--version", "9.9.9"]);
    assert_fails_with(&missing, "ReferenceNotFound");
    let no_match = source_helm(&url, out.path(), &["--insecure", "--version", ">=3"]);
    assert_fails_with(&no_match, "NoMatchingTag");
}

/// Copies the files below `from` into `to`, keeping relative paths.
fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.expect("walk");
        let target = to.join(entry.path().strip_prefix(from).expect("below the root"));
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// `--ca-file`, `--client-cert` and `--client-key` against an HTTPS repository and an `oci://`
/// registry that both require client certificates: with them the chart is stored; with only
/// the CA the TLS handshake is refused (NetworkError), and a key without its certificate is a
/// usage error.
#[test]
fn chart_over_mutual_tls_with_client_certificate_flags() {
    let repo = packaged_repo();
    let registry = OciRegistry::builder()
        .require_client_certificates()
        .start()
        .expect("docker-registry with clientcas");
    let ca_file = registry.ca_pem_path().expect("CA file").to_path_buf();
    let issued = registry.client_cert().expect("client certificate").clone();
    let (ca, cert, key) = (
        ca_file.to_str().expect("utf-8"),
        issued.cert_path.to_str().expect("utf-8"),
        issued.key_path.to_str().expect("utf-8"),
    );
    let out = tempfile::tempdir().expect("tempdir");

    // HTTPS: the repository server shares the registry's CA.
    let server = HelmRepoServer::builder()
        .tls_with_ca(registry.ca().expect("CA"))
        .require_client_cert()
        .start(repo.path())
        .expect("helm repository server");
    let mtls = source_helm(
        &server.url(),
        out.path(),
        &["--ca-file", ca, "--client-cert", cert, "--client-key", key],
    );
    assert_printed(&mtls, "1.1.0", &repo.path().join("app-1.1.0.tgz"));
    let ca_only = source_helm(&server.url(), out.path(), &["--ca-file", ca]);
    assert_fails_with(&ca_only, "NetworkError");
    let half = source_helm(
        &server.url(),
        out.path(),
        &["--ca-file", ca, "--client-key", key],
    );
    assert!(!half.status.success());
    assert!(
        String::from_utf8_lossy(&half.stderr).contains("--client-cert"),
        "{}",
        String::from_utf8_lossy(&half.stderr)
    );

    // oci://: helm 3.17 talks plain HTTP to 127.0.0.1, so the oracle pushes to a plain
    // registry whose storage (docker-registry's filesystem layout) is copied into the
    // mutual-TLS one.
    let plain = OciRegistry::start().expect("docker-registry");
    let package = repo.path().join("app-1.0.0.tgz");
    helm(&[
        "push",
        package.to_str().expect("utf-8"),
        &plain.oci_url("charts"),
        "--plain-http",
    ]);
    copy_tree(plain.storage_dir(), registry.storage_dir());
    let url = registry.oci_url("charts");
    let mtls = source_helm(
        &url,
        out.path(),
        &["--ca-file", ca, "--client-cert", cert, "--client-key", key],
    );
    assert_printed(&mtls, "1.0.0", &package);
    let ca_only = source_helm(&url, out.path(), &["--ca-file", ca]);
    assert_fails_with(&ca_only, "NetworkError");
}
