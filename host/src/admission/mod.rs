//! Admission decided by plugins: the HTTPS server that answers the API
//! server's AdmissionReviews with the `validate` and `mutate` exports of
//! each binding's plugin.
//!
//! In data-path order: [`server`] takes a review over HTTPS and finds the
//! binding's version in service; [`review`] reads and writes
//! AdmissionReviews; [`answer`] calls the plugin and turns every outcome
//! into an answer, with [`reads`] serving what the plugin reads; [`patch`]
//! makes a mutation's RFC 6902 patch; [`tls`] provides the serving
//! certificate.
//!
//! Not built yet: registering webhook configurations, a CA shared by the
//! replicas and `caBundle` management, the bindings' failure policy (a
//! plugin that fails denies).

pub mod answer;
pub mod patch;
pub mod reads;
pub mod review;
pub mod server;
pub mod tls;

pub use answer::Decision;
pub use reads::ApiReads;
pub use server::{AdmissionState, MAX_BODY_BYTES, serve};
pub use tls::{ServingCertificate, TlsError};
