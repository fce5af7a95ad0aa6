//! `gitops source serve DIR --addr` as a real process: it serves the artifacts `gitops source
//! git` wrote into DIR (GET, HEAD, ranges, the bytes matching the printed digest) and nothing
//! else (no listings, no traversal, no symlinks, no other methods).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gitops_testkit::fixture::GitFixture;
use serde_json::Value;

const GITOPS: &str = env!("CARGO_BIN_EXE_gitops");

/// The serving process, killed when the test ends (pass or fail).
struct Serving {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `gitops source serve DIR --addr 127.0.0.1:0` and reads the bound address from the
/// line it prints on stderr (`serving DIR on http://127.0.0.1:PORT/`).
fn serve(dir: &std::path::Path) -> Serving {
    let mut child = Command::new(GITOPS)
        .args(["source", "serve"])
        .arg(dir)
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gitops source serve starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut line = String::new();
    BufReader::new(stderr)
        .read_line(&mut line)
        .expect("reads the serving line");
    let addr = line
        .trim()
        .rsplit_once("http://")
        .and_then(|(_, rest)| rest.trim_end_matches('/').parse().ok());
    let Some(addr) = addr else {
        let _ = child.kill();
        panic!("no address in {line:?}");
    };
    Serving { child, addr }
}

/// Sends one raw HTTP/1.1 request; returns the status code, the headers (lower-case names)
/// and the body. Raw, so that `..` and encoded separators reach the server unnormalised.
fn request(addr: SocketAddr, method: &str, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n"
    )
    .expect("writes");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("reads");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, head, raw[split + 4..].to_vec())
}

#[test]
fn serves_stored_artifacts_with_head_and_ranges_and_nothing_else() {
    let fixture = GitFixture::new().expect("fixture");
    let repo = fixture.repo("app").expect("repo");
    repo.write(
        "deploy/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n",
    )
    .expect("write");
    repo.commit("first").expect("commit");
    let store = tempfile::tempdir().expect("tempdir");
    let acquired = Command::new(GITOPS)
        .args([
            "source",
            "git",
            &repo.file_url(),
            "--branch",
            "main",
            "--out",
        ])
        .arg(store.path())
        .output()
        .expect("gitops source git runs");
    assert!(
        acquired.status.success(),
        "{}",
        String::from_utf8_lossy(&acquired.stderr)
    );
    let json: Value = serde_json::from_slice(&acquired.stdout).expect("JSON");
    let file = std::path::PathBuf::from(json["path"].as_str().expect("path"));
    let rel = file
        .strip_prefix(store.path())
        .expect("the artifact is inside the store")
        .to_str()
        .expect("utf-8")
        .to_owned();
    let url_path = format!("/{rel}");
    let size = json["size"].as_u64().expect("size");
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        "/etc/passwd",
        file.parent().expect("object dir").join("passwd"),
    )
    .expect("symlink");

    let serving = serve(store.path());
    let addr = serving.addr;

    // The bytes are the artifact's: their digest is the one `source git` printed.
    let (status, _, body) = request(addr, "GET", &url_path, "");
    assert_eq!(status, 200);
    assert_eq!(body.len() as u64, size);
    assert_eq!(
        gitops_source::Digest::sha256_of(&body).to_string(),
        json["digest"].as_str().expect("digest")
    );

    let (status, head, empty) = request(addr, "HEAD", &url_path, "");
    assert_eq!(status, 200);
    assert!(head.contains(&format!("content-length: {size}")), "{head}");
    assert!(empty.is_empty());

    let (status, head, part) = request(addr, "GET", &url_path, "Range: bytes=2-9\r\n");
    assert_eq!(status, 206, "{head}");
    assert_eq!(part, body[2..10]);
    assert!(
        head.contains(&format!("content-range: bytes 2-9/{size}")),
        "{head}"
    );

    let dir = url_path.rsplit_once('/').expect("a directory").0.to_owned();
    for bad in [
        "/".to_owned(),
        "/gitrepository/".to_owned(),
        dir.clone(),
        format!("{dir}/"),
        format!("{dir}/passwd"),
        format!("{dir}/../../../../../etc/passwd"),
        format!("{dir}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd"),
        "/..%2f..%2f..%2fetc%2fpasswd".to_owned(),
        format!("{url_path}.missing"),
    ] {
        let (status, _, body) = request(addr, "GET", &bad, "");
        assert_eq!(status, 404, "{bad}");
        assert!(!String::from_utf8_lossy(&body).contains("root:"), "{bad}");
    }
    let (status, _, _) = request(addr, "DELETE", &url_path, "");
    assert_eq!(status, 405);
    // Still there after the refused DELETE.
    assert!(file.is_file());
}
