//! Git commit and tag signature verification (Flux's `GitRepository` `spec.verify`).
//!
//! A signature is detected per object, as Flux does: an SSH signature (`-----BEGIN SSH
//! SIGNATURE-----`, what `git` writes with `gpg.format=ssh`) is verified against the trusted
//! keys in `authorized_keys` format (Flux's `*.sshpub` secret keys) with the `git` namespace;
//! an OpenPGP signature is refused with [`VerifyError::UnsupportedPgp`] — this crate does not
//! verify OpenPGP yet, and never reports an unverified object as verified.

use std::fmt;

/// What to verify (Flux's `verify.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VerifyMode {
    /// The commit the artifact is built from (`HEAD`).
    #[default]
    Head,
    /// The annotated tag the reference names (tag and semver references only).
    Tag,
    /// Both the tag and the commit it points to.
    TagAndHead,
}

/// Signature verification settings for a [`crate::GitSource`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GitVerification {
    /// What to verify.
    pub mode: VerifyMode,
    /// Trusted SSH public keys, one per line in `authorized_keys` format (options are
    /// ignored; comments and blank lines skipped).
    pub ssh_authorized_keys: String,
}

impl fmt::Debug for GitVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitVerification")
            .field("mode", &self.mode)
            .field("ssh_keys", &self.ssh_authorized_keys.lines().count())
            .finish()
    }
}

/// Why an object's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The object carries no signature.
    #[error("{object} is not signed")]
    Unsigned {
        /// `commit <id>` or `tag <name>`.
        object: String,
    },
    /// The object is signed with OpenPGP, which this crate does not verify.
    #[error("{object} has an OpenPGP signature; only SSH signatures are verified")]
    UnsupportedPgp {
        /// `commit <id>` or `tag <name>`.
        object: String,
    },
    /// No trusted key produced the signature, or it does not match the content.
    #[error("{object}: {message}")]
    Invalid {
        /// `commit <id>` or `tag <name>`.
        object: String,
        /// What did not match.
        message: String,
    },
    /// The trusted keys cannot be read.
    #[error("trusted SSH keys, line {line}: {message}")]
    BadKey {
        /// 1-based line in the authorized_keys text.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Tag verification was asked for, but the reference is not an annotated tag.
    #[error("verify mode {mode:?} needs an annotated tag reference; {reference} is not one")]
    NotATag {
        /// The mode.
        mode: VerifyMode,
        /// What the reference named.
        reference: String,
    },
}

/// Splits an armored signature from the end of `data` (tags carry it after the message).
pub(crate) fn split_trailing_signature(data: &[u8]) -> Option<(&[u8], &[u8])> {
    for marker in [
        &b"-----BEGIN SSH SIGNATURE-----"[..],
        &b"-----BEGIN PGP SIGNATURE-----"[..],
    ] {
        let mut at = None;
        let mut from = 0;
        while let Some(pos) = find(&data[from..], marker) {
            let abs = from + pos;
            if abs == 0 || data[abs - 1] == b'\n' {
                at = Some(abs);
            }
            from = abs + 1;
        }
        if let Some(at) = at {
            return Some((&data[..at], &data[at..]));
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Verifies `signature` over `signed` for `object`; returns the key's SHA256 fingerprint.
pub(crate) fn verify(
    object: &str,
    signed: &[u8],
    signature: &[u8],
    trusted: &str,
) -> Result<String, VerifyError> {
    let text = String::from_utf8_lossy(signature);
    let text = text.trim();
    if text.starts_with("-----BEGIN PGP SIGNATURE-----") {
        return Err(VerifyError::UnsupportedPgp {
            object: object.to_owned(),
        });
    }
    let invalid = |message: String| VerifyError::Invalid {
        object: object.to_owned(),
        message,
    };
    let sig = ssh_key::SshSig::from_pem(text)
        .map_err(|e| invalid(format!("unreadable SSH signature: {e}")))?;
    let keys = trusted_keys(trusted)?;
    let Some(key) = keys.iter().find(|k| k.key_data() == sig.public_key()) else {
        return Err(invalid(format!(
            "signed by {}, which is not a trusted key",
            ssh_key::PublicKey::from(sig.public_key().clone())
                .fingerprint(ssh_key::HashAlg::Sha256)
        )));
    };
    key.verify("git", signed, &sig)
        .map_err(|e| invalid(format!("the signature does not verify: {e}")))?;
    Ok(key.fingerprint(ssh_key::HashAlg::Sha256).to_string())
}

fn trusted_keys(text: &str) -> Result<Vec<ssh_key::PublicKey>, VerifyError> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry: ssh_key::authorized_keys::Entry =
            line.parse()
                .map_err(|e: ssh_key::Error| VerifyError::BadKey {
                    line: index + 1,
                    message: e.to_string(),
                })?;
        keys.push(entry.public_key().clone());
    }
    if keys.is_empty() {
        return Err(VerifyError::BadKey {
            line: 0,
            message: "no trusted key".into(),
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_signatures_split_at_a_line_start() {
        let data = b"object 1\ntag v1\n\nmessage\n-----BEGIN SSH SIGNATURE-----\nabc\n-----END SSH SIGNATURE-----\n";
        let (signed, sig) = split_trailing_signature(data).expect("signed");
        assert!(signed.ends_with(b"message\n"));
        assert!(sig.starts_with(b"-----BEGIN SSH SIGNATURE-----"));
        assert!(split_trailing_signature(b"tag v1\n\nplain message\n").is_none());
        // Quoted mid-line, not a signature.
        assert!(split_trailing_signature(b"msg: -----BEGIN PGP SIGNATURE-----\n").is_none());
    }

    #[test]
    fn pgp_is_refused_and_bad_keys_are_typed() {
        assert!(matches!(
            verify("commit x", b"d", b"-----BEGIN PGP SIGNATURE-----\nx\n", "k"),
            Err(VerifyError::UnsupportedPgp { .. })
        ));
        assert!(matches!(
            trusted_keys("# only a comment\n\n"),
            Err(VerifyError::BadKey { .. })
        ));
        assert!(matches!(
            trusted_keys("ssh-ed25519 not-base64!"),
            Err(VerifyError::BadKey { line: 1, .. })
        ));
    }
}
