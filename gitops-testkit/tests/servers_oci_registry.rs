//! `OciRegistry`: blobs pushed and pulled through Debian's `docker-registry` over the OCI
//! distribution HTTP API, with and without authentication and TLS.

use std::net::TcpStream;

use gitops_testkit::servers::{OciRegistry, ServerError};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

type Auth<'a> = Option<(&'a str, &'a str)>;

fn with_auth(req: reqwest::RequestBuilder, auth: Auth<'_>) -> reqwest::RequestBuilder {
    match auth {
        Some((user, password)) => req.basic_auth(user, Some(password)),
        None => req,
    }
}

/// Pushes `data` as a blob of repository `name` (monolithic upload: POST then PUT) and
/// returns its digest.
async fn push_blob(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    data: &[u8],
    auth: Auth<'_>,
) -> String {
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(data)));
    let start = with_auth(
        client.post(format!("{base}/v2/{name}/blobs/uploads/")),
        auth,
    )
    .send()
    .await
    .expect("start upload");
    assert_eq!(start.status(), StatusCode::ACCEPTED, "start upload");
    let location = start
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("upload location")
        .to_string();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = with_auth(client.put(format!("{location}{sep}digest={digest}")), auth)
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .expect("finish upload");
    assert_eq!(put.status(), StatusCode::CREATED, "finish upload");
    assert_eq!(
        put.headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok()),
        Some(digest.as_str())
    );
    digest
}

async fn pull_blob(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    digest: &str,
    auth: Auth<'_>,
) -> reqwest::Response {
    with_auth(client.get(format!("{base}/v2/{name}/blobs/{digest}")), auth)
        .send()
        .await
        .expect("get blob")
}

#[tokio::test]
async fn a_blob_round_trips_through_an_anonymous_registry() {
    let registry = OciRegistry::start().expect("registry");
    assert!(registry.url().starts_with("http://127.0.0.1:"));
    assert_eq!(
        registry.oci_url("charts/app"),
        format!("oci://{}/charts/app", registry.host())
    );
    let client = reqwest::Client::new();
    let data = b"layer bytes for gitops-testkit\n";
    let digest = push_blob(&client, &registry.url(), "testkit/app", data, None).await;

    let got = pull_blob(&client, &registry.url(), "testkit/app", &digest, None).await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.expect("body").as_ref(), data);

    // The registry stored it on disk, in its own directory.
    let blob_dir = registry
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&digest["sha256:".len().."sha256:".len() + 2])
        .join(&digest["sha256:".len()..]);
    assert!(blob_dir.join("data").exists(), "{}", blob_dir.display());

    let missing = format!("sha256:{}", "0".repeat(64));
    let got = pull_blob(&client, &registry.url(), "testkit/app", &missing, None).await;
    assert_eq!(got.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn htpasswd_auth_requires_the_right_password() {
    let registry = OciRegistry::builder()
        .basic_auth("flux", "p4ss")
        .start()
        .expect("registry");
    assert_eq!(registry.credentials(), Some(("flux", "p4ss")));
    let client = reqwest::Client::new();
    let base = registry.url();

    let anonymous = client
        .get(format!("{base}/v2/"))
        .send()
        .await
        .expect("GET /v2/");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let challenge = anonymous
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(challenge.starts_with("Basic"), "{challenge}");

    let wrong = client
        .get(format!("{base}/v2/"))
        .basic_auth("flux", Some("wrong"))
        .send()
        .await
        .expect("GET /v2/");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let auth = Some(("flux", "p4ss"));
    let digest = push_blob(&client, &base, "private/app", b"secret layer", auth).await;
    let got = pull_blob(&client, &base, "private/app", &digest, auth).await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.expect("body").as_ref(), b"secret layer");
    let refused = pull_blob(&client, &base, "private/app", &digest, None).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let refused = pull_blob(
        &client,
        &base,
        "private/app",
        &digest,
        Some(("flux", "nope")),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tls_with_auth_is_trusted_with_the_generated_ca() {
    let registry = OciRegistry::builder()
        .basic_auth("flux", "p4ss")
        .tls()
        .start()
        .expect("registry");
    let base = registry.url();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let ca = reqwest::Certificate::from_pem(registry.ca_pem().expect("CA").as_bytes()).expect("CA");
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("client");
    let auth = Some(("flux", "p4ss"));
    let digest = push_blob(&client, &base, "tls/app", b"over tls", auth).await;
    let got = pull_blob(&client, &base, "tls/app", &digest, auth).await;
    assert_eq!(got.bytes().await.expect("body").as_ref(), b"over tls");

    // Without the CA the certificate is not trusted.
    let untrusting = reqwest::Client::builder()
        .tls_certs_only([])
        .build()
        .expect("client");
    assert!(untrusting.get(format!("{base}/v2/")).send().await.is_err());
}

#[tokio::test]
async fn client_certificates_are_required_when_asked_for() {
    let registry = OciRegistry::builder()
        .require_client_certificates()
        .start()
        .expect("registry");
    let base = registry.url();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let ca_pem = registry.ca_pem().expect("CA").as_bytes().to_vec();
    let issued = registry.client_cert().expect("client certificate");
    let identity =
        reqwest::Identity::from_pem(format!("{}\n{}", issued.cert_pem, issued.key_pem).as_bytes())
            .expect("identity");
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca_pem).expect("CA")])
        .identity(identity)
        .build()
        .expect("client");
    let digest = push_blob(&client, &base, "mtls/app", b"over mtls", None).await;
    let got = pull_blob(&client, &base, "mtls/app", &digest, None).await;
    assert_eq!(got.bytes().await.expect("body").as_ref(), b"over mtls");

    // Trusting the CA is not enough: without a client certificate the handshake is refused.
    let anonymous = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca_pem).expect("CA")])
        .build()
        .expect("client");
    let refused = anonymous.get(format!("{base}/v2/")).send().await;
    assert!(refused.is_err(), "{refused:?}");
}

#[test]
fn after_drop_the_port_refuses_connections() {
    let registry = OciRegistry::start().expect("registry");
    let addr = registry.addr();
    TcpStream::connect(addr).expect("running registry accepts");
    drop(registry);
    assert!(
        TcpStream::connect(addr).is_err(),
        "{addr} still accepts after drop"
    );
}

#[test]
fn missing_binaries_name_their_packages() {
    let err = OciRegistry::builder()
        .registry_binary("/nonexistent/docker-registry")
        .start()
        .expect_err("no registry there");
    assert!(
        matches!(&err, ServerError::MissingBinary { package, .. } if package == "docker-registry"),
        "{err}"
    );
    let err = OciRegistry::builder()
        .basic_auth("u", "p")
        .htpasswd_binary("/nonexistent/htpasswd")
        .start()
        .expect_err("no htpasswd there");
    assert!(
        matches!(&err, ServerError::MissingBinary { package, .. } if package == "apache2-utils"),
        "{err}"
    );
}

/// The registry's token flow, by hand: the challenge names the realm and service, the token
/// server checks the Basic credentials and grants the asked scopes in a JWT the registry
/// accepts; anonymous tokens grant nothing and wrong credentials get no token.
#[tokio::test]
async fn token_auth_issues_jwts_the_registry_accepts() {
    let registry = OciRegistry::builder()
        .token_auth("flux", "t0ken-pass")
        .start()
        .expect("registry with token auth");
    let client = reqwest::Client::new();
    let base = registry.url();
    let realm = registry.token_realm().expect("a token realm");

    let challenge = client
        .get(format!("{base}/v2/"))
        .send()
        .await
        .expect("GET /v2/");
    assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
    let header = challenge
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .expect("a challenge")
        .to_owned();
    assert!(header.starts_with("Bearer "), "{header}");
    assert!(header.contains(&format!("realm=\"{realm}\"")), "{header}");
    let service = header
        .split("service=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a service")
        .to_owned();

    let token = |user: Option<(&str, &str)>, scope: &str| {
        let req = client.get(format!(
            "{realm}?service={service}&scope={}",
            scope.replace(':', "%3A").replace(',', "%2C")
        ));
        let req = match user {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        };
        async move { req.send().await.expect("token request") }
    };
    let wrong = token(Some(("flux", "not-it")), "repository:testkit/app:pull,push").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let granted: serde_json::Value = token(
        Some(("flux", "t0ken-pass")),
        "repository:testkit/app:pull,push",
    )
    .await
    .json()
    .await
    .expect("token JSON");
    let jwt = granted["token"].as_str().expect("a token").to_owned();
    assert_eq!(jwt.split('.').count(), 3, "{jwt}");

    // The JWT works for push and pull on the repository it names.
    let data = b"layer bytes behind the token flow\n";
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(data)));
    let start = client
        .post(format!("{base}/v2/testkit/app/blobs/uploads/"))
        .bearer_auth(&jwt)
        .send()
        .await
        .expect("start upload");
    assert_eq!(
        start.status(),
        StatusCode::ACCEPTED,
        "{:?}",
        start.text().await
    );
    let location = start
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("upload location")
        .to_string();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = client
        .put(format!("{location}{sep}digest={digest}"))
        .bearer_auth(&jwt)
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .expect("finish upload");
    assert_eq!(put.status(), StatusCode::CREATED);
    let got = client
        .get(format!("{base}/v2/testkit/app/blobs/{digest}"))
        .bearer_auth(&jwt)
        .send()
        .await
        .expect("get blob");
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.expect("body").as_ref(), data);
    // Not for another repository.
    let other = client
        .get(format!("{base}/v2/testkit/other/blobs/{digest}"))
        .bearer_auth(&jwt)
        .send()
        .await
        .expect("get blob");
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);

    // An anonymous token carries no access: the registry refuses it.
    let anonymous: serde_json::Value = token(None, "repository:testkit/app:pull")
        .await
        .json()
        .await
        .expect("token JSON");
    let anonymous = anonymous["token"].as_str().expect("a token");
    let refused = client
        .get(format!("{base}/v2/testkit/app/blobs/{digest}"))
        .bearer_auth(anonymous)
        .send()
        .await
        .expect("get blob");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // A forged token (signature of another key) is refused too.
    let mut forged = jwt.clone();
    forged.truncate(jwt.rfind('.').expect("a signature") + 1);
    forged.push_str(&"A".repeat(86));
    let refused = client
        .get(format!("{base}/v2/testkit/app/blobs/{digest}"))
        .bearer_auth(&forged)
        .send()
        .await
        .expect("get blob");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let statuses: Vec<u16> = registry.token_requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![401, 200, 200], "{statuses:?}");
}
