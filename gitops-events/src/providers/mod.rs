//! Built-in providers, each sending the request its service expects, as Flux's
//! notification-controller does: chat and webhook services, incident and observability
//! services, and Git commit statuses.
//!
//! Build one from a [`ProviderConfig`] (the fields of Flux's `Provider` spec and its secret)
//! with [`build_notifier`].

mod alerting;
mod chat;
mod commit_status;
mod webhook;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub use alerting::{Alertmanager, Datadog, Grafana, Opsgenie, PagerDuty, Sentry};
pub use chat::{Discord, GoogleChat, Matrix, MsTeams, Rocket, Slack, Telegram, Webex};
pub use commit_status::{
    AzureDevOps, Bitbucket, BitbucketServer, CommitStatusTarget, GitHub, GitLab, Gitea,
    commit_status_id, parse_commit_sha,
};
pub use webhook::{Generic, HmacAlgorithm};

use crate::http::{self, HttpOptions, Request, Response, Secret};
use crate::notifier::{Notifier, NotifyError};

/// Every provider type this crate implements, by Flux's `.spec.type` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderType {
    /// `generic`: the event JSON, POSTed as is.
    Generic,
    /// `generic-hmac`: the event JSON with an `X-Signature` HMAC header.
    GenericHmac,
    /// `slack`: incoming webhook or `chat.postMessage` with a bot token.
    Slack,
    /// `msteams`: Adaptive Card for Teams workflows (MessageCard for legacy connectors).
    MsTeams,
    /// `discord`: Discord's Slack-compatible webhook.
    Discord,
    /// `rocket`: Rocket.Chat incoming webhook.
    Rocket,
    /// `googlechat`: Google Chat card.
    GoogleChat,
    /// `telegram`: Bot API `sendMessage`.
    Telegram,
    /// `matrix`: `m.room.message` in a room.
    Matrix,
    /// `webex`: Webex messages API.
    Webex,
    /// `pagerduty`: Events API v2 trigger/resolve and change events.
    PagerDuty,
    /// `opsgenie`: alerts API.
    Opsgenie,
    /// `alertmanager`: Prometheus Alertmanager `/api/v2/alerts`.
    Alertmanager,
    /// `grafana`: annotations API.
    Grafana,
    /// `datadog`: events API v1.
    Datadog,
    /// `sentry`: envelope API with a DSN.
    Sentry,
    /// `github`: commit statuses.
    GitHub,
    /// `gitlab`: commit statuses.
    GitLab,
    /// `gitea`: commit statuses.
    Gitea,
    /// `bitbucket`: Bitbucket Cloud commit build statuses.
    Bitbucket,
    /// `bitbucketserver`: Bitbucket Server / Data Center build statuses.
    BitbucketServer,
    /// `azuredevops`: Azure DevOps commit statuses.
    AzureDevOps,
}

impl ProviderType {
    /// All types, in documentation order.
    pub const ALL: [ProviderType; 22] = [
        ProviderType::Generic,
        ProviderType::GenericHmac,
        ProviderType::Slack,
        ProviderType::MsTeams,
        ProviderType::Discord,
        ProviderType::Rocket,
        ProviderType::GoogleChat,
        ProviderType::Telegram,
        ProviderType::Matrix,
        ProviderType::Webex,
        ProviderType::PagerDuty,
        ProviderType::Opsgenie,
        ProviderType::Alertmanager,
        ProviderType::Grafana,
        ProviderType::Datadog,
        ProviderType::Sentry,
        ProviderType::GitHub,
        ProviderType::GitLab,
        ProviderType::Gitea,
        ProviderType::Bitbucket,
        ProviderType::BitbucketServer,
        ProviderType::AzureDevOps,
    ];

    /// Flux's `.spec.type` name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::Generic => "generic",
            ProviderType::GenericHmac => "generic-hmac",
            ProviderType::Slack => "slack",
            ProviderType::MsTeams => "msteams",
            ProviderType::Discord => "discord",
            ProviderType::Rocket => "rocket",
            ProviderType::GoogleChat => "googlechat",
            ProviderType::Telegram => "telegram",
            ProviderType::Matrix => "matrix",
            ProviderType::Webex => "webex",
            ProviderType::PagerDuty => "pagerduty",
            ProviderType::Opsgenie => "opsgenie",
            ProviderType::Alertmanager => "alertmanager",
            ProviderType::Grafana => "grafana",
            ProviderType::Datadog => "datadog",
            ProviderType::Sentry => "sentry",
            ProviderType::GitHub => "github",
            ProviderType::GitLab => "gitlab",
            ProviderType::Gitea => "gitea",
            ProviderType::Bitbucket => "bitbucket",
            ProviderType::BitbucketServer => "bitbucketserver",
            ProviderType::AzureDevOps => "azuredevops",
        }
    }

    /// Whether the provider writes Git commit statuses.
    pub fn is_commit_status(self) -> bool {
        matches!(
            self,
            ProviderType::GitHub
                | ProviderType::GitLab
                | ProviderType::Gitea
                | ProviderType::Bitbucket
                | ProviderType::BitbucketServer
                | ProviderType::AzureDevOps
        )
    }
}

impl fmt::Display for ProviderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a provider type this crate does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider type {0:?}")]
pub struct UnknownProviderType(pub String);

impl FromStr for ProviderType {
    type Err = UnknownProviderType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownProviderType(s.to_string()))
    }
}

/// A provider's configuration: Flux's `Provider` spec fields plus the values of its secrets.
#[derive(Clone)]
pub struct ProviderConfig {
    /// The type.
    pub provider_type: ProviderType,
    /// `.spec.address` (or the secret's `address`): webhook URL, API URL, repository URL, DSN.
    pub address: String,
    /// `.spec.channel`: Slack/Rocket channel, Telegram chat id, Matrix room id, Webex room id,
    /// Sentry environment.
    pub channel: Option<String>,
    /// `.spec.username` (or the secret's `username`).
    pub username: Option<String>,
    /// The secret's `token`.
    pub token: Option<Secret>,
    /// The secret's `password` (basic auth for Alertmanager, Grafana, Bitbucket Server).
    pub password: Option<Secret>,
    /// The secret's `headers` (generic providers); values are treated as secrets.
    pub headers: BTreeMap<String, Secret>,
    /// Timeout, proxy and CA.
    pub http: HttpOptions,
    /// The Provider object's UID: its first segment ends commit-status keys.
    pub uid: String,
    /// The commit-status key to use instead of `<kind>/<name>/<uid prefix>` (the result of
    /// Flux's `commitStatusExpr`).
    pub commit_status: Option<String>,
    /// An API base URL that replaces the provider's fixed public endpoint (Bitbucket Cloud's
    /// `https://api.bitbucket.org`, Telegram's `https://api.telegram.org`), for self-hosted
    /// gateways and tests.
    pub api_base: Option<String>,
    /// The HMAC algorithm of `generic-hmac` (SHA-256 unless set).
    pub hmac: HmacAlgorithm,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The address itself is a secret for webhook providers (Slack, Teams, Discord URLs
        // embed their credential), so only its origin is shown.
        let address = url::Url::parse(&self.address)
            .map(|u| http::origin(&u))
            .unwrap_or_else(|_| "<unparsable>".to_string());
        f.debug_struct("ProviderConfig")
            .field("provider_type", &self.provider_type)
            .field("address", &address)
            .field("channel", &self.channel)
            .field("username", &self.username)
            .field("token", &self.token)
            .field("password", &self.password)
            .field("headers", &self.headers)
            .field("http", &self.http)
            .field("uid", &self.uid)
            .field("commit_status", &self.commit_status)
            .field("api_base", &self.api_base)
            .field("hmac", &self.hmac)
            .finish()
    }
}

impl ProviderConfig {
    /// A configuration with only the type and address set.
    pub fn new(provider_type: ProviderType, address: impl Into<String>) -> Self {
        ProviderConfig {
            provider_type,
            address: address.into(),
            channel: None,
            username: None,
            token: None,
            password: None,
            headers: BTreeMap::new(),
            http: HttpOptions::default(),
            uid: String::new(),
            commit_status: None,
            api_base: None,
            hmac: HmacAlgorithm::Sha256,
        }
    }

    /// Sets the token.
    pub fn with_token(mut self, token: impl Into<Secret>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets the channel.
    pub fn with_channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// Sets the username.
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Sets the password.
    pub fn with_password(mut self, password: impl Into<Secret>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Sets the provider UID.
    pub fn with_uid(mut self, uid: impl Into<String>) -> Self {
        self.uid = uid.into();
        self
    }

    /// Sets the API base that replaces a fixed public endpoint.
    pub fn with_api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = Some(base.into());
        self
    }

    /// Adds one header (generic providers).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Secret>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// The token, or a configuration error naming the provider.
    pub(crate) fn require_token(&self) -> Result<&Secret, NotifyError> {
        self.token
            .as_ref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| NotifyError::config(self.provider_type.as_str(), "a token is required"))
    }

    pub(crate) fn parse_address(&self) -> Result<url::Url, NotifyError> {
        parse_http_url(self.provider_type.as_str(), &self.address)
    }

    pub(crate) fn channel(&self) -> &str {
        self.channel.as_deref().unwrap_or("")
    }

    pub(crate) fn username(&self) -> &str {
        self.username.as_deref().unwrap_or("")
    }

    pub(crate) fn client(&self) -> Result<HttpClient, NotifyError> {
        let client = self
            .http
            .build_client()
            .map_err(|e| NotifyError::config(self.provider_type.as_str(), e.to_string()))?;
        Ok(HttpClient {
            provider: self.provider_type.as_str(),
            client,
        })
    }
}

pub(crate) fn parse_http_url(provider: &str, address: &str) -> Result<url::Url, NotifyError> {
    let url = url::Url::parse(address)
        .map_err(|e| NotifyError::config(provider, format!("the address is not a URL: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(NotifyError::config(
            provider,
            format!("the address scheme {:?} is not http or https", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(NotifyError::config(provider, "the address has no host"));
    }
    Ok(url)
}

/// A client bound to a provider name, turning HTTP errors into [`NotifyError`]s.
#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    provider: &'static str,
    client: reqwest::Client,
}

impl HttpClient {
    pub(crate) async fn send(&self, req: &Request) -> Result<Response, NotifyError> {
        http::send(&self.client, req)
            .await
            .map_err(|source| NotifyError::Http {
                provider: self.provider.to_string(),
                source,
            })
    }

    pub(crate) async fn send_allowing(
        &self,
        req: &Request,
        also_ok: &[reqwest::StatusCode],
    ) -> Result<Response, NotifyError> {
        http::send_allowing(&self.client, req, also_ok)
            .await
            .map_err(|source| NotifyError::Http {
                provider: self.provider.to_string(),
                source,
            })
    }

    pub(crate) fn json<T: serde::Serialize + ?Sized>(
        &self,
        method: reqwest::Method,
        url: url::Url,
        value: &T,
    ) -> Result<Request, NotifyError> {
        Request::json(method, url, value).map_err(|source| NotifyError::Encode {
            provider: self.provider.to_string(),
            source,
        })
    }
}

/// The `Authorization: Basic` value for a user and password.
pub(crate) fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Builds the notifier for a configuration, validating it (address, required token).
pub fn build_notifier(config: &ProviderConfig) -> Result<Arc<dyn Notifier>, NotifyError> {
    Ok(match config.provider_type {
        ProviderType::Generic | ProviderType::GenericHmac => Arc::new(Generic::new(config)?),
        ProviderType::Slack => Arc::new(Slack::new(config)?),
        ProviderType::MsTeams => Arc::new(MsTeams::new(config)?),
        ProviderType::Discord => Arc::new(Discord::new(config)?),
        ProviderType::Rocket => Arc::new(Rocket::new(config)?),
        ProviderType::GoogleChat => Arc::new(GoogleChat::new(config)?),
        ProviderType::Telegram => Arc::new(Telegram::new(config)?),
        ProviderType::Matrix => Arc::new(Matrix::new(config)?),
        ProviderType::Webex => Arc::new(Webex::new(config)?),
        ProviderType::PagerDuty => Arc::new(PagerDuty::new(config)?),
        ProviderType::Opsgenie => Arc::new(Opsgenie::new(config)?),
        ProviderType::Alertmanager => Arc::new(Alertmanager::new(config)?),
        ProviderType::Grafana => Arc::new(Grafana::new(config)?),
        ProviderType::Datadog => Arc::new(Datadog::new(config)?),
        ProviderType::Sentry => Arc::new(Sentry::new(config)?),
        ProviderType::GitHub => Arc::new(GitHub::new(config)?),
        ProviderType::GitLab => Arc::new(GitLab::new(config)?),
        ProviderType::Gitea => Arc::new(Gitea::new(config)?),
        ProviderType::Bitbucket => Arc::new(Bitbucket::new(config)?),
        ProviderType::BitbucketServer => Arc::new(BitbucketServer::new(config)?),
        ProviderType::AzureDevOps => Arc::new(AzureDevOps::new(config)?),
    })
}

/// The default per-provider timeout of Flux's `Provider.spec.timeout`.
pub const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_types_round_trip() {
        for t in ProviderType::ALL {
            assert_eq!(t.as_str().parse::<ProviderType>(), Ok(t));
        }
        assert!("smoke-signals".parse::<ProviderType>().is_err());
    }

    #[test]
    fn config_debug_redacts_secrets_and_webhook_paths() {
        let c = ProviderConfig::new(
            ProviderType::Slack,
            "https://hooks.slack.com/services/T000/B000/XXXXSECRET",
        )
        .with_token("xoxb-very-secret")
        .with_password("pw-secret")
        .with_header("X-Api-Key", "header-secret");
        let s = format!("{c:?}");
        for secret in [
            "XXXXSECRET",
            "xoxb-very-secret",
            "pw-secret",
            "header-secret",
        ] {
            assert!(!s.contains(secret), "{secret} leaked in {s}");
        }
        assert!(s.contains("https://hooks.slack.com"));
    }

    fn debug_of(c: &ProviderConfig) -> String {
        match c.provider_type {
            ProviderType::Generic | ProviderType::GenericHmac => {
                format!("{:?}", Generic::new(c).unwrap())
            }
            ProviderType::Slack => format!("{:?}", Slack::new(c).unwrap()),
            ProviderType::MsTeams => format!("{:?}", MsTeams::new(c).unwrap()),
            ProviderType::Discord => format!("{:?}", Discord::new(c).unwrap()),
            ProviderType::Rocket => format!("{:?}", Rocket::new(c).unwrap()),
            ProviderType::GoogleChat => format!("{:?}", GoogleChat::new(c).unwrap()),
            ProviderType::Telegram => format!("{:?}", Telegram::new(c).unwrap()),
            ProviderType::Matrix => format!("{:?}", Matrix::new(c).unwrap()),
            ProviderType::Webex => format!("{:?}", Webex::new(c).unwrap()),
            ProviderType::PagerDuty => format!("{:?}", PagerDuty::new(c).unwrap()),
            ProviderType::Opsgenie => format!("{:?}", Opsgenie::new(c).unwrap()),
            ProviderType::Alertmanager => format!("{:?}", Alertmanager::new(c).unwrap()),
            ProviderType::Grafana => format!("{:?}", Grafana::new(c).unwrap()),
            ProviderType::Datadog => format!("{:?}", Datadog::new(c).unwrap()),
            ProviderType::Sentry => format!("{:?}", Sentry::new(c).unwrap()),
            ProviderType::GitHub => format!("{:?}", GitHub::new(c).unwrap()),
            ProviderType::GitLab => format!("{:?}", GitLab::new(c).unwrap()),
            ProviderType::Gitea => format!("{:?}", Gitea::new(c).unwrap()),
            ProviderType::Bitbucket => format!("{:?}", Bitbucket::new(c).unwrap()),
            ProviderType::BitbucketServer => format!("{:?}", BitbucketServer::new(c).unwrap()),
            ProviderType::AzureDevOps => format!("{:?}", AzureDevOps::new(c).unwrap()),
        }
    }

    #[test]
    fn no_provider_debug_shows_a_secret() {
        for t in ProviderType::ALL {
            let address = match t {
                ProviderType::Sentry => "https://SECRETKEY@sentry.example.com/42",
                ProviderType::BitbucketServer => "https://bb.example.com/scm/SECRETPATH/repo.git",
                ProviderType::AzureDevOps => "https://dev.azure.com/org/SECRETPATH/_git/repo",
                ProviderType::GitHub
                | ProviderType::GitLab
                | ProviderType::Gitea
                | ProviderType::Bitbucket => "https://git.example.com/SECRETPATH/repo",
                _ => "https://hooks.example.com/services/SECRETPATH",
            };
            let c = ProviderConfig::new(t, address)
                .with_token("user:SECRETTOKEN")
                .with_channel("c")
                .with_username("u")
                .with_password("SECRETPASSWORD")
                .with_header("X-Key", "SECRETHEADER");
            let d = debug_of(&c);
            for secret in ["SECRETTOKEN", "SECRETPASSWORD", "SECRETHEADER", "SECRETKEY"] {
                assert!(!d.contains(secret), "{t}: {secret} in {d}");
            }
            if !t.is_commit_status() {
                assert!(!d.contains("SECRETPATH"), "{t}: webhook path in {d}");
            }
        }
    }

    #[test]
    fn addresses_are_validated() {
        let bad = ProviderConfig::new(ProviderType::Slack, "not a url");
        assert!(matches!(
            build_notifier(&bad),
            Err(NotifyError::Config { .. })
        ));
        let ftp = ProviderConfig::new(ProviderType::Generic, "ftp://example.com/x");
        assert!(build_notifier(&ftp).is_err());
        let no_token = ProviderConfig::new(ProviderType::GenericHmac, "http://127.0.0.1:1/x");
        assert!(build_notifier(&no_token).is_err());
    }
}
