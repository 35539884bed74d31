//! The names the host writes on the objects it manages, shared with plugins
//! so that neither side types them again: the finalizer, the labels on
//! every child, and the annotations of a child kept when its owner goes.

/// The prefix of every plugin's finalizer; the plugin's name follows it.
pub const FINALIZER_PREFIX: &str = "plugins.systems.mikemiller.tech/";

/// The finalizer the host puts on the objects the plugin named
/// `plugin_name` reconciles, and removes once its `finalize` is done:
/// `plugins.systems.mikemiller.tech/<plugin_name>`.
///
/// A plugin names it in messages that tell a user how to release an object
/// by hand; [`PluginInfo::finalizer`](crate::PluginInfo::finalizer) gives a
/// plugin its own.
///
/// ```
/// assert_eq!(
///     wasm_operator_sdk::finalizer_name("postgres-database"),
///     "plugins.systems.mikemiller.tech/postgres-database"
/// );
/// ```
#[must_use]
pub fn finalizer_name(plugin_name: &str) -> String {
    format!("{FINALIZER_PREFIX}{plugin_name}")
}

/// Label the host puts on every child: the name of the plugin that manages it.
pub const PLUGIN_LABEL: &str = "systems.mikemiller.tech/plugin";

/// Label the host puts on every child: the uid of its owner, by which the
/// host finds an object's children.
pub const OWNER_UID_LABEL: &str = "systems.mikemiller.tech/owner-uid";

/// Annotation a plugin puts on a child, with the value `"true"`, so that
/// the child outlives its owner: once the owner's `finalize` is done and
/// before its finalizer goes, the host removes the owner's reference and
/// labels from the child and writes [`RETAINED_FROM_ANNOTATION`] on it, so
/// the garbage collector leaves it. Set it with
/// [`ChildBuilder::retain_on_delete`](crate::ChildBuilder::retain_on_delete)
/// or [`retain_on_delete`](crate::retain_on_delete).
pub const RETAIN_ANNOTATION: &str = "systems.mikemiller.tech/retain-on-delete";

/// Annotation the host writes on a child it kept when its owner was
/// deleted (see [`RETAIN_ANNOTATION`]): which object it was kept from, as
/// `<Kind> <namespace>/<name> (uid <uid>)`.
pub const RETAINED_FROM_ANNOTATION: &str = "systems.mikemiller.tech/retained-from";
