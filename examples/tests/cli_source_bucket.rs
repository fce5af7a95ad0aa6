//! `gitops source bucket` as a real process against moto's S3 server: it prints the artifact
//! (revision `sha256:` over the listing, the digest of the stored archive, the archive holding
//! the objects under the prefix minus Flux's default exclusions), and a missing bucket exits
//! non-zero with the typed reason, without leaking the secret key.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use gitops_source::Digest;
use gitops_testkit::servers::S3Server;
use serde_json::Value;

const GITOPS: &str = env!("CARGO_BIN_EXE_gitops");

fn source_bucket(s3: &S3Server, bucket: &str, out: &Path, extra: &[&str]) -> Output {
    Command::new(GITOPS)
        .args(["source", "bucket", "--endpoint", &s3.endpoint()])
        .args(["--bucket", bucket, "--insecure"])
        .args(["--access-key", s3.access_key()])
        .env("GITOPS_BUCKET_SECRET_KEY", s3.secret_key())
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .expect("gitops source bucket runs")
}

/// `path=contents` of every file in the archive (extracted with gitops-source's safe extractor).
fn files_in(archive: &Path) -> BTreeSet<String> {
    let dest = tempfile::tempdir().expect("tempdir");
    let file = std::fs::File::open(archive).expect("archive exists");
    gitops_source::fetch::extract_tar_gz(
        std::io::BufReader::new(file),
        dest.path(),
        gitops_source::FetchLimits::default(),
        "artifact",
    )
    .expect("a valid archive");
    walkdir::WalkDir::new(dest.path())
        .into_iter()
        .map(|e| e.expect("walk"))
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dest.path()).expect("inside");
            let body = std::fs::read_to_string(e.path()).expect("utf-8 body");
            format!("{}={body}", rel.display())
        })
        .collect()
}

#[test]
fn prints_the_artifact_and_a_missing_bucket_is_typed() {
    let s3 = S3Server::start().expect("moto");
    s3.put_object("apps/app.yaml", b"kind: ConfigMap\n")
        .expect("put");
    s3.put_object("apps/.github/ci.yml", b"on: push\n")
        .expect("put");
    s3.put_object("other/x.yaml", b"kind: Secret\n")
        .expect("put");
    let out = tempfile::tempdir().expect("tempdir");

    let run = source_bucket(&s3, s3.bucket(), out.path(), &["--prefix", "apps/"]);
    assert!(
        run.status.success(),
        "gitops source bucket failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json: Value = serde_json::from_slice(&run.stdout).expect("one JSON object on stdout");
    let revision = json["revision"].as_str().expect("revision");
    assert!(
        revision.starts_with("sha256:") && revision.len() == 71,
        "{revision}"
    );
    let path = Path::new(json["path"].as_str().expect("path"));
    let bytes = std::fs::read(path).expect("the printed path exists");
    assert_eq!(json["digest"], Digest::sha256_of(&bytes).to_string());
    assert_eq!(json["size"].as_u64(), Some(bytes.len() as u64));
    assert!(
        path.starts_with(out.path().join("bucket/default")),
        "{path:?}"
    );
    assert_eq!(
        files_in(path),
        BTreeSet::from(["apps/app.yaml=kind: ConfigMap\n".to_owned()])
    );

    // Same listing, same revision; a changed listing, a new revision.
    let again = source_bucket(&s3, s3.bucket(), out.path(), &["--prefix", "apps/"]);
    let again: Value = serde_json::from_slice(&again.stdout).expect("JSON");
    assert_eq!(again["revision"], revision);
    // (moto refuses unsigned overwrites, so the change is a new object.)
    s3.put_object("apps/new.yaml", b"kind: Secret\n")
        .expect("put");
    let changed = source_bucket(&s3, s3.bucket(), out.path(), &["--prefix", "apps/"]);
    let changed: Value = serde_json::from_slice(&changed.stdout).expect("JSON");
    assert_ne!(changed["revision"], revision);

    let missing = source_bucket(&s3, "no-such-bucket", out.path(), &[]);
    assert!(!missing.status.success(), "a missing bucket must fail");
    assert!(missing.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("BucketOperationFailed"), "{stderr}");
    assert!(stderr.contains("no-such-bucket"), "{stderr}");
    assert!(!stderr.contains(s3.secret_key()), "{stderr}");
}

/// `--proxy socks5://user:pass@host:port`: the bucket is read through the proxy.
#[test]
fn through_a_socks5_proxy() {
    let s3 = S3Server::start().expect("moto");
    s3.put_object("apps/app.yaml", b"kind: ConfigMap\n")
        .expect("put");
    let proxy = gitops_testkit::servers::Socks5Proxy::builder()
        .credentials("px", "px-pass")
        .start()
        .expect("socks5 proxy");
    let address = format!("socks5://px:px-pass@{}", proxy.addr());
    let out = tempfile::tempdir().expect("tempdir");
    let run = source_bucket(&s3, s3.bucket(), out.path(), &["--proxy", &address]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let seen = proxy.connections();
    assert!(
        !seen.is_empty()
            && seen
                .iter()
                .all(|c| c.granted && c.user.as_deref() == Some("px")),
        "{seen:?}"
    );
}
