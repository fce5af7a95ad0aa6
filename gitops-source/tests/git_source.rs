//! GitSource against real servers: `git http-backend` (Basic, bearer, TLS, mTLS), `git daemon`
//! and `file://` (git-upload-pack), on repositories built by the testkit's `GitFixture`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use gitops_source::{
    Acquired, Artifact, ArtifactStore, GitAuth, GitReference, GitSource, ObjectRef, Source,
    SourceError,
};
use gitops_testkit::fixture::{GitFixture, GitRepo};
use gitops_testkit::servers::{GitDaemon, GitHttpServer};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Reads a `.tar.gz` into `path -> contents` (directories end with `/` and have no contents).
fn archive_files(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let file = std::fs::File::open(path).expect("artifact exists");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = BTreeMap::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let name = entry
            .path()
            .expect("entry path")
            .to_string_lossy()
            .into_owned();
        let mut body = Vec::new();
        entry.read_to_end(&mut body).expect("entry body");
        out.insert(name, body);
    }
    out
}

fn file_names(path: &Path) -> Vec<String> {
    archive_files(path)
        .into_keys()
        .filter(|k| !k.ends_with('/'))
        .collect()
}

fn object() -> ObjectRef {
    ObjectRef::new("GitRepository", "flux-system", "app").expect("valid object")
}

fn source(url: &str, reference: GitReference) -> GitSource {
    let mut s = GitSource::new(url, object());
    s.reference = reference;
    s.timeout = Duration::from_secs(30);
    s
}

fn branch(name: &str) -> GitReference {
    GitReference {
        branch: Some(name.into()),
        ..Default::default()
    }
}

/// A repository with two branches, lightweight, annotated and semver tags and a pull ref.
struct Fixture {
    fixture: GitFixture,
    repo: GitRepo,
    first: String,
    second: String,
    dev: String,
    rc: String,
    pull: String,
}

fn fixture() -> Result<Fixture, Box<dyn std::error::Error>> {
    let fixture = GitFixture::new()?;
    let repo = fixture.repo("app")?;
    repo.write("deploy/app.yaml", "kind: ConfigMap\n")?;
    repo.write("deploy/logo.png", [0u8, 1, 2])?;
    repo.write(".github/workflows/ci.yaml", "on: push\n")?;
    repo.write("README.md", "# app\n")?;
    let first = repo.commit("first")?;
    repo.tag("v1.0.0")?;
    repo.write("deploy/app.yaml", "kind: ConfigMap\nversion: 2\n")?;
    let second = repo.commit("second")?;
    repo.tag_annotated("v1.2.0", "release 1.2.0")?;
    repo.tags(["v2.0.0-alpha.1", "not-a-version"])?;
    repo.switch_new("dev")?;
    repo.write("dev.txt", "dev\n")?;
    let dev = repo.commit("dev work")?;
    repo.tag("v1.3.0-rc.1")?;
    let rc = dev.clone();
    repo.write("pr.txt", "pull request\n")?;
    let pull = repo.commit("pull request")?;
    repo.set_ref("refs/pull/1/head", &pull)?;
    repo.switch("main")?;
    fixture.publish(&repo, "app.git")?;
    Ok(Fixture {
        fixture,
        repo,
        first,
        second,
        dev,
        rc,
        pull,
    })
}

async fn acquire_new(src: &GitSource, store: &ArtifactStore) -> Artifact {
    match src.acquire(None, store).await {
        Ok(Acquired::New(a)) => a,
        other => panic!("expected a new artifact, got {other:?}"),
    }
}

#[tokio::test]
async fn every_reference_kind_over_http() -> TestResult {
    let f = fixture()?;
    let server = GitHttpServer::start(f.fixture.serve_dir())?;
    let url = server.url_for("app.git");
    let store_dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(store_dir.path())?;

    let cases: Vec<(GitReference, String)> = vec![
        (branch("main"), format!("main@sha1:{}", f.second)),
        (branch("dev"), format!("dev@sha1:{}", f.pull)),
        (
            GitReference {
                tag: Some("v1.0.0".into()),
                ..Default::default()
            },
            format!("v1.0.0@sha1:{}", f.first),
        ),
        // An annotated tag resolves to its commit, not the tag object.
        (
            GitReference {
                tag: Some("v1.2.0".into()),
                ..Default::default()
            },
            format!("v1.2.0@sha1:{}", f.second),
        ),
        (
            GitReference {
                semver: Some(">=1.0.0 <2.0.0".into()),
                ..Default::default()
            },
            format!("v1.2.0@sha1:{}", f.second),
        ),
        // A range naming a pre-release admits pre-releases.
        (
            GitReference {
                semver: Some(">=1.3.0-0 <1.4.0".into()),
                ..Default::default()
            },
            format!("v1.3.0-rc.1@sha1:{}", f.rc),
        ),
        (
            GitReference {
                name: Some("refs/pull/1/head".into()),
                ..Default::default()
            },
            format!("refs/pull/1/head@sha1:{}", f.pull),
        ),
        (
            GitReference {
                commit: Some(f.first.clone()),
                ..Default::default()
            },
            format!("sha1:{}", f.first),
        ),
        (
            GitReference {
                branch: Some("dev".into()),
                commit: Some(f.dev.clone()),
                ..Default::default()
            },
            format!("dev@sha1:{}", f.dev),
        ),
        // Precedence: the tag wins over the branch, the ref name over the semver range.
        (
            GitReference {
                branch: Some("dev".into()),
                tag: Some("v1.0.0".into()),
                ..Default::default()
            },
            format!("v1.0.0@sha1:{}", f.first),
        ),
        (
            GitReference {
                semver: Some("*".into()),
                name: Some("refs/heads/dev".into()),
                ..Default::default()
            },
            format!("refs/heads/dev@sha1:{}", f.pull),
        ),
        // No reference: the remote's HEAD branch.
        (GitReference::default(), format!("main@sha1:{}", f.second)),
    ];
    for (reference, expected) in cases {
        let src = source(&url, reference.clone());
        let artifact = acquire_new(&src, &store).await;
        assert_eq!(artifact.revision.to_string(), expected, "{reference:?}");
        let commit = artifact
            .revision
            .digest()
            .expect("a Git revision has a commit digest")
            .hex()
            .to_owned();
        assert_eq!(
            artifact.path,
            Path::new("gitrepository/flux-system/app").join(format!("{commit}.tar.gz"))
        );
        store.verify(&artifact.path, &artifact.digest)?;
        assert_eq!(
            std::fs::metadata(store.local_path(&artifact.path))?.len(),
            artifact.size
        );
    }
    Ok(())
}

#[tokio::test]
async fn archive_content_follows_flux_default_exclusions() -> TestResult {
    let f = fixture()?;
    let store_dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(store_dir.path())?;
    let url = format!("file://{}", f.fixture.serve_dir().join("app.git").display());
    let artifact = acquire_new(&source(&url, branch("main")), &store).await;
    let files = archive_files(&store.local_path(&artifact.path));
    assert_eq!(
        files.keys().cloned().collect::<Vec<_>>(),
        ["README.md", "deploy/", "deploy/app.yaml"]
    );
    assert_eq!(files["deploy/app.yaml"], b"kind: ConfigMap\nversion: 2\n");
    Ok(())
}

#[tokio::test]
async fn unchanged_remote_is_not_fetched() -> TestResult {
    let f = fixture()?;
    let server = GitHttpServer::start(f.fixture.serve_dir())?;
    let url = server.url_for("app.git");
    let store_dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(store_dir.path())?;
    let src = source(&url, branch("main"));
    let upload_pack_posts = |server: &GitHttpServer| {
        server
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/git-upload-pack"))
            .count()
    };

    let first = acquire_new(&src, &store).await;
    let after_first = upload_pack_posts(&server);
    // ls-refs and fetch are one POST each in protocol v2.
    assert!(
        after_first >= 2,
        "a new artifact needs ls-refs and fetch, saw {after_first} POSTs"
    );

    let again = src.acquire(Some(&first), &store).await?;
    assert_eq!(again, Acquired::Unchanged(first.clone()));
    let after_second = upload_pack_posts(&server);
    assert_eq!(
        after_second - after_first,
        1,
        "only ls-refs, no pack: {:?}",
        server.requests()
    );

    // The archive vanished from the store: rebuilt, although the remote did not change.
    std::fs::remove_file(store.local_path(&first.path))?;
    let rebuilt = src.acquire(Some(&first), &store).await?;
    assert!(rebuilt.is_new());
    assert_eq!(
        rebuilt.artifact().digest,
        first.digest,
        "same tree, same bytes"
    );
    let after_second = upload_pack_posts(&server);

    // A new commit on the branch is fetched.
    f.repo.write("deploy/new.yaml", "kind: Secret\n")?;
    let third_commit = f.repo.commit("third")?;
    f.fixture.publish(&f.repo, "app.git")?;
    let next = src.acquire(Some(&first), &store).await?;
    assert!(next.is_new());
    assert_eq!(
        next.artifact().revision.to_string(),
        format!("main@sha1:{third_commit}")
    );
    assert!(upload_pack_posts(&server) - after_second >= 2);

    // Changing the ignore rules rebuilds even at the same revision.
    let mut with_ignore = src.clone();
    with_ignore.ignore = Some("README.md\n".into());
    let rebuilt = with_ignore.acquire(Some(next.artifact()), &store).await?;
    assert!(rebuilt.is_new());
    assert_eq!(rebuilt.artifact().revision, next.artifact().revision);
    assert!(
        !file_names(&store.local_path(&rebuilt.artifact().path)).contains(&"README.md".to_owned())
    );
    Ok(())
}

#[tokio::test]
async fn same_tree_gives_same_digest_from_different_clones_and_transports() -> TestResult {
    let f = fixture()?;
    let server = GitHttpServer::start(f.fixture.serve_dir())?;
    let daemon = GitDaemon::start(f.fixture.serve_dir())?;
    let (a, b, c) = (
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    );
    let http = acquire_new(
        &source(&server.url_for("app.git"), branch("main")),
        &ArtifactStore::new(a.path())?,
    )
    .await;
    // Checkouts happen at different times, so file mtimes differ; the digest must not.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let git = acquire_new(
        &source(&daemon.url_for("app.git"), branch("main")),
        &ArtifactStore::new(b.path())?,
    )
    .await;
    let file_url = format!("file://{}", f.fixture.serve_dir().join("app.git").display());
    let file = acquire_new(
        &source(&file_url, branch("main")),
        &ArtifactStore::new(c.path())?,
    )
    .await;
    assert_eq!(http.digest, git.digest);
    assert_eq!(http.digest, file.digest);
    assert_eq!(http.revision, git.revision);
    let bytes_a = std::fs::read(a.path().join(&http.path))?;
    let bytes_c = std::fs::read(c.path().join(&file.path))?;
    assert_eq!(bytes_a, bytes_c);
    Ok(())
}

#[tokio::test]
async fn ignore_layering_sourceignore_and_spec() -> TestResult {
    let fixture = GitFixture::new()?;
    let repo = fixture.repo("layers")?;
    repo.write(".sourceignore", "*.txt\n")?;
    repo.write("apps/.sourceignore", "secret.yaml\n")?;
    repo.write("apps/secret.yaml", "s\n")?;
    repo.write("apps/app.yaml", "a\n")?;
    repo.write("notes.txt", "n\n")?;
    repo.write("keep.txt", "k\n")?;
    repo.write("logo.png", "p\n")?;
    repo.commit("layers")?;
    fixture.publish(&repo, "layers.git")?;
    let url = format!(
        "file://{}",
        fixture.serve_dir().join("layers.git").display()
    );
    let store_dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(store_dir.path())?;

    let plain = acquire_new(&source(&url, branch("main")), &store).await;
    // .sourceignore files replace the defaults (logo.png stays), nested ones are scoped.
    assert_eq!(
        file_names(&store.local_path(&plain.path)),
        [
            ".sourceignore",
            "apps/.sourceignore",
            "apps/app.yaml",
            "logo.png"
        ]
    );

    let mut spec = source(&url, branch("main"));
    spec.ignore = Some("!keep.txt\n/apps/\n".into());
    let with_spec = acquire_new(&spec, &store).await;
    assert_eq!(
        file_names(&store.local_path(&with_spec.path)),
        [".sourceignore", "keep.txt", "logo.png"]
    );
    Ok(())
}

#[tokio::test]
async fn sparse_checkout_and_submodules() -> TestResult {
    let fixture = GitFixture::new()?;
    let lib = fixture.repo("lib")?;
    lib.write("lib.yaml", "kind: Lib\n")?;
    let lib_commit = lib.commit("lib")?;
    fixture.publish(&lib, "lib.git")?;
    let server = GitHttpServer::start(fixture.serve_dir())?;

    let app = fixture.repo("mono")?;
    app.write("apps/web/web.yaml", "web\n")?;
    app.write("apps/api/api.yaml", "api\n")?;
    app.write("infra/net.yaml", "net\n")?;
    app.write("README.md", "readme\n")?;
    app.add_submodule("vendor/lib", &server.url_for("lib.git"), &lib_commit)?;
    app.commit("mono")?;
    fixture.publish(&app, "mono.git")?;
    let url = server.url_for("mono.git");
    let store_dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(store_dir.path())?;

    let mut sparse = source(&url, branch("main"));
    sparse.sparse_checkout = vec!["apps/web".into(), "infra/".into()];
    let artifact = acquire_new(&sparse, &store).await;
    assert_eq!(
        file_names(&store.local_path(&artifact.path)),
        ["apps/web/web.yaml", "infra/net.yaml"]
    );

    let without = acquire_new(&source(&url, branch("main")), &store).await;
    assert!(
        !file_names(&store.local_path(&without.path)).contains(&"vendor/lib/lib.yaml".to_owned())
    );

    let mut with_subs = source(&url, branch("main"));
    with_subs.recurse_submodules = true;
    let artifact = acquire_new(&with_subs, &store).await;
    let files = archive_files(&store.local_path(&artifact.path));
    assert_eq!(files["vendor/lib/lib.yaml"], b"kind: Lib\n");
    Ok(())
}

#[tokio::test]
async fn basic_auth_bearer_tls_and_mtls() -> TestResult {
    let f = fixture()?;
    let store_dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(store_dir.path())?;

    let basic = GitHttpServer::builder()
        .basic_auth("git", "s3cret")
        .tls()
        .start(f.fixture.serve_dir())?;
    let ca = basic
        .ca_pem()
        .expect("TLS server has a CA")
        .as_bytes()
        .to_vec();
    let mut src = source(&basic.url_for("app.git"), branch("main"));
    src.auth = GitAuth {
        basic: Some(("git".into(), "s3cret".into())),
        ca_pem: Some(ca.clone()),
        ..Default::default()
    };
    let artifact = acquire_new(&src, &store).await;
    assert_eq!(
        artifact.revision.to_string(),
        format!("main@sha1:{}", f.second)
    );
    assert!(
        basic
            .requests()
            .iter()
            .any(|r| r.user.as_deref() == Some("git"))
    );

    // Wrong password: a typed authentication error naming the URL, never the password.
    let mut wrong = src.clone();
    wrong.auth.basic = Some(("git".into(), "wrong-password".into()));
    let err = wrong.acquire(None, &store).await.expect_err("must fail");
    assert!(
        matches!(err, SourceError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(shown.contains(&basic.url_for("app.git")), "{shown}");
    assert!(!shown.contains("wrong-password"), "{shown}");

    // No credentials at all.
    let mut none = src.clone();
    none.auth.basic = None;
    let err = none.acquire(None, &store).await.expect_err("must fail");
    assert!(
        matches!(err, SourceError::AuthenticationFailed { .. }),
        "{err:?}"
    );

    // Without our CA the server certificate is not trusted.
    let mut untrusted = src.clone();
    untrusted.auth.ca_pem = None;
    let err = untrusted
        .acquire(None, &store)
        .await
        .expect_err("must fail");
    assert!(matches!(err, SourceError::Network { .. }), "{err:?}");

    let bearer = GitHttpServer::builder()
        .bearer_token("t0ken")
        .start(f.fixture.serve_dir())?;
    let mut src = source(&bearer.url_for("app.git"), branch("main"));
    src.auth.bearer_token = Some("t0ken".into());
    acquire_new(&src, &store).await;
    src.auth.bearer_token = Some("nope".into());
    let err = src.acquire(None, &store).await.expect_err("must fail");
    assert!(
        matches!(err, SourceError::AuthenticationFailed { .. }),
        "{err:?}"
    );

    let mtls = GitHttpServer::builder()
        .tls()
        .require_client_cert()
        .start(f.fixture.serve_dir())?;
    let client = mtls.issue_client_cert("gitops").expect("TLS")?;
    let mut src = source(&mtls.url_for("app.git"), branch("main"));
    src.auth.ca_pem = Some(mtls.ca_pem().expect("CA").as_bytes().to_vec());
    let err = src
        .acquire(None, &store)
        .await
        .expect_err("no client certificate");
    assert!(
        matches!(err, SourceError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    src.auth.client_identity_pem =
        Some((client.cert_pem.into_bytes(), client.key_pem.into_bytes()));
    acquire_new(&src, &store).await;
    Ok(())
}

#[tokio::test]
async fn missing_refs_ranges_and_unreachable_servers_are_typed() -> TestResult {
    let f = fixture()?;
    let server = GitHttpServer::start(f.fixture.serve_dir())?;
    let url = server.url_for("app.git");
    let store_dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(store_dir.path())?;

    let err = source(&url, branch("nope"))
        .acquire(None, &store)
        .await
        .expect_err("missing");
    match &err {
        SourceError::ReferenceNotFound { url: u, reference } => {
            assert_eq!(u, &url);
            assert!(reference.contains("nope"), "{reference}");
        }
        other => panic!("expected ReferenceNotFound, got {other:?}"),
    }
    let err = source(
        &url,
        GitReference {
            tag: Some("v9.9.9".into()),
            ..Default::default()
        },
    )
    .acquire(None, &store)
    .await
    .expect_err("missing tag");
    assert!(
        matches!(err, SourceError::ReferenceNotFound { .. }),
        "{err:?}"
    );

    let err = source(
        &url,
        GitReference {
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            ..Default::default()
        },
    )
    .acquire(None, &store)
    .await
    .expect_err("missing commit");
    assert!(
        matches!(err, SourceError::ReferenceNotFound { .. }),
        "{err:?}"
    );

    let err = source(
        &url,
        GitReference {
            semver: Some("^3".into()),
            ..Default::default()
        },
    )
    .acquire(None, &store)
    .await
    .expect_err("no tag matches");
    match err {
        SourceError::NoMatchingTag { range, .. } => assert_eq!(range, "^3"),
        other => panic!("expected NoMatchingTag, got {other:?}"),
    }

    // A port nobody listens on.
    let port = gitops_testkit::servers::free_port()?;
    let dead = format!("http://127.0.0.1:{port}/app.git");
    let err = source(&dead, branch("main"))
        .acquire(None, &store)
        .await
        .expect_err("unreachable");
    match &err {
        SourceError::Network { url, .. } => assert_eq!(url, &dead),
        other => panic!("expected Network, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn silent_servers_time_out_and_the_proxy_setting_is_used() -> TestResult {
    let f = fixture()?;
    let store_dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(store_dir.path())?;

    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = silent.local_addr()?;
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming().flatten() {
            held.push(conn);
        }
    });
    let mut src = source(&format!("http://{addr}/app.git"), branch("main"));
    src.timeout = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let err = src.acquire(None, &store).await.expect_err("must time out");
    assert!(matches!(err, SourceError::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    // A proxy that does not exist: the setting is honoured (the request goes to the proxy and
    // fails), while the same source without it succeeds.
    let server = GitHttpServer::start(f.fixture.serve_dir())?;
    let mut proxied = source(&server.url_for("app.git"), branch("main"));
    let port = gitops_testkit::servers::free_port()?;
    proxied.proxy = Some(gitops_source::ProxySettings {
        address: format!("http://127.0.0.1:{port}"),
        basic: None,
    });
    let err = proxied.acquire(None, &store).await.expect_err("proxy down");
    assert!(matches!(err, SourceError::Network { .. }), "{err:?}");
    assert!(
        server.requests().is_empty(),
        "nothing may reach the server past a dead proxy"
    );
    proxied.proxy = None;
    acquire_new(&proxied, &store).await;
    Ok(())
}

/// The fetch is shallow with depth 1: the served repository lacks the object of the tip's
/// parent commit, so any fetch that walks past the tip (no depth, depth 2, …) makes the
/// server's upload-pack fail, while a depth-1 fetch needs only the tip. A commit-pinned
/// reference (fetched without depth, as Flux does) is the control that proves the damage bites.
#[tokio::test]
async fn fetches_are_shallow_with_depth_one() -> TestResult {
    let fixture = GitFixture::new()?;
    let repo = fixture.repo("app")?;
    for i in 1..=3 {
        repo.write(
            "deploy/app.yaml",
            format!("kind: ConfigMap\nversion: {i}\n"),
        )?;
        repo.write(&format!("history/{i}.txt"), format!("{i}\n"))?;
        repo.commit(&format!("commit {i}"))?;
    }
    let tip = repo.head()?;
    repo.tag("v1.0.0")?;
    repo.set_ref("refs/pull/1/head", &tip)?;
    let bare = fixture.publish(&repo, "app.git")?;
    let parent = repo.rev_parse("HEAD~1")?;
    let loose = bare.join("objects").join(&parent[..2]).join(&parent[2..]);
    std::fs::remove_file(&loose).map_err(|e| format!("removing {}: {e}", loose.display()))?;

    let server = GitHttpServer::start(fixture.serve_dir())?;
    let http = server.url_for("app.git");
    let file = format!("file://{}", bare.display());
    let store_dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(store_dir.path())?;
    for url in [&http, &file] {
        for reference in [
            branch("main"),
            GitReference {
                tag: Some("v1.0.0".into()),
                ..Default::default()
            },
            GitReference {
                semver: Some(">=1.0.0".into()),
                ..Default::default()
            },
            GitReference {
                name: Some("refs/pull/1/head".into()),
                ..Default::default()
            },
            GitReference::default(),
        ] {
            let artifact = acquire_new(&source(url, reference.clone()), &store).await;
            assert!(
                artifact
                    .revision
                    .to_string()
                    .ends_with(&format!("sha1:{tip}")),
                "{url} {reference:?}: {}",
                artifact.revision
            );
            let files = file_names(&store.local_path(&artifact.path));
            assert!(files.iter().any(|f| f == "history/3.txt"), "{files:?}");
        }
        // The control: a full fetch needs the missing parent and fails on the server side.
        let pinned = GitReference {
            branch: Some("main".into()),
            commit: Some(tip.clone()),
            ..Default::default()
        };
        assert!(
            source(url, pinned).acquire(None, &store).await.is_err(),
            "a fetch without depth must fail on the damaged history of {url}"
        );
    }
    Ok(())
}

/// A SOCKS5 proxy from the settings (Flux's `proxySecretRef` with a `socks5://` address): the
/// fetch goes through it (the proxy records the CONNECT to the Git server), with and without
/// proxy credentials; wrong proxy credentials fail before anything reaches the server.
#[tokio::test]
async fn socks5_proxy_from_the_settings() -> TestResult {
    use gitops_testkit::servers::Socks5Proxy;
    let f = fixture()?;
    let server = GitHttpServer::start(f.fixture.serve_dir())?;
    let store_dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(store_dir.path())?;
    let target = server.addr().to_string();

    let open = Socks5Proxy::start()?;
    let mut src = source(&server.url_for("app.git"), branch("main"));
    src.proxy = Some(gitops_source::ProxySettings {
        address: open.url(),
        basic: None,
    });
    let a = acquire_new(&src, &store).await;
    assert_eq!(a.revision.to_string(), format!("main@sha1:{}", f.second));
    let seen = open.connections();
    assert!(
        !seen.is_empty() && seen.iter().all(|c| c.granted && c.target == target),
        "{seen:?}"
    );

    let guarded = Socks5Proxy::builder()
        .credentials("proxy-user", "proxy-pass")
        .start()?;
    src.proxy = Some(gitops_source::ProxySettings {
        address: guarded.url(),
        basic: Some(("proxy-user".into(), "wrong-pass".into())),
    });
    let served_before = server.requests().len();
    let err = src
        .acquire(None, &store)
        .await
        .expect_err("refused by the proxy");
    assert!(matches!(err, SourceError::Network { .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong-pass"), "{err}");
    assert_eq!(server.requests().len(), served_before);
    assert!(guarded.connections().iter().all(|c| !c.granted));

    src.proxy = Some(gitops_source::ProxySettings {
        address: guarded.url(),
        basic: Some(("proxy-user".into(), "proxy-pass".into())),
    });
    let b = acquire_new(&src, &store).await;
    assert_eq!(b.revision, a.revision);
    assert!(
        guarded
            .connections()
            .iter()
            .any(|c| c.granted && c.user.as_deref() == Some("proxy-user") && c.target == target)
    );
    Ok(())
}

/// Flux's `spec.verify` with SSH keys: commits and annotated tags signed by `git` with
/// `gpg.format=ssh` verify against the trusted keys (the key's fingerprint lands in the
/// metadata); unsigned objects, untrusted signers, a tag mode on a branch and OpenPGP
/// signatures (not verified by this crate) are typed refusals, and no artifact is written.
#[tokio::test]
async fn ssh_signed_commits_and_tags_are_verified() -> TestResult {
    use gitops_source::git::VERIFIED_KEY;
    use gitops_source::signature::VerifyError;
    use gitops_source::{GitVerification, VerifyMode};
    let keys = tempfile::tempdir()?;
    let keygen = |name: &str| -> Result<(std::path::PathBuf, String), Box<dyn std::error::Error>> {
        let path = keys.path().join(name);
        let ok = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&path)
            .status()?
            .success();
        assert!(ok, "ssh-keygen");
        let public = std::fs::read_to_string(path.with_extension("pub"))?;
        Ok((path, public))
    };
    let (trusted_key, trusted_pub) = keygen("trusted")?;
    let (other_key, other_pub) = keygen("other")?;
    let fingerprint = String::from_utf8(
        std::process::Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(trusted_key.with_extension("pub"))
            .output()?
            .stdout,
    )?
    .split_whitespace()
    .nth(1)
    .expect("a fingerprint")
    .to_owned();

    let fixture = GitFixture::new()?;
    let repo = fixture.repo("app")?;
    let signing = |key: &Path| {
        [
            "-c".to_owned(),
            "gpg.format=ssh".to_owned(),
            "-c".to_owned(),
            format!("user.signingKey={}", key.display()),
        ]
    };
    let commit_signed = |key: &Path, message: &str| -> Result<String, Box<dyn std::error::Error>> {
        repo.git(["add", "-A"])?;
        let mut args: Vec<String> = signing(key).to_vec();
        args.extend([
            "commit".into(),
            "-q".into(),
            "-S".into(),
            "-m".into(),
            message.into(),
        ]);
        repo.git(&args)?;
        Ok(repo.head()?)
    };
    repo.write("deploy/app.yaml", "kind: ConfigMap\n")?;
    let signed = commit_signed(&trusted_key, "signed")?;
    let mut tag_args: Vec<String> = signing(&trusted_key).to_vec();
    tag_args.extend([
        "tag".into(),
        "-s".into(),
        "v1.0.0".into(),
        "-m".into(),
        "release".into(),
    ]);
    repo.git(&tag_args)?;
    repo.tag_annotated("v2.0.0", "unsigned release")?;
    repo.switch_new("unsigned")?;
    repo.write("unsigned.txt", "x\n")?;
    repo.commit("unsigned")?;
    repo.switch("main")?;
    repo.switch_new("foreign")?;
    repo.write("foreign.txt", "x\n")?;
    commit_signed(&other_key, "signed by another key")?;
    repo.switch("main")?;
    let bare = fixture.publish(&repo, "app.git")?;
    let url = format!("file://{}", bare.display());

    let store_dir = tempfile::tempdir()?;
    let store = ArtifactStore::new(store_dir.path())?;
    let verifying = |reference: GitReference, mode: VerifyMode, trusted: &str| {
        let mut src = source(&url, reference);
        src.verify = Some(GitVerification {
            mode,
            ssh_authorized_keys: format!("# trusted signers\n{trusted}"),
        });
        src
    };
    let tag = |name: &str| GitReference {
        tag: Some(name.into()),
        ..Default::default()
    };

    let a = acquire_new(
        &verifying(branch("main"), VerifyMode::Head, &trusted_pub),
        &store,
    )
    .await;
    assert_eq!(a.revision.to_string(), format!("main@sha1:{signed}"));
    assert_eq!(
        a.metadata[VERIFIED_KEY],
        format!("commit {signed} by {fingerprint}")
    );
    let b = acquire_new(
        &verifying(tag("v1.0.0"), VerifyMode::TagAndHead, &trusted_pub),
        &store,
    )
    .await;
    assert_eq!(
        b.metadata[VERIFIED_KEY],
        format!("tag v1.0.0 by {fingerprint}, commit {signed} by {fingerprint}")
    );
    // Several trusted keys: the signer's is found among them.
    acquire_new(
        &verifying(
            tag("v1.0.0"),
            VerifyMode::Tag,
            &format!("{other_pub}\n{trusted_pub}"),
        ),
        &store,
    )
    .await;

    let refused = |reference: GitReference, mode: VerifyMode, trusted: &str| {
        let src = verifying(reference, mode, trusted);
        let store = store.clone();
        async move {
            match src.acquire(None, &store).await {
                Err(err @ SourceError::Verification { .. }) => {
                    assert_eq!(err.reason(), "InvalidCommitSignature");
                    let SourceError::Verification { source, .. } = err else {
                        unreachable!()
                    };
                    source
                }
                other => panic!("expected a verification failure, got {other:?}"),
            }
        }
    };
    assert!(matches!(
        refused(branch("unsigned"), VerifyMode::Head, &trusted_pub).await,
        VerifyError::Unsigned { .. }
    ));
    assert!(matches!(
        refused(branch("foreign"), VerifyMode::Head, &trusted_pub).await,
        VerifyError::Invalid { .. }
    ));
    assert!(matches!(
        refused(branch("main"), VerifyMode::Head, &other_pub).await,
        VerifyError::Invalid { .. }
    ));
    assert!(matches!(
        refused(tag("v2.0.0"), VerifyMode::Tag, &trusted_pub).await,
        VerifyError::Unsigned { .. }
    ));
    assert!(matches!(
        refused(branch("main"), VerifyMode::Tag, &trusted_pub).await,
        VerifyError::NotATag { .. }
    ));

    // An OpenPGP-signed commit is refused, not passed.
    let gnupg = keys.path().join("gnupg");
    std::fs::create_dir(&gnupg)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700))?;
    }
    let gpg = |args: &[&str]| -> Result<std::process::Output, std::io::Error> {
        std::process::Command::new("gpg")
            .args(args)
            .env("GNUPGHOME", &gnupg)
            .output()
    };
    assert!(
        gpg(&[
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "signer@example.org",
            "default",
            "default",
            "never",
        ])?
        .status
        .success()
    );
    repo.switch_new("pgp")?;
    repo.write("pgp.txt", "x\n")?;
    repo.git(["add", "-A"])?;
    let pgp_commit = std::process::Command::new("git")
        .current_dir(repo.path())
        .args(["-c", "user.name=a", "-c", "user.email=signer@example.org"])
        .args(["-c", "user.signingKey=signer@example.org"])
        .args(["commit", "-q", "-S", "-m", "pgp signed"])
        .env("GNUPGHOME", &gnupg)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()?;
    let _ = std::process::Command::new("gpgconf")
        .args(["--kill", "gpg-agent"])
        .env("GNUPGHOME", &gnupg)
        .status();
    assert!(pgp_commit.success(), "git commit -S with gpg");
    fixture.publish(&repo, "app.git")?;
    assert!(matches!(
        refused(branch("pgp"), VerifyMode::Head, &trusted_pub).await,
        VerifyError::UnsupportedPgp { .. }
    ));
    Ok(())
}
