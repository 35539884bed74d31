//! A loaded plugin and the calls into it: one pre-instantiated component per
//! plugin digest, a fresh store per call.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use wasmtime::component::InstancePre;
use wasmtime::{Store, Trap, UpdateDeadline, WasmBacktrace};

use super::EpochTicker;
use super::bindings::{admission, reconciler, types};
use super::error::CallError;
use super::limits::PluginLimits;
use super::sandbox::{CallContext, CallState};
use super::services::{ObjectKind, SqlValue};

pub use super::bindings::admission::{AdmissionRequest, Mutation, Operation, Validation};
pub use super::bindings::types::{Event, EventType};

/// The sha256 of a component's bytes: the identity of a plugin version.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PluginDigest([u8; 32]);

impl PluginDigest {
    /// Digests component bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest as 64 lower-case hex digits.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses `sha256:<hex>` or bare hex.
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        if hex.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(bytes))
    }
}

impl fmt::Display for PluginDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for PluginDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What a plugin says about itself, checked at load time.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginDescription {
    /// Stable name (`example-greeting`).
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// The kind it reconciles.
    pub target: ObjectKind,
    /// The kinds of children it returns.
    pub child_kinds: Vec<ObjectKind>,
    /// Kinds it asks to read from the cache.
    pub read_kinds: Vec<ObjectKind>,
    /// Whether it asks to query databases and return SQL plans.
    pub wants_sql: bool,
    /// JSON Schema for the binding's settings.
    pub settings_schema: Value,
    /// The WIT package version it was built against.
    pub wit_version: String,
    /// Whether it exports admission (`validate`, `mutate`).
    pub offers_admission: bool,
}

/// Everything the host gathered for one reconcile or finalize call.
#[derive(Debug, Clone, Default)]
pub struct ReconcileInput {
    /// The object being reconciled.
    pub object: Value,
    /// Its existing children of the declared kinds.
    pub children: Vec<Value>,
    /// The binding's settings.
    pub settings: Value,
    /// Servers the plugin may use for this object (`namespace/name`).
    pub servers: Vec<String>,
}

impl ReconcileInput {
    fn to_wit(&self) -> reconciler::ReconcileRequest {
        reconciler::ReconcileRequest {
            object: json_text(&self.object),
            children: self.children.iter().map(json_text).collect(),
            settings: json_text(&self.settings),
            servers: self.servers.clone(),
        }
    }
}

/// Serializes JSON for the guest. `serde_json::to_string` writes bytes
/// straight into a buffer; `Value::to_string` goes through `fmt` and is
/// markedly slower on objects of a few kilobytes.
fn json_text(value: &Value) -> String {
    // A `Value` always serializes: its map keys are strings.
    serde_json::to_string(value).unwrap_or_default()
}

/// One statement of an SQL plan. Its `Debug` and `Display` never show the
/// text or parameters of a sensitive statement.
#[derive(Clone)]
pub struct SqlStatement {
    /// The statement with `$n` placeholders.
    pub statement: String,
    /// Bound parameters.
    pub params: Vec<SqlValue>,
    /// Must run outside a transaction.
    pub non_transactional: bool,
    /// Carries a secret: only `summary` may be shown.
    pub sensitive: bool,
    /// A description safe to log.
    pub summary: String,
}

impl fmt::Display for SqlStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sensitive {
            write!(f, "{} [statement redacted: carries a secret]", self.summary)
        } else {
            f.write_str(&self.statement)
        }
    }
}

impl fmt::Debug for SqlStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("SqlStatement");
        if self.sensitive {
            s.field("statement", &"<redacted>")
                .field("params", &"<redacted>");
        } else {
            s.field("statement", &self.statement)
                .field("params", &self.params);
        }
        s.field("non_transactional", &self.non_transactional)
            .field("sensitive", &self.sensitive)
            .field("summary", &self.summary)
            .finish()
    }
}

impl From<reconciler::SqlStatement> for SqlStatement {
    fn from(s: reconciler::SqlStatement) -> Self {
        Self {
            statement: s.statement,
            params: s.params,
            non_transactional: s.non_transactional,
            sensitive: s.sensitive,
            summary: s.summary,
        }
    }
}

/// An ordered list of statements for one server.
#[derive(Debug, Clone)]
pub struct SqlPlan {
    /// `namespace/name` of the server.
    pub server: String,
    /// Database to connect to; `None`: the maintenance database.
    pub database: Option<String>,
    /// The statements, in order.
    pub statements: Vec<SqlStatement>,
}

impl From<reconciler::SqlPlan> for SqlPlan {
    fn from(p: reconciler::SqlPlan) -> Self {
        Self {
            server: p.server,
            database: p.database,
            statements: p.statements.into_iter().map(Into::into).collect(),
        }
    }
}

/// A plugin's decision for one object, checked for shape and size.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The complete desired set of children.
    pub children: Vec<Value>,
    /// The desired `.status`, if the plugin set one.
    pub status: Option<Value>,
    /// SQL to run before applying children.
    pub sql: Vec<SqlPlan>,
    /// Events to record.
    pub events: Vec<Event>,
    /// Reconcile again after this long.
    pub requeue_after: Option<Duration>,
}

/// A plugin's decision while its object is being deleted.
#[derive(Debug, Clone)]
pub struct FinalizeDecision {
    /// Cleanup is complete; the finalizer may go.
    pub done: bool,
    /// SQL to run.
    pub sql: Vec<SqlPlan>,
    /// Events to record.
    pub events: Vec<Event>,
    /// Ask again after this long when not done.
    pub requeue_after: Option<Duration>,
}

/// How a plugin's compiled code was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Compiled from the component's bytes.
    Compiled,
    /// Loaded from the precompiled-artifact cache.
    Cached,
}

/// A plugin ready to be called: shared by every call, cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
    limits: PluginLimits,
}

struct PluginInner {
    digest: PluginDigest,
    name: Arc<str>,
    description: PluginDescription,
    pre: InstancePre<CallState>,
    reconciler: reconciler::GuestIndices,
    admission: Option<admission::GuestIndices>,
    /// Keeps the epoch advancing (deadlines working) while this plugin exists.
    _ticker: Arc<EpochTicker>,
    source: LoadSource,
    load_time: Duration,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("digest", &self.inner.digest)
            .field("name", &self.inner.name)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The parts of a loaded component the runtime hands to [`Plugin::new`].
pub(crate) struct LoadedComponent {
    pub(crate) digest: PluginDigest,
    pub(crate) pre: InstancePre<CallState>,
    pub(crate) reconciler: reconciler::GuestIndices,
    pub(crate) admission: Option<admission::GuestIndices>,
    pub(crate) ticker: Arc<EpochTicker>,
    pub(crate) source: LoadSource,
    pub(crate) load_time: Duration,
    pub(crate) wit_version: String,
}

impl Plugin {
    /// Calls `describe` and checks its answer, making the plugin usable.
    pub(crate) async fn new(loaded: LoadedComponent) -> Result<Self, CallError> {
        let LoadedComponent {
            digest,
            pre,
            reconciler,
            admission,
            ticker,
            source,
            load_time,
            wit_version,
        } = loaded;
        let placeholder = PluginDescription {
            name: format!("plugin {digest}"),
            version: String::new(),
            target: ObjectKind::new("", "", ""),
            child_kinds: Vec::new(),
            read_kinds: Vec::new(),
            wants_sql: false,
            settings_schema: Value::Bool(true),
            wit_version,
            offers_admission: admission.is_some(),
        };
        let mut plugin = Self {
            inner: Arc::new(PluginInner {
                name: placeholder.name.as_str().into(),
                digest,
                description: placeholder,
                pre,
                reconciler,
                admission,
                _ticker: ticker,
                source,
                load_time,
            }),
            limits: PluginLimits::default(),
        };
        let info = plugin
            .run(CallContext::none(), "describe", |guest, store| {
                Box::pin(async move { guest.call_describe(store).await })
            })
            .await?;
        let description = describe_to_description(info, &plugin.inner.description)?;
        let inner = Arc::get_mut(&mut plugin.inner).expect("the plugin is not shared yet");
        inner.name = description.name.as_str().into();
        inner.description = description;
        Ok(plugin)
    }

    /// The same plugin with other limits (a binding's), sharing the compiled code.
    #[must_use]
    pub fn with_limits(&self, limits: PluginLimits) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            limits,
        }
    }

    /// The digest of the component's bytes.
    pub fn digest(&self) -> &PluginDigest {
        &self.inner.digest
    }

    /// What the plugin said about itself.
    pub fn description(&self) -> &PluginDescription {
        &self.inner.description
    }

    /// The limits in force for calls through this handle.
    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// Whether the compiled code came from the cache, and how long loading took.
    pub fn load_report(&self) -> (LoadSource, Duration) {
        (self.inner.source, self.inner.load_time)
    }

    /// Asks the plugin for its decision on one object.
    ///
    /// # Errors
    /// Any [`CallError`]: the plugin's own error, a trap, a limit, or an
    /// output that is too large or malformed.
    #[tracing::instrument(name = "wasm_operator.plugin.reconcile", skip_all, fields(plugin = %self.inner.name))]
    pub async fn reconcile(
        &self,
        input: &ReconcileInput,
        ctx: CallContext,
    ) -> Result<Decision, CallError> {
        let request = input.to_wit();
        let response = self
            .run(ctx, "reconcile", |guest, store| {
                Box::pin(async move { guest.call_reconcile(store, &request).await })
            })
            .await?
            .map_err(guest_error)?;
        check_size(reconcile_size(&response), self.limits.max_output_bytes)?;
        Ok(Decision {
            children: response
                .children
                .iter()
                .enumerate()
                .map(|(i, c)| parse_child(i, c))
                .collect::<Result<_, _>>()?,
            status: response
                .status
                .as_deref()
                .map(|s| parse_object("status", s))
                .transpose()?,
            sql: response.sql.into_iter().map(Into::into).collect(),
            events: check_events(response.events)?,
            requeue_after: response.requeue_after_ms.map(Duration::from_millis),
        })
    }

    /// Asks the plugin to clean up after an object that is being deleted.
    ///
    /// # Errors
    /// As for [`Plugin::reconcile`].
    #[tracing::instrument(name = "wasm_operator.plugin.finalize", skip_all, fields(plugin = %self.inner.name))]
    pub async fn finalize(
        &self,
        input: &ReconcileInput,
        ctx: CallContext,
    ) -> Result<FinalizeDecision, CallError> {
        let request = input.to_wit();
        let response = self
            .run(ctx, "finalize", |guest, store| {
                Box::pin(async move { guest.call_finalize(store, &request).await })
            })
            .await?
            .map_err(guest_error)?;
        let size = response.events.iter().map(event_size).sum::<usize>()
            + response.sql.iter().map(plan_size).sum::<usize>();
        check_size(size, self.limits.max_output_bytes)?;
        Ok(FinalizeDecision {
            done: response.done,
            sql: response.sql.into_iter().map(Into::into).collect(),
            events: check_events(response.events)?,
            requeue_after: response.requeue_after_ms.map(Duration::from_millis),
        })
    }

    /// Asks the plugin whether an admission request is allowed.
    ///
    /// # Errors
    /// [`CallError::NotExported`] when the plugin offers no admission, else as
    /// for [`Plugin::reconcile`].
    pub async fn validate(
        &self,
        request: &AdmissionRequest,
        ctx: CallContext,
    ) -> Result<Validation, CallError> {
        let indices = self.admission_indices("validate")?;
        let request = request.clone();
        let validation = self
            .run_with(ctx, "validate", move |store, instance| {
                match indices.load(&mut *store, instance) {
                    Ok(guest) => {
                        Box::pin(async move { guest.call_validate(store, &request).await })
                    }
                    Err(error) => Box::pin(async move { Err(error) }),
                }
            })
            .await?
            .map_err(guest_error)?;
        let size = validation.message.as_ref().map_or(0, String::len)
            + validation.warnings.iter().map(String::len).sum::<usize>();
        check_size(size, self.limits.max_output_bytes)?;
        Ok(validation)
    }

    /// Asks the plugin how an admission request's object should be changed.
    ///
    /// # Errors
    /// As for [`Plugin::validate`].
    pub async fn mutate(
        &self,
        request: &AdmissionRequest,
        ctx: CallContext,
    ) -> Result<Mutation, CallError> {
        let indices = self.admission_indices("mutate")?;
        let request = request.clone();
        let mutation = self
            .run_with(ctx, "mutate", move |store, instance| {
                match indices.load(&mut *store, instance) {
                    Ok(guest) => Box::pin(async move { guest.call_mutate(store, &request).await }),
                    Err(error) => Box::pin(async move { Err(error) }),
                }
            })
            .await?
            .map_err(guest_error)?;
        let size = mutation.object.as_ref().map_or(0, String::len)
            + mutation.warnings.iter().map(String::len).sum::<usize>();
        check_size(size, self.limits.max_output_bytes)?;
        if let Some(object) = &mutation.object {
            parse_object("object", object)?;
        }
        Ok(mutation)
    }

    fn admission_indices(
        &self,
        export: &'static str,
    ) -> Result<&admission::GuestIndices, CallError> {
        self.inner
            .admission
            .as_ref()
            .ok_or(CallError::NotExported { export })
    }

    /// Runs one export of the `reconciler` interface.
    async fn run<R>(
        &self,
        ctx: CallContext,
        export: &'static str,
        call: impl for<'a> FnOnce(reconciler::Guest, &'a mut Store<CallState>) -> BoxFuture<'a, R>,
    ) -> Result<R, CallError> {
        let indices = &self.inner.reconciler;
        self.run_with(ctx, export, move |store, instance| {
            match indices.load(&mut *store, instance) {
                Ok(guest) => call(guest, store),
                Err(error) => Box::pin(async move { Err(error) }),
            }
        })
        .await
    }

    /// Runs one export in a fresh store under the plugin's limits and
    /// classifies whatever went wrong.
    async fn run_with<R>(
        &self,
        ctx: CallContext,
        export: &'static str,
        call: impl for<'a> FnOnce(
            &'a mut Store<CallState>,
            &'a wasmtime::component::Instance,
        ) -> BoxFuture<'a, R>,
    ) -> Result<R, CallError> {
        let limits = &self.limits;
        let state = CallState::new(Arc::clone(&self.inner.name), limits, ctx);
        let mut store = Store::new(self.inner.pre.engine(), state);
        store.limiter(|state| &mut state.limiter);
        // Yield to the executor on every epoch tick so a busy guest never
        // starves other tasks; stop it for good once the deadline passes.
        let hard_deadline = Instant::now() + limits.deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= hard_deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        let pre = &self.inner.pre;
        let outcome = tokio::time::timeout(limits.deadline, async {
            let instance = pre.instantiate_async(&mut store).await?;
            call(&mut store, &instance).await
        })
        .await;
        store.data().flush_output();
        match outcome {
            Err(_elapsed) => Err(CallError::DeadlineExceeded {
                deadline: limits.deadline,
            }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.classify(&store, export, error)),
        }
    }

    fn classify(
        &self,
        store: &Store<CallState>,
        export: &str,
        error: wasmtime::Error,
    ) -> CallError {
        let state = store.data();
        if state.limiter.was_hit() {
            return CallError::MemoryLimit {
                limit_bytes: self.limits.memory_bytes,
            };
        }
        let trap = error.downcast_ref::<Trap>().copied();
        tracing::debug!(plugin = %self.inner.name, export, error = %format!("{error:#}"), "plugin call failed");
        match trap {
            Some(Trap::Interrupt) => CallError::DeadlineExceeded {
                deadline: self.limits.deadline,
            },
            Some(trap) => {
                if let Some(message) = panic_message(&state.stderr.text()) {
                    return CallError::Panic { message };
                }
                CallError::Trap {
                    trap: trap.to_string(),
                    backtrace: error
                        .downcast_ref::<WasmBacktrace>()
                        .map(ToString::to_string),
                }
            }
            None => CallError::Runtime {
                reason: format!("{error:#}"),
            },
        }
    }
}

/// A call's future, borrowing the store for the duration of the call.
type BoxFuture<'a, R> =
    std::pin::Pin<Box<dyn std::future::Future<Output = wasmtime::Result<R>> + Send + 'a>>;

/// The text of a Rust panic the guest printed to stderr, if any.
fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at")?;
    let message: Vec<&str> = stderr[start..]
        .lines()
        .filter(|line| !line.starts_with("note: run with"))
        .collect();
    Some(message.join(" ").trim().to_owned())
}

fn guest_error(error: types::PluginError) -> CallError {
    CallError::Guest {
        reason: error.reason,
        message: error.message,
        retryable: error.retryable,
    }
}

fn describe_to_description(
    info: reconciler::PluginInfo,
    loaded: &PluginDescription,
) -> Result<PluginDescription, CallError> {
    let invalid = |field: &str, reason: &str| CallError::InvalidOutput {
        field: field.to_owned(),
        reason: reason.to_owned(),
    };
    let is_dns_label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    if !is_dns_label(&info.name) {
        return Err(invalid(
            "name",
            "must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit",
        ));
    }
    if info.version.is_empty() {
        return Err(invalid("version", "must not be empty"));
    }
    if info.target.kind.is_empty() || info.target.version.is_empty() {
        return Err(invalid("target", "kind and version must not be empty"));
    }
    let settings_schema: Value = serde_json::from_str(&info.settings_schema)
        .map_err(|e| invalid("settings-schema", &format!("not JSON: {e}")))?;
    if !(settings_schema.is_object() || settings_schema.is_boolean()) {
        return Err(invalid(
            "settings-schema",
            "must be a JSON Schema object or boolean",
        ));
    }
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
    })
}

fn check_size(size: usize, limit: usize) -> Result<(), CallError> {
    if size > limit {
        Err(CallError::OutputTooLarge { size, limit })
    } else {
        Ok(())
    }
}

fn value_size(value: &SqlValue) -> usize {
    match value {
        SqlValue::Text(s) | SqlValue::Json(s) => s.len(),
        SqlValue::Bytes(b) => b.len(),
        _ => 8,
    }
}

fn plan_size(plan: &reconciler::SqlPlan) -> usize {
    plan.server.len()
        + plan.database.as_ref().map_or(0, String::len)
        + plan
            .statements
            .iter()
            .map(|s| {
                s.statement.len() + s.summary.len() + s.params.iter().map(value_size).sum::<usize>()
            })
            .sum::<usize>()
}

fn event_size(event: &Event) -> usize {
    event.reason.len() + event.note.len() + event.action.len()
}

fn reconcile_size(response: &reconciler::ReconcileResponse) -> usize {
    response.children.iter().map(String::len).sum::<usize>()
        + response.status.as_ref().map_or(0, String::len)
        + response.sql.iter().map(plan_size).sum::<usize>()
        + response.events.iter().map(event_size).sum::<usize>()
}

fn parse_object(field: &str, text: &str) -> Result<Value, CallError> {
    let value: Value = serde_json::from_str(text).map_err(|e| CallError::InvalidOutput {
        field: field.to_owned(),
        reason: format!("not JSON: {e}"),
    })?;
    if !value.is_object() {
        return Err(CallError::InvalidOutput {
            field: field.to_owned(),
            reason: "must be a JSON object".to_owned(),
        });
    }
    Ok(value)
}

fn parse_child(index: usize, text: &str) -> Result<Value, CallError> {
    let field = format!("children[{index}]");
    let child = parse_object(&field, text)?;
    for (path, pointer) in [
        ("apiVersion", "/apiVersion"),
        ("kind", "/kind"),
        ("metadata.name", "/metadata/name"),
    ] {
        if child
            .pointer(pointer)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(CallError::InvalidOutput {
                field: format!("{field}.{path}"),
                reason: "is required and must be a non-empty string".to_owned(),
            });
        }
    }
    Ok(child)
}

fn check_events(events: Vec<Event>) -> Result<Vec<Event>, CallError> {
    for (i, event) in events.iter().enumerate() {
        let upper_camel = event
            .reason
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase())
            && event.reason.chars().all(|c| c.is_ascii_alphanumeric())
            && event.reason.len() <= 128;
        if !upper_camel {
            return Err(CallError::InvalidOutput {
                field: format!("events[{i}].reason"),
                reason: "must be UpperCamelCase letters and digits, at most 128".to_owned(),
            });
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_its_text_form() {
        let digest = PluginDigest::of(b"component bytes");
        assert_eq!(
            PluginDigest::parse(&digest.to_string()),
            Some(digest.clone())
        );
        assert_eq!(PluginDigest::parse(&digest.hex()), Some(digest));
        assert_eq!(PluginDigest::parse("sha256:abc"), None);
    }

    #[test]
    fn sensitive_statements_never_show_their_text() {
        let statement = SqlStatement {
            statement: "ALTER ROLE \"foo\" PASSWORD 'SCRAM-SHA-256$4096:Zm9vYmFyYmF6'".into(),
            params: vec![SqlValue::Text("hunter2".into())],
            non_transactional: false,
            sensitive: true,
            summary: "set password of role \"foo\"".into(),
        };
        for shown in [format!("{statement}"), format!("{statement:?}")] {
            assert!(!shown.contains("Zm9vYmFyYmF6"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("set password of role"), "{shown}");
        }
    }

    #[test]
    fn children_without_a_name_are_refused_naming_the_field() {
        let error =
            parse_child(3, r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#).unwrap_err();
        assert!(
            error.to_string().contains("children[3].metadata.name"),
            "{error}"
        );
    }

    #[test]
    fn panic_messages_are_extracted_from_guest_stderr() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:9:5:\nboom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("panicked at src/lib.rs:9:5: boom")
        );
        assert_eq!(panic_message("just output"), None);
    }
}
