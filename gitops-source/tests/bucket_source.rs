//! `BucketSource` against moto's S3 server on 127.0.0.1 (gitops-testkit's `S3Server`).

use std::collections::BTreeSet;

use gitops_source::{
    Acquired, Artifact, ArtifactStore, BucketCredentials, BucketSource, FetchLimits, ObjectRef,
    Source, SourceError,
};
use gitops_testkit::servers::S3Server;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn source(s3: &S3Server) -> BucketSource {
    let mut source = BucketSource::new(
        s3.host(),
        s3.bucket(),
        ObjectRef::new("Bucket", "flux-system", "app").expect("valid"),
    );
    source.insecure = true;
    source.region = s3.region().to_owned();
    source.credentials = Some(BucketCredentials {
        access_key: s3.access_key().to_owned(),
        secret_key: s3.secret_key().to_owned(),
    });
    source
}

fn files_of(store: &ArtifactStore, artifact: &Artifact) -> BTreeSet<String> {
    let out = tempfile::tempdir().expect("tmp");
    let f = std::fs::File::open(store.local_path(&artifact.path)).expect("artifact");
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

#[tokio::test]
async fn listing_prefix_ignore_rules_revision_and_unchanged() -> TestResult {
    let s3 = S3Server::start()?;
    s3.put_object("apps/app.yaml", b"kind: ConfigMap\n")?;
    s3.put_object("apps/sub/cm.yaml", b"kind: Secret\n")?;
    s3.put_object("apps/readme.md", b"docs\n")?;
    s3.put_object("other/x.yaml", b"kind: Other\n")?;
    s3.put_object(".sourceignore", b"*.md\n")?;
    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;

    let mut bucket = source(&s3);
    bucket.prefix = Some("apps/".into());
    let a = bucket.acquire(None, &store).await?.into_artifact();
    assert!(a.revision.name().is_none());
    assert!(a.revision.to_string().starts_with("sha256:"));
    // The prefix limits the listing; the root .sourceignore drops *.md.
    let files = files_of(&store, &a);
    assert!(
        files.contains("apps/app.yaml") && files.contains("apps/sub/cm.yaml"),
        "{files:?}"
    );
    assert!(!files.contains("apps/readme.md"), "{files:?}");
    assert!(!files.iter().any(|f| f.starts_with("other/")), "{files:?}");

    // Same listing: unchanged, nothing downloaded or written.
    assert_eq!(
        bucket.acquire(Some(&a), &store).await?,
        Acquired::Unchanged(a.clone())
    );
    // A new ignored object leaves the revision alone.
    s3.put_object("apps/more.md", b"more docs\n")?;
    assert!(!bucket.acquire(Some(&a), &store).await?.is_new());
    // A new kept object is a new revision.
    s3.put_object("apps/new.yaml", b"kind: ConfigMap\ndata: {}\n")?;
    let b = bucket.acquire(Some(&a), &store).await?;
    assert!(b.is_new());
    assert_ne!(b.artifact().revision, a.revision);

    // A spec ignore list is a configuration change and replaces the defaults.
    bucket.ignore = Some("sub/\n".into());
    let c = bucket
        .acquire(Some(b.artifact()), &store)
        .await?
        .into_artifact();
    let files = files_of(&store, &c);
    assert!(!files.iter().any(|f| f.contains("/sub/")), "{files:?}");
    assert!(files.contains("apps/app.yaml"), "{files:?}");
    Ok(())
}

#[tokio::test]
async fn whole_bucket_with_defaults_and_a_missing_bucket() -> TestResult {
    let s3 = S3Server::start()?;
    s3.put_object("deploy/app.yaml", b"kind: ConfigMap\n")?;
    s3.put_object(".github/workflows/ci.yml", b"on: push\n")?;
    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;
    let bucket = source(&s3);
    let a = bucket.acquire(None, &store).await?.into_artifact();
    assert_eq!(
        files_of(&store, &a),
        BTreeSet::from(["deploy/app.yaml".to_owned()])
    );

    let mut missing = source(&s3);
    missing.bucket = "no-such-bucket".into();
    match missing.acquire(None, &store).await {
        Err(err @ SourceError::Bucket(_)) => {
            assert_eq!(err.reason(), "BucketOperationFailed");
            assert!(err.to_string().contains("no-such-bucket"), "{err}");
            assert!(!err.to_string().contains(s3.secret_key()), "{err}");
        }
        other => panic!("expected a bucket error, got {other:?}"),
    }
    Ok(())
}

/// moto checking signatures (`S3Server::require_auth`): the right key acquires the bucket; a
/// wrong secret and an unknown key id are `AuthenticationFailed`, naming the S3 error code and
/// never the secret. (Unsigned requests are left out: moto answers them with a 500 where S3
/// answers 403.)
#[tokio::test]
async fn wrong_credentials_are_an_authentication_failure() -> TestResult {
    let s3 = S3Server::builder().require_auth().start()?;
    s3.put_object("deploy/app.yaml", b"kind: ConfigMap\n")?;
    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;
    let a = source(&s3).acquire(None, &store).await?.into_artifact();
    assert_eq!(
        files_of(&store, &a),
        BTreeSet::from(["deploy/app.yaml".to_owned()])
    );

    for (credentials, code) in [
        (
            BucketCredentials {
                access_key: s3.access_key().to_owned(),
                secret_key: "wrong-secret-key".to_owned(),
            },
            "SignatureDoesNotMatch",
        ),
        (
            BucketCredentials {
                access_key: "AKIAUNKNOWNKEY000000".to_owned(),
                secret_key: s3.secret_key().to_owned(),
            },
            "InvalidAccessKeyId",
        ),
    ] {
        let mut bucket = source(&s3);
        bucket.credentials = Some(credentials);
        match bucket.acquire(None, &store).await {
            Err(err @ SourceError::AuthenticationFailed { .. }) => {
                assert_eq!(err.reason(), "AuthenticationFailed");
                let text = err.to_string();
                assert!(text.contains(code), "{text}");
                assert!(!text.contains(s3.secret_key()), "{text}");
                assert!(!text.contains("wrong-secret-key"), "{text}");
            }
            other => panic!("expected AuthenticationFailed, got {other:?}"),
        }
    }
    Ok(())
}

/// A SOCKS5 proxy from the settings: the listing and downloads go through it.
#[tokio::test]
async fn through_a_socks5_proxy() -> TestResult {
    use gitops_testkit::servers::Socks5Proxy;
    let s3 = S3Server::start()?;
    s3.put_object("deploy/app.yaml", b"kind: ConfigMap\n")?;
    let proxy = Socks5Proxy::builder()
        .credentials("px", "px-pass")
        .start()?;
    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;
    let mut bucket = source(&s3);
    bucket.proxy = Some(gitops_source::ProxySettings {
        address: proxy.url(),
        basic: Some(("px".into(), "px-pass".into())),
    });
    let a = bucket.acquire(None, &store).await?.into_artifact();
    assert_eq!(
        files_of(&store, &a),
        BTreeSet::from(["deploy/app.yaml".to_owned()])
    );
    let seen = proxy.connections();
    assert!(
        !seen.is_empty()
            && seen
                .iter()
                .all(|c| c.granted && c.target == s3.addr().to_string()),
        "{seen:?}"
    );
    Ok(())
}

/// HTTPS with a private CA and mutual TLS (Flux's `certSecretRef` with `ca.crt`, `tls.crt` and
/// `tls.key`): with the CA and a client certificate the bucket is acquired; without the
/// certificate the endpoint refuses the handshake; without the CA the server is not trusted.
#[tokio::test]
async fn https_with_a_private_ca_and_a_client_certificate() -> TestResult {
    use gitops_testkit::servers::TestCa;
    let ca = TestCa::generate()?;
    let s3 = S3Server::builder()
        .tls_with_ca(&ca)
        .require_client_cert()
        .start()?;
    s3.put_object("deploy/app.yaml", b"kind: ConfigMap\n")?;
    let client = ca.issue_client_cert("source-controller")?;
    let tmp = tempfile::tempdir()?;
    let store = ArtifactStore::new(tmp.path())?;

    let mut bucket = source(&s3);
    bucket.insecure = false;
    bucket.ca_pem = Some(ca.cert_pem().as_bytes().to_vec());
    bucket.client_identity_pem = Some((
        client.cert_pem.clone().into_bytes(),
        client.key_pem.clone().into_bytes(),
    ));
    let a = bucket.acquire(None, &store).await?.into_artifact();
    assert_eq!(
        files_of(&store, &a),
        BTreeSet::from(["deploy/app.yaml".to_owned()])
    );
    let shown = format!("{bucket:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");

    let mut no_identity = bucket.clone();
    no_identity.client_identity_pem = None;
    no_identity.timeout = std::time::Duration::from_secs(120);
    let refused = no_identity
        .acquire(None, &store)
        .await
        .err()
        .ok_or("acquired without a client certificate")?;
    assert!(!refused.to_string().contains("PRIVATE KEY"), "{refused}");

    // object_store retries connection errors with back-off (an untrusted certificate among
    // them), so this case gets time for its retries to run out rather than the 5 s budget.
    let mut untrusted = bucket.clone();
    untrusted.ca_pem = None;
    untrusted.timeout = std::time::Duration::from_secs(120);
    let text = untrusted
        .acquire(None, &store)
        .await
        .err()
        .ok_or("acquired from an untrusted server")?
        .to_string();
    assert!(text.to_lowercase().contains("certificate"), "{text}");

    let mut broken = bucket.clone();
    broken.client_identity_pem = Some((b"not a certificate".to_vec(), b"not a key".to_vec()));
    let text = broken
        .acquire(None, &store)
        .await
        .err()
        .ok_or("a broken client certificate was accepted")?
        .to_string();
    assert!(text.contains("client certificate"), "{text}");
    Ok(())
}
