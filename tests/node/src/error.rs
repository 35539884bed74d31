//! The crate's error type.

/// What went wrong starting a [`crate::TestNode`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The work directory could not be prepared.
    #[error("preparing the work directory {path}: {source}")]
    Workdir {
        /// The directory.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An object the node registers (its `Node`, its `StorageClass`) could not be written.
    #[error("registering the {what}: {source}")]
    Register {
        /// Which object.
        what: &'static str,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}
