//! Every provider against a real HTTP server on 127.0.0.1: method, path, headers and body.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::{RecordingServer, SHA, kustomization_event};
use gitops_events::providers::HmacAlgorithm;
use gitops_events::{Event, NotifyError, ProviderConfig, ProviderType, Severity, build_notifier};
use serde_json::json;

/// An event as an alert hands it to providers: metadata merged, prefixes stripped.
fn alert_event(severity: Severity) -> Event {
    let reason = match severity {
        Severity::Info => "ReconciliationSucceeded",
        Severity::Error => "HealthCheckFailed",
    };
    kustomization_event(severity, reason, "Deployment/default/podinfo configured")
        .with_metadata("revision", format!("main@sha1:{SHA}"))
        .with_metadata("summary", "prod cluster")
}

async fn send(config: ProviderConfig, event: &Event) -> Result<(), NotifyError> {
    build_notifier(&config).unwrap().send(event).await
}

#[tokio::test]
async fn generic_posts_the_event_with_component_and_custom_headers() {
    let server = RecordingServer::ok().await;
    let config = ProviderConfig::new(ProviderType::Generic, server.url("/hook"))
        .with_header("X-Api-Key", "k-123");
    let event = alert_event(Severity::Info);
    send(config, &event).await.unwrap();
    let r = &server.requests()[0];
    assert_eq!((r.method.as_str(), r.path()), ("POST", "/hook"));
    assert_eq!(r.header("gotk-component"), Some("kustomize-controller"));
    assert_eq!(r.header("x-api-key"), Some("k-123"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body.as_ref(), serde_json::to_vec(&event).unwrap());
    assert!(r.header("x-signature").is_none());
}

#[tokio::test]
async fn generic_hmac_signs_the_exact_body_sha256_and_sha512() {
    for algo in [HmacAlgorithm::Sha256, HmacAlgorithm::Sha512] {
        let server = RecordingServer::ok().await;
        let mut config = ProviderConfig::new(ProviderType::GenericHmac, server.url("/hmac"))
            .with_token("hmac-key");
        config.hmac = algo;
        send(config, &alert_event(Severity::Error)).await.unwrap();
        let r = &server.requests()[0];
        let sig = r.header("x-signature").unwrap();
        let expected = format!("{}={}", algo.as_str(), algo.sign_hex(b"hmac-key", &r.body));
        assert_eq!(sig, expected);
        let hex_len = if algo == HmacAlgorithm::Sha256 {
            64
        } else {
            128
        };
        assert_eq!(sig.len(), algo.as_str().len() + 1 + hex_len);
    }
}

#[tokio::test]
async fn slack_incoming_webhook_payload() {
    let server = RecordingServer::ok().await;
    let config = ProviderConfig::new(ProviderType::Slack, server.url("/services/T/B/X"))
        .with_channel("#deploys");
    send(config, &alert_event(Severity::Error)).await.unwrap();
    let r = &server.requests()[0];
    assert_eq!((r.method.as_str(), r.path()), ("POST", "/services/T/B/X"));
    assert!(r.header("authorization").is_none());
    assert_eq!(
        r.json(),
        json!({
            "channel": "#deploys",
            "username": "kustomize-controller",
            "icon_url": "",
            "icon_emoji": "",
            "attachments": [{
                "color": "danger",
                "author_name": "kustomization/apps.flux-system",
                "text": "Deployment/default/podinfo configured",
                "mrkdwn_in": ["text"],
                "fields": [
                    {"title": "revision", "value": format!("main@sha1:{SHA}"), "short": false},
                    {"title": "summary", "value": "prod cluster", "short": false},
                ],
            }],
        })
    );
}

#[tokio::test]
async fn slack_bot_token_chat_post_message_and_its_errors() {
    let server = RecordingServer::scripted(|_, n| {
        if n == 0 {
            (200, r#"{"ok":true}"#.into(), None)
        } else {
            (
                200,
                r#"{"ok":false,"error":"channel_not_found"}"#.into(),
                None,
            )
        }
    })
    .await;
    let config = ProviderConfig::new(ProviderType::Slack, server.url("/api/chat.postMessage"))
        .with_channel("C123")
        .with_username("flux")
        .with_token("xoxb-bot");
    send(config.clone(), &alert_event(Severity::Info))
        .await
        .unwrap();
    let r = &server.requests()[0];
    assert_eq!(r.header("authorization"), Some("Bearer xoxb-bot"));
    assert_eq!(r.json()["username"], "flux");
    assert_eq!(r.json()["attachments"][0]["color"], "good");
    let err = send(config, &alert_event(Severity::Info))
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::Refused { .. }));
    assert!(err.to_string().contains("channel_not_found"), "{err}");
    assert!(!err.to_string().contains("xoxb-bot"));
}

#[tokio::test]
async fn discord_uses_the_slack_compatible_path() {
    let server = RecordingServer::ok().await;
    let config = ProviderConfig::new(ProviderType::Discord, server.url("/api/webhooks/1/tok"));
    send(config, &alert_event(Severity::Info)).await.unwrap();
    let r = &server.requests()[0];
    assert_eq!(r.path(), "/api/webhooks/1/tok/slack");
    assert_eq!(r.json()["channel"], "");
    assert_eq!(r.json()["username"], "kustomize-controller");
    assert_eq!(r.json()["attachments"][0]["color"], "good");
    // An address already ending in /slack is kept.
    let config = ProviderConfig::new(ProviderType::Discord, server.url("/x/slack"));
    send(config, &alert_event(Severity::Info)).await.unwrap();
    assert_eq!(server.requests()[1].path(), "/x/slack");
}

#[tokio::test]
async fn rocket_payload() {
    let server = RecordingServer::ok().await;
    let config = ProviderConfig::new(ProviderType::Rocket, server.url("/hooks/abc"))
        .with_channel("general")
        .with_username("flux");
    send(config, &alert_event(Severity::Error)).await.unwrap();
    let body = server.requests()[0].json();
    assert_eq!(body["channel"], "general");
    assert_eq!(body["username"], "flux");
    assert_eq!(body["attachments"][0]["color"], "#FF0000");
    assert_eq!(
        body["attachments"][0]["author_name"],
        "kustomization/apps.flux-system"
    );
}

#[tokio::test]
async fn msteams_adaptive_card() {
    let server = RecordingServer::ok().await;
    let config = ProviderConfig::new(ProviderType::MsTeams, server.url("/workflows/run"));
    send(config, &alert_event(Severity::Error)).await.unwrap();
    let r = &server.requests()[0];
    assert_eq!((r.method.as_str(), r.path()), ("POST", "/workflows/run"));
    assert_eq!(
        r.json(),
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [{
                        "type": "Container",
                        "items": [
                            {"type": "TextBlock", "text": "kustomization/apps.flux-system", "size": "large", "weight": "bolder", "wrap": true},
                            {"type": "TextBlock", "text": "Deployment/default/podinfo configured", "wrap": true, "color": "attention"},
                            {"type": "FactSet", "facts": [
                                {"title": "summary", "value": "prod cluster"},
                                {"title": "revision", "value": format!("main@sha1:{SHA}")},
                            ]},
                        ],
                    }],
                    "msteams": {"width": "Full"},
                },
            }],
        })
    );
}

#[tokio::test]
async fn googlechat_card() {
    let server = RecordingServer::ok().await;
    let config = ProviderConfig::new(
        ProviderType::GoogleChat,
        server.url("/v1/spaces/S/messages"),
    );
    send(config, &alert_event(Severity::Error)).await.unwrap();
    let body = server.requests()[0].json();
    let card = &body["cards"][0];
    assert_eq!(card["header"]["title"], "kustomization/apps.flux-system");
    assert_eq!(card["header"]["subtitle"], "kustomize-controller");
    assert_eq!(
        card["sections"][0]["widgets"][0]["textParagraph"]["text"],
        "<font color=\"#ff0000\">Deployment/default/podinfo configured</font>"
    );
    assert_eq!(
        card["sections"][1]["widgets"][0]["keyValue"]["topLabel"],
        "revision"
    );
    assert_eq!(card["sections"][1]["widgets"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn telegram_send_message() {
    let server = RecordingServer::ok().await;
    let config = ProviderConfig::new(ProviderType::Telegram, server.url(""))
        .with_channel("-100123")
        .with_token("123:bot-token");
    send(config, &alert_event(Severity::Info)).await.unwrap();
    let r = &server.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path()),
        ("POST", "/bot123:bot-token/sendMessage")
    );
    let body = r.json();
    assert_eq!(body["chat_id"], "-100123");
    assert_eq!(body["parse_mode"], "MarkdownV2");
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "*💫 kustomization/apps/flux\\-system*\nDeployment/default/podinfo configured\n"
        ),
        "{text}"
    );
    assert!(text.contains("\\- *summary*: prod cluster\n"), "{text}");
    assert!(body.get("message_thread_id").is_none());
    let topic = ProviderConfig::new(ProviderType::Telegram, server.url(""))
        .with_channel("-100123:42")
        .with_token("123:bot-token");
    send(topic, &alert_event(Severity::Info)).await.unwrap();
    let body = server.requests()[1].json();
    assert_eq!(
        (body["chat_id"].as_str(), body["message_thread_id"].as_str()),
        (Some("-100123"), Some("42"))
    );
}

#[tokio::test]
async fn matrix_puts_a_room_message() {
    let server = RecordingServer::ok().await;
    let config = ProviderConfig::new(ProviderType::Matrix, server.url(""))
        .with_channel("!room:example.org")
        .with_token("syt_token");
    let event = alert_event(Severity::Error);
    send(config, &event).await.unwrap();
    let r = &server.requests()[0];
    assert_eq!(r.method, "PUT");
    let txn = {
        use sha1::Digest;
        hex::encode(sha1::Sha1::digest(serde_json::to_vec(&event).unwrap()))
    };
    assert_eq!(
        r.path(),
        format!("/_matrix/client/r0/rooms/!room:example.org/send/m.room.message/{txn}")
    );
    assert_eq!(r.header("authorization"), Some("Bearer syt_token"));
    assert_eq!(
        r.json(),
        json!({
            "body": format!("🚨 kustomization/apps.flux-system\nDeployment/default/podinfo configured\n- revision: main@sha1:{SHA}\n- summary: prod cluster\n"),
            "msgtype": "m.text",
        })
    );
}

#[tokio::test]
async fn webex_message_and_commit_status_update_skip() {
    let server = RecordingServer::ok().await;
    let config = ProviderConfig::new(ProviderType::Webex, server.url("/v1/messages"))
        .with_channel("room-1")
        .with_token("webex-token");
    send(config.clone(), &alert_event(Severity::Info))
        .await
        .unwrap();
    let r = &server.requests()[0];
    assert_eq!(r.header("authorization"), Some("Bearer webex-token"));
    assert_eq!(
        r.json(),
        json!({
            "roomId": "room-1",
            "markdown": format!("✅ **kustomization/apps.flux-system**\nDeployment/default/podinfo configured\n>**revision**: main@sha1:{SHA}\n>**summary**: prod cluster\n"),
        })
    );
    let update = alert_event(Severity::Info).with_metadata("commit_status", "update");
    send(config, &update).await.unwrap();
    assert_eq!(
        server.requests().len(),
        1,
        "commit-status updates are not posted"
    );
}

#[tokio::test]
async fn pagerduty_trigger_resolve_and_change_events() {
    let server = RecordingServer::ok().await;
    let config =
        ProviderConfig::new(ProviderType::PagerDuty, server.url("/ignored")).with_token("rk-1");
    send(config.clone(), &alert_event(Severity::Error))
        .await
        .unwrap();
    let r = &server.requests()[0];
    assert_eq!((r.method.as_str(), r.path()), ("POST", "/v2/enqueue"));
    assert_eq!(
        r.json(),
        json!({
            "routing_key": "rk-1",
            "event_action": "trigger",
            "dedup_key": "7d0cdc51-ddcf-4743-b223-83ca5c699632",
            "payload": {
                "summary": "health check failed: kustomization/apps",
                "source": "Flux kustomize-controller",
                "severity": "error",
                "timestamp": "2024-05-06T07:08:09Z",
                "component": "apps",
                "group": "Kustomization",
                "custom_details": {
                    "message": "Deployment/default/podinfo configured",
                    "metadata": {"revision": format!("main@sha1:{SHA}"), "summary": "prod cluster"},
                },
            },
        })
    );
    send(config.clone(), &alert_event(Severity::Info))
        .await
        .unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[1].path(), "/v2/enqueue");
    assert_eq!(reqs[1].json()["event_action"], "resolve");
    assert!(reqs[1].json().get("payload").is_none());
    assert_eq!(reqs[2].path(), "/v2/change/enqueue");
    assert_eq!(
        reqs[2].json()["payload"]["summary"],
        "reconciliation succeeded: kustomization/apps"
    );
    let progressing = kustomization_event(Severity::Info, "Progressing", "working");
    send(config, &progressing).await.unwrap();
    assert_eq!(server.requests().len(), 3, "Progressing is skipped");
}

#[tokio::test]
async fn opsgenie_alert() {
    let server = RecordingServer::ok().await;
    let config =
        ProviderConfig::new(ProviderType::Opsgenie, server.url("/v2/alerts")).with_token("og-key");
    send(config, &alert_event(Severity::Error)).await.unwrap();
    let r = &server.requests()[0];
    assert_eq!(r.header("authorization"), Some("GenieKey og-key"));
    assert_eq!(
        r.json(),
        json!({
            "message": "Kustomization/apps",
            "description": "Deployment/default/podinfo configured",
            "details": {"revision": format!("main@sha1:{SHA}"), "severity": "error", "summary": "prod cluster"},
        })
    );
}

#[tokio::test]
async fn alertmanager_firing_alert_with_basic_auth() {
    let server = RecordingServer::ok().await;
    let config = ProviderConfig::new(ProviderType::Alertmanager, server.url("/api/v2/alerts"))
        .with_username("am")
        .with_password("pw");
    send(config, &alert_event(Severity::Error)).await.unwrap();
    let r = &server.requests()[0];
    assert_eq!(r.header("authorization"), Some("Basic YW06cHc="));
    assert_eq!(
        r.json(),
        json!([{
            "status": "firing",
            "labels": {
                "alertname": "FluxKustomizationHealthcheckfailed",
                "kind": "Kustomization",
                "name": "apps",
                "namespace": "flux-system",
                "reason": "HealthCheckFailed",
                "reportingcontroller": "kustomize-controller",
                "revision": format!("main@sha1:{SHA}"),
                "severity": "error",
            },
            "annotations": {"message": "Deployment/default/podinfo configured", "summary": "prod cluster"},
            "startsAt": "2024-05-06T07:08:09Z",
        }])
    );
}

#[tokio::test]
async fn grafana_annotation() {
    let server = RecordingServer::ok().await;
    let config = ProviderConfig::new(
        ProviderType::Grafana,
        server.url("/api/annotations/graphite"),
    )
    .with_token("glsa_x");
    send(config, &alert_event(Severity::Info)).await.unwrap();
    let r = &server.requests()[0];
    assert_eq!(r.header("authorization"), Some("Bearer glsa_x"));
    assert_eq!(
        r.json(),
        json!({
            "when": 1714979289,
            "text": "kustomization/apps.flux-system",
            "tags": [
                "flux", "kustomize-controller",
                format!("revision: main@sha1|{SHA}"),
                "summary: prod cluster",
                "kind: Kustomization", "name: apps", "namespace: flux-system",
            ],
        })
    );
}

#[tokio::test]
async fn datadog_event() {
    let server = RecordingServer::ok().await;
    let config = ProviderConfig::new(ProviderType::Datadog, server.url("/whatever"))
        .with_token("dd-api-key");
    send(config, &alert_event(Severity::Error)).await.unwrap();
    let r = &server.requests()[0];
    assert_eq!((r.method.as_str(), r.path()), ("POST", "/api/v1/events"));
    assert_eq!(r.header("dd-api-key"), Some("dd-api-key"));
    assert_eq!(
        r.json(),
        json!({
            "title": "Events from the Kustomization apps/flux-system",
            "text": "Deployment/default/podinfo configured",
            "tags": [
                "flux_reporting_controller:kustomize-controller",
                "flux_reason:healthcheckfailed",
                "kube_kind:kustomization",
                "kube_name:apps",
                "kube_namespace:flux-system",
                format!("revision:main@sha1:{SHA}"),
                "summary:prod cluster",
            ],
            "source_type_name": "fluxcd",
            "date_happened": 1714979289,
            "alert_type": "error",
        })
    );
}

#[tokio::test]
async fn sentry_envelope_for_errors_and_transactions() {
    let server = RecordingServer::ok().await;
    let dsn = format!("http://publickey@{}/42", server.addr);
    let config = ProviderConfig::new(ProviderType::Sentry, dsn).with_channel("production");
    send(config.clone(), &alert_event(Severity::Error))
        .await
        .unwrap();
    let r = &server.requests()[0];
    assert_eq!((r.method.as_str(), r.path()), ("POST", "/api/42/envelope/"));
    assert_eq!(
        r.header("content-type"),
        Some("application/x-sentry-envelope")
    );
    let auth = r.header("x-sentry-auth").unwrap();
    assert!(auth.starts_with("Sentry sentry_version=7,"), "{auth}");
    assert!(auth.ends_with("sentry_key=publickey"), "{auth}");
    let text = std::str::from_utf8(&r.body).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["type"], "event");
    assert_eq!(lines[2]["level"], "error");
    assert_eq!(lines[2]["environment"], "production");
    assert_eq!(lines[2]["transaction"], "Kustomization: flux-system/apps");
    assert_eq!(lines[2]["extra"]["summary"], "prod cluster");
    assert_eq!(lines[0]["event_id"], lines[2]["event_id"]);
    assert_eq!(
        lines[1]["length"].as_u64().unwrap() as usize,
        text.lines().nth(2).unwrap().len()
    );
    send(config, &alert_event(Severity::Info)).await.unwrap();
    let r = &server.requests()[1];
    let text = std::str::from_utf8(&r.body).unwrap();
    let item: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    let tx: serde_json::Value = serde_json::from_str(text.lines().nth(2).unwrap()).unwrap();
    assert_eq!(item["type"], "transaction");
    assert_eq!(tx["tags"]["flux_reason"], "ReconciliationSucceeded");
}

// ---- commit statuses ----

fn commit_event(severity: Severity) -> Event {
    alert_event(severity)
}

const UID: &str = "0c9c2e41-d2f9-4f9b-9c41-9b6f0c6b5a8e";

#[tokio::test]
async fn github_enterprise_commit_status() {
    let server = RecordingServer::scripted(|r, _| {
        if r.method == "GET" {
            (200, "[]".into(), None)
        } else {
            (201, "{}".into(), None)
        }
    })
    .await;
    let config = ProviderConfig::new(ProviderType::GitHub, server.url("/org/repo.git"))
        .with_token("ghp_x")
        .with_uid(UID);
    send(config, &commit_event(Severity::Info)).await.unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(
        reqs[0].path_and_query(),
        format!("/api/v3/repos/org/repo/commits/{SHA}/statuses?per_page=50")
    );
    let post = &reqs[1];
    assert_eq!(post.method, "POST");
    assert_eq!(
        post.path(),
        format!("/api/v3/repos/org/repo/statuses/{SHA}")
    );
    assert_eq!(post.header("authorization"), Some("Bearer ghp_x"));
    assert_eq!(
        post.header("accept"),
        Some("application/vnd.github.v3+json")
    );
    assert_eq!(
        post.json(),
        json!({"state": "success", "description": "reconciliation succeeded", "context": "kustomization/apps/0c9c2e41"})
    );
}

#[tokio::test]
async fn github_skips_duplicates_progressing_and_needs_a_revision() {
    let server = RecordingServer::scripted(|_, _| {
        (
            200,
            json!([{"context": "kustomization/apps/0c9c2e41", "state": "failure", "description": "health check failed"}]).to_string(),
            None,
        )
    })
    .await;
    let config = ProviderConfig::new(ProviderType::GitHub, server.url("/org/repo"))
        .with_token("ghp_x")
        .with_uid(UID);
    send(config.clone(), &commit_event(Severity::Error))
        .await
        .unwrap();
    assert_eq!(
        server.requests().len(),
        1,
        "the identical status is not posted"
    );
    send(
        config.clone(),
        &kustomization_event(Severity::Info, "Progressing", "x"),
    )
    .await
    .unwrap();
    assert_eq!(server.requests().len(), 1);
    let err = send(
        config,
        &kustomization_event(Severity::Info, "ReconciliationSucceeded", "x"),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("missing revision"), "{err}");
}

#[tokio::test]
async fn gitlab_commit_status_with_subgroup() {
    let server = RecordingServer::scripted(|r, _| {
        if r.method == "GET" {
            (200, "[]".into(), None)
        } else {
            (201, "{}".into(), None)
        }
    })
    .await;
    let config = ProviderConfig::new(ProviderType::GitLab, server.url("/group/sub/project.git"))
        .with_token("glpat")
        .with_uid(UID);
    send(config, &commit_event(Severity::Error)).await.unwrap();
    let reqs = server.requests();
    assert_eq!(
        reqs[0].path_and_query(),
        format!(
            "/api/v4/projects/group%2Fsub%2Fproject/repository/commits/{SHA}/statuses?name=kustomization%2Fapps%2F0c9c2e41"
        )
    );
    assert_eq!(reqs[0].header("private-token"), Some("glpat"));
    assert_eq!(
        reqs[1].path(),
        format!("/api/v4/projects/group%2Fsub%2Fproject/statuses/{SHA}")
    );
    assert_eq!(
        reqs[1].json(),
        json!({"state": "failed", "name": "kustomization/apps/0c9c2e41", "description": "health check failed"})
    );
}

#[tokio::test]
async fn gitea_commit_status_with_pending_for_progressing() {
    let server = RecordingServer::scripted(|r, _| {
        if r.method == "GET" {
            (200, "[]".into(), None)
        } else {
            (201, "{}".into(), None)
        }
    })
    .await;
    let config = ProviderConfig::new(ProviderType::Gitea, server.url("/owner/repo"))
        .with_token("gitea-token")
        .with_uid(UID);
    let progressing = kustomization_event(Severity::Info, "Progressing", "x")
        .with_metadata("revision", format!("main@sha1:{SHA}"));
    send(config, &progressing).await.unwrap();
    let reqs = server.requests();
    assert_eq!(
        reqs[0].path_and_query(),
        format!("/api/v1/repos/owner/repo/statuses/{SHA}?page=0&limit=50")
    );
    assert_eq!(reqs[1].header("authorization"), Some("token gitea-token"));
    assert_eq!(
        reqs[1].json(),
        json!({"state": "pending", "target_url": "", "description": "progressing", "context": "kustomization/apps/0c9c2e41"})
    );
}

#[tokio::test]
async fn bitbucket_cloud_build_status() {
    let server = RecordingServer::scripted(|r, _| {
        if r.method == "GET" {
            (404, r#"{"type":"error"}"#.into(), None)
        } else {
            (201, "{}".into(), None)
        }
    })
    .await;
    let config = ProviderConfig::new(
        ProviderType::Bitbucket,
        "https://bitbucket.org/owner/repo.git",
    )
    .with_token("user:app-pass")
    .with_uid(UID)
    .with_api_base(server.url(""));
    send(config, &commit_event(Severity::Info)).await.unwrap();
    let reqs = server.requests();
    let key = {
        use sha1::Digest;
        hex::encode(sha1::Sha1::digest(b"kustomization/apps/0c9c2e41"))
    };
    assert_eq!(
        reqs[0].path(),
        format!("/2.0/repositories/owner/repo/commit/{SHA}/statuses/build/{key}")
    );
    assert_eq!(
        reqs[1].path(),
        format!("/2.0/repositories/owner/repo/commit/{SHA}/statuses/build")
    );
    assert_eq!(
        reqs[1].header("authorization"),
        Some("Basic dXNlcjphcHAtcGFzcw==")
    );
    assert_eq!(
        reqs[1].json(),
        json!({"state": "SUCCESSFUL", "key": key, "name": "kustomization/apps", "description": "reconciliation succeeded", "url": "https://bitbucket.org"})
    );
}

#[tokio::test]
async fn bitbucket_server_build_status_with_context_path() {
    let server = RecordingServer::scripted(|r, _| {
        if r.method == "GET" {
            (404, "{}".into(), None)
        } else {
            (204, String::new(), None)
        }
    })
    .await;
    let address = server.url("/bitbucket/scm/PROJ/repo.git");
    let config = ProviderConfig::new(ProviderType::BitbucketServer, address.clone())
        .with_token("bbs-token")
        .with_uid(UID);
    send(config, &commit_event(Severity::Error)).await.unwrap();
    let reqs = server.requests();
    let key = {
        use sha1::Digest;
        hex::encode(sha1::Sha1::digest(b"kustomization/apps/0c9c2e41"))
    };
    assert_eq!(
        reqs[0].path_and_query(),
        format!(
            "/bitbucket/rest/api/latest/projects/PROJ/repos/repo/commits/{SHA}/builds?key={key}"
        )
    );
    let post = &reqs[1];
    assert_eq!(
        post.path(),
        format!("/bitbucket/rest/api/latest/projects/PROJ/repos/repo/commits/{SHA}/builds")
    );
    assert_eq!(post.header("authorization"), Some("Bearer bbs-token"));
    assert_eq!(post.header("x-atlassian-token"), Some("no-check"));
    assert_eq!(post.header("x-requested-with"), Some("XMLHttpRequest"));
    assert_eq!(
        post.json(),
        json!({"description": "health check failed", "key": key, "name": "kustomization/apps [health check failed]", "state": "FAILED", "url": address})
    );
}

#[tokio::test]
async fn azure_devops_commit_status() {
    let server = RecordingServer::scripted(|r, _| {
        if r.method == "GET" {
            (200, r#"{"count":0,"value":[]}"#.into(), None)
        } else {
            (201, "{}".into(), None)
        }
    })
    .await;
    let config = ProviderConfig::new(ProviderType::AzureDevOps, server.url("/org/proj/_git/repo"))
        .with_token("pat")
        .with_uid(UID);
    send(config, &commit_event(Severity::Error)).await.unwrap();
    let reqs = server.requests();
    let path =
        format!("/org/proj/_apis/git/repositories/repo/commits/{SHA}/statuses?api-version=6.0");
    assert_eq!(reqs[0].path_and_query(), path);
    assert_eq!(reqs[1].path_and_query(), path);
    assert_eq!(reqs[1].header("authorization"), Some("Basic OnBhdA=="));
    assert_eq!(
        reqs[1].json(),
        json!({"state": "error", "description": "health check failed", "context": {"genre": "fluxcd", "name": "kustomization/apps/0c9c2e41"}})
    );
}

#[tokio::test]
async fn provider_answers_are_reported_without_secrets() {
    let server =
        RecordingServer::scripted(|_, _| (403, r#"{"message":"Bad credentials"}"#.into(), None))
            .await;
    let config = ProviderConfig::new(ProviderType::Telegram, server.url(""))
        .with_channel("1")
        .with_token("999:super-secret");
    let err = send(config, &alert_event(Severity::Info))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("403"), "{text}");
    assert!(text.contains("Bad credentials"), "{text}");
    assert!(!text.contains("super-secret"), "{text}");
    assert!(!err.is_retryable());
}
