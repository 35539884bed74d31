//! The webhook CA and serving certificate the replicas share: one Secret
//! in the operator's namespace (`kubernetes.io/tls` with `ca.crt`), created
//! once, read by every replica, renewed by the leader before expiry.
//!
//! # Why a Secret
//! The API server trusts one `caBundle` per webhook, whichever replica the
//! Service picks, so every replica must serve a certificate of the same
//! CA. The first replica to find no Secret creates it; a replica that
//! loses that race (409) reads the winner's, so two replicas end with one.
//!
//! # Renewal without a dropped request
//! At two thirds of the serving certificate's lifetime the leader writes a
//! new one, signed by the same CA, into the Secret (an update with the
//! resourceVersion it read, so two writers cannot both win). Every replica
//! polls the Secret and serves the new certificate to new connections;
//! connections already open finish with the old one, and both chain to the
//! `caBundle` in place. At two thirds of the CA's lifetime the leader adds
//! a new CA to `ca.crt` first (old and new both trusted) and only a few
//! polls later, once the configurations carry the new bundle, signs the
//! serving certificate with it.
//!
//! The Secret's validity times are annotations: the host has no X.509
//! parser, and they say what the host itself decided.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

use super::tls::{self, ServingCertificate, TlsError};
use crate::binding::Shutdown;

/// The key of the CA bundle (every CA to trust, PEM, newest first).
pub const CA_BUNDLE_KEY: &str = "ca.crt";
/// The key of the signing CA's private key.
pub const CA_KEY_KEY: &str = "ca.key";
/// The key of the serving certificate (`kubernetes.io/tls`).
pub const CERT_KEY: &str = "tls.crt";
/// The key of the serving certificate's private key (`kubernetes.io/tls`).
pub const KEY_KEY: &str = "tls.key";
/// A CA added to the bundle but not signing yet (during a CA rotation).
const NEXT_CA_KEY_KEY: &str = "next-ca.key";

const ANNOTATION_PREFIX: &str = "systems.mikemiller.tech/webhook-";

/// The default lifetime of a serving certificate (one year).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// How many serving lifetimes a CA lives.
const CA_LIFETIMES: u32 = 10;

/// Polls a rotating CA waits before it signs, so that every replica and
/// every configuration trusts it first.
const ROTATION_POLLS: u32 = 3;

/// Where the shared certificate lives and what it is for.
#[derive(Debug, Clone)]
pub struct CertificateConfig {
    /// The namespace of the Secret (the operator's).
    pub namespace: String,
    /// The Secret's name.
    pub secret: String,
    /// The webhook Service's name, in the certificate.
    pub service: String,
    /// The webhook Service's namespace, in the certificate.
    pub service_namespace: String,
    /// The serving certificate's lifetime; the CA lives ten times longer.
    pub lifetime: Duration,
}

impl CertificateConfig {
    /// How often every replica reads the Secret: a tenth of the lifetime,
    /// between one second and one minute.
    pub fn poll_interval(&self) -> Duration {
        (self.lifetime / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }
}

/// Why the shared certificate could not be read, created or renewed.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The API server refused or failed a request on the Secret.
    #[error(
        "cannot {action} the webhook TLS Secret {namespace}/{name}: {source}; the operator needs get, create and update on it (see deploy/base/rbac.yaml)"
    )]
    Api {
        /// `read`, `create` or `update`.
        action: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// The Secret exists but does not hold what the operator writes.
    #[error(
        "the webhook TLS Secret {namespace}/{name} is not one the operator wrote: {reason}; delete it and the operator makes a new one"
    )]
    Malformed {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What is missing.
        reason: String,
    },
    /// A certificate could not be generated or used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The certificates of the Secret, as the operator wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Every CA to trust (PEM, newest first): the `caBundle`.
    pub ca_bundle: String,
    ca_key: String,
    next_ca_key: Option<String>,
    /// The serving certificate (PEM).
    pub cert: String,
    key: String,
    /// When the serving certificate was issued (seconds since the epoch).
    issued_at: u64,
    /// When it expires.
    not_after: u64,
    /// When the signing CA was made, and when it expires.
    ca_issued_at: u64,
    ca_not_after: u64,
    /// When a rotating CA was added to the bundle.
    rotating_since: Option<u64>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Two thirds of the way from `from` to `to`.
fn two_thirds(from: u64, to: u64) -> u64 {
    from + to.saturating_sub(from) * 2 / 3
}

/// A little before `now`, for clocks slightly behind the issuer's.
fn backdated(now: u64, lifetime: Duration) -> u64 {
    now.saturating_sub((lifetime.as_secs() / 10).min(60))
}

impl Issued {
    /// A new CA and a serving certificate it signs, issued at `now`.
    ///
    /// # Errors
    /// [`TlsError::Generate`].
    pub fn generate(config: &CertificateConfig, now: u64) -> Result<Self, TlsError> {
        let ca_lifetime = config.lifetime * CA_LIFETIMES;
        let ca_not_after = now + ca_lifetime.as_secs();
        let (ca, ca_key) = tls::generate_ca(backdated(now, ca_lifetime), ca_not_after)?;
        let mut issued = Self {
            ca_bundle: ca,
            ca_key,
            next_ca_key: None,
            cert: String::new(),
            key: String::new(),
            issued_at: 0,
            not_after: 0,
            ca_issued_at: now,
            ca_not_after,
            rotating_since: None,
        };
        issued.sign(config, now)?;
        Ok(issued)
    }

    /// Signs a new serving certificate at `now` with the signing CA.
    fn sign(&mut self, config: &CertificateConfig, now: u64) -> Result<(), TlsError> {
        let not_after = now + config.lifetime.as_secs();
        let (cert, key) = tls::generate_serving(
            &config.service,
            &config.service_namespace,
            (backdated(now, config.lifetime), not_after),
            &self.ca_key,
        )?;
        self.cert = cert;
        self.key = key;
        self.issued_at = now;
        self.not_after = not_after;
        Ok(())
    }

    /// Whether the leader should renew something at `now`.
    pub fn renewal_due(&self, config: &CertificateConfig, now: u64) -> bool {
        now >= two_thirds(self.issued_at, self.not_after)
            || (self.next_ca_key.is_none()
                && now >= two_thirds(self.ca_issued_at, self.ca_not_after))
            || self.rotating_since.is_some_and(|since| {
                now >= since + (config.poll_interval() * ROTATION_POLLS).as_secs()
            })
    }

    /// What the Secret should hold after the renewal due at `now`: a new CA
    /// added to the bundle first, the serving certificate signed by it a
    /// few polls later, or just a new serving certificate.
    ///
    /// # Errors
    /// [`TlsError::Generate`].
    pub fn renewed(&self, config: &CertificateConfig, now: u64) -> Result<Self, TlsError> {
        let mut next = self.clone();
        let ca_lifetime = config.lifetime * CA_LIFETIMES;
        if let Some(since) = self.rotating_since
            && now >= since + (config.poll_interval() * ROTATION_POLLS).as_secs()
            && let Some(next_key) = &self.next_ca_key
        {
            // Every replica and configuration trusts the new CA by now.
            next.ca_key = next_key.clone();
            next.next_ca_key = None;
            next.rotating_since = None;
            next.ca_issued_at = since;
            next.ca_not_after = since + ca_lifetime.as_secs();
            next.sign(config, now)?;
        } else if self.next_ca_key.is_none()
            && now >= two_thirds(self.ca_issued_at, self.ca_not_after)
        {
            let (ca, ca_key) =
                tls::generate_ca(backdated(now, ca_lifetime), now + ca_lifetime.as_secs())?;
            // The new CA first, then the one signing now; older ones go.
            let current = first_pem(&self.ca_bundle);
            next.ca_bundle = format!("{ca}{current}");
            next.next_ca_key = Some(ca_key);
            next.rotating_since = Some(now);
        } else {
            next.sign(config, now)?;
        }
        Ok(next)
    }

    fn to_secret(&self, config: &CertificateConfig, resource_version: Option<String>) -> Secret {
        let mut data = BTreeMap::from([
            (CA_BUNDLE_KEY.to_owned(), bytes(&self.ca_bundle)),
            (CA_KEY_KEY.to_owned(), bytes(&self.ca_key)),
            (CERT_KEY.to_owned(), bytes(&self.cert)),
            (KEY_KEY.to_owned(), bytes(&self.key)),
        ]);
        if let Some(next) = &self.next_ca_key {
            data.insert(NEXT_CA_KEY_KEY.to_owned(), bytes(next));
        }
        let mut annotations = BTreeMap::from([
            (annotation("issued-at"), self.issued_at.to_string()),
            (annotation("not-after"), self.not_after.to_string()),
            (annotation("ca-issued-at"), self.ca_issued_at.to_string()),
            (annotation("ca-not-after"), self.ca_not_after.to_string()),
        ]);
        if let Some(since) = self.rotating_since {
            annotations.insert(annotation("ca-rotating-since"), since.to_string());
        }
        Secret {
            metadata: ObjectMeta {
                name: Some(config.secret.clone()),
                namespace: Some(config.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "wasm-operator".to_owned(),
                )])),
                annotations: Some(annotations),
                resource_version,
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(data),
            ..Secret::default()
        }
    }

    fn from_secret(secret: &Secret) -> Result<Self, String> {
        let data = secret.data.as_ref().ok_or("it has no data")?;
        let text = |key: &str| -> Result<String, String> {
            let value = data.get(key).ok_or_else(|| format!("it has no {key}"))?;
            String::from_utf8(value.0.clone()).map_err(|_| format!("{key} is not PEM text"))
        };
        let annotations = secret.metadata.annotations.clone().unwrap_or_default();
        let time = |name: &str| -> Result<u64, String> {
            annotations
                .get(&annotation(name))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("it has no annotation {}", annotation(name)))
        };
        Ok(Self {
            ca_bundle: text(CA_BUNDLE_KEY)?,
            ca_key: text(CA_KEY_KEY)?,
            next_ca_key: text(NEXT_CA_KEY_KEY).ok(),
            cert: text(CERT_KEY)?,
            key: text(KEY_KEY)?,
            issued_at: time("issued-at")?,
            not_after: time("not-after")?,
            ca_issued_at: time("ca-issued-at")?,
            ca_not_after: time("ca-not-after")?,
            rotating_since: time("ca-rotating-since").ok(),
        })
    }

    /// A serving certificate for these PEMs.
    ///
    /// # Errors
    /// [`TlsError::Pem`] or [`TlsError::Key`].
    pub fn serving(&self) -> Result<ServingCertificate, TlsError> {
        ServingCertificate::from_pem(self.cert.as_bytes(), self.key.as_bytes())
    }
}

fn bytes(text: &str) -> ByteString {
    ByteString(text.as_bytes().to_vec())
}

fn annotation(name: &str) -> String {
    format!("{ANNOTATION_PREFIX}{name}")
}

/// The first PEM block of `bundle`.
fn first_pem(bundle: &str) -> &str {
    const END: &str = "-----END CERTIFICATE-----";
    match bundle.find(END) {
        Some(at) => {
            let end = at + END.len();
            let end = bundle[end..]
                .find('\n')
                .map_or(bundle.len(), |n| end + n + 1);
            &bundle[..end]
        }
        None => bundle,
    }
}

fn secrets(client: &Client, config: &CertificateConfig) -> Api<Secret> {
    Api::namespaced(client.clone(), &config.namespace)
}

/// The Secret's certificates and resourceVersion, if it exists.
async fn read(
    client: &Client,
    config: &CertificateConfig,
) -> Result<Option<(Issued, Option<String>)>, CertificateError> {
    let api_error = |source| CertificateError::Api {
        action: "read",
        namespace: config.namespace.clone(),
        name: config.secret.clone(),
        source,
    };
    let Some(secret) = secrets(client, config)
        .get_opt(&config.secret)
        .await
        .map_err(api_error)?
    else {
        return Ok(None);
    };
    let issued = Issued::from_secret(&secret).map_err(|reason| CertificateError::Malformed {
        namespace: config.namespace.clone(),
        name: config.secret.clone(),
        reason,
    })?;
    Ok(Some((issued, secret.metadata.resource_version)))
}

/// The certificates the replicas share: those of the Secret, or new ones
/// written to a new Secret when there is none.
///
/// # Guarantees
/// Two replicas calling this at once end with the same certificates: the
/// Secret is only ever created (never overwritten) here, and the loser of
/// the race reads the winner's.
///
/// # Errors
/// A [`CertificateError`].
pub async fn shared(
    client: &Client,
    config: &CertificateConfig,
) -> Result<Issued, CertificateError> {
    loop {
        if let Some((issued, _)) = read(client, config).await? {
            return Ok(issued);
        }
        let issued = Issued::generate(config, now())?;
        match secrets(client, config)
            .create(&PostParams::default(), &issued.to_secret(config, None))
            .await
        {
            Ok(_) => {
                tracing::info!(secret = %format!("{}/{}", config.namespace, config.secret), "webhook CA and serving certificate created");
                return Ok(issued);
            }
            // Another replica created it first: read theirs.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(source) => {
                return Err(CertificateError::Api {
                    action: "create",
                    namespace: config.namespace.clone(),
                    name: config.secret.clone(),
                    source,
                });
            }
        }
    }
}

/// Keeps this replica serving the Secret's certificate and publishing its
/// CA bundle, and, while it leads, renews the certificates before expiry.
pub struct Keeper {
    /// The API client.
    pub client: Client,
    /// The Secret.
    pub config: CertificateConfig,
    /// The certificate this replica serves.
    pub serving: Arc<ServingCertificate>,
    /// The `caBundle` the owned configurations carry.
    pub bundle: watch::Sender<Option<String>>,
    /// Whether this replica leads (only the leader renews).
    pub leading: watch::Receiver<bool>,
}

impl Keeper {
    /// Polls the Secret every [`CertificateConfig::poll_interval`] until
    /// `stop` fires, starting from `issued`.
    ///
    /// # Guarantees
    /// New Secret content is served to new connections and published as
    /// the bundle once it loads; content that does not load leaves the
    /// previous certificate serving. A renewal is written only by the
    /// leader, only over the Secret version it read.
    pub async fn run(self, mut issued: Issued, stop: Shutdown) {
        let poll = self.config.poll_interval();
        loop {
            tokio::select! {
                () = stop.clone() => return,
                () = tokio::time::sleep(poll) => {}
            }
            let (mut latest, version) = match read(&self.client, &self.config).await {
                Ok(Some(found)) => found,
                Ok(None) => match shared(&self.client, &self.config).await {
                    // Deleted: whoever recreates it first wins.
                    Ok(made) => (made, None),
                    Err(error) => {
                        tracing::warn!(%error, "the webhook TLS Secret is gone and could not be recreated");
                        continue;
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "could not read the webhook TLS Secret; serving the certificate read before");
                    continue;
                }
            };
            let now = now();
            if *self.leading.borrow() && version.is_some() && latest.renewal_due(&self.config, now)
            {
                match self.renew(&latest, version, now).await {
                    Ok(renewed) => latest = renewed,
                    Err(error) => {
                        tracing::warn!(%error, "renewing the webhook certificate failed; retrying at the next poll")
                    }
                }
            }
            if latest != issued {
                match self
                    .serving
                    .replace(latest.cert.as_bytes(), latest.key.as_bytes())
                {
                    Ok(()) => {
                        self.bundle.send_replace(Some(latest.ca_bundle.clone()));
                        tracing::info!(
                            "serving the webhook certificate of the TLS Secret as renewed"
                        );
                        issued = latest;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the webhook TLS Secret's certificate does not load; the previous one keeps serving")
                    }
                }
            }
        }
    }

    async fn renew(
        &self,
        latest: &Issued,
        version: Option<String>,
        now: u64,
    ) -> Result<Issued, CertificateError> {
        let renewed = latest.renewed(&self.config, now)?;
        secrets(&self.client, &self.config)
            .replace(
                &self.config.secret,
                &PostParams::default(),
                &renewed.to_secret(&self.config, version),
            )
            .await
            .map_err(|source| CertificateError::Api {
                action: "update",
                namespace: self.config.namespace.clone(),
                name: self.config.secret.clone(),
                source,
            })?;
        tracing::info!(
            ca_rotating = renewed.next_ca_key.is_some(),
            not_after = renewed.not_after,
            "webhook certificate renewed"
        );
        Ok(renewed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(lifetime: u64) -> CertificateConfig {
        CertificateConfig {
            namespace: "ops".into(),
            secret: "tls".into(),
            service: "hooks".into(),
            service_namespace: "ops".into(),
            lifetime: Duration::from_secs(lifetime),
        }
    }

    #[test]
    fn the_serving_certificate_is_renewed_at_two_thirds_of_its_life_by_the_same_ca() {
        let config = config(300);
        let issued = Issued::generate(&config, 1_000_000).unwrap();
        assert!(!issued.renewal_due(&config, 1_000_199));
        assert!(issued.renewal_due(&config, 1_000_200));
        let renewed = issued.renewed(&config, 1_000_200).unwrap();
        assert_ne!(renewed.cert, issued.cert);
        assert_eq!(renewed.ca_bundle, issued.ca_bundle);
        assert!(!renewed.renewal_due(&config, 1_000_201));
        let secret = renewed.to_secret(&config, None);
        assert_eq!(Issued::from_secret(&secret).unwrap(), renewed);
    }

    #[test]
    fn a_new_ca_is_trusted_beside_the_old_one_before_it_signs() {
        let config = config(300);
        let issued = Issued::generate(&config, 1_000_000).unwrap();
        // Two thirds of the CA's 3000 s.
        let at = 1_000_000 + 2000;
        let current = issued.renewed(&config, at - 10).unwrap();
        assert_eq!(current.ca_bundle, issued.ca_bundle);
        assert!(current.renewal_due(&config, at));
        let rotating = current.renewed(&config, at).unwrap();
        assert_eq!(
            rotating.cert, current.cert,
            "the old CA's certificate keeps serving"
        );
        assert!(rotating.ca_bundle.ends_with(&current.ca_bundle));
        assert_eq!(rotating.ca_bundle.matches("BEGIN CERTIFICATE").count(), 2);
        let wait = (config.poll_interval() * ROTATION_POLLS).as_secs();
        assert!(!rotating.renewal_due(&config, at + wait - 1));
        let signed = rotating.renewed(&config, at + wait).unwrap();
        assert_ne!(signed.cert, rotating.cert);
        assert_eq!(
            signed.ca_bundle, rotating.ca_bundle,
            "both CAs stay trusted"
        );
        assert!(signed.next_ca_key.is_none());
        assert!(!signed.renewal_due(&config, at + wait + 1));
    }

    #[test]
    fn a_secret_the_operator_did_not_write_says_what_is_missing() {
        let error = Issued::from_secret(&Secret::default()).unwrap_err();
        assert!(error.contains("no data"), "{error}");
    }
}
