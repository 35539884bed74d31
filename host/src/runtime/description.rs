//! What a plugin says about itself in `describe` (and, for admission, in
//! `admission-info.describe`), checked at load time.

use serde_json::Value;

use super::bindings::{admission, admission_info, reconciler};
use super::error::CallError;
use crate::vocabulary::ObjectKind;

/// The operations an admission plugin is called for when it does not say
/// (it exports `admission` but not `admission-info`).
const DEFAULT_OPERATIONS: [admission::Operation; 2] =
    [admission::Operation::Create, admission::Operation::Update];

/// The most match conditions a webhook may have (the API server's limit).
const MAX_MATCH_CONDITIONS: usize = 64;

/// What a plugin says about itself, checked at load time.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginDescription {
    /// Stable name (`example-greeting`).
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// The kind it reconciles, or, admission-only, admits.
    pub target: ObjectKind,
    /// The kinds of children it returns (none when admission-only).
    pub child_kinds: Vec<ObjectKind>,
    /// Kinds it asks to read from the cache: the reconciler's and, when it
    /// describes its admission, those it reads while admitting.
    pub read_kinds: Vec<ObjectKind>,
    /// Whether it asks to query databases and return SQL plans.
    pub wants_sql: bool,
    /// JSON Schema for the binding's settings.
    pub settings_schema: Value,
    /// The WIT package version it was built against.
    pub wit_version: String,
    /// Whether it exports admission (`validate`, `mutate`); the same as
    /// `admission.is_some()`.
    pub offers_admission: bool,
    /// Which admission requests it is called for, when it exports
    /// admission: what its `admission-info` says, else creates and updates
    /// of every object of the kind ([`AdmissionScope::default`]).
    pub admission: Option<AdmissionScope>,
    /// Whether it reconciles, or only admits.
    pub role: PluginRole,
}

/// What a component does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginRole {
    /// It exports `reconciler` (and maybe admission): a controller runs it.
    Reconciler,
    /// It exports only admission (world `admission-only-plugin`): no
    /// controller, no watch of its kind; `reconcile` and `finalize` do not
    /// exist ([`CallError::NotExported`]).
    AdmissionOnly,
}

/// Which admission requests for its target kind a plugin is called for:
/// what a webhook configuration's rules, `objectSelector` and
/// `matchConditions` select.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionScope {
    /// The operations (the webhook rules' operations); never empty, no
    /// duplicates, in the order the plugin gave.
    pub operations: Vec<admission::Operation>,
    /// A Kubernetes label selector on the object (`app=web,tier!=cache`);
    /// empty: every object. It parses.
    pub object_selector: String,
    /// CEL conditions the API server checks before calling (all must hold).
    pub match_conditions: Vec<MatchCondition>,
}

impl Default for AdmissionScope {
    /// Creates and updates of every object: the scope of a plugin that
    /// exports `admission` without `admission-info` (WIT 0.1.0 plugins).
    fn default() -> Self {
        Self {
            operations: DEFAULT_OPERATIONS.to_vec(),
            object_selector: String::new(),
            match_conditions: Vec::new(),
        }
    }
}

/// A CEL condition of an [`AdmissionScope`], as in a webhook
/// configuration's `matchConditions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchCondition {
    /// Unique among the scope's conditions; a qualified name.
    pub name: String,
    /// The CEL expression.
    pub expression: String,
}

impl PluginDescription {
    /// Whether the plugin only admits: no controller runs it, and it has no
    /// `reconcile` or `finalize`.
    pub fn is_admission_only(&self) -> bool {
        self.role == PluginRole::AdmissionOnly
    }

    /// Checks what a reconciler's `describe` returned; `loaded` holds what
    /// the contract check learned (the WIT version, the admission export).
    /// Its admission scope is the default until [`Self::scoped`] narrows it.
    pub(super) fn parse(
        info: reconciler::PluginInfo,
        loaded: &PluginDescription,
    ) -> Result<Self, CallError> {
        check_identity(&info.name, &info.version, &info.target, "")?;
        let settings_schema = parse_schema(&info.settings_schema, "settings-schema")?;
        Ok(PluginDescription {
            name: info.name,
            version: info.version,
            target: info.target.into(),
            child_kinds: info.child_kinds.into_iter().map(Into::into).collect(),
            read_kinds: info
                .capabilities
                .read_kinds
                .into_iter()
                .map(Into::into)
                .collect(),
            wants_sql: info.capabilities.sql,
            settings_schema,
            wit_version: loaded.wit_version.clone(),
            offers_admission: loaded.offers_admission,
            admission: loaded.offers_admission.then(AdmissionScope::default),
            role: PluginRole::Reconciler,
        })
    }

    /// Checks what an admission-only component's `admission-info.describe`
    /// returned.
    pub(super) fn parse_admitter(
        info: admission_info::AdmitterInfo,
        loaded: &PluginDescription,
    ) -> Result<Self, CallError> {
        const AT: &str = "admission-info.";
        check_identity(&info.name, &info.version, &info.target, AT)?;
        let settings_schema =
            parse_schema(&info.settings_schema, "admission-info.settings-schema")?;
        Ok(PluginDescription {
            name: info.name,
            version: info.version,
            target: info.target.into(),
            child_kinds: Vec::new(),
            read_kinds: info.read_kinds.into_iter().map(Into::into).collect(),
            wants_sql: false,
            settings_schema,
            wit_version: loaded.wit_version.clone(),
            offers_admission: true,
            admission: Some(parse_scope(info.scope)?),
            role: PluginRole::AdmissionOnly,
        })
    }

    /// A reconciler's description narrowed by its `admission-info`: the
    /// scope it gives, and the kinds it reads while admitting. Its name,
    /// target and settings schema must be the reconciler's.
    pub(super) fn scoped(mut self, info: admission_info::AdmitterInfo) -> Result<Self, CallError> {
        let target: ObjectKind = info.target.into();
        if info.name != self.name || target != self.target {
            return Err(CallError::InvalidOutput {
                field: "admission-info.describe".into(),
                reason: format!(
                    "describes plugin {} for {target}, but the reconciler's describe says \
                     {} for {}; a component admits for the plugin and kind it reconciles: \
                     return the same name and target from both",
                    info.name, self.name, self.target
                ),
            });
        }
        let schema = parse_schema(&info.settings_schema, "admission-info.settings-schema")?;
        if schema != self.settings_schema {
            return Err(CallError::InvalidOutput {
                field: "admission-info.settings-schema".into(),
                reason: "differs from the reconciler's settings-schema; a binding has one set \
                         of settings: return the same schema from both"
                    .into(),
            });
        }
        for kind in info.read_kinds.into_iter().map(ObjectKind::from) {
            if !self.read_kinds.contains(&kind) {
                self.read_kinds.push(kind);
            }
        }
        self.admission = Some(parse_scope(info.scope)?);
        Ok(self)
    }
}

fn invalid(field: &str, reason: &str) -> CallError {
    CallError::InvalidOutput {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Checks a plugin's name, version and target; `at` prefixes the field
/// names (`admission-info.`).
fn check_identity(
    name: &str,
    version: &str,
    target: &super::bindings::types::GroupVersionKind,
    at: &str,
) -> Result<(), CallError> {
    let is_dns_label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    if !is_dns_label(name) {
        return Err(invalid(
            &format!("{at}name"),
            "must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit",
        ));
    }
    if version.is_empty() {
        return Err(invalid(&format!("{at}version"), "must not be empty"));
    }
    if target.kind.is_empty() || target.version.is_empty() {
        return Err(invalid(
            &format!("{at}target"),
            "kind and version must not be empty",
        ));
    }
    Ok(())
}

fn parse_schema(text: &str, field: &str) -> Result<Value, CallError> {
    let schema: Value =
        serde_json::from_str(text).map_err(|e| invalid(field, &format!("not JSON: {e}")))?;
    if !(schema.is_object() || schema.is_boolean()) {
        return Err(invalid(field, "must be a JSON Schema object or boolean"));
    }
    Ok(schema)
}

/// Checks an `admission-scope`: operations given and not repeated, a
/// selector that parses, conditions named uniquely and not empty.
fn parse_scope(scope: admission_info::AdmissionScope) -> Result<AdmissionScope, CallError> {
    const AT: &str = "admission-info.scope";
    if scope.operations.is_empty() {
        return Err(invalid(
            &format!("{AT}.operations"),
            "must name at least one operation (create, update, delete, connect)",
        ));
    }
    let mut operations = Vec::with_capacity(scope.operations.len());
    for operation in scope.operations {
        if !operations.contains(&operation) {
            operations.push(operation);
        }
    }
    let object_selector = scope.object_selector.trim().to_owned();
    if let Err(error) = wasm_operator_sdk::LabelSelector::parse(&object_selector) {
        return Err(invalid(
            &format!("{AT}.object-selector"),
            &format!("is not a label selector: {error}"),
        ));
    }
    if scope.match_conditions.len() > MAX_MATCH_CONDITIONS {
        return Err(invalid(
            &format!("{AT}.match-conditions"),
            &format!("at most {MAX_MATCH_CONDITIONS} conditions (the API server's limit)"),
        ));
    }
    let mut match_conditions: Vec<MatchCondition> = Vec::new();
    for (n, condition) in scope.match_conditions.into_iter().enumerate() {
        let field = format!("{AT}.match-conditions[{n}]");
        if !is_qualified_name(&condition.name) {
            return Err(invalid(
                &format!("{field}.name"),
                "must be a qualified name: an optional DNS subdomain prefix and '/', then 1-63 \
                 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            ));
        }
        if match_conditions.iter().any(|c| c.name == condition.name) {
            return Err(invalid(
                &format!("{field}.name"),
                &format!("{} is used twice; names must be unique", condition.name),
            ));
        }
        if condition.expression.trim().is_empty() {
            return Err(invalid(&format!("{field}.expression"), "must not be empty"));
        }
        match_conditions.push(MatchCondition {
            name: condition.name,
            expression: condition.expression,
        });
    }
    Ok(AdmissionScope {
        operations,
        object_selector,
        match_conditions,
    })
}

/// A Kubernetes qualified name (as a label key): `[prefix/]name`.
fn is_qualified_name(text: &str) -> bool {
    let (prefix, name) = match text.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, text),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    });
    name_ok && prefix_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use admission::Operation;

    fn scope(operations: Vec<Operation>) -> admission_info::AdmissionScope {
        admission_info::AdmissionScope {
            operations,
            object_selector: String::new(),
            match_conditions: Vec::new(),
        }
    }

    fn condition(name: &str, expression: &str) -> admission_info::MatchCondition {
        admission_info::MatchCondition {
            name: name.into(),
            expression: expression.into(),
        }
    }

    fn field_of(error: CallError) -> String {
        match error {
            CallError::InvalidOutput { field, .. } => field,
            other => panic!("not an output error: {other:?}"),
        }
    }

    #[test]
    fn a_plugin_without_admission_info_is_called_for_creates_and_updates_of_everything() {
        let scope = AdmissionScope::default();
        assert_eq!(scope.operations, [Operation::Create, Operation::Update]);
        assert!(scope.object_selector.is_empty() && scope.match_conditions.is_empty());
    }

    #[test]
    fn a_scope_keeps_its_operations_in_order_without_repeats() {
        let parsed = parse_scope(scope(vec![
            Operation::Delete,
            Operation::Create,
            Operation::Delete,
        ]))
        .unwrap();
        assert_eq!(parsed.operations, [Operation::Delete, Operation::Create]);
    }

    #[test]
    fn a_scope_without_operations_is_refused() {
        let error = parse_scope(scope(Vec::new())).unwrap_err();
        assert_eq!(field_of(error), "admission-info.scope.operations");
    }

    #[test]
    fn a_scope_whose_selector_does_not_parse_is_refused() {
        let mut bad = scope(vec![Operation::Create]);
        bad.object_selector = "app in (web".into();
        let error = parse_scope(bad).unwrap_err();
        assert_eq!(field_of(error), "admission-info.scope.object-selector");
        let mut good = scope(vec![Operation::Create]);
        good.object_selector = "app=web, tier notin (cache)".into();
        assert!(parse_scope(good).is_ok());
    }

    #[test]
    fn match_conditions_need_unique_qualified_names_and_an_expression() {
        let with = |conditions| {
            let mut s = scope(vec![Operation::Create]);
            s.match_conditions = conditions;
            parse_scope(s)
        };
        let parsed = with(vec![
            condition("annotated", "has(object.metadata.annotations)"),
            condition("example.com/not-system", "request.userInfo.username != 'x'"),
        ])
        .unwrap();
        assert_eq!(parsed.match_conditions[1].name, "example.com/not-system");
        let error = with(vec![condition("a", "true"), condition("a", "false")]).unwrap_err();
        assert_eq!(
            field_of(error),
            "admission-info.scope.match-conditions[1].name"
        );
        let error = with(vec![condition("-bad", "true")]).unwrap_err();
        assert_eq!(
            field_of(error),
            "admission-info.scope.match-conditions[0].name"
        );
        let error = with(vec![condition("ok", "  ")]).unwrap_err();
        assert_eq!(
            field_of(error),
            "admission-info.scope.match-conditions[0].expression"
        );
    }

    #[test]
    fn qualified_names_follow_the_label_key_rules() {
        assert!(is_qualified_name("annotated"));
        assert!(is_qualified_name("systems.mikemiller.tech/inject_1.x"));
        assert!(!is_qualified_name(""));
        assert!(!is_qualified_name("a/"));
        assert!(!is_qualified_name("Upper.Case/x"));
        assert!(!is_qualified_name(&"x".repeat(64)));
    }
}
