//! The admission server's serving certificate: the files of
//! `--webhook-cert-dir`, reloaded when they change, or else the
//! certificate the replicas share through a Secret (see
//! [`certificates`](super::certificates)), replaced in place
//! ([`ServingCertificate::replace`]) when it is renewed.
//!
//! From files: `tls.crt` (the chain) and `tls.key`, the layout of a
//! `kubernetes.io/tls` Secret (cert-manager's too). Their modification
//! times are polled every [`RELOAD_INTERVAL`]; new files are served to new
//! connections, and files that do not load leave the previous certificate
//! serving.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::binding::Shutdown;

/// How often the files of `--webhook-cert-dir` are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// The certificate file in a certificate directory.
pub const CERT_FILE: &str = "tls.crt";

/// The private key file in a certificate directory.
pub const KEY_FILE: &str = "tls.key";

/// Why no serving certificate could be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM certificate or key.
    #[error("{path} holds no PEM {what}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rustls cannot sign with the key.
    #[error("the private key in {path} is not usable: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// rcgen failed to generate the certificate.
    #[error("cannot generate the webhook serving certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls rejected the TLS configuration.
    #[error("invalid TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// The certificate the admission server serves, swapped in place when its
/// files change.
pub struct ServingCertificate {
    current: Arc<Current>,
    dir: Option<PathBuf>,
}

impl fmt::Debug for ServingCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingCertificate")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ServingCertificate {
    /// Serves the PEM certificate chain `cert_pem` with the key `key_pem`
    /// (from the Secret the replicas share); see [`ServingCertificate::replace`].
    ///
    /// # Errors
    /// [`TlsError::Pem`] or [`TlsError::Key`].
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let certified = certified_key(&PathBuf::from(SECRET_SOURCE), cert_pem, key_pem)?;
        Ok(Self {
            current: Arc::new(Current(ArcSwap::from_pointee(certified))),
            dir: None,
        })
    }

    /// Serves `cert_pem` and `key_pem` to new connections from now on;
    /// connections already open keep the certificate they started with.
    ///
    /// # Errors
    /// [`TlsError::Pem`] or [`TlsError::Key`]; the previous certificate
    /// keeps serving.
    pub fn replace(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), TlsError> {
        let certified = certified_key(&PathBuf::from(SECRET_SOURCE), cert_pem, key_pem)?;
        self.current.0.store(Arc::new(certified));
        Ok(())
    }

    /// The certificate chain served to new connections (leaf first).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.0.load().cert.clone()
    }

    /// Serves `tls.crt` and `tls.key` of `dir`; see [`ServingCertificate::watch`].
    ///
    /// # Errors
    /// A [`TlsError`] when the files cannot be read or used.
    pub fn from_dir(dir: &Path) -> Result<Self, TlsError> {
        let certified = read_dir(dir)?;
        Ok(Self {
            current: Arc::new(Current(ArcSwap::from_pointee(certified))),
            dir: Some(dir.to_owned()),
        })
    }

    /// A rustls configuration serving HTTP/1.1 with the current
    /// certificate (and with the new one once the files change).
    ///
    /// # Errors
    /// [`TlsError::Config`] when rustls rejects the protocol versions.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let resolver: Arc<dyn ResolvesServerCert> = Arc::clone(&self.current) as _;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// For a certificate from a directory: polls the files' modification
    /// times every [`RELOAD_INTERVAL`] until `stop` fires and serves new
    /// files once they load. Returns at once for a generated certificate.
    pub async fn watch(&self, stop: Shutdown) {
        let Some(dir) = self.dir.clone() else {
            return;
        };
        let mut seen = modified(&dir);
        loop {
            tokio::select! {
                () = stop.clone() => return,
                () = tokio::time::sleep(RELOAD_INTERVAL) => {}
            }
            let now = modified(&dir);
            if now == seen {
                continue;
            }
            match read_dir(&dir) {
                Ok(certified) => {
                    self.current.0.store(Arc::new(certified));
                    seen = now;
                    tracing::info!(dir = %dir.display(), "webhook serving certificate reloaded");
                }
                // Tried again at the next poll: the files may be mid-update.
                Err(error) => {
                    tracing::warn!(%error, "webhook serving certificate not reloaded; the previous one keeps serving")
                }
            }
        }
    }
}

/// What a certificate from the shared Secret is called in errors.
const SECRET_SOURCE: &str = "<webhook TLS Secret>";

/// Generates a CA valid from `not_before` to `not_after` (seconds since
/// the Unix epoch): its certificate and key, as PEM.
///
/// # Errors
/// [`TlsError::Generate`].
pub fn generate_ca(not_before: u64, not_after: u64) -> Result<(String, String), TlsError> {
    let key = KeyPair::generate()?;
    let ca = CertifiedIssuer::self_signed(ca_params(not_before, not_after)?, key)?;
    Ok((ca.pem(), ca.key().serialize_pem()))
}

/// Generates a serving certificate for the Service `service` in
/// `namespace` (and `localhost`, `127.0.0.1`), valid from `not_before` to
/// `not_after`, signed by the CA whose key is `ca_key_pem` (rebuilt from
/// its key: the same subject and key make the same issuer, which is all
/// a signature needs). Its certificate and key, as PEM.
///
/// # Errors
/// [`TlsError::Generate`].
pub fn generate_serving(
    service: &str,
    namespace: &str,
    (not_before, not_after): (u64, u64),
    ca_key_pem: &str,
) -> Result<(String, String), TlsError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let ca = rcgen::Issuer::new(ca_params(0, 0)?, ca_key);
    let mut params = CertificateParams::new(service_names(service, namespace))?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{service}.{namespace}.svc"));
    set_validity(&mut params, not_before, not_after);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn ca_params(not_before: u64, not_after: u64) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, "wasm-operator webhook CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, not_before, not_after);
    Ok(params)
}

fn set_validity(params: &mut CertificateParams, not_before: u64, not_after: u64) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(not_before);
    params.not_after = epoch + Duration::from_secs(not_after);
}

/// The names a Service is reached by, and the loopback names for tests
/// and port forwarding.
fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_owned(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ]
}

/// The modification times of the certificate and key files.
fn modified(dir: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let time = |file| {
        std::fs::metadata(dir.join(file))
            .and_then(|m| m.modified())
            .ok()
    };
    (time(CERT_FILE), time(KEY_FILE))
}

fn read_dir(dir: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |file| {
        let path = dir.join(file);
        std::fs::read(&path).map_err(|source| TlsError::Read {
            path: path.clone(),
            source,
        })
    };
    certified_key(&dir.join(CERT_FILE), &read(CERT_FILE)?, &read(KEY_FILE)?)
}

fn certified_key(path: &Path, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let pem_error = |what| {
        let path = path.to_owned();
        move |source| TlsError::Pem { path, what, source }
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error("certificate"))?;
    if chain.is_empty() {
        return Err(pem_error("certificate")(
            rustls::pki_types::pem::Error::NoItemsFound,
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(pem_error("private key"))?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|source| TlsError::Key {
            path: path.to_owned(),
            source,
        })?;
    Ok(CertifiedKey::new(chain, signing))
}

/// The certificate served to new connections.
#[derive(Debug)]
struct Current(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier as _;

    #[test]
    fn a_generated_certificate_names_the_service_and_is_signed_by_the_ca() {
        let (ca, ca_key) = generate_ca(0, 4_000_000_000).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        let (cert, key) = generate_serving("hooks", "ops", (0, 4_000_000_000), &ca_key).unwrap();
        let serving = ServingCertificate::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        assert!(serving.server_config().is_ok());
        assert!(service_names("hooks", "ops").contains(&"hooks.ops.svc".to_owned()));
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let chain = serving.chain();
        verifier
            .verify_server_cert(
                &chain[0],
                &[],
                &rustls::pki_types::ServerName::try_from("hooks.ops.svc").unwrap(),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .expect("the serving certificate chains to the CA");
    }

    fn write_certificate(dir: &Path) -> Vec<u8> {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        std::fs::write(dir.join(CERT_FILE), certified.cert.pem()).unwrap();
        std::fs::write(dir.join(KEY_FILE), certified.signing_key.serialize_pem()).unwrap();
        certified.cert.der().to_vec()
    }

    fn served(serving: &ServingCertificate) -> Vec<u8> {
        serving.current.0.load().cert[0].to_vec()
    }

    #[tokio::test(start_paused = true)]
    async fn new_files_in_the_directory_are_served_after_the_next_poll() {
        let dir = std::env::temp_dir().join(format!("reload-certs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = write_certificate(&dir);
        let serving = Arc::new(ServingCertificate::from_dir(&dir).unwrap());
        assert_eq!(served(&serving), first);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let watching = Arc::clone(&serving);
        let task = tokio::spawn(async move {
            watching
                .watch(crate::binding::shutdown_signal(stopped))
                .await;
        });
        // Let the watch note the first files' times before they change.
        tokio::time::sleep(Duration::from_secs(1)).await;
        std::fs::write(dir.join(KEY_FILE), "not a key").unwrap();
        tokio::time::sleep(RELOAD_INTERVAL * 2).await;
        assert_eq!(
            served(&serving),
            first,
            "files that do not load are not served"
        );
        let second = write_certificate(&dir);
        tokio::time::sleep(RELOAD_INTERVAL * 2).await;
        assert_eq!(served(&serving), second);
        stop.send(true).unwrap();
        task.await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_without_the_files_says_which_file_is_missing() {
        let dir = std::env::temp_dir().join(format!("no-certs-{}", std::process::id()));
        let error = ServingCertificate::from_dir(&dir).unwrap_err();
        assert!(error.to_string().contains("tls.crt"), "{error}");
    }
}
