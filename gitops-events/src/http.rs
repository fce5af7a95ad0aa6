//! The HTTP plumbing every provider and the emitter share: clients with a timeout, a proxy and
//! a custom CA; one request with its answer checked; a retry policy that retries connection
//! errors, timeouts and 5xx answers (never other 4xx), with exponential backoff.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use url::Url;

/// A secret string (token, password, routing key): its `Debug` and `Display` never show it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"*****\""
        })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

/// What one HTTP exchange can fail with. URLs are shown as origin only (scheme, host, port):
/// webhook paths and queries often carry secrets.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request never got an answer (connection refused, reset, TLS failure, …).
    #[error("{method} {origin}: request failed: {source}")]
    Transport {
        /// The HTTP method.
        method: Method,
        /// The origin of the URL.
        origin: String,
        /// The transport error, with its URL removed.
        #[source]
        source: reqwest::Error,
    },
    /// The request did not complete within the timeout.
    #[error("{method} {origin}: no answer within the timeout")]
    Timeout {
        /// The HTTP method.
        method: Method,
        /// The origin of the URL.
        origin: String,
    },
    /// The server answered with a status that is not 2xx.
    #[error("{method} {origin}: answered {status}: {body}")]
    Status {
        /// The HTTP method.
        method: Method,
        /// The origin of the URL.
        origin: String,
        /// The answer's status.
        status: StatusCode,
        /// The answer's body (truncated to 1 KiB).
        body: String,
    },
    /// The client could not be built (bad proxy URL, bad CA PEM).
    #[error("invalid HTTP client configuration: {0}")]
    Config(String),
}

impl HttpError {
    /// Whether trying again may help: transport errors, timeouts, 429 and 5xx answers.
    pub fn is_retryable(&self) -> bool {
        match self {
            HttpError::Transport { .. } | HttpError::Timeout { .. } => true,
            HttpError::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            HttpError::Config(_) => false,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The origin (`scheme://host[:port]`) of a URL, the only part of it errors and logs show.
pub fn origin(url: &Url) -> String {
    let mut s = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        s.push_str(&format!(":{port}"));
    }
    s
}

/// A URL that may carry a secret (webhook paths, tokens in paths): `Debug` shows its origin
/// only. Dereferences to the URL; deliberately not `Clone`, so `.clone()` yields the `Url`.
pub struct RedactedUrl(pub Url);

impl std::ops::Deref for RedactedUrl {
    type Target = Url;
    fn deref(&self) -> &Url {
        &self.0
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}/…\"", origin(&self.0))
    }
}

/// How to build an HTTP client: timeout, proxy, custom CA.
#[derive(Clone, Default)]
pub struct HttpOptions {
    /// Timeout of one request (connect to last byte). `None`: 15 s, Flux's HTTP client timeout.
    pub timeout: Option<Duration>,
    /// A proxy URL for every request (`http://user:pass@proxy:3128`).
    pub proxy: Option<Secret>,
    /// PEM certificates that replace the system roots (Flux's `certSecretRef` `ca.crt`).
    pub ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpOptions")
            .field("timeout", &self.timeout)
            .field("proxy", &self.proxy)
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| p.len()))
            .finish()
    }
}

/// Flux's default timeout for one notification request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

impl HttpOptions {
    /// The effective request timeout.
    pub fn effective_timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    /// Builds a client. The user agent names this crate.
    pub fn build_client(&self) -> Result<reqwest::Client, HttpError> {
        let mut builder = reqwest::Client::builder()
            .timeout(self.effective_timeout())
            .connect_timeout(self.effective_timeout().min(Duration::from_secs(10)))
            .user_agent(concat!("gitops-events/", env!("CARGO_PKG_VERSION")));
        if let Some(proxy) = &self.proxy {
            let proxy = reqwest::Proxy::all(proxy.expose())
                .map_err(|_| HttpError::Config("the proxy URL does not parse".to_string()))?;
            builder = builder.proxy(proxy);
        }
        if let Some(pem) = &self.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| HttpError::Config(format!("the CA bundle does not parse: {e}")))?;
            if certs.is_empty() {
                return Err(HttpError::Config(
                    "the CA bundle holds no certificate".to_string(),
                ));
            }
            builder = builder.tls_certs_only(certs);
        }
        builder
            .build()
            .map_err(|e| HttpError::Config(e.without_url().to_string()))
    }
}

/// One request to send: method, URL, headers, body.
#[derive(Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The URL.
    pub url: Url,
    /// Headers, in order; values may be secrets, so `Debug` hides them.
    pub headers: Vec<(String, String)>,
    /// The body (empty for GET).
    pub body: Vec<u8>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("origin", &origin(&self.url))
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Request {
    /// A JSON request: the body is the serialised value and `Content-Type: application/json`.
    pub fn json<T: serde::Serialize + ?Sized>(
        method: Method,
        url: Url,
        value: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(Request {
            method,
            url,
            headers: vec![("Content-Type".to_string(), "application/json".to_string())],
            body: serde_json::to_vec(value)?,
        })
    }

    /// A bodiless GET.
    pub fn get(url: Url) -> Self {
        Request {
            method: Method::GET,
            url,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status (2xx).
    pub status: StatusCode,
    /// The body.
    pub body: bytes::Bytes,
}

/// Sends one request once and returns its answer when the status is 2xx.
pub async fn send(client: &reqwest::Client, req: &Request) -> Result<Response, HttpError> {
    send_allowing(client, req, &[]).await
}

/// Like [`send`], also accepting the listed non-2xx statuses (for example 404 on a lookup).
pub async fn send_allowing(
    client: &reqwest::Client,
    req: &Request,
    also_ok: &[StatusCode],
) -> Result<Response, HttpError> {
    let mut builder = client.request(req.method.clone(), req.url.clone());
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    if !req.body.is_empty() || req.method == Method::POST || req.method == Method::PUT {
        builder = builder.body(req.body.clone());
    }
    let transport = |e: reqwest::Error| {
        if e.is_timeout() {
            HttpError::Timeout {
                method: req.method.clone(),
                origin: origin(&req.url),
            }
        } else {
            HttpError::Transport {
                method: req.method.clone(),
                origin: origin(&req.url),
                source: e.without_url(),
            }
        }
    };
    let resp = builder.send().await.map_err(transport)?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(transport)?;
    if status.is_success() || also_ok.contains(&status) {
        Ok(Response { status, body })
    } else {
        let mut text = String::from_utf8_lossy(&body).trim_end().to_string();
        if text.len() > 1024 {
            let mut cut = 1024;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        Err(HttpError::Status {
            method: req.method.clone(),
            origin: origin(&req.url),
            status,
            body: text,
        })
    }
}

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (Flux: 4).
    pub max_retries: u32,
    /// The first backoff (Flux: 2 s); each retry doubles it.
    pub min_backoff: Duration,
    /// The longest backoff (Flux: 30 s).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// Flux's retrying HTTP client: 4 retries, backoff from 2 s to 30 s.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            min_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retry at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            min_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
        }
    }

    /// The wait before retry number `retry` (0-based).
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX);
        self.min_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }

    /// Runs `attempt` until it succeeds, fails with an error `retryable` rejects, or the
    /// retries are spent; returns the last result and the number of attempts made.
    pub async fn run<T, E, F, Fut>(
        &self,
        retryable: impl Fn(&E) -> bool,
        mut attempt: F,
    ) -> (Result<T, E>, u32)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Ok(v) => return (Ok(v), tries),
                Err(e) if tries <= self.max_retries && retryable(&e) => {
                    tokio::time::sleep(self.backoff(tries - 1)).await;
                }
                Err(e) => return (Err(e), tries),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "\"*****\"");
        assert_eq!(format!("{s}"), "*****");
        let o = HttpOptions {
            proxy: Some(Secret::new("http://u:p@proxy:1")),
            ..Default::default()
        };
        assert!(!format!("{o:?}").contains("u:p"));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_retries: 10,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        assert_eq!(p.backoff(0), Duration::from_millis(100));
        assert_eq!(p.backoff(1), Duration::from_millis(200));
        assert_eq!(p.backoff(2), Duration::from_millis(400));
        assert_eq!(p.backoff(3), Duration::from_millis(500));
        assert_eq!(p.backoff(40), Duration::from_millis(500));
    }

    #[test]
    fn origin_hides_path_and_query() {
        let u = Url::parse("https://hooks.slack.com:8443/services/T/B/secret?x=1").unwrap();
        assert_eq!(origin(&u), "https://hooks.slack.com:8443");
    }

    #[test]
    fn retryable_statuses() {
        let mk = |s: u16| HttpError::Status {
            method: Method::POST,
            origin: String::new(),
            status: StatusCode::from_u16(s).unwrap(),
            body: String::new(),
        };
        assert!(mk(500).is_retryable());
        assert!(mk(503).is_retryable());
        assert!(mk(429).is_retryable());
        assert!(!mk(400).is_retryable());
        assert!(!mk(404).is_retryable());
    }
}
