//! Example plugin: reconciles a `Greeting` into a ConfigMap holding its message.
//!
//! Shows the whole plugin surface on one small kind: typed spec with field
//! path errors, settings whose schema is derived from their type, a cache read
//! with a settings fallback, structured logging, a child object (optionally
//! kept when the Greeting is deleted), a typed status with conditions, and
//! an event only when something changed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use wasm_operator_sdk::prelude::*;

/// The API group of `Greeting`.
pub const GROUP: &str = "examples.systems.mikemiller.tech";
/// The label every child carries.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// The audience when neither the spec nor the binding's settings name one.
pub const DEFAULT_AUDIENCE: &str = "world";

/// The kind this plugin reconciles.
#[must_use]
pub fn greeting_kind() -> GroupVersionKind {
    GroupVersionKind::new(GROUP, "v1alpha1", "Greeting")
}

/// The kind of its children and of the objects it reads.
#[must_use]
pub fn config_map_kind() -> GroupVersionKind {
    GroupVersionKind::core("v1", "ConfigMap")
}

/// `Greeting.spec`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GreetingSpec {
    /// The greeting word (`Hello`). Required and non-empty.
    #[serde(default)]
    pub greeting: String,
    /// Where to read the audience from; the binding's `defaultAudience` otherwise.
    #[serde(default)]
    pub audience_from: Option<AudienceFrom>,
    /// Keep the ConfigMap when the Greeting is deleted, instead of letting
    /// it be garbage-collected with its owner.
    #[serde(default)]
    pub retain_on_delete: bool,
}

/// A key of a ConfigMap in the Greeting's namespace.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudienceFrom {
    /// The ConfigMap's name.
    pub config_map: String,
    /// The key in its `data`.
    pub key: String,
}

/// The binding's settings; unknown settings are refused.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// The audience when `spec.audienceFrom` is absent or cannot be read.
    #[serde(default = "default_audience")]
    pub default_audience: String,
}

fn default_audience() -> String {
    DEFAULT_AUDIENCE.to_owned()
}

/// `Greeting.status`.
#[derive(Debug, Serialize)]
pub struct GreetingStatus<'a> {
    /// The published message.
    pub message: &'a str,
    /// `Ready` once the message is published.
    pub conditions: Conditions,
}

/// The Greeting plugin.
pub struct GreetingPlugin;

impl Plugin for GreetingPlugin {
    fn describe() -> PluginInfo {
        PluginInfo::new("example-greeting", "0.1.0", greeting_kind())
            .child_kind(config_map_kind())
            .read_kind(config_map_kind())
            .settings::<Settings>()
    }

    fn reconcile(ctx: &Context<'_>, req: &Request) -> Result<Response, PluginError> {
        let object = &req.object;
        let spec: GreetingSpec = object.spec()?;
        if spec.greeting.trim().is_empty() {
            return Err(PluginError::invalid_spec(
                "spec.greeting is required and must not be empty",
            ));
        }
        let namespace = object.namespace().ok_or_else(|| {
            PluginError::permanent("InvalidObject", "a Greeting must have a namespace")
        })?;
        let settings: Settings = req.settings_as()?;
        let (audience, source) = audience(ctx, namespace, spec.audience_from.as_ref(), settings)?;
        let message = format!("{}, {audience}!", spec.greeting);

        ctx.info(
            "reconciled greeting",
            &[
                ("greeting", object.name()),
                ("namespace", namespace),
                ("audience", &audience),
                ("audienceSource", source.as_str()),
                ("message", &message),
            ],
        );

        let mut child =
            ChildBuilder::new(&config_map_kind(), format!("{}-greeting", object.name()))
                .namespace(namespace)
                .label(NAME_LABEL, "greeting")
                .data("message", &message);
        if spec.retain_on_delete {
            child = child.retain_on_delete();
        }
        let child = child.build();
        let conditions = Conditions::from_object(object).set(
            Condition::ready("Reconciled", "the greeting is published"),
            ctx.now(),
        );
        let previous = object.str_at("/status/message");
        let mut response = Response::new().child(child).status_of(&GreetingStatus {
            message: &message,
            conditions,
        })?;
        if previous != Some(message.as_str()) {
            response = response.event(Event::normal(
                "MessageChanged",
                "Reconcile",
                format!("the greeting message is now {message:?}"),
            ));
        }
        Ok(response)
    }

    fn finalize(ctx: &Context<'_>, req: &Request) -> Result<FinalizeResponse, PluginError> {
        // Nothing to clean up: the host releases a ConfigMap marked to be
        // retained, and the garbage collector deletes any other.
        ctx.info(
            "greeting deleted; its ConfigMap is garbage-collected unless spec.retainOnDelete keeps it",
            &[
                ("greeting", req.object.name()),
                ("namespace", req.object.namespace().unwrap_or_default()),
            ],
        );
        Ok(FinalizeResponse::done())
    }
}

/// Where the audience came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudienceSource {
    /// The ConfigMap named by `spec.audienceFrom`.
    ConfigMap,
    /// The binding's `defaultAudience` (no `audienceFrom`, or the ConfigMap or key is missing).
    Default,
}

impl AudienceSource {
    /// The log field value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfigMap => "configMap",
            Self::Default => "default",
        }
    }
}

/// Decides the audience: the ConfigMap key when it exists (a cache read),
/// else the binding's default.
fn audience(
    ctx: &Context<'_>,
    namespace: &str,
    from: Option<&AudienceFrom>,
    settings: Settings,
) -> Result<(String, AudienceSource), PluginError> {
    if let Some(from) = from {
        let config_map = ctx.get(&config_map_kind(), Some(namespace), &from.config_map)?;
        let value = config_map
            .as_ref()
            .and_then(|cm| cm.as_value().get("data")?.get(&from.key)?.as_str());
        if let Some(value) = value {
            return Ok((value.to_owned(), AudienceSource::ConfigMap));
        }
    }
    Ok((settings.default_audience, AudienceSource::Default))
}

export_plugin!(GreetingPlugin);

#[cfg(test)]
mod tests;
