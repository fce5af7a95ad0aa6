//! Per-provider custom CA (a real TLS server with a self-signed certificate) and proxy.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::post;
use common::{RecordingServer, kustomization_event};
use gitops_events::{NotifyError, ProviderConfig, ProviderType, Secret, Severity, build_notifier};

async fn tls_server(cert_pem: String, key_pem: String) -> (u16, Arc<AtomicUsize>) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "{}"
            }
        }),
    );
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert_pem.into_bytes(),
        key_pem.into_bytes(),
    )
    .await
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = axum_server::from_tcp_rustls(listener, config).unwrap();
    tokio::spawn(async move {
        server.serve(app.into_make_service()).await.unwrap();
    });
    (port, hits)
}

#[tokio::test]
async fn custom_ca_is_trusted_per_provider_and_only_there() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = ck.cert.pem();
    let (port, hits) = tls_server(cert_pem.clone(), ck.signing_key.serialize_pem()).await;
    let address = format!("https://localhost:{port}/hook");
    let event = kustomization_event(Severity::Info, "R", "over TLS");

    let mut with_ca = ProviderConfig::new(ProviderType::Generic, address.clone());
    with_ca.http.ca_pem = Some(cert_pem.into_bytes());
    build_notifier(&with_ca)
        .unwrap()
        .send(&event)
        .await
        .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    let without = ProviderConfig::new(ProviderType::Generic, address.clone());
    let err = build_notifier(&without)
        .unwrap()
        .send(&event)
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::Http { .. }), "{err}");

    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let mut wrong_ca = ProviderConfig::new(ProviderType::Generic, address);
    wrong_ca.http.ca_pem = Some(other.cert.pem().into_bytes());
    assert!(
        build_notifier(&wrong_ca)
            .unwrap()
            .send(&event)
            .await
            .is_err()
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "untrusted servers got nothing"
    );

    let mut garbage = ProviderConfig::new(ProviderType::Generic, "https://localhost/x");
    garbage.http.ca_pem = Some(b"not a certificate".to_vec());
    assert!(matches!(
        build_notifier(&garbage),
        Err(NotifyError::Config { .. })
    ));
}

#[tokio::test]
async fn requests_go_through_the_configured_proxy_with_its_credentials() {
    let proxy = RecordingServer::ok().await;
    let mut config = ProviderConfig::new(
        ProviderType::Generic,
        "http://notification-sink.invalid:8080/hook",
    );
    config.http.proxy = Some(Secret::new(format!("http://user:pass@{}", proxy.addr)));
    build_notifier(&config)
        .unwrap()
        .send(&kustomization_event(Severity::Info, "R", "via proxy"))
        .await
        .unwrap();
    let reqs = proxy.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].uri.to_string(),
        "http://notification-sink.invalid:8080/hook"
    );
    assert_eq!(
        reqs[0].header("proxy-authorization"),
        Some("Basic dXNlcjpwYXNz")
    );
    assert!(format!("{config:?}").contains("*****"));
    assert!(!format!("{config:?}").contains("user:pass"));
}
