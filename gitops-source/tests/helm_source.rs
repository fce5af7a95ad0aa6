//! `HelmRepositorySource` and `HelmChartSource` against a Helm repository built by the helm
//! 3.17.3 oracle (`helm package` + `helm repo index`) and served by `HelmRepoServer`; packaged
//! charts are checked by rendering them with the oracle. Needs `GITOPS_HELM` (scripts/test
//! exports it).

use std::path::{Path, PathBuf};
use std::process::Command;

use gitops_source::helm::{CHART_REVISION_KEY, HelmError};
use gitops_source::{
    Acquired, ArtifactStore, Digest, HelmChartSource, HelmRepositorySource, ObjectRef,
    ReconcileStrategy, Revision, Source, SourceError,
};
use gitops_testkit::servers::HelmRepoServer;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn helm() -> PathBuf {
    PathBuf::from(
        std::env::var_os("GITOPS_HELM")
            .expect("GITOPS_HELM must point at the helm 3.17.3 oracle (scripts/test sets it)"),
    )
}

fn run_helm(args: &[&str]) -> String {
    let home = tempfile::tempdir().expect("tmp");
    let out = Command::new(helm())
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
    String::from_utf8(out.stdout).expect("utf-8")
}

fn fixture_chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/helm/app")
}

/// A repository with app 1.0.0, 1.1.0 and 2.0.0-rc.1, indexed by the oracle.
fn build_repo() -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("tmp");
    let chart = fixture_chart();
    for version in ["1.0.0", "1.1.0", "2.0.0-rc.1"] {
        run_helm(&[
            "package",
            chart.to_str().expect("utf-8"),
            "--version",
            version,
            "-d",
            repo.path().to_str().expect("utf-8"),
        ]);
    }
    run_helm(&["repo", "index", repo.path().to_str().expect("utf-8")]);
    repo
}

fn object(kind: &str) -> ObjectRef {
    ObjectRef::new(kind, "flux-system", "app").expect("valid")
}

fn template(package: &Path) -> String {
    run_helm(&["template", "rel", package.to_str().expect("utf-8")])
}

#[tokio::test]
async fn repository_index_revision_size_limit_and_unchanged() -> TestResult {
    let repo = build_repo();
    let server = HelmRepoServer::start(repo.path())?;
    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;
    let mut source = HelmRepositorySource::new(server.url(), object("HelmRepository"));
    let artifact = source.acquire(None, &store).await?.into_artifact();
    let bytes = std::fs::read(repo.path().join("index.yaml"))?;
    assert_eq!(artifact.revision, Revision::bare(Digest::sha256_of(&bytes)));
    assert_eq!(std::fs::read(store.local_path(&artifact.path))?, bytes);
    assert!(
        artifact
            .file_name()
            .is_some_and(|n| n == format!("index-{}.yaml", Digest::sha256_of(&bytes).hex()))
    );
    assert_eq!(
        source.acquire(Some(&artifact), &store).await?,
        Acquired::Unchanged(artifact.clone())
    );

    source.max_index_bytes = 64;
    match source.acquire(None, &store).await {
        Err(SourceError::Helm(HelmError::TooLarge { limit: 64, .. })) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }

    // Not an index: a typed error, nothing stored.
    std::fs::write(repo.path().join("index.yaml"), "kind: ConfigMap\n")?;
    source.max_index_bytes = 1 << 20;
    match source.acquire(None, &store).await {
        Err(err @ SourceError::Helm(HelmError::InvalidIndex { .. })) => {
            assert_eq!(err.reason(), "IndexationFailed")
        }
        other => panic!("expected InvalidIndex, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn chart_from_repository_newest_stable_ranges_and_missing() -> TestResult {
    let repo = build_repo();
    let server = HelmRepoServer::start(repo.path())?;
    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;
    let repository = HelmRepositorySource::new(server.url(), object("HelmRepository"));
    let mut source =
        HelmChartSource::from_repository(repository.clone(), "app", "*", object("HelmChart"));
    let a = source.acquire(None, &store).await?.into_artifact();
    // Flux's HelmChart revision: the bare chart version, no digest.
    assert_eq!(a.revision, Revision::chart_version("1.1.0")?);
    assert_eq!(a.revision.to_string(), "1.1.0");
    assert_eq!(a.metadata[CHART_REVISION_KEY], "1.1.0");
    assert_eq!(a.file_name(), Some("app-1.1.0.tgz"));
    // Without values files the package is stored verbatim.
    let original = std::fs::read(repo.path().join("app-1.1.0.tgz"))?;
    assert_eq!(a.digest, Digest::sha256_of(&original));
    assert!(template(&store.local_path(&a.path)).contains("image: \"nginx:1.0\""));

    // Same version again: no chart download.
    let served_before = server.requests().len();
    assert_eq!(
        source.acquire(Some(&a), &store).await?,
        Acquired::Unchanged(a.clone())
    );
    let tgz_requests = server.requests()[served_before..]
        .iter()
        .filter(|r| r.path.ends_with(".tgz"))
        .count();
    assert_eq!(tgz_requests, 0);

    let mut pre = HelmChartSource::from_repository(
        repository.clone(),
        "app",
        ">=2.0.0-0",
        object("HelmChart"),
    );
    pre.max_chart_bytes = 1 << 20;
    let b = pre.acquire(None, &store).await?.into_artifact();
    assert_eq!(b.revision.to_string(), "2.0.0-rc.1");

    source.origin = gitops_source::ChartOrigin::Repository {
        repository: repository.clone(),
        chart: "app".into(),
        version: ">=3".into(),
    };
    assert!(matches!(
        source.acquire(None, &store).await,
        Err(SourceError::Helm(HelmError::NoMatchingVersion { .. }))
    ));
    let missing = HelmChartSource::from_repository(repository, "nope", "*", object("HelmChart"));
    assert!(matches!(
        missing.acquire(None, &store).await,
        Err(SourceError::Helm(HelmError::ChartNotFound { .. }))
    ));
    Ok(())
}

#[tokio::test]
async fn corrupted_chart_digest_is_a_digest_mismatch() -> TestResult {
    let repo = build_repo();
    let index = std::fs::read_to_string(repo.path().join("index.yaml"))?;
    let good = Digest::sha256_of(&std::fs::read(repo.path().join("app-1.1.0.tgz"))?);
    assert!(
        index.contains(good.hex()),
        "helm repo index writes the digest"
    );
    std::fs::write(
        repo.path().join("index.yaml"),
        index.replace(good.hex(), &"0".repeat(64)),
    )?;
    let server = HelmRepoServer::start(repo.path())?;
    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;
    let source = HelmChartSource::from_repository(
        HelmRepositorySource::new(server.url(), object("HelmRepository")),
        "app",
        "1.1.0",
        object("HelmChart"),
    );
    match source.acquire(None, &store).await {
        Err(err @ SourceError::DigestMismatch { .. }) => {
            assert_eq!(err.reason(), "DigestMismatch");
            let SourceError::DigestMismatch { actual, .. } = err else {
                unreachable!()
            };
            assert_eq!(actual, good);
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn values_files_merged_with_generation_suffix_and_basic_auth() -> TestResult {
    let repo = build_repo();
    let server = HelmRepoServer::builder()
        .basic_auth("helm", "chart-pass")
        .start(repo.path())?;
    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;
    let mut repository = HelmRepositorySource::new(server.url(), object("HelmRepository"));
    let anonymous =
        HelmChartSource::from_repository(repository.clone(), "app", "~1.0", object("HelmChart"));
    match anonymous.acquire(None, &store).await {
        Err(SourceError::AuthenticationFailed { .. }) => {}
        other => panic!("expected AuthenticationFailed, got {other:?}"),
    }
    repository.http.basic = Some(("helm".into(), "chart-pass".into()));
    let mut source =
        HelmChartSource::from_repository(repository, "app", "~1.0", object("HelmChart"));
    source.values_files = vec!["values.yaml".into(), "values-prod.yaml".into()];
    source.generation = Some(3);
    let a = source.acquire(None, &store).await?.into_artifact();
    assert_eq!(a.revision.to_string(), "1.0.0+3");
    assert_eq!(a.metadata[CHART_REVISION_KEY], "1.0.0+3");
    // As in Flux, the package and its Chart.yaml carry the full version.
    assert_eq!(a.file_name(), Some("app-1.0.0+3.tgz"));
    let package = store.local_path(&a.path);
    let shown = run_helm(&["show", "chart", package.to_str().expect("utf-8")]);
    assert!(shown.contains("version: 1.0.0+3"), "{shown}");
    let rendered = template(&package);
    assert!(rendered.contains("replicas: \"3\""), "{rendered}");
    assert!(rendered.contains("image: \"nginx:2.0\""), "{rendered}");
    Ok(())
}

#[tokio::test]
async fn chart_from_a_directory_with_helmignore_and_revision_strategy() -> TestResult {
    // An extracted Git artifact with the chart under charts/app.
    let root = tempfile::tempdir()?;
    let chart_dir = root.path().join("charts/app");
    copy_dir(&fixture_chart(), &chart_dir);
    std::fs::write(root.path().join("prod.yaml"), "replicas: 5\n")?;
    let commit = "1234567890abcdef1234567890abcdef12345678";
    let rev = Revision::git(Some("main"), commit)?;
    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;
    let mut source = HelmChartSource::from_directory(
        root.path(),
        "charts/app",
        rev.clone(),
        object("HelmChart"),
    );
    let a = source.acquire(None, &store).await?.into_artifact();
    assert_eq!(a.revision.to_string(), "1.0.0");
    assert_eq!(a.metadata[CHART_REVISION_KEY], "1.0.0");
    assert_eq!(a.file_name(), Some("app-1.0.0.tgz"));
    let package = store.local_path(&a.path);
    let shown = run_helm(&["show", "chart", package.to_str().expect("utf-8")]);
    assert!(
        shown.contains("name: app") && shown.contains("version: 1.0.0"),
        "{shown}"
    );
    // .helmignore applied as helm package does.
    let listing = tar_listing(&package);
    assert!(listing.iter().any(|p| p == "app/Chart.yaml"), "{listing:?}");
    assert!(
        !listing.iter().any(|p| p.ends_with("notes.bak")),
        "{listing:?}"
    );

    // ChartVersion strategy: a new source revision with the same chart version is unchanged.
    let mut next = source.clone();
    next.origin = gitops_source::ChartOrigin::Directory {
        root: root.path().to_path_buf(),
        path: "charts/app".into(),
        source_revision: Revision::git(Some("main"), &"f".repeat(40))?,
    };
    assert_eq!(
        next.acquire(Some(&a), &store).await?,
        Acquired::Unchanged(a.clone())
    );
    // Revision strategy: the first 12 hex of the source digest become the suffix.
    source.reconcile_strategy = ReconcileStrategy::Revision;
    // values.yaml is not included unless listed (Flux's valuesFiles rule); paths are below
    // the artifact root.
    source.values_files = vec!["charts/app/values.yaml".into(), "prod.yaml".into()];
    let b = source.acquire(Some(&a), &store).await?.into_artifact();
    assert_eq!(b.revision.to_string(), "1.0.0+1234567890ab");
    assert_eq!(b.file_name(), Some("app-1.0.0+1234567890ab.tgz"));
    let package = store.local_path(&b.path);
    assert!(template(&package).contains("replicas: \"5\""));
    let shown = run_helm(&["show", "chart", package.to_str().expect("utf-8")]);
    assert!(shown.contains("version: 1.0.0+1234567890ab"), "{shown}");
    // With values files and a generation, Flux joins the two: `+<rev12>.<generation>`.
    source.generation = Some(7);
    let c = source.acquire(Some(&b), &store).await?.into_artifact();
    assert_eq!(c.revision.to_string(), "1.0.0+1234567890ab.7");
    assert_eq!(c.file_name(), Some("app-1.0.0+1234567890ab.7.tgz"));
    // Same revision and configuration again: unchanged.
    assert_eq!(
        source.acquire(Some(&c), &store).await?,
        Acquired::Unchanged(c.clone())
    );
    // The Revision strategy needs a source digest: a chart version is refused, typed.
    let mut versioned = source.clone();
    versioned.origin = gitops_source::ChartOrigin::Directory {
        root: root.path().to_path_buf(),
        path: "charts/app".into(),
        source_revision: Revision::chart_version("9.9.9")?,
    };
    assert!(matches!(
        versioned.acquire(None, &store).await,
        Err(SourceError::InvalidSpec(_))
    ));

    // A path leaving the artifact is refused.
    let escape = HelmChartSource::from_directory(root.path(), "../x", rev, object("HelmChart"));
    assert!(matches!(
        escape.acquire(None, &store).await,
        Err(SourceError::InvalidSpec(_))
    ));
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

fn tar_listing(package: &Path) -> Vec<String> {
    let f = std::fs::File::open(package).expect("open");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    archive
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[tokio::test]
async fn oci_chart_pushed_by_helm_push() -> TestResult {
    use gitops_source::helm::HELM_CHART_LAYER_MEDIA_TYPE;
    use gitops_source::{LayerOperation, OciSource};
    let repo = build_repo();
    let registry = gitops_testkit::servers::OciRegistry::start()?;
    for version in ["1.0.0", "1.1.0", "2.0.0-rc.1"] {
        let package = repo.path().join(format!("app-{version}.tgz"));
        run_helm(&[
            "push",
            package.to_str().expect("utf-8"),
            &registry.oci_url("charts"),
            "--plain-http",
        ]);
    }
    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;
    let mut source = OciSource::new(registry.oci_url("charts/app"), object("HelmChart"));
    source.insecure = true;
    source.reference.semver = Some("*".into());
    source.layer_selector.media_type = Some(HELM_CHART_LAYER_MEDIA_TYPE.into());
    source.layer_selector.operation = LayerOperation::Copy;
    let a = source.acquire(None, &store).await?.into_artifact();
    assert_eq!(a.revision.name(), Some("1.1.0"));
    // The chart layer is the package helm pushed, byte for byte.
    let package = std::fs::read(repo.path().join("app-1.1.0.tgz"))?;
    assert_eq!(a.digest, Digest::sha256_of(&package));
    assert!(template(&store.local_path(&a.path)).contains("nginx:1.0"));
    // helm push records the chart metadata as manifest annotations.
    assert_eq!(
        a.metadata
            .get("org.opencontainers.image.version")
            .map(String::as_str),
        Some("1.1.0")
    );

    // The same charts as a HelmChart: Flux's revision is the bare chart version.
    let mut registry = OciSource::new(registry.oci_url("charts/app"), object("HelmRepository"));
    registry.insecure = true;
    let newest = HelmChartSource::from_oci(registry.clone(), "", object("HelmChart"));
    let c = newest.acquire(None, &store).await?.into_artifact();
    assert_eq!(c.revision, Revision::chart_version("1.1.0")?);
    assert_eq!(c.file_name(), Some("app-1.1.0.tgz"));
    assert_eq!(c.digest, Digest::sha256_of(&package));
    assert_eq!(
        newest.acquire(Some(&c), &store).await?,
        Acquired::Unchanged(c.clone())
    );
    let pre = HelmChartSource::from_oci(registry.clone(), "2.0.0-rc.1", object("HelmChart"))
        .acquire(None, &store)
        .await?
        .into_artifact();
    assert_eq!(pre.revision.to_string(), "2.0.0-rc.1");
    // Values files inside the chart, with the generation as build metadata.
    let mut valued = HelmChartSource::from_oci(registry.clone(), "~1.0", object("HelmChart"));
    valued.values_files = vec!["values.yaml".into(), "values-prod.yaml".into()];
    valued.generation = Some(5);
    let d = valued.acquire(None, &store).await?.into_artifact();
    assert_eq!(d.revision.to_string(), "1.0.0+5");
    assert_eq!(d.file_name(), Some("app-1.0.0+5.tgz"));
    let packaged = store.local_path(&d.path);
    let shown = run_helm(&["show", "chart", packaged.to_str().expect("utf-8")]);
    assert!(shown.contains("version: 1.0.0+5"), "{shown}");
    assert!(template(&packaged).contains("image: \"nginx:2.0\""));
    // A missing version and an unsatisfiable range are typed.
    match HelmChartSource::from_oci(registry.clone(), "9.9.9", object("HelmChart"))
        .acquire(None, &store)
        .await
    {
        Err(SourceError::ReferenceNotFound { .. }) => {}
        other => panic!("expected ReferenceNotFound, got {other:?}"),
    }
    match HelmChartSource::from_oci(registry, ">=3", object("HelmChart"))
        .acquire(None, &store)
        .await
    {
        Err(SourceError::NoMatchingTag { .. }) => {}
        other => panic!("expected NoMatchingTag, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn https_repository_with_custom_ca_and_mutual_tls() -> TestResult {
    let repo = build_repo();
    let ca = gitops_testkit::servers::TestCa::generate()?;
    let server = HelmRepoServer::builder()
        .tls_with_ca(&ca)
        .require_client_cert()
        .start(repo.path())?;
    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;
    let mut repository = HelmRepositorySource::new(server.url(), object("HelmRepository"));
    // Without the CA the server certificate is not trusted.
    assert!(matches!(
        repository.acquire(None, &store).await,
        Err(SourceError::Network { .. })
    ));
    // With the CA but no client certificate the handshake is refused.
    repository.http.ca_pem = Some(ca.cert_pem().as_bytes().to_vec());
    assert!(matches!(
        repository.acquire(None, &store).await,
        Err(SourceError::Network { .. })
    ));
    let client = ca.issue_client_cert("gitops")?;
    repository.http.client_identity_pem = Some((
        client.cert_pem.as_bytes().to_vec(),
        client.key_pem.as_bytes().to_vec(),
    ));
    let index = repository.acquire(None, &store).await?.into_artifact();
    assert!(index.revision.to_string().starts_with("sha256:"));
    let chart = HelmChartSource::from_repository(repository, "app", "1.0.0", object("HelmChart"))
        .acquire(None, &store)
        .await?
        .into_artifact();
    assert_eq!(chart.revision.to_string(), "1.0.0");
    Ok(())
}
