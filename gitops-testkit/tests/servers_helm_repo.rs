//! `HelmRepoServer`: `index.yaml` and chart archives fetched over HTTP(S), with Basic auth.

use std::net::TcpStream;

use gitops_testkit::servers::HelmRepoServer;
use reqwest::StatusCode;

const INDEX: &str = "apiVersion: v1\nentries:\n  podinfo:\n  - name: podinfo\n    version: 6.5.0\n    urls:\n    - podinfo-6.5.0.tgz\ngenerated: \"2024-01-01T00:00:00Z\"\n";

/// A repository directory with an index and a (binary) chart archive.
fn repo_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("index.yaml"), INDEX).expect("index");
    std::fs::write(
        dir.path().join("podinfo-6.5.0.tgz"),
        [0x1f, 0x8b, 8, 0, 1, 2, 3],
    )
    .expect("chart");
    dir
}

#[tokio::test]
async fn index_and_chart_are_served() {
    let dir = repo_dir();
    let server = HelmRepoServer::start(dir.path()).expect("server");
    assert_eq!(server.index_url(), format!("{}/index.yaml", server.url()));
    let client = reqwest::Client::new();
    let index = client
        .get(server.index_url())
        .send()
        .await
        .expect("GET index");
    assert_eq!(index.status(), StatusCode::OK);
    assert_eq!(index.text().await.expect("body"), INDEX);
    let chart = client
        .get(server.url_for("podinfo-6.5.0.tgz"))
        .send()
        .await
        .expect("GET chart");
    assert_eq!(chart.status(), StatusCode::OK);
    assert_eq!(
        chart.bytes().await.expect("body").as_ref(),
        [0x1f, 0x8b, 8, 0, 1, 2, 3]
    );
    let missing = client
        .get(server.url_for("nope-1.0.0.tgz"))
        .send()
        .await
        .expect("GET missing");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let paths: Vec<_> = server
        .requests()
        .into_iter()
        .map(|r| (r.path, r.status))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("/index.yaml".to_string(), 200),
            ("/podinfo-6.5.0.tgz".to_string(), 200),
            ("/nope-1.0.0.tgz".to_string(), 404)
        ]
    );
}

#[tokio::test]
async fn basic_auth_and_tls_guard_the_index() {
    let dir = repo_dir();
    let server = HelmRepoServer::builder()
        .basic_auth("helm", "pw")
        .tls()
        .start(dir.path())
        .expect("server");
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let ca = reqwest::Certificate::from_pem(server.ca_pem().expect("CA").as_bytes()).expect("CA");
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("client");

    let ok = client
        .get(server.index_url())
        .basic_auth("helm", Some("pw"))
        .send()
        .await
        .expect("GET");
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.text().await.expect("body"), INDEX);

    let wrong = client
        .get(server.index_url())
        .basic_auth("helm", Some("wrong"))
        .send()
        .await
        .expect("GET");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().contains_key("www-authenticate"));
    let anonymous = client.get(server.index_url()).send().await.expect("GET");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_response_delay_trips_client_timeouts() {
    let dir = repo_dir();
    let server = HelmRepoServer::builder()
        .response_delay(std::time::Duration::from_millis(1500))
        .start(dir.path())
        .expect("server");
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(200))
        .build()
        .expect("client");
    let err = impatient
        .get(server.index_url())
        .send()
        .await
        .expect_err("the delay outlasts the timeout");
    assert!(err.is_timeout(), "{err}");
    let patient = reqwest::Client::new();
    let ok = patient.get(server.index_url()).send().await.expect("GET");
    assert_eq!(ok.text().await.expect("body"), INDEX);
}

#[test]
fn after_drop_the_port_refuses_connections() {
    let dir = repo_dir();
    let server = HelmRepoServer::start(dir.path()).expect("server");
    let addr = server.addr();
    TcpStream::connect(addr).expect("running server accepts");
    drop(server);
    assert!(
        TcpStream::connect(addr).is_err(),
        "{addr} still accepts after drop"
    );
}
