//! A loaded plugin and the calls into it: one pre-instantiated component per
//! plugin digest, a fresh store per call.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmtime::component::InstancePre;
use wasmtime::{Store, Trap, UpdateDeadline, WasmBacktrace};

use super::bindings::{reconciler, types};
use super::decision::{self, Decision, FinalizeDecision};
use super::description::{PluginDescription, PluginRole};
use super::digest::PluginDigest;
use super::epoch::EpochTicker;
use super::error::CallError;
use super::exports::{Admission, Exports, Reconciler};
use super::limits::PluginLimits;
use super::sandbox::{CallContext, CallState};
use crate::vocabulary::{ObjectKind, ServerKey};

pub use super::bindings::admission::{AdmissionRequest, Mutation, Operation, Validation};

/// Everything the host gathered for one reconcile or finalize call.
#[derive(Debug, Clone, Default)]
pub struct ReconcileInput {
    /// The object being reconciled.
    pub object: Value,
    /// Its existing children of the declared kinds.
    pub children: Vec<Value>,
    /// The binding's settings.
    pub settings: Value,
    /// Servers the plugin may use for this object.
    pub servers: Vec<ServerKey>,
}

impl ReconcileInput {
    fn to_wit(&self) -> reconciler::ReconcileRequest {
        reconciler::ReconcileRequest {
            object: json_text(&self.object),
            children: self.children.iter().map(json_text).collect(),
            settings: json_text(&self.settings),
            servers: self.servers.iter().map(ToString::to_string).collect(),
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
    exports: Exports,
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
    pub(crate) exports: Exports,
    pub(crate) ticker: Arc<EpochTicker>,
    pub(crate) source: LoadSource,
    pub(crate) load_time: Duration,
    pub(crate) wit_version: String,
}

impl Plugin {
    /// Type-checks the exports, calls `describe` (the reconciler's, and
    /// `admission-info`'s when exported) and checks the answers, making the
    /// plugin usable.
    pub(crate) async fn new(loaded: LoadedComponent) -> Result<Self, CallError> {
        let LoadedComponent {
            digest,
            pre,
            exports,
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
            offers_admission: exports.admission.is_some(),
            admission: None,
            role: if exports.reconciler.is_some() {
                PluginRole::Reconciler
            } else {
                PluginRole::AdmissionOnly
            },
        };
        let mut plugin = Self {
            inner: Arc::new(PluginInner {
                name: placeholder.name.as_str().into(),
                digest,
                description: placeholder,
                pre,
                exports,
                _ticker: ticker,
                source,
                load_time,
            }),
            limits: PluginLimits::default(),
        };
        let exports = plugin.inner.exports;
        let (reconciler, admission_info) = (exports.reconciler, exports.admission_info);
        let (info, admitter) = plugin
            .run_with(CallContext::none(), "describe", move |store, instance| {
                Box::pin(async move {
                    exports.typecheck(store, instance)?;
                    let info = match reconciler {
                        Some(reconciler) => Some(reconciler.describe(store, instance).await?),
                        None => None,
                    };
                    let admitter = match admission_info {
                        Some(admission_info) => {
                            Some(admission_info.describe(store, instance).await?)
                        }
                        None => None,
                    };
                    Ok((info, admitter))
                })
            })
            .await?;
        let loaded = &plugin.inner.description;
        let description = match (info, admitter) {
            (Some(info), None) => PluginDescription::parse(info, loaded)?,
            (Some(info), Some(admitter)) => {
                PluginDescription::parse(info, loaded)?.scoped(admitter)?
            }
            (None, Some(admitter)) => PluginDescription::parse_admitter(admitter, loaded)?,
            // The contract check lets no component through with neither.
            (None, None) => {
                unreachable!("a component either reconciles or describes its admission")
            }
        };
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
    /// output that is too large or malformed; [`CallError::NotExported`]
    /// for an admission-only plugin, which is never entered.
    #[tracing::instrument(name = "wasm_operator.plugin.reconcile", skip_all, fields(plugin = %self.inner.name))]
    pub async fn reconcile(
        &self,
        input: &ReconcileInput,
        ctx: CallContext,
    ) -> Result<Decision, CallError> {
        let reconciler = self.reconciler("reconcile")?;
        let request = input.to_wit();
        let response = self
            .run_with(ctx, "reconcile", move |store, instance| {
                Box::pin(async move { reconciler.reconcile(store, instance, &request).await })
            })
            .await?
            .map_err(guest_error)?;
        Decision::parse(response, &self.limits)
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
        let reconciler = self.reconciler("finalize")?;
        let request = input.to_wit();
        let response = self
            .run_with(ctx, "finalize", move |store, instance| {
                Box::pin(async move { reconciler.finalize(store, instance, &request).await })
            })
            .await?
            .map_err(guest_error)?;
        FinalizeDecision::parse(response, &self.limits)
    }

    /// Asks the plugin whether an admission request is allowed.
    ///
    /// # Errors
    /// [`CallError::NotExported`] when the plugin offers no admission, else as
    /// for [`Plugin::reconcile`].
    #[tracing::instrument(name = "wasm_operator.plugin.validate", skip_all, fields(plugin = %self.inner.name))]
    pub async fn validate(
        &self,
        request: &AdmissionRequest,
        ctx: CallContext,
    ) -> Result<Validation, CallError> {
        let admission = self.admission("validate")?;
        let request = request.clone();
        let validation = self
            .run_with(ctx, "validate", move |store, instance| {
                Box::pin(async move { admission.validate(store, instance, &request).await })
            })
            .await?
            .map_err(guest_error)?;
        decision::check_validation(&validation, self.limits.max_output_bytes)?;
        Ok(validation)
    }

    /// Asks the plugin how an admission request's object should be changed.
    ///
    /// # Errors
    /// As for [`Plugin::validate`].
    #[tracing::instrument(name = "wasm_operator.plugin.mutate", skip_all, fields(plugin = %self.inner.name))]
    pub async fn mutate(
        &self,
        request: &AdmissionRequest,
        ctx: CallContext,
    ) -> Result<Mutation, CallError> {
        let admission = self.admission("mutate")?;
        let request = request.clone();
        let mutation = self
            .run_with(ctx, "mutate", move |store, instance| {
                Box::pin(async move { admission.mutate(store, instance, &request).await })
            })
            .await?
            .map_err(guest_error)?;
        decision::check_mutation(&mutation, self.limits.max_output_bytes)?;
        Ok(mutation)
    }

    /// The `reconciler` export, for calling `export` on it; an
    /// admission-only plugin has none.
    fn reconciler(&self, export: &'static str) -> Result<Reconciler, CallError> {
        self.inner
            .exports
            .reconciler
            .ok_or(CallError::NotExported { export })
    }

    /// The `admission` export, for calling `export` on it.
    fn admission(&self, export: &'static str) -> Result<Admission, CallError> {
        self.inner
            .exports
            .admission
            .ok_or(CallError::NotExported { export })
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
            Some(Trap::StackOverflow) => CallError::StackOverflow,
            // Rust and C guests keep their frames' data on a stack in linear
            // memory, below the heap: running off it is an out-of-bounds
            // access, deep in a recursion.
            Some(Trap::MemoryOutOfBounds)
                if error
                    .downcast_ref::<WasmBacktrace>()
                    .is_some_and(is_recursion) =>
            {
                CallError::StackOverflow
            }
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

/// Whether a trap's backtrace (wasmtime keeps its innermost 20 frames) is
/// a recursion: a full backtrace made of a few functions over and over.
fn is_recursion(backtrace: &WasmBacktrace) -> bool {
    let frames = backtrace.frames();
    let distinct: std::collections::BTreeSet<u32> =
        frames.iter().map(wasmtime::FrameInfo::func_index).collect();
    frames.len() >= 16 && distinct.len() * 4 <= frames.len()
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

#[cfg(test)]
mod tests {
    use super::*;

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
