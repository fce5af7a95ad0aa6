//! `generic` and `generic-hmac`: the event JSON POSTed as is.

use std::collections::BTreeMap;
use std::str::FromStr;

use async_trait::async_trait;
use hmac::{KeyInit, Mac};
use reqwest::Method;

use super::{HttpClient, ProviderConfig, ProviderType};
use crate::event::Event;
use crate::http::{RedactedUrl, Secret};
use crate::notifier::{Notifier, NotifyError};

/// The header Flux's generic forwarder names the reporting controller in.
pub const NOTIFICATION_HEADER: &str = "gotk-component";
/// The signature header of `generic-hmac`.
pub const SIGNATURE_HEADER: &str = "X-Signature";

/// The hash function of an HMAC signature header (`<name>=<hex>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HmacAlgorithm {
    /// `sha1=` (receivers only: GitHub's legacy `X-Hub-Signature`, Nexus).
    Sha1,
    /// `sha256=`, the default.
    #[default]
    Sha256,
    /// `sha512=`.
    Sha512,
}

impl HmacAlgorithm {
    /// The prefix name: `sha1`, `sha256` or `sha512`.
    pub fn as_str(self) -> &'static str {
        match self {
            HmacAlgorithm::Sha1 => "sha1",
            HmacAlgorithm::Sha256 => "sha256",
            HmacAlgorithm::Sha512 => "sha512",
        }
    }

    /// The hex HMAC of `body` keyed with `key`.
    pub fn sign_hex(self, key: &[u8], body: &[u8]) -> String {
        // `new_from_slice` accepts keys of any length for HMAC; the error arm cannot happen.
        fn mac<M: Mac + KeyInit>(key: &[u8], body: &[u8]) -> String {
            match <M as KeyInit>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(body);
                    hex::encode(m.finalize().into_bytes())
                }
                Err(_) => String::new(),
            }
        }
        match self {
            HmacAlgorithm::Sha1 => mac::<hmac::Hmac<sha1::Sha1>>(key, body),
            HmacAlgorithm::Sha256 => mac::<hmac::Hmac<sha2::Sha256>>(key, body),
            HmacAlgorithm::Sha512 => mac::<hmac::Hmac<sha2::Sha512>>(key, body),
        }
    }

    /// Verifies a hex signature in constant time.
    pub fn verify_hex(self, key: &[u8], body: &[u8], signature_hex: &str) -> bool {
        let Ok(sig) = hex::decode(signature_hex.trim()) else {
            return false;
        };
        fn verify<M: Mac + KeyInit>(key: &[u8], body: &[u8], sig: &[u8]) -> bool {
            match <M as KeyInit>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(body);
                    m.verify_slice(sig).is_ok()
                }
                Err(_) => false,
            }
        }
        match self {
            HmacAlgorithm::Sha1 => verify::<hmac::Hmac<sha1::Sha1>>(key, body, &sig),
            HmacAlgorithm::Sha256 => verify::<hmac::Hmac<sha2::Sha256>>(key, body, &sig),
            HmacAlgorithm::Sha512 => verify::<hmac::Hmac<sha2::Sha512>>(key, body, &sig),
        }
    }
}

impl FromStr for HmacAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha1" => Ok(HmacAlgorithm::Sha1),
            "sha256" => Ok(HmacAlgorithm::Sha256),
            "sha512" => Ok(HmacAlgorithm::Sha512),
            other => Err(format!(
                "unknown HMAC algorithm {other:?}: expected sha1, sha256 or sha512"
            )),
        }
    }
}

/// `generic` / `generic-hmac`: POSTs the event JSON with `gotk-component` and the configured
/// headers; `generic-hmac` adds `X-Signature: <algorithm>=<hex HMAC of the body>` keyed with
/// the token.
#[derive(Debug)]
pub struct Generic {
    http: HttpClient,
    url: RedactedUrl,
    headers: BTreeMap<String, Secret>,
    hmac: Option<(HmacAlgorithm, Secret)>,
}

impl Generic {
    /// Validates the configuration.
    pub fn new(config: &ProviderConfig) -> Result<Self, NotifyError> {
        let hmac = if config.provider_type == ProviderType::GenericHmac {
            Some((config.hmac, config.require_token()?.clone()))
        } else {
            None
        };
        Ok(Generic {
            http: config.client()?,
            url: RedactedUrl(config.parse_address()?),
            headers: config.headers.clone(),
            hmac,
        })
    }
}

#[async_trait]
impl Notifier for Generic {
    async fn send(&self, event: &Event) -> Result<(), NotifyError> {
        let mut req = self
            .http
            .json(Method::POST, self.url.clone(), event)?
            .header(NOTIFICATION_HEADER, event.reporting_controller.clone());
        for (k, v) in &self.headers {
            req = req.header(k.clone(), v.expose().to_string());
        }
        if let Some((algo, key)) = &self.hmac {
            let sig = algo.sign_hex(key.expose().as_bytes(), &req.body);
            req = req.header(SIGNATURE_HEADER, format!("{}={sig}", algo.as_str()));
        }
        self.http.send(&req).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_known_answer() {
        // RFC 4231 test case 2.
        let sig = HmacAlgorithm::Sha256.sign_hex(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(HmacAlgorithm::Sha256.verify_hex(b"Jefe", b"what do ya want for nothing?", &sig));
        assert!(!HmacAlgorithm::Sha256.verify_hex(b"Jeff", b"what do ya want for nothing?", &sig));
        assert!(!HmacAlgorithm::Sha256.verify_hex(b"Jefe", b"x", "zz"));
    }
}
