//! A throw-away certificate authority for TLS tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::ServerError;
use super::process::{temp_dir, write_file};

/// A certificate authority generated for one test (or shared by the servers of one test).
///
/// Its certificate is written to a PEM file that clients can be pointed at
/// (`GIT_SSL_CAINFO`, `http.sslCAInfo`, a `caFile` in a Flux Secret, `reqwest`'s
/// `add_root_certificate`). Cloning is cheap and shares the same CA and directory; the
/// directory is removed when the last clone is dropped.
#[derive(Clone)]
pub struct TestCa {
    inner: Arc<CaInner>,
}

struct CaInner {
    dir: tempfile::TempDir,
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    cert_path: PathBuf,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("cert_path", &self.inner.cert_path)
            .finish_non_exhaustive()
    }
}

/// A certificate and its private key issued by a [`TestCa`], in PEM and on disk.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
    /// Where the certificate PEM is written.
    pub cert_path: PathBuf,
    /// Where the private key PEM is written.
    pub key_path: PathBuf,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of debug output.
        f.debug_struct("IssuedCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl IssuedCert {
    pub(crate) fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert_der.clone()]
    }

    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

impl TestCa {
    /// Generates a new CA (ECDSA P-256) named "gitops-testkit CA".
    pub fn generate() -> Result<Self, ServerError> {
        let dir = temp_dir("testkit-ca-")?;
        let key = KeyPair::generate().map_err(|e| ServerError::tls("generate CA key", e))?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "gitops-testkit CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(|e| ServerError::tls("self-sign CA certificate", e))?;
        let cert_pem = cert.pem();
        let cert_path = dir.path().join("ca.pem");
        write_file(&cert_path, &cert_pem)?;
        Ok(TestCa {
            inner: Arc::new(CaInner {
                params,
                key,
                cert_pem,
                cert_der: cert.der().clone(),
                cert_path,
                dir,
            }),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.inner.cert_pem
    }

    /// The path of the CA certificate PEM file.
    pub fn cert_path(&self) -> &Path {
        &self.inner.cert_path
    }

    pub(crate) fn cert_der(&self) -> CertificateDer<'static> {
        self.inner.cert_der.clone()
    }

    /// Issues a server certificate for `127.0.0.1` and `localhost`.
    pub fn issue_server_cert(&self) -> Result<IssuedCert, ServerError> {
        self.issue(
            "server",
            vec!["127.0.0.1".to_string(), "localhost".to_string()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// Issues a client certificate (for mutual TLS) with the common name `name`.
    pub fn issue_client_cert(&self, name: &str) -> Result<IssuedCert, ServerError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(ServerError::InvalidArgument(format!(
                "client certificate name {name:?}: use letters, digits and '-'"
            )));
        }
        self.issue(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        name: &str,
        sans: Vec<String>,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<IssuedCert, ServerError> {
        let key = KeyPair::generate().map_err(|e| ServerError::tls("generate key", e))?;
        let mut params = CertificateParams::new(sans)
            .map_err(|e| ServerError::tls("certificate parameters", e))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_params(&self.inner.params, &self.inner.key);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| ServerError::tls("sign certificate", e))?;
        let cert_path = self.inner.dir.path().join(format!("{name}.pem"));
        let key_path = self.inner.dir.path().join(format!("{name}-key.pem"));
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        write_file(&cert_path, &cert_pem)?;
        write_file(&key_path, &key_pem)?;
        Ok(IssuedCert {
            cert_pem,
            key_pem,
            cert_path,
            key_path,
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        })
    }

    /// A rustls server configuration presenting a fresh server certificate of this CA; with
    /// `require_client_cert`, clients must present a certificate this CA issued.
    pub(crate) fn server_config(
        &self,
        require_client_cert: bool,
    ) -> Result<Arc<rustls::ServerConfig>, ServerError> {
        let issued = self.issue_server_cert()?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::tls("TLS protocol versions", e))?;
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(self.cert_der())
                .map_err(|e| ServerError::tls("add CA to client roots", e))?;
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| ServerError::tls("client certificate verifier", e))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(issued.chain(), issued.private_key())
            .map_err(|e| ServerError::tls("server certificate", e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_server_and_client_certificates_on_disk() {
        let ca = TestCa::generate().expect("CA");
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(
            std::fs::read_to_string(ca.cert_path()).expect("read CA"),
            ca.cert_pem()
        );
        let server = ca.issue_server_cert().expect("server cert");
        assert!(server.key_pem.contains("PRIVATE KEY"));
        assert!(server.cert_path.exists() && server.key_path.exists());
        let client = ca.issue_client_cert("alice").expect("client cert");
        assert_ne!(client.cert_pem, server.cert_pem);
        assert!(ca.issue_client_cert("../evil").is_err());
        ca.server_config(true).expect("mTLS config");
    }
}
