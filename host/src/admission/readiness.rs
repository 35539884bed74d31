//! Whether this replica can be called: what `/readyz` asks on every
//! replica. The certificate it serves must chain to the `caBundle` of every
//! configuration it should be called through.

use std::sync::Arc;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::Client;
use kube::api::Api;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::configuration::scope;
use super::tls::ServingCertificate;
use crate::binding::InService;

/// Whether this replica can be called through the configurations of every
/// binding in service with admission: each exists and its `caBundle`
/// trusts the certificate `serving` serves, for the name
/// `<service>.<namespace>.svc`.
///
/// # Errors
/// What is not in place yet, for `/readyz`.
pub async fn check_in_place(
    client: &Client,
    in_service: &InService,
    serving: &ServingCertificate,
    server_name: &str,
) -> Result<(), String> {
    let bindings: Vec<String> = in_service
        .all()
        .into_iter()
        .filter(|(_, v)| scope(v.plugin.description()).is_some())
        .map(|(name, _)| name)
        .collect();
    if bindings.is_empty() {
        return Ok(());
    }
    let chain = serving.chain();
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| format!("{server_name} is not a server name: {e}"))?;
    for binding in bindings {
        let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        let read =
            |e: kube::Error| format!("cannot read the webhook configurations of {binding}: {e}");
        let bundles: Vec<Option<ByteString>> = match (
            validating.get_opt(&binding).await.map_err(read)?,
            mutating.get_opt(&binding).await.map_err(read)?,
        ) {
            (Some(v), Some(m)) => v
                .webhooks
                .into_iter()
                .flatten()
                .map(|w| w.client_config.ca_bundle)
                .chain(
                    m.webhooks
                        .into_iter()
                        .flatten()
                        .map(|w| w.client_config.ca_bundle),
                )
                .collect(),
            _ => {
                return Err(format!(
                    "the webhook configurations of binding {binding} are not registered yet"
                ));
            }
        };
        for bundle in bundles {
            let Some(bundle) = bundle else {
                return Err(format!(
                    "the webhook configurations of binding {binding} have no caBundle yet"
                ));
            };
            trusts(&bundle.0, &chain, &name).map_err(|reason| {
                format!("the caBundle of binding {binding}'s webhooks does not trust the certificate this replica serves: {reason}")
            })?;
        }
    }
    Ok(())
}

/// Whether the PEM `bundle` trusts `chain` for `name` now.
fn trusts(
    bundle: &[u8],
    chain: &[CertificateDer<'static>],
    name: &ServerName<'_>,
) -> Result<(), String> {
    // A bundle written by hand may be base64 of PEM once more.
    let decoded;
    let pem = if bundle.starts_with(b"-----") {
        bundle
    } else {
        decoded = base64::engine::general_purpose::STANDARD
            .decode(bundle)
            .unwrap_or_default();
        &decoded
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("the bundle is not PEM: {e}"))?;
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("the bundle holds no certificate".to_owned());
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| e.to_string())?;
    let (leaf, intermediates) = chain.split_first().ok_or("no certificate is served")?;
    verifier
        .verify_server_cert(leaf, intermediates, name, &[], UnixTime::now())
        .map(drop)
        .map_err(|e| e.to_string())
}
