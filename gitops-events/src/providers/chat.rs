//! Chat providers: Slack, Discord, Rocket.Chat, Microsoft Teams, Google Chat, Telegram,
//! Matrix and Webex. Payloads follow Flux's notification-controller field for field.

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

use super::{HttpClient, ProviderConfig};
use crate::event::{Event, META_COMMIT_STATUS_KEY, Severity};
use crate::http::{RedactedUrl, Secret};
use crate::notifier::{Notifier, NotifyError};

/// The Slack-format payload Slack, Discord and Rocket.Chat share.
fn slack_payload(channel: &str, username: &str, color: &str, event: &Event) -> Value {
    let fields: Vec<Value> = event
        .metadata
        .iter()
        .map(|(k, v)| json!({"title": k, "value": v, "short": false}))
        .collect();
    json!({
        "channel": channel,
        "username": username,
        "icon_url": "",
        "icon_emoji": "",
        "attachments": [{
            "color": color,
            "author_name": event.object_title(),
            "text": event.message,
            "mrkdwn_in": ["text"],
            "fields": fields,
        }],
    })
}

/// `slack`: an incoming webhook, or `chat.postMessage` with a bot token (then the channel is
/// required and Slack's `{"ok": false}` answers are errors).
#[derive(Debug)]
pub struct Slack {
    http: HttpClient,
    url: RedactedUrl,
    channel: String,
    username: String,
    token: Option<Secret>,
}

impl Slack {
    /// Validates the configuration.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        Ok(Slack {
            http: config.client()?,
            url: RedactedUrl(config.parse_address()?),
            channel: config.channel().to_string(),
            username: config.username().to_string(),
            token: config.token.clone().filter(|t| !t.is_empty()),
        })
    }

    fn is_post_message_api(&self) -> bool {
        self.url.path().ends_with("/api/chat.postMessage")
    }
}

#[async_trait]
impl Notifier for Slack {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let username = if self.username.is_empty() {
            event.reporting_controller.as_str()
        } else {
            self.username.as_str()
        };
        let color = match event.severity {
            Severity::Error => "danger",
            Severity::Info => "good",
        };
        let payload = slack_payload(&self.channel, username, color, event);
        let mut req = self.http.json(Method::POST, self.url.clone(), &payload)?;
        if let Some(token) = &self.token {
            req = req.header("Authorization", format!("Bearer {}", token.expose()));
        }
        let resp = self.http.send(&req).await?;
        if self.is_post_message_api() {
            // chat.postMessage always answers 200; success is in the body.
            let answer: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
            if answer.get("ok").and_then(Value::as_bool) != Some(true) {
                let reason = answer
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("unreadable answer")
                    .to_string();
                return Err(NotifyError::Refused {
                    provider: "slack".into(),
                    reason,
                });
            }
        }
        Ok(())
    }
}

/// `discord`: Discord's Slack-compatible endpoint, the webhook URL with `/slack` appended
/// (unless it already ends so).
#[derive(Debug)]
pub struct Discord {
    http: HttpClient,
    url: RedactedUrl,
    username: String,
}

impl Discord {
    /// Validates the configuration and derives the `/slack` URL.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        let mut url = config.parse_address()?;
        if !url.path().ends_with("/slack") {
            let path = format!("{}/slack", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
        Ok(Discord {
            http: config.client()?,
            url: RedactedUrl(url),
            username: config.username().to_string(),
        })
    }
}

#[async_trait]
impl Notifier for Discord {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let username = if self.username.is_empty() {
            event.reporting_controller.as_str()
        } else {
            self.username.as_str()
        };
        let color = match event.severity {
            Severity::Error => "danger",
            Severity::Info => "good",
        };
        let payload = slack_payload("", username, color, event);
        let req = self.http.json(Method::POST, self.url.clone(), &payload)?;
        self.http.send(&req).await.map(|_| ())
    }
}

/// `rocket`: a Rocket.Chat incoming webhook with a Slack-format payload.
#[derive(Debug)]
pub struct Rocket {
    http: HttpClient,
    url: RedactedUrl,
    channel: String,
    username: String,
}

impl Rocket {
    /// Validates the configuration.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        Ok(Rocket {
            http: config.client()?,
            url: RedactedUrl(config.parse_address()?),
            channel: config.channel().to_string(),
            username: config.username().to_string(),
        })
    }
}

#[async_trait]
impl Notifier for Rocket {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let color = match event.severity {
            Severity::Error => "#FF0000",
            Severity::Info => "#0076D7",
        };
        let payload = slack_payload(&self.channel, &self.username, color, event);
        let req = self.http.json(Method::POST, self.url.clone(), &payload)?;
        self.http.send(&req).await.map(|_| ())
    }
}

/// `msteams`: an Adaptive Card (version 1.4) for Teams workflow webhooks; a legacy
/// MessageCard when the address is an Office 365 connector (`*.webhook.office.com`).
#[derive(Debug)]
pub struct MsTeams {
    http: HttpClient,
    url: RedactedUrl,
    legacy_connector: bool,
}

impl MsTeams {
    /// Validates the configuration and picks the card schema from the host.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        let url = config.parse_address()?;
        let legacy_connector = url
            .host_str()
            .is_some_and(|h| h.ends_with(".webhook.office.com"));
        Ok(MsTeams {
            http: config.client()?,
            url: RedactedUrl(url),
            legacy_connector,
        })
    }

    /// The Adaptive Card message: title, message (red for errors), facts with `summary` first
    /// and the rest sorted by key.
    pub fn adaptive_card(event: &Event) -> Value {
        let mut facts = Vec::new();
        if let Some(summary) = event.metadata.get("summary") {
            facts.push(json!({"title": "summary", "value": summary}));
        }
        for (k, v) in &event.metadata {
            if k != "summary" {
                facts.push(json!({"title": k, "value": v}));
            }
        }
        let mut message = json!({"type": "TextBlock", "text": event.message, "wrap": true});
        if event.severity == Severity::Error
            && let Some(m) = message.as_object_mut()
        {
            m.insert("color".into(), json!("attention"));
        }
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
                            {"type": "TextBlock", "text": event.object_title(), "size": "large", "weight": "bolder", "wrap": true},
                            message,
                            {"type": "FactSet", "facts": facts},
                        ],
                    }],
                    "msteams": {"width": "Full"},
                },
            }],
        })
    }

    fn message_card(event: &Event) -> Value {
        let title = event.object_title();
        let facts: Vec<Value> = event
            .metadata
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
        let color = match event.severity {
            Severity::Error => "FF0000",
            Severity::Info => "0076D7",
        };
        json!({
            "@type": "MessageCard",
            "@context": "http://schema.org/extensions",
            "themeColor": color,
            "summary": title,
            "sections": [{"activityTitle": event.message, "activitySubtitle": title, "facts": facts}],
        })
    }
}

#[async_trait]
impl Notifier for MsTeams {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let payload = if self.legacy_connector {
            Self::message_card(event)
        } else {
            Self::adaptive_card(event)
        };
        let req = self.http.json(Method::POST, self.url.clone(), &payload)?;
        self.http.send(&req).await.map(|_| ())
    }
}

/// `googlechat`: a card with the object as title, the controller as subtitle, the message
/// (red for errors) and a key/value widget per metadata entry.
#[derive(Debug)]
pub struct GoogleChat {
    http: HttpClient,
    url: RedactedUrl,
}

impl GoogleChat {
    /// Validates the configuration.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        Ok(GoogleChat {
            http: config.client()?,
            url: RedactedUrl(config.parse_address()?),
        })
    }
}

#[async_trait]
impl Notifier for GoogleChat {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let text = match event.severity {
            Severity::Error => format!("<font color=\"#ff0000\">{}</font>", event.message),
            Severity::Info => event.message.clone(),
        };
        let mut sections = vec![json!({
            "header": "",
            "widgets": [{"textParagraph": {"text": text}, "keyValue": null}],
        })];
        if !event.metadata.is_empty() {
            let widgets: Vec<Value> = event
                .metadata
                .iter()
                .map(|(k, v)| {
                    json!({"textParagraph": null, "keyValue": {
                        "topLabel": k, "content": v, "contentMultiline": false,
                        "bottomLabel": null, "icon": null,
                    }})
                })
                .collect();
            sections.push(json!({"header": "", "widgets": widgets}));
        }
        let payload = json!({"cards": [{
            "header": {
                "title": event.object_title(),
                "subtitle": event.reporting_controller,
                "imageUrl": null,
                "imageStyle": null,
            },
            "sections": sections,
        }]});
        let req = self.http.json(Method::POST, self.url.clone(), &payload)?;
        self.http.send(&req).await.map(|_| ())
    }
}

/// Escapes text for Telegram's MarkdownV2.
fn telegram_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "_*[]()~`>#+-=|{}.!\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `telegram`: the Bot API's `sendMessage` to the chat in `channel` (`<chat>:<thread>` for a
/// forum topic), MarkdownV2 formatted.
/// The token is the bot token; the API base is `https://api.telegram.org` unless
/// `api_base` (or an `address` other than Telegram's) says otherwise.
#[derive(Debug)]
pub struct Telegram {
    http: HttpClient,
    base: RedactedUrl,
    chat_id: String,
    token: Secret,
}

impl Telegram {
    /// Validates the configuration.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        let base = config
            .api_base
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(Some(config.address.as_str()).filter(|s| !s.is_empty()))
            .unwrap_or("https://api.telegram.org");
        let chat_id = config.channel().to_string();
        if chat_id.is_empty() {
            return Err(NotifyError::config(
                "telegram",
                "the channel (chat id) is required",
            ));
        }
        Ok(Telegram {
            http: config.client()?,
            base: RedactedUrl(super::parse_http_url("telegram", base)?),
            chat_id,
            token: config.require_token()?.clone(),
        })
    }
}

#[async_trait]
impl Notifier for Telegram {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let emoji = match event.severity {
            Severity::Error => "🚨",
            Severity::Info => "💫",
        };
        let o = &event.involved_object;
        let heading = format!(
            "{emoji} {}/{}/{}",
            o.kind.to_lowercase(),
            o.name,
            o.namespace
        );
        let mut text = format!(
            "*{}*\n{}\n",
            telegram_escape(&heading),
            telegram_escape(&event.message)
        );
        for (k, v) in &event.metadata {
            text.push_str(&format!(
                "\\- *{}*: {}\n",
                telegram_escape(k),
                telegram_escape(v)
            ));
        }
        let mut url = self.base.clone();
        let path = format!(
            "{}/bot{}/sendMessage",
            url.path().trim_end_matches('/'),
            self.token.expose()
        );
        url.set_path(&path);
        // `<chat id>:<thread id>` posts into a forum topic.
        let payload = match self.chat_id.split_once(':') {
            Some((chat, thread)) => json!({
                "chat_id": chat,
                "message_thread_id": thread,
                "text": text,
                "parse_mode": "MarkdownV2",
            }),
            None => json!({"chat_id": self.chat_id, "text": text, "parse_mode": "MarkdownV2"}),
        };
        let req = self.http.json(Method::POST, url, &payload)?;
        self.http.send(&req).await.map(|_| ())
    }
}

/// `matrix`: PUT `m.room.message` into the room in `channel`, with a transaction id derived
/// from the event (a retry does not post twice).
#[derive(Debug)]
pub struct Matrix {
    http: HttpClient,
    url: RedactedUrl,
    room_id: String,
    token: Secret,
}

impl Matrix {
    /// Validates the configuration.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        let room_id = config.channel().to_string();
        if room_id.is_empty() {
            return Err(NotifyError::config(
                "matrix",
                "the channel (room id) is required",
            ));
        }
        Ok(Matrix {
            http: config.client()?,
            url: RedactedUrl(config.parse_address()?),
            room_id,
            token: config.require_token()?.clone(),
        })
    }
}

#[async_trait]
impl Notifier for Matrix {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let event_json = serde_json::to_vec(event).map_err(|source| NotifyError::Encode {
            provider: "matrix".into(),
            source,
        })?;
        let txn = hex::encode(Sha1::digest(&event_json));
        let emoji = match event.severity {
            Severity::Error => "🚨",
            Severity::Info => "💫",
        };
        let mut metadata = String::new();
        for (k, v) in &event.metadata {
            metadata.push_str(&format!("- {k}: {v}\n"));
        }
        let body = format!(
            "{emoji} {}\n{}\n{metadata}",
            event.object_title(),
            event.message
        );
        let mut url = self.url.clone();
        {
            let mut segs = url
                .path_segments_mut()
                .map_err(|_| NotifyError::config("matrix", "the address cannot be a base URL"))?;
            segs.pop_if_empty().extend([
                "_matrix",
                "client",
                "r0",
                "rooms",
                &self.room_id,
                "send",
                "m.room.message",
                &txn,
            ]);
        }
        let req = self
            .http
            .json(
                Method::PUT,
                url,
                &json!({"body": body, "msgtype": "m.text"}),
            )?
            .header("Authorization", format!("Bearer {}", self.token.expose()));
        self.http.send(&req).await.map(|_| ())
    }
}

/// `webex`: POST a markdown message to the room in `channel` with the bot token.
#[derive(Debug)]
pub struct Webex {
    http: HttpClient,
    url: RedactedUrl,
    room_id: String,
    token: Secret,
}

impl Webex {
    /// Validates the configuration.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        Ok(Webex {
            http: config.client()?,
            url: RedactedUrl(config.parse_address()?),
            room_id: config.channel().to_string(),
            token: config.require_token()?.clone(),
        })
    }
}

#[async_trait]
impl Notifier for Webex {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        // Flux skips the commit-status "update" events on Webex.
        if event.meta(META_COMMIT_STATUS_KEY) == Some("update") {
            return Ok(());
        }
        let emoji = match event.severity {
            Severity::Error => "💣",
            Severity::Info => "✅",
        };
        let mut markdown = format!("{emoji} **{}**\n{}\n", event.object_title(), event.message);
        for (k, v) in &event.metadata {
            markdown.push_str(&format!(">**{k}**: {v}\n"));
        }
        let req = self
            .http
            .json(
                Method::POST,
                self.url.clone(),
                &json!({"roomId": self.room_id, "markdown": markdown}),
            )?
            .header("Authorization", format!("Bearer {}", self.token.expose()));
        self.http.send(&req).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telegram_markdown_is_escaped() {
        assert_eq!(
            telegram_escape("kustomization/apps.flux-system"),
            "kustomization/apps\\.flux\\-system"
        );
    }
}
