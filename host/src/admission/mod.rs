//! Admission decided by plugins: the HTTPS server that answers the API
//! server's AdmissionReviews with the `validate` and `mutate` exports of
//! each binding's plugin.
//!
//! In data-path order: [`server`] takes a review over HTTPS and finds the
//! binding's version in service; [`review`] reads and writes
//! AdmissionReviews; [`answer`] calls the plugin and turns every outcome
//! into an answer, with [`reads`] serving what the plugin reads; [`patch`]
//! makes a mutation's RFC 6902 patch; [`tls`] provides the serving
//! certificate, which [`certificates`] keeps in a Secret the replicas
//! share (CA, renewal).
//!
//! Beside the data path, [`registration`] has the leader write each
//! binding's webhook configurations, as [`configuration`] builds them
//! (rules, failure policy, `caBundle`), and [`readiness`] tells `/readyz`
//! whether they trust the certificate served.

pub mod answer;
pub mod certificates;
pub mod configuration;
pub mod patch;
pub mod readiness;
pub mod reads;
pub mod registration;
pub mod review;
pub mod server;
pub mod tls;

pub use answer::Decision;
pub use certificates::{CertificateConfig, CertificateError, Issued, Keeper};
pub use configuration::{CaSource, RegistrationConfig};
pub use readiness::check_in_place;
pub use reads::ApiReads;
pub use registration::Registrar;
pub use server::{AdmissionState, MAX_BODY_BYTES, serve};
pub use tls::{ServingCertificate, TlsError};
