//! The namespace `plugin push` writes its ConfigMap into: created when it is
//! missing, as `kubectl create namespace` would, so a first push to a new
//! cluster works; when the user may not create it, an error that says so and
//! what to do instead of the API server's bare "not found".

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, PostParams};

/// What [`ensure`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// The namespace was there.
    Existed,
    /// The namespace was missing and has been created.
    Created,
    /// The user may not read namespaces: the write into it will tell.
    Unknown,
}

/// Why the namespace could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// It is missing and this user may not create it.
    #[error(
        "namespace {name} does not exist and you may not create it: ask an administrator \
         to run `kubectl create namespace {name}`, or push elsewhere with --namespace"
    )]
    MayNotCreate {
        /// The namespace.
        name: String,
        /// The API server's refusal.
        #[source]
        source: kube::Error,
    },
    /// Reading or creating it failed otherwise.
    #[error("cannot make sure namespace {name} exists")]
    Api {
        /// The namespace.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

fn code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Makes sure namespace `name` exists, creating it when it is missing.
///
/// # Errors
/// [`NamespaceError::MayNotCreate`] when it is missing and creating it is
/// forbidden; [`NamespaceError::Api`] for other API errors.
pub async fn ensure(client: &Client, name: &str) -> Result<Ensured, NamespaceError> {
    let namespaces = Api::<Namespace>::all(client.clone());
    match namespaces.get_opt(name).await {
        Ok(Some(_)) => return Ok(Ensured::Existed),
        Ok(None) => {}
        Err(error) if code(&error) == Some(403) => return Ok(Ensured::Unknown),
        Err(source) => {
            return Err(NamespaceError::Api {
                name: name.to_owned(),
                source,
            });
        }
    }
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => Ok(Ensured::Created),
        // Created by someone else in between.
        Err(error) if code(&error) == Some(409) => Ok(Ensured::Existed),
        Err(source) if code(&source) == Some(403) => Err(NamespaceError::MayNotCreate {
            name: name.to_owned(),
            source,
        }),
        Err(source) => Err(NamespaceError::Api {
            name: name.to_owned(),
            source,
        }),
    }
}
