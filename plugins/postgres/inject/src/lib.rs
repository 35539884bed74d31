//! The `postgres-inject` plugin component: an admission-only component
//! (WIT world `admission-only-plugin`) for core/v1 Pods that puts Database
//! and DatabaseUser credentials into annotated Pods as `secretKeyRef`s and a
//! Service Binding volume.
//!
//! The decisions are [`postgres_plugins::CredentialsInjectorPlugin`]'s; this
//! crate says what the component admits. It has no reconciler, so the host
//! runs no controller for its binding and never watches Pods; and it is
//! called only for Pod creates that carry the inject annotation (a webhook
//! match condition), so other Pods never reach it.
//!
//! Build with `scripts/build-plugins.sh` (→ `target/plugins/postgres-inject-plugin.wasm`);
//! the logic and its tests are in `plugins/postgres/core`.

use postgres_plugins::{CredentialsInjectorPlugin, INJECT_ANNOTATION};
use wasm_operator_sdk::{
    AdmissionOnlyPlugin, AdmissionPlugin, AdmissionRequest, AdmissionScope, AdmitterInfo, Context,
    Mutation, Operation, Plugin, PluginError, Validation, export_admission_only_plugin,
};

/// The name of the match condition that lets only annotated Pods through.
pub const ANNOTATED_CONDITION: &str = "annotated";

/// The admission-only component of [`CredentialsInjectorPlugin`].
pub struct CredentialsInjector;

impl CredentialsInjector {
    /// Pod creates that carry the inject annotation: the only requests the
    /// injector acts on (it allows and leaves unchanged everything else).
    pub fn scope() -> AdmissionScope {
        AdmissionScope::on([Operation::Create]).match_condition(
            ANNOTATED_CONDITION,
            format!(
                "has(object.metadata.annotations) && '{INJECT_ANNOTATION}' in object.metadata.annotations"
            ),
        )
    }
}

impl AdmissionOnlyPlugin for CredentialsInjector {
    fn describe() -> AdmitterInfo {
        AdmitterInfo::from(CredentialsInjectorPlugin::describe()).scope(Self::scope())
    }

    fn validate(ctx: &Context<'_>, req: &AdmissionRequest) -> Result<Validation, PluginError> {
        CredentialsInjectorPlugin::validate(ctx, req)
    }

    fn mutate(ctx: &Context<'_>, req: &AdmissionRequest) -> Result<Mutation, PluginError> {
        CredentialsInjectorPlugin::mutate(ctx, req)
    }
}

export_admission_only_plugin!(CredentialsInjector);

#[cfg(test)]
mod tests {
    use wasm_operator_sdk::GroupVersionKind;

    use super::*;

    #[test]
    fn the_injector_is_called_only_for_creates_of_annotated_pods() {
        let info = CredentialsInjector::describe();
        assert_eq!(info.name, "postgres-inject");
        assert_eq!(info.target, GroupVersionKind::core("v1", "Pod"));
        assert_eq!(info.scope.operations, [Operation::Create]);
        assert_eq!(info.scope.object_selector, "");
        assert_eq!(info.scope.match_conditions.len(), 1);
        let condition = &info.scope.match_conditions[0];
        assert_eq!(condition.name, "annotated");
        assert_eq!(
            condition.expression,
            "has(object.metadata.annotations) && \
             'systems.mikemiller.tech/inject-credentials' in object.metadata.annotations"
        );
    }

    #[test]
    fn the_injector_reads_what_the_credentials_plugin_reads() {
        let info = CredentialsInjector::describe();
        assert_eq!(
            info.read_kinds,
            CredentialsInjectorPlugin::describe().read_kinds
        );
        assert!(!info.read_kinds.is_empty());
    }
}
