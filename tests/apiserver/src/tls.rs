//! HTTPS material: a fresh CA and a server certificate (for `127.0.0.1`/`localhost` unless
//! other names are given), signed
//! with rcgen, served through rustls with the `ring` provider.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// A CA plus a server certificate and key it signed.
pub struct Certificates {
    /// PEM of the CA certificate: what clients trust (kubeconfig `certificate-authority-data`).
    pub ca_pem: String,
    /// PEM of the server certificate.
    pub cert_pem: String,
    /// PEM of the server's private key.
    pub key_pem: String,
}

impl Certificates {
    /// Generates a CA and a server certificate for `localhost` and `127.0.0.1`.
    ///
    /// # Errors
    /// [`Error::Certificate`] if rcgen fails.
    pub fn generate() -> Result<Self, Error> {
        Self::generate_for(&["localhost", "127.0.0.1"])
    }

    /// Generates a CA and a server certificate whose SANs are `names` (DNS names or IP
    /// addresses), e.g. `<service>.<namespace>.svc` for a webhook behind a Service.
    ///
    /// # Errors
    /// [`Error::Certificate`] if rcgen fails.
    pub fn generate_for(names: &[&str]) -> Result<Self, Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "test-apiserver-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_string()).collect::<Vec<_>>())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "test-apiserver");
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        Ok(Self {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A rustls server configuration serving HTTP/1.1.
    ///
    /// # Errors
    /// [`Error::Tls`] if rustls rejects the material.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        let certs = pem_to_der(self.cert_pem.as_bytes())
            .map_err(Error::Pem)?
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(Error::Pem)?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// DER bytes of every certificate in a PEM bundle.
///
/// # Errors
/// A malformed PEM section.
pub fn pem_to_der(pem: &[u8]) -> Result<Vec<Vec<u8>>, rustls::pki_types::pem::Error> {
    CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect()
}
