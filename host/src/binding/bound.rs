//! A plugin as its binding runs it.

use serde_json::Value;

use crate::crd::AdmissionSpec;
use crate::grants::Grants;
use crate::runtime::Plugin;
use crate::vocabulary::{field_manager, finalizer_name};

/// A plugin as its binding runs it: the component with the binding's
/// limits, grants, settings and concurrency. One per version in service.
#[derive(Debug, Clone)]
pub struct BoundPlugin {
    /// The plugin, with the binding's limits.
    pub plugin: Plugin,
    /// What it may read and write.
    pub grants: Grants,
    /// The binding's settings.
    pub settings: Value,
    /// Objects reconciled at once.
    pub concurrency: u16,
    /// How the API server calls its admission webhooks (`spec.admission`,
    /// unset fields at their defaults).
    pub admission: AdmissionSpec,
}

impl BoundPlugin {
    /// The plugin's name, as it gave it in `describe`.
    pub fn plugin_name(&self) -> &str {
        &self.plugin.description().name
    }

    /// The finalizer this plugin puts on the objects it reconciles.
    pub fn finalizer(&self) -> String {
        finalizer_name(self.plugin_name())
    }

    /// The server-side apply field manager of this plugin.
    pub fn field_manager(&self) -> String {
        field_manager(self.plugin_name())
    }
}
