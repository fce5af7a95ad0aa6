//! `OciSource` and `push_artifact` against Debian's docker-registry on 127.0.0.1, anonymous
//! and with htpasswd authentication.

use std::collections::BTreeSet;
use std::path::Path;

use gitops_source::oci::{
    ANNOTATION_CREATED, ANNOTATION_REVISION, ANNOTATION_SOURCE, FLUX_CONTENT_MEDIA_TYPE, OciError,
};
use gitops_source::{
    Acquired, Artifact, ArtifactStore, FetchLimits, LayerOperation, ObjectRef, OciAuth,
    OciReference, OciSource, PushOptions, Source, SourceError, push_artifact,
};
use gitops_testkit::servers::OciRegistry;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn object() -> ObjectRef {
    ObjectRef::new("OCIRepository", "flux-system", "app").expect("valid")
}

fn write(dir: &Path, rel: &str, body: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
    std::fs::write(path, body).expect("write");
}

/// A directory with manifests and a CI file Flux excludes by default.
fn content(version: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    write(
        dir.path(),
        "deploy/app.yaml",
        &format!("kind: ConfigMap\nversion: {version}\n"),
    );
    write(dir.path(), ".github/workflows/ci.yml", "on: push\n");
    dir
}

fn files_of(store: &ArtifactStore, artifact: &Artifact) -> BTreeSet<String> {
    let out = tempfile::tempdir().expect("tmp");
    let f = std::fs::File::open(store.local_path(&artifact.path)).expect("artifact file");
    gitops_source::fetch::extract_tar_gz(f, out.path(), FetchLimits::default(), "test")
        .expect("extract");
    let mut files = BTreeSet::new();
    for entry in ignore::WalkBuilder::new(out.path()).hidden(false).build() {
        let entry = entry.expect("walk");
        if entry.file_type().is_some_and(|t| t.is_file()) {
            let rel = entry.path().strip_prefix(out.path()).expect("prefix");
            files.insert(rel.to_string_lossy().into_owned());
        }
    }
    files
}

fn push_opts(tag: &str) -> PushOptions {
    let mut opts = PushOptions::new(
        "https://github.com/org/app",
        format!("main@sha1:{}", "a".repeat(40)),
    );
    opts.tag = tag.into();
    opts.insecure = true;
    opts
}

#[tokio::test]
async fn push_then_acquire_a_tag_with_annotations_and_the_unchanged_short_cut() -> TestResult {
    let registry = OciRegistry::start()?;
    let url = registry.oci_url("org/app");
    let dir = content("1");
    let pushed = push_artifact(&url, dir.path(), &push_opts("v1")).await?;
    assert_eq!(
        pushed.annotations[ANNOTATION_SOURCE],
        "https://github.com/org/app"
    );

    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path().join("store"))?;
    let mut source = OciSource::new(&url, object());
    source.insecure = true;
    source.reference.tag = Some("v1".into());
    let acquired = source.acquire(None, &store).await?;
    assert!(acquired.is_new());
    let artifact = acquired.into_artifact();
    assert_eq!(
        artifact.revision.to_string(),
        format!("v1@{}", pushed.digest)
    );
    assert_eq!(
        artifact.metadata[ANNOTATION_REVISION],
        format!("main@sha1:{}", "a".repeat(40))
    );
    assert_eq!(
        artifact.metadata[ANNOTATION_SOURCE],
        "https://github.com/org/app"
    );
    assert!(artifact.metadata[ANNOTATION_CREATED].ends_with('Z'));
    store.verify(&artifact.path, &artifact.digest)?;
    // Push left out Flux's default exclusions (CI configuration).
    let files = files_of(&store, &artifact);
    assert_eq!(files, BTreeSet::from(["deploy/app.yaml".to_owned()]));

    let again = source.acquire(Some(&artifact), &store).await?;
    assert_eq!(again, Acquired::Unchanged(artifact.clone()));

    // A new push to the same tag is a new revision.
    let dir2 = content("2");
    let pushed2 = push_artifact(&url, dir2.path(), &push_opts("v1")).await?;
    assert_ne!(pushed2.digest, pushed.digest);
    let next = source.acquire(Some(&artifact), &store).await?;
    assert!(next.is_new());
    assert_eq!(
        next.artifact().revision.to_string(),
        format!("v1@{}", pushed2.digest)
    );

    // The default reference is `latest`, which does not exist here.
    source.reference = OciReference::default();
    match source.acquire(None, &store).await {
        Err(SourceError::ReferenceNotFound { reference, .. }) => {
            assert!(reference.contains("latest"), "{reference}")
        }
        other => panic!("expected ReferenceNotFound, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn semver_with_filter_and_digest_pinning() -> TestResult {
    let registry = OciRegistry::start()?;
    let url = registry.oci_url("app");
    let mut digests = std::collections::BTreeMap::new();
    for tag in ["1.0.0", "1.2.0", "1.3.0-rc.1", "2.0.0", "1.1.0-special"] {
        let dir = content(tag);
        let pushed = push_artifact(&url, dir.path(), &push_opts(tag)).await?;
        digests.insert(tag, pushed.digest);
    }
    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;
    let mut source = OciSource::new(&url, object());
    source.insecure = true;
    source.reference.semver = Some(">=1.0.0 <2.0.0".into());
    let a = source.acquire(None, &store).await?.into_artifact();
    assert_eq!(
        a.revision.to_string(),
        format!("1.2.0@{}", digests["1.2.0"])
    );

    // semverFilter narrows the tags first; pre-releases count once the range admits them.
    source.reference.semver = Some(">=1.0.0-0 <2.0.0".into());
    source.reference.semver_filter = Some(".*-special$".into());
    let b = source.acquire(None, &store).await?.into_artifact();
    assert_eq!(
        b.revision.to_string(),
        format!("1.1.0-special@{}", digests["1.1.0-special"])
    );

    source.reference.semver = Some(">=3".into());
    source.reference.semver_filter = None;
    assert!(matches!(
        source.acquire(None, &store).await,
        Err(SourceError::NoMatchingTag { .. })
    ));

    // Digest beats semver and tag; the revision is the bare digest.
    source.reference.tag = Some("2.0.0".into());
    source.reference.digest = Some(digests["1.0.0"].to_string());
    let c = source.acquire(None, &store).await?.into_artifact();
    assert_eq!(c.revision.to_string(), digests["1.0.0"].to_string());
    let out = tempfile::tempdir()?;
    let f = std::fs::File::open(store.local_path(&c.path))?;
    gitops_source::fetch::extract_tar_gz(f, out.path(), FetchLimits::default(), "t")?;
    assert_eq!(
        std::fs::read_to_string(out.path().join("deploy/app.yaml"))?,
        "kind: ConfigMap\nversion: 1.0.0\n"
    );

    // An unknown digest is a missing reference.
    source.reference.digest = Some(format!("sha256:{}", "0".repeat(64)));
    assert!(matches!(
        source.acquire(None, &store).await,
        Err(SourceError::ReferenceNotFound { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn layer_selector_copy_and_missing_media_type() -> TestResult {
    let registry = OciRegistry::start()?;
    let url = registry.oci_url("app");
    let dir = content("1");
    let pushed = push_artifact(&url, dir.path(), &push_opts("latest")).await?;
    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;
    let mut source = OciSource::new(&url, object());
    source.insecure = true;
    source.layer_selector.media_type = Some(FLUX_CONTENT_MEDIA_TYPE.into());
    source.layer_selector.operation = LayerOperation::Copy;
    let copied = source.acquire(None, &store).await?.into_artifact();
    // Copy stores the layer verbatim: its digest is the layer's.
    assert_eq!(copied.digest.to_string(), pushed.layer_digest);
    assert_eq!(
        copied.revision.to_string(),
        format!("latest@{}", pushed.digest)
    );

    // Switching to extract is a configuration change: a new artifact, same revision; and
    // since push and store archive the same way, re-archiving the extracted layer gives the
    // very same bytes (the archive is reproducible end to end).
    source.layer_selector.operation = LayerOperation::Extract;
    let extracted = source.acquire(Some(&copied), &store).await?;
    assert!(extracted.is_new());
    assert_eq!(extracted.artifact().revision, copied.revision);
    assert_eq!(extracted.artifact().digest, copied.digest);

    source.layer_selector.media_type = Some("application/vnd.example.other".into());
    match source.acquire(None, &store).await {
        Err(SourceError::Oci(OciError::LayerNotFound { available, .. })) => {
            assert_eq!(available, vec![FLUX_CONTENT_MEDIA_TYPE.to_owned()])
        }
        other => panic!("expected LayerNotFound, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn htpasswd_registry_basic_auth_wrong_credentials_and_docker_config() -> TestResult {
    let registry = OciRegistry::builder()
        .basic_auth("flux", "s3cret-pass")
        .start()?;
    let url = registry.oci_url("secure/app");
    let dir = content("1");
    let good = OciAuth::Basic {
        username: "flux".into(),
        password: "s3cret-pass".into(),
    };

    // Pushing without credentials is refused.
    match push_artifact(&url, dir.path(), &push_opts("v1")).await {
        Err(SourceError::AuthenticationFailed { .. }) => {}
        other => panic!("expected AuthenticationFailed, got {other:?}"),
    }
    let mut opts = push_opts("v1");
    opts.auth = good.clone();
    let pushed = push_artifact(&url, dir.path(), &opts).await?;

    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;
    let mut source = OciSource::new(&url, object());
    source.insecure = true;
    source.reference.tag = Some("v1".into());
    for auth in [
        OciAuth::Anonymous,
        OciAuth::Basic {
            username: "flux".into(),
            password: "wrong-pass".into(),
        },
    ] {
        source.auth = auth;
        match source.acquire(None, &store).await {
            Err(err @ SourceError::AuthenticationFailed { .. }) => {
                assert_eq!(err.reason(), "AuthenticationFailed");
                assert!(!err.to_string().contains("wrong-pass"), "{err}");
            }
            other => panic!("expected AuthenticationFailed, got {other:?}"),
        }
    }

    // Credentials from a docker config.json, as in a dockerconfigjson pull secret.
    let config = format!(
        r#"{{"auths":{{"{}":{{"username":"flux","password":"s3cret-pass"}}}}}}"#,
        registry.host()
    );
    source.auth = OciAuth::from_docker_config(config.as_bytes(), &registry.host())?;
    let a = source.acquire(None, &store).await?.into_artifact();
    assert_eq!(a.revision.to_string(), format!("v1@{}", pushed.digest));

    // Semver over an authenticated tag list (Masterminds reads `v1` as 1.0.0).
    source.reference.semver = Some("^1".into());
    let b = source.acquire(Some(&a), &store).await?;
    assert_eq!(b, Acquired::Unchanged(a));
    Ok(())
}

#[tokio::test]
async fn tls_registry_needs_its_ca() -> TestResult {
    let registry = OciRegistry::builder().tls().start()?;
    let url = registry.oci_url("app");
    let ca = registry
        .ca_pem()
        .expect("TLS registry has a CA")
        .as_bytes()
        .to_vec();
    let dir = content("1");
    let mut opts = push_opts("v1");
    opts.insecure = false;
    opts.tls.ca_pem = Some(ca.clone());
    let pushed = push_artifact(&url, dir.path(), &opts).await?;

    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;
    let mut source = OciSource::new(&url, object());
    source.reference.tag = Some("v1".into());
    match source.acquire(None, &store).await {
        Err(SourceError::Network { .. }) => {}
        other => panic!("expected a TLS failure without the CA, got {other:?}"),
    }
    source.tls.ca_pem = Some(ca);
    let a = source.acquire(None, &store).await?.into_artifact();
    assert_eq!(a.revision.to_string(), format!("v1@{}", pushed.digest));
    Ok(())
}

/// A registry requiring client certificates (distribution's `http.tls.clientcas`): push and
/// pull succeed with the certificate issued by its CA; without it (or with a certificate and a
/// key that do not belong together) the registry refuses, as typed errors; `Debug` never shows
/// the key.
#[tokio::test]
async fn mtls_registry_needs_the_client_certificate_for_push_and_pull() -> TestResult {
    let registry = OciRegistry::builder()
        .require_client_certificates()
        .start()?;
    let url = registry.oci_url("mtls/app");
    let ca = registry.ca_pem().expect("CA").as_bytes().to_vec();
    let issued = registry.client_cert().expect("client certificate");
    let identity = (
        issued.cert_pem.as_bytes().to_vec(),
        issued.key_pem.as_bytes().to_vec(),
    );
    let dir = content("1");
    let mut opts = push_opts("v1");
    opts.insecure = false;
    opts.tls.ca_pem = Some(ca.clone());

    // Trusting the CA is not enough to push.
    match push_artifact(&url, dir.path(), &opts).await {
        Err(SourceError::Network { url: u, .. }) => assert!(u.contains("mtls/app"), "{u}"),
        other => {
            panic!("expected a refused TLS handshake without a client certificate, got {other:?}")
        }
    }
    opts.tls.client_identity_pem = Some(identity.clone());
    let debug = format!("{:?}", opts.tls);
    assert!(debug.contains("client_identity_pem: true"), "{debug}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    let pushed = push_artifact(&url, dir.path(), &opts).await?;

    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;
    let mut source = OciSource::new(&url, object());
    source.reference.tag = Some("v1".into());
    source.tls.ca_pem = Some(ca);
    match source.acquire(None, &store).await {
        Err(SourceError::Network { .. }) => {}
        other => {
            panic!("expected a refused TLS handshake without a client certificate, got {other:?}")
        }
    }

    // A key that is not PEM is named as a client certificate problem, without its bytes.
    source.tls.client_identity_pem = Some((identity.0.clone(), b"not-a-key-secret".to_vec()));
    match source.acquire(None, &store).await {
        Err(SourceError::Oci(OciError::ClientCertificate(message))) => {
            assert!(!message.contains("not-a-key-secret"), "{message}");
        }
        other => panic!("expected a client certificate error, got {other:?}"),
    }

    source.tls.client_identity_pem = Some(identity);
    let a = source.acquire(None, &store).await?.into_artifact();
    assert_eq!(a.revision.to_string(), format!("v1@{}", pushed.digest));
    assert!(files_of(&store, &a).contains("deploy/app.yaml"));
    Ok(())
}

/// The registry bearer-token flow (distribution's `auth: token` with the testkit's token
/// server): push and pull go through the realm with Basic credentials and carry the issued
/// JWT; wrong credentials and anonymous access are typed authentication failures.
#[tokio::test]
async fn registry_token_flow_push_pull_and_wrong_credentials() -> TestResult {
    let registry = OciRegistry::builder()
        .token_auth("flux", "t0ken-pass")
        .start()?;
    let url = registry.oci_url("tokened/app");
    let dir = content("1");
    let good = OciAuth::Basic {
        username: "flux".into(),
        password: "t0ken-pass".into(),
    };
    let wrong = OciAuth::Basic {
        username: "flux".into(),
        password: "wrong-pass".into(),
    };

    for auth in [OciAuth::Anonymous, wrong.clone()] {
        let mut opts = push_opts("v1");
        opts.auth = auth;
        match push_artifact(&url, dir.path(), &opts).await {
            Err(SourceError::AuthenticationFailed { .. }) => {}
            other => panic!("expected AuthenticationFailed, got {other:?}"),
        }
    }
    let before = registry.token_requests().len();
    let mut opts = push_opts("v1");
    opts.auth = good.clone();
    let pushed = push_artifact(&url, dir.path(), &opts).await?;
    let push_tokens: Vec<_> = registry.token_requests()[before..].to_vec();
    assert!(
        push_tokens.iter().any(|r| r.status == 200
            && r.query
                .as_deref()
                .is_some_and(|q| q.contains("tokened%2Fapp%3Apull%2Cpush")
                    || q.contains("tokened/app:pull,push"))),
        "the push asked the realm for pull,push: {push_tokens:?}"
    );

    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;
    let mut source = OciSource::new(&url, object());
    source.insecure = true;
    source.reference.tag = Some("v1".into());
    for auth in [OciAuth::Anonymous, wrong] {
        source.auth = auth;
        match source.acquire(None, &store).await {
            Err(err @ SourceError::AuthenticationFailed { .. }) => {
                assert_eq!(err.reason(), "AuthenticationFailed");
                assert!(!err.to_string().contains("wrong-pass"), "{err}");
            }
            other => panic!("expected AuthenticationFailed, got {other:?}"),
        }
    }
    source.auth = good;
    let before = registry.token_requests().len();
    let a = source.acquire(None, &store).await?.into_artifact();
    assert_eq!(a.revision.to_string(), format!("v1@{}", pushed.digest));
    assert!(files_of(&store, &a).contains("deploy/app.yaml"));
    assert!(
        registry.token_requests()[before..]
            .iter()
            .any(|r| r.status == 200),
        "the pull went through the token realm"
    );
    // Tags listed with the token (semver), then the unchanged short cut.
    source.reference.semver = Some("^1".into());
    assert_eq!(
        source.acquire(Some(&a), &store).await?,
        Acquired::Unchanged(a)
    );
    Ok(())
}

/// A SOCKS5 proxy from the settings carries push and pull; wrong proxy credentials fail the
/// pull with a network error before the registry sees anything.
#[tokio::test]
async fn push_and_pull_through_a_socks5_proxy() -> TestResult {
    use gitops_source::ProxySettings;
    use gitops_testkit::servers::Socks5Proxy;
    let registry = OciRegistry::start()?;
    let proxy = Socks5Proxy::builder()
        .credentials("px", "px-pass")
        .start()?;
    let settings = |password: &str| ProxySettings {
        address: proxy.url(),
        basic: Some(("px".into(), password.into())),
    };
    let url = registry.oci_url("proxied/app");
    let dir = content("1");
    let mut opts = push_opts("v1");
    opts.proxy = Some(settings("px-pass"));
    let pushed = push_artifact(&url, dir.path(), &opts).await?;
    let pushed_through = proxy.connections().len();
    assert!(pushed_through > 0);

    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;
    let mut source = OciSource::new(&url, object());
    source.insecure = true;
    source.reference.tag = Some("v1".into());
    source.proxy = Some(settings("wrong"));
    match source.acquire(None, &store).await {
        Err(err @ SourceError::Network { .. }) => {
            assert!(!err.to_string().contains("px-pass"), "{err}")
        }
        other => panic!("expected a network error, got {other:?}"),
    }
    source.proxy = Some(settings("px-pass"));
    let a = source.acquire(None, &store).await?.into_artifact();
    assert_eq!(a.revision.to_string(), format!("v1@{}", pushed.digest));
    let seen = proxy.connections();
    assert!(
        seen.len() > pushed_through
            && seen
                .iter()
                .filter(|c| c.granted)
                .all(|c| c.target == registry.host()),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|c| !c.granted && c.user.as_deref() == Some("px"))
    );
    Ok(())
}
