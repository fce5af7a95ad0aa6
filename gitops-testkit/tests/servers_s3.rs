//! `S3Server`: objects put and got through moto with a real, signing S3 client.

use std::net::TcpStream;

use gitops_testkit::servers::{S3Server, ServerError, TestCa};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn store(server: &S3Server, bucket: &str) -> impl ObjectStore {
    AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_region(server.region())
        .with_bucket_name(bucket)
        .with_access_key_id(server.access_key())
        .with_secret_access_key(server.secret_key())
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .expect("S3 client")
}

#[tokio::test]
async fn an_object_round_trips_through_the_created_bucket() {
    let server = S3Server::builder()
        .bucket("artifacts")
        .start()
        .expect("moto");
    assert_eq!(server.bucket(), "artifacts");
    assert!(server.endpoint().starts_with("http://127.0.0.1:"));
    let s3 = store(&server, server.bucket());
    let path = ObjectPath::from("manifests/app.yaml");
    s3.put(&path, PutPayload::from_static(b"kind: ConfigMap\n"))
        .await
        .expect("put");
    let got = s3
        .get(&path)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(got.as_ref(), b"kind: ConfigMap\n");
    let meta = s3.head(&path).await.expect("head");
    assert_eq!(meta.size, 16);
    assert!(meta.e_tag.is_some());

    // A bucket that was not created does not exist.
    let other = store(&server, "not-created");
    assert!(other.get(&path).await.is_err());
}

#[tokio::test]
async fn seeded_objects_are_listed_under_their_prefix() {
    let server = S3Server::start().expect("moto");
    server
        .put_object("app/v1/deploy.yaml", b"kind: Deployment\n")
        .expect("seed");
    server
        .put_object("app/v1/service.yaml", b"kind: Service\n")
        .expect("seed");
    server
        .put_object("other/readme.md", b"# other\n")
        .expect("seed");
    assert!(server.put_object("bad key?", b"x").is_err());

    let s3 = store(&server, server.bucket());
    let prefix = ObjectPath::from("app/v1");
    let mut listed: Vec<String> = s3
        .list_with_delimiter(Some(&prefix))
        .await
        .expect("list")
        .objects
        .into_iter()
        .map(|o| o.location.to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, ["app/v1/deploy.yaml", "app/v1/service.yaml"]);
    let got = s3
        .get(&ObjectPath::from("app/v1/service.yaml"))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(got.as_ref(), b"kind: Service\n");
}

#[test]
fn after_drop_the_port_refuses_connections() {
    let server = S3Server::start().expect("moto");
    let addr = server.addr();
    TcpStream::connect(addr).expect("running server accepts");
    drop(server);
    assert!(
        TcpStream::connect(addr).is_err(),
        "{addr} still accepts after drop"
    );
}

#[test]
fn a_missing_python_names_the_package() {
    let err = S3Server::builder()
        .python_binary("/nonexistent/python3")
        .start()
        .expect_err("no python there");
    assert!(
        matches!(&err, ServerError::MissingBinary { package, .. } if package == "python3"),
        "{err}"
    );
}

/// With `require_auth`, moto checks signatures against its IAM: the generated key works, a
/// wrong secret or an unknown key id is refused, and seeding with `put_object` still works.
#[tokio::test]
async fn require_auth_accepts_only_the_generated_key() {
    let server = S3Server::builder().require_auth().start().expect("moto");
    assert!(server.requires_auth());
    assert_ne!(server.access_key(), "testkit-access-key");
    server
        .put_object("seed/app.yaml", b"kind: ConfigMap\n")
        .expect("seeded through the one-action window");

    let good = store(&server, server.bucket());
    let got = good
        .get(&ObjectPath::from("seed/app.yaml"))
        .await
        .expect("the generated key reads")
        .bytes()
        .await
        .expect("body");
    assert_eq!(got.as_ref(), b"kind: ConfigMap\n");
    good.put(
        &ObjectPath::from("signed/x.yaml"),
        PutPayload::from_static(b"x: 1\n"),
    )
    .await
    .expect("the generated key writes");

    for (access, secret) in [
        (server.access_key(), "not-the-secret"),
        ("AKIAUNKNOWNKEY000000", server.secret_key()),
    ] {
        let bad = AmazonS3Builder::new()
            .with_endpoint(server.endpoint())
            .with_region(server.region())
            .with_bucket_name(server.bucket())
            .with_access_key_id(access)
            .with_secret_access_key(secret)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .build()
            .expect("S3 client");
        match bad.get(&ObjectPath::from("seed/app.yaml")).await {
            Err(object_store::Error::PermissionDenied { .. }) => {}
            other => panic!("expected PermissionDenied, got {other:?}"),
        }
    }
    // The Debug form names the key id, never the secret.
    assert!(!format!("{server:?}").contains(server.secret_key()));
}

/// object_store's client with our own reqwest client, which can present a certificate.
#[derive(Debug)]
struct Reqwest(reqwest::Client);

impl object_store::client::HttpConnector for Reqwest {
    fn connect(
        &self,
        _: &object_store::ClientOptions,
    ) -> object_store::Result<object_store::client::HttpClient> {
        Ok(object_store::client::HttpClient::new(self.0.clone()))
    }
}

/// Behind the TLS front with client certificates required: a signing client with the CA and a
/// certificate it issued reads the bucket; the same client without a certificate is refused.
#[tokio::test]
async fn a_tls_front_requiring_client_certificates() {
    let ca = TestCa::generate().expect("ca");
    let server = S3Server::builder()
        .tls_with_ca(&ca)
        .require_client_cert()
        .start()
        .expect("moto");
    assert!(server.endpoint().starts_with("https://127.0.0.1:"));
    server
        .put_object("a.yaml", b"kind: ConfigMap\n")
        .expect("seed");
    let roots = reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).expect("ca pem");
    let client = ca.issue_client_cert("alice").expect("client cert");
    let identity =
        reqwest::Identity::from_pem(format!("{}\n{}", client.cert_pem, client.key_pem).as_bytes())
            .expect("identity");
    let signing = |http: reqwest::Client| {
        AmazonS3Builder::new()
            .with_endpoint(server.endpoint())
            .with_region(server.region())
            .with_bucket_name(server.bucket())
            .with_access_key_id(server.access_key())
            .with_secret_access_key(server.secret_key())
            .with_virtual_hosted_style_request(false)
            .with_http_connector(Reqwest(http))
            .build()
            .expect("S3 client")
    };
    let with_cert = signing(
        reqwest::Client::builder()
            .add_root_certificate(roots.clone())
            .identity(identity)
            .build()
            .expect("client"),
    );
    let got = with_cert
        .get(&ObjectPath::from("a.yaml"))
        .await
        .expect("get with a certificate")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(got.as_ref(), b"kind: ConfigMap\n");
    let without = signing(
        reqwest::Client::builder()
            .add_root_certificate(roots)
            .build()
            .expect("client"),
    );
    assert!(
        without.get(&ObjectPath::from("a.yaml")).await.is_err(),
        "a client without a certificate must be refused"
    );
}
