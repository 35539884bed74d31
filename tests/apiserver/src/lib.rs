//! Test-only Kubernetes API server: real HTTPS, discovery, watch, server-side apply, CRD
//! schemas, garbage collection and admission webhooks, for end-to-end tests with the real
//! `kube` client. See the README for what is emulated and what is not.

mod admission;
mod apply;
mod collection;
mod discovery;
mod error;
mod events;
mod faults;
mod field_validation;
mod fieldset;
mod gc;
mod http;
mod managed_fields;
mod matchconditions;
mod meta;
mod openapi;
mod patch;
mod prepare;
mod protobuf;
mod query;
mod rbac;
mod registry;
mod render;
mod schema;
mod selector;
mod server;
mod services;
mod store;
mod tls;
mod watch;
mod writes;

pub use error::ApiError;
pub use faults::{Faults, Injection};
pub use server::{Builder, TestApiServer};
pub use tls::Certificates;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// rcgen failed to generate the CA or the serving certificate.
    #[error("failed to generate certificates")]
    Certificate(#[from] rcgen::Error),
    /// A generated PEM could not be read back.
    #[error("invalid PEM")]
    Pem(#[source] rustls::pki_types::pem::Error),
    /// rustls rejected the TLS configuration.
    #[error("invalid TLS configuration")]
    Tls(#[from] rustls::Error),
    /// The listening socket could not be bound.
    #[error("failed to listen on {0}")]
    Bind(String, #[source] std::io::Error),
    /// The generated kubeconfig could not be loaded.
    #[error("invalid generated kubeconfig")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// The kube client could not be built.
    #[error("failed to build the kube client")]
    Client(#[from] kube::Error),
    /// Writing the kubeconfig file failed.
    #[error("failed to write the kubeconfig to {path}")]
    WriteKubeconfig {
        /// Where it was to be written.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A preloaded object (namespace or CRD) was rejected.
    #[error("failed to preload an object")]
    Preload(#[source] ApiError),
}
