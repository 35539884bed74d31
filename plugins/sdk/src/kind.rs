//! Kubernetes group, version and kind.

use std::fmt;

/// A Kubernetes group, version and kind. The core group is the empty string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupVersionKind {
    /// API group; empty for the core group (`ConfigMap`, `Secret`).
    pub group: String,
    /// API version within the group (`v1`, `v1alpha1`).
    pub version: String,
    /// Kind (`ConfigMap`).
    pub kind: String,
}

impl GroupVersionKind {
    /// A kind of the named group.
    #[must_use]
    pub fn new(
        group: impl Into<String>,
        version: impl Into<String>,
        kind: impl Into<String>,
    ) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }

    /// A kind of the core group (`GroupVersionKind::core("v1", "ConfigMap")`).
    #[must_use]
    pub fn core(version: impl Into<String>, kind: impl Into<String>) -> Self {
        Self::new("", version, kind)
    }

    /// Splits an `apiVersion` (`apps/v1`, or `v1` for the core group) and a kind.
    #[must_use]
    pub fn from_api_version(api_version: &str, kind: impl Into<String>) -> Self {
        match api_version.split_once('/') {
            Some((group, version)) => Self::new(group, version, kind),
            None => Self::core(api_version, kind),
        }
    }

    /// The `apiVersion` of objects of this kind: `group/version`, or only
    /// `version` for the core group.
    #[must_use]
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl fmt::Display for GroupVersionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.api_version(), self.kind)
    }
}
