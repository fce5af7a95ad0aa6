//! `fetch_artifact` and `ArtifactServer` end to end over real HTTP on 127.0.0.1, including a
//! hostile-archive suite: every refused archive leaves nothing outside (or inside) the target.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gitops_source::{
    ArtifactServer, ArtifactStore, Digest, FetchLimits, ObjectRef, SourceError, fetch_artifact,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

struct Served {
    store: ArtifactStore,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Served {
    fn url(&self, rel: &str) -> url::Url {
        format!("http://{}/{rel}", self.addr)
            .parse()
            .expect("valid url")
    }

    /// Stores raw bytes as `bucket/ns/hostile/<name>` and returns its URL and digest.
    fn put(&self, name: &str, bytes: &[u8]) -> (url::Url, Digest) {
        let obj = ObjectRef::new("bucket", "ns", "hostile").expect("valid");
        let stored = self
            .store
            .write_file(&obj, name, &mut &bytes[..])
            .expect("stored");
        (self.url(&stored.path.to_string_lossy()), stored.digest)
    }
}

async fn serve() -> Served {
    let dir = tempfile::tempdir().expect("tmp");
    let store = ArtifactStore::new(dir.path()).expect("store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = ArtifactServer::new(&store);
    tokio::spawn(async move {
        let _ = server
            .serve(listener, async move {
                let _ = rx.await;
            })
            .await;
    });
    Served {
        store,
        addr,
        _dir: dir,
        shutdown: Some(tx),
    }
}

/// Builds a tar.gz from raw entries, writing names byte for byte (no validation), so hostile
/// paths can be expressed.
enum Raw<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    CharDevice(&'a str),
    Zeros(&'a str, u64),
}

fn header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    let gnu = h.as_gnu_mut().expect("gnu header");
    gnu.name = [0; 100];
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    h
}

fn link_header(name: &str, kind: tar::EntryType, target: &str) -> tar::Header {
    let mut h = header(name, kind, 0);
    let gnu = h.as_gnu_mut().expect("gnu header");
    gnu.linkname = [0; 100];
    gnu.linkname[..target.len()].copy_from_slice(target.as_bytes());
    h
}

fn tar_gz(entries: &[Raw<'_>]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    for e in entries {
        let (mut h, data): (tar::Header, Box<dyn Read>) = match e {
            Raw::File(n, d) => (
                header(n, tar::EntryType::Regular, d.len() as u64),
                Box::new(*d),
            ),
            Raw::Dir(n) => (
                header(n, tar::EntryType::Directory, 0),
                Box::new(std::io::empty()),
            ),
            Raw::Symlink(n, t) => (
                link_header(n, tar::EntryType::Symlink, t),
                Box::new(std::io::empty()),
            ),
            Raw::Hardlink(n, t) => (
                link_header(n, tar::EntryType::Link, t),
                Box::new(std::io::empty()),
            ),
            Raw::CharDevice(n) => (
                header(n, tar::EntryType::Char, 0),
                Box::new(std::io::empty()),
            ),
            Raw::Zeros(n, size) => (
                header(n, tar::EntryType::Regular, *size),
                Box::new(std::io::repeat(0).take(*size)),
            ),
        };
        h.set_cksum();
        b.append(&h, data).expect("append");
    }
    b.into_inner().expect("tar").finish().expect("gzip")
}

/// Everything under `dir`, relative, sorted.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).expect("under dir").to_path_buf());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn limits() -> FetchLimits {
    FetchLimits {
        timeout: Duration::from_secs(5),
        retries: 0,
        max_download_bytes: 8 * 1024 * 1024,
        max_extracted_bytes: 1024 * 1024,
        max_entries: 100,
    }
}

#[tokio::test]
async fn fetches_verifies_and_extracts_a_stored_artifact() -> TestResult {
    let served = serve().await;
    let src = tempfile::tempdir()?;
    std::fs::create_dir_all(src.path().join("apps"))?;
    std::fs::write(src.path().join("apps/a.yaml"), "kind: A\n")?;
    std::fs::write(src.path().join("run.sh"), "#!/bin/sh\n")?;
    let obj = ObjectRef::new("gitrepository", "ns", "app")?;
    let (stored, _) = served
        .store
        .archive_dir(&obj, "abc.tar.gz", src.path(), None)?;
    let work = tempfile::tempdir()?;
    let target = work.path().join("out");
    let fetched = fetch_artifact(
        &served.url(&stored.path.to_string_lossy()),
        &stored.digest,
        &target,
        limits(),
    )
    .await?;
    assert_eq!(fetched.digest, stored.digest);
    assert_eq!(fetched.size, stored.size);
    assert_eq!(fetched.files, 2);
    assert_eq!(
        std::fs::read_to_string(target.join("apps/a.yaml"))?,
        "kind: A\n"
    );
    assert_eq!(
        listing(work.path()),
        [
            PathBuf::from("out"),
            "out/apps".into(),
            "out/apps/a.yaml".into(),
            "out/run.sh".into()
        ]
    );
    Ok(())
}

#[tokio::test]
async fn hostile_archives_are_refused_and_leave_nothing_behind() -> TestResult {
    let served = serve().await;
    let big = 64 * 1024 * 1024;
    let many: Vec<String> = (0..150).map(|i| format!("f{i}")).collect();
    let many_entries: Vec<Raw<'_>> = many.iter().map(|n| Raw::File(n, b"x")).collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "traversal",
            tar_gz(&[
                Raw::File("ok.txt", b"ok"),
                Raw::File("../evil.txt", b"evil"),
            ]),
            "`..`",
        ),
        (
            "deep-traversal",
            tar_gz(&[Raw::File("a/../../evil.txt", b"evil")]),
            "`..`",
        ),
        (
            "absolute",
            tar_gz(&[Raw::File("/tmp/gitops-evil-absolute.txt", b"evil")]),
            "absolute",
        ),
        (
            "symlink-escape",
            tar_gz(&[
                Raw::Symlink("link", "../../.."),
                Raw::File("link/evil.txt", b"evil"),
            ]),
            "escapes",
        ),
        (
            "symlink-absolute",
            tar_gz(&[Raw::Symlink("etc", "/etc")]),
            "escapes",
        ),
        (
            "hardlink-escape",
            tar_gz(&[Raw::Hardlink("passwd", "../../etc/passwd")]),
            "escapes",
        ),
        ("device", tar_gz(&[Raw::CharDevice("null")]), "not allowed"),
        (
            "size-bomb",
            tar_gz(&[Raw::Zeros("zeros.bin", big)]),
            "exceed",
        ),
        ("too-many-entries", tar_gz(&many_entries), "entries"),
        (
            "file-over-dir",
            tar_gz(&[Raw::Dir("d/"), Raw::File("d", b"x")]),
            "directory",
        ),
    ];
    for (name, bytes, reason_part) in cases {
        let (url, digest) = served.put(&format!("{name}.tar.gz"), &bytes);
        let work = tempfile::tempdir()?;
        let target = work.path().join("nested/out");
        let err = fetch_artifact(&url, &digest, &target, limits())
            .await
            .expect_err(name);
        match &err {
            SourceError::UnsafeArchive { url: u, reason, .. } => {
                assert_eq!(u, &url.to_string(), "{name}");
                assert!(reason.contains(reason_part), "{name}: {reason}");
            }
            other => panic!("{name}: expected UnsafeArchive, got {other:?}"),
        }
        // Nothing extracted, no staging or download files left.
        assert_eq!(listing(work.path()), [PathBuf::from("nested")], "{name}");
        assert!(!Path::new("/tmp/gitops-evil-absolute.txt").exists());
    }
    Ok(())
}

#[tokio::test]
async fn digest_is_verified_before_extraction() -> TestResult {
    let served = serve().await;
    let bytes = tar_gz(&[Raw::File("a.txt", b"a")]);
    let (url, _) = served.put("a.tar.gz", &bytes);
    let wrong = Digest::sha256_of(b"something else");
    let work = tempfile::tempdir()?;
    let target = work.path().join("out");
    let err = fetch_artifact(&url, &wrong, &target, limits())
        .await
        .expect_err("mismatch");
    match err {
        SourceError::DigestMismatch {
            expected,
            actual,
            url: u,
        } => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, Digest::sha256_of(&bytes));
            assert_eq!(u, url.to_string());
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert!(listing(work.path()).is_empty());
    Ok(())
}

#[tokio::test]
async fn network_failures_timeouts_and_missing_files() -> TestResult {
    let served = serve().await;
    let digest = Digest::sha256_of(b"x");
    let work = tempfile::tempdir()?;

    let missing = served.url("bucket/ns/none/x.tar.gz");
    let err = fetch_artifact(&missing, &digest, &work.path().join("a"), limits())
        .await
        .expect_err("404");
    assert!(
        matches!(&err, SourceError::Network { message, .. } if message.contains("404")),
        "{err:?}"
    );

    // A port nobody listens on, retried once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = closed.local_addr()?.port();
    drop(closed);
    let url: url::Url = format!("http://127.0.0.1:{port}/x.tar.gz").parse()?;
    let mut retry = limits();
    retry.retries = 1;
    let err = fetch_artifact(&url, &digest, &work.path().join("b"), retry)
        .await
        .expect_err("refused");
    assert!(matches!(err, SourceError::Network { .. }), "{err:?}");

    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let silent_addr = silent.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    let url: url::Url = format!("http://{silent_addr}/x.tar.gz").parse()?;
    let mut quick = limits();
    quick.timeout = Duration::from_millis(300);
    let err = fetch_artifact(&url, &digest, &work.path().join("c"), quick)
        .await
        .expect_err("timeout");
    assert!(matches!(err, SourceError::Timeout { .. }), "{err:?}");
    assert!(
        listing(work.path()).is_empty(),
        "{:?}",
        listing(work.path())
    );
    Ok(())
}

/// Sends a raw HTTP/1.1 request (paths exactly as written) and returns status line and body.
fn raw_request(addr: SocketAddr, request: &str) -> (String, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = match text.find("\r\n\r\n") {
        Some(i) => response[i + 4..].to_vec(),
        None => Vec::new(),
    };
    (status, body)
}

#[tokio::test]
async fn server_serves_files_with_head_and_ranges_and_nothing_else() -> TestResult {
    let served = serve().await;
    let (url, _) = served.put("x.tar.gz", b"0123456789");
    let root = served.store.root().to_path_buf();
    #[cfg(unix)]
    std::os::unix::fs::symlink("/etc/passwd", root.join("bucket/ns/hostile/passwd"))?;
    let addr = served.addr;
    let path = url.path().to_owned();

    tokio::task::spawn_blocking(move || {
        let get = |p: &str, extra: &str| {
            raw_request(
                addr,
                &format!("GET {p} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"),
            )
        };
        let (status, body) = get(&path, "");
        assert!(status.contains("200"), "{status}");
        assert_eq!(body, b"0123456789");

        let (status, body) = get(&path, "Range: bytes=2-4\r\n");
        assert!(status.contains("206"), "{status}");
        assert_eq!(body, b"234");

        let (status, body) = raw_request(
            addr,
            &format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        assert!(status.contains("200"), "{status}");
        assert!(body.is_empty());

        for bad in [
            "/",
            "/bucket/",
            "/bucket/ns/hostile",
            "/bucket/ns/hostile/",
            "/bucket/ns/hostile/.lock",
            "/bucket/ns/hostile/passwd",
            "/bucket/ns/hostile/../../../../etc/passwd",
            "/bucket/ns/hostile/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "/..%2f..%2fetc%2fpasswd",
            "/nope.tar.gz",
        ] {
            let (status, body) = get(bad, "");
            assert!(status.contains("404"), "{bad}: {status}");
            assert!(!String::from_utf8_lossy(&body).contains("root:"), "{bad}");
        }
        let (status, _) = raw_request(
            addr,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        );
        assert!(status.contains("405"), "{status}");
    })
    .await?;
    Ok(())
}
