//! GitSource over SSH against a real `sshd` (the testkit's `SshGitServer`): key auth, key
//! passphrases, and the REQUIRED `known_hosts` check (unknown and changed host keys refused).

use std::time::Duration;

use gitops_source::{
    Acquired, ArtifactStore, GitAuth, GitReference, GitSource, ObjectRef, Source, SourceError,
};
use gitops_testkit::fixture::GitFixture;
use gitops_testkit::servers::SshGitServer;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn source(url: &str, auth: GitAuth) -> GitSource {
    let mut s = GitSource::new(
        url,
        ObjectRef::new("GitRepository", "ns", "app").expect("valid"),
    );
    s.reference = GitReference {
        branch: Some("main".into()),
        ..Default::default()
    };
    s.auth = auth;
    s.timeout = Duration::from_secs(20);
    s
}

fn published() -> Result<(GitFixture, String), Box<dyn std::error::Error>> {
    let fixture = GitFixture::new()?;
    let repo = fixture.repo("app")?;
    repo.write("deploy/app.yaml", "kind: ConfigMap\n")?;
    let commit = repo.commit("first")?;
    fixture.publish(&repo, "app.git")?;
    Ok((fixture, commit))
}

#[tokio::test]
async fn ssh_key_and_known_hosts() -> TestResult {
    let (fixture, commit) = published()?;
    let server = SshGitServer::start(fixture.serve_dir())?;
    let store_dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(store_dir.path())?;
    let auth = GitAuth {
        ssh_private_key: Some(server.client_key_pem()?.into_bytes()),
        known_hosts: Some(server.known_hosts_line().as_bytes().to_vec()),
        ..Default::default()
    };
    let src = source(&server.url_for("app.git"), auth.clone());
    let artifact = match src.acquire(None, &store).await? {
        Acquired::New(a) => a,
        other => panic!("expected a new artifact: {other:?}"),
    };
    assert_eq!(artifact.revision.to_string(), format!("main@sha1:{commit}"));
    // The short cut works over SSH too.
    assert!(matches!(
        src.acquire(Some(&artifact), &store).await?,
        Acquired::Unchanged(_)
    ));

    // known_hosts is required.
    let mut no_hosts = src.clone();
    no_hosts.auth.known_hosts = None;
    let err = no_hosts.acquire(None, &store).await.expect_err("refused");
    assert!(matches!(err, SourceError::InvalidSpec(_)), "{err:?}");

    // A host that is not in known_hosts is refused.
    let mut unknown = src.clone();
    unknown.auth.known_hosts = Some(b"[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n".to_vec());
    let err = unknown
        .acquire(None, &store)
        .await
        .expect_err("unknown host");
    assert!(
        matches!(err, SourceError::HostKeyMismatch { .. }),
        "{err:?}"
    );

    // The right host name with another server's key: a changed host key is refused.
    let other = SshGitServer::start(fixture.serve_dir())?;
    let other_key = other
        .host_public_key()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let mut changed = src.clone();
    changed.auth.known_hosts =
        Some(format!("[127.0.0.1]:{} {other_key}\n", server.port()).into_bytes());
    let err = changed
        .acquire(None, &store)
        .await
        .expect_err("changed host key");
    match &err {
        SourceError::HostKeyMismatch { url, .. } => assert_eq!(url, &server.url_for("app.git")),
        other => panic!("expected HostKeyMismatch, got {other:?}"),
    }

    // A key the server does not authorise.
    let mut wrong_key = src.clone();
    wrong_key.auth.ssh_private_key = Some(other.client_key_pem()?.into_bytes());
    let err = wrong_key
        .acquire(None, &store)
        .await
        .expect_err("unauthorised key");
    assert!(
        matches!(err, SourceError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn ssh_key_with_passphrase() -> TestResult {
    let (fixture, commit) = published()?;
    let server = SshGitServer::builder()
        .client_key_passphrase("correct horse")
        .start(fixture.serve_dir())?;
    let store_dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(store_dir.path())?;
    let auth = GitAuth {
        ssh_private_key: Some(server.client_key_pem()?.into_bytes()),
        ssh_passphrase: Some("correct horse".into()),
        known_hosts: Some(server.known_hosts_line().as_bytes().to_vec()),
        ..Default::default()
    };
    let src = source(&server.url_for("app.git"), auth);
    let acquired = src.acquire(None, &store).await?;
    assert_eq!(
        acquired.artifact().revision.to_string(),
        format!("main@sha1:{commit}")
    );

    let mut wrong = src.clone();
    wrong.auth.ssh_passphrase = Some("wrong".into());
    let err = wrong
        .acquire(None, &store)
        .await
        .expect_err("wrong passphrase");
    assert!(
        matches!(err, SourceError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("correct horse"));
    Ok(())
}
