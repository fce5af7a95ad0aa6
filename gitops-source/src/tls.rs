//! TLS material for the HTTP clients: Flux's `certSecretRef` keys (`ca.crt`, and `tls.crt` with
//! `tls.key` for mutual TLS) turned into reqwest's certificates and identity.

/// The client identity from a PEM certificate (chain) and its PEM private key.
pub(crate) fn identity(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<reqwest::Identity, reqwest::Error> {
    let mut pem = Vec::with_capacity(cert_pem.len() + 1 + key_pem.len());
    pem.extend_from_slice(cert_pem);
    pem.push(b'\n');
    pem.extend_from_slice(key_pem);
    reqwest::Identity::from_pem(&pem)
}

/// Adds the extra trusted CAs (`ca_pem`, a PEM bundle) and the client identity to `builder`.
/// The error says which of the two is unusable, never their bytes.
pub(crate) fn configure(
    mut builder: reqwest::ClientBuilder,
    ca_pem: Option<&[u8]>,
    client_identity_pem: Option<&(Vec<u8>, Vec<u8>)>,
) -> Result<reqwest::ClientBuilder, String> {
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("CA certificates: {e}"))?;
        builder = builder.tls_certs_merge(certs);
    }
    if let Some((cert, key)) = client_identity_pem {
        let identity = identity(cert, key).map_err(|e| format!("client certificate: {e}"))?;
        builder = builder.identity(identity);
    }
    Ok(builder)
}
