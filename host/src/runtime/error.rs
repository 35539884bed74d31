//! What can go wrong when loading or calling a plugin, classified so users and
//! metrics can tell a slow plugin from a crashing one from a misbehaving one.

use std::time::Duration;

use super::digest::PluginDigest;

/// A component that could not be loaded as a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a WebAssembly component (perhaps a core module).
    #[error(
        "not a WebAssembly component ({found}); build the plugin for wasm32-wasip2 \
         (cargo build --target wasm32-wasip2) so rustc emits a component"
    )]
    NotAComponent {
        /// What the bytes look like instead.
        found: &'static str,
    },
    /// The component failed to validate or compile.
    #[error("malformed component {digest}: {reason}; rebuild the plugin")]
    Malformed {
        /// Digest of the refused bytes.
        digest: PluginDigest,
        /// The compiler's message, with its causes.
        reason: String,
    },
    /// The component was built against a WIT package version the host cannot run.
    #[error(
        "component {digest} was built for {package}@{found}, but this host implements \
         {package}@{accepted} and accepts {compatible}; rebuild the plugin against a \
         version the host accepts (the SDK of this host builds for {accepted}), or run a \
         host that implements {found}"
    )]
    IncompatibleWit {
        /// Digest of the refused bytes.
        digest: PluginDigest,
        /// The WIT package name.
        package: &'static str,
        /// The version the component was built for.
        found: String,
        /// The version the host implements (the newest it accepts).
        accepted: &'static str,
        /// The range of versions the host accepts, in semver notation, with
        /// the minor versions it names (`>=0.1.0, <0.3.0 (0.1.x, 0.2.x)`).
        compatible: String,
    },
    /// The component does not export something the contract requires.
    #[error("component {digest} does not export `{export}`; {hint}")]
    MissingExport {
        /// Digest of the refused bytes.
        digest: PluginDigest,
        /// The missing export, as `interface#function` or an interface name.
        export: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// The component imports something the host does not provide.
    #[error(
        "component {digest} imports something the sandbox does not provide: {reason}; \
         plugins may import only the wasm-operator:plugin interfaces and WASI p2 \
         cli/io/clocks/random"
    )]
    UnsatisfiedImport {
        /// Digest of the refused bytes.
        digest: PluginDigest,
        /// The linker's message.
        reason: String,
    },
    /// `describe` failed or returned something unusable.
    #[error("describe of component {digest} failed: {source}")]
    Describe {
        /// Digest of the refused bytes.
        digest: PluginDigest,
        /// Why.
        #[source]
        source: Box<CallError>,
    },
    /// The compile task itself failed (panicked or was cancelled).
    #[error("compiling component {digest} did not finish: {reason}")]
    CompileTask {
        /// Digest of the bytes being compiled.
        digest: PluginDigest,
        /// The join error.
        reason: String,
    },
}

/// A call into a plugin that did not produce a usable decision.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin ran past its deadline and was stopped.
    #[error("plugin exceeded its deadline of {} ms and was stopped", deadline.as_millis())]
    DeadlineExceeded {
        /// The deadline in force.
        deadline: Duration,
    },
    /// The plugin tried to grow its memory past its cap.
    #[error(
        "plugin exceeded its memory limit of {} MiB; raise spec.limits.memoryMib of the \
         binding or fix the plugin",
        limit_bytes >> 20
    )]
    MemoryLimit {
        /// The cap in force.
        limit_bytes: u64,
    },
    /// The plugin used up its call stack (unbounded recursion).
    #[error("plugin overflowed its call stack (unbounded recursion?); fix the plugin")]
    StackOverflow,
    /// The plugin panicked.
    #[error("plugin panicked: {message}")]
    Panic {
        /// The panic message the guest printed.
        message: String,
    },
    /// The plugin trapped for another reason.
    #[error("plugin trapped: {trap}{}", backtrace.as_deref().map(|b| format!("\nguest backtrace:\n{b}")).unwrap_or_default())]
    Trap {
        /// The trap, e.g. `wasm unreachable instruction executed`.
        trap: String,
        /// The guest's wasm backtrace, when available.
        backtrace: Option<String>,
    },
    /// The plugin returned an error of its own.
    #[error("plugin reported {reason}: {message}")]
    Guest {
        /// Machine-readable reason (UpperCamelCase).
        reason: String,
        /// What failed, in the plugin's words.
        message: String,
        /// Whether trying again may help.
        retryable: bool,
    },
    /// The plugin's output is bigger than allowed.
    #[error("plugin output of {size} bytes exceeds the limit of {limit} bytes")]
    OutputTooLarge {
        /// The size of the output.
        size: usize,
        /// The cap in force.
        limit: usize,
    },
    /// The plugin's output does not follow the contract.
    #[error("plugin output is invalid: {field}: {reason}")]
    InvalidOutput {
        /// The field of the response at fault (`children[2]`, `status`).
        field: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The plugin does not export the function called.
    #[error("plugin does not export `{export}`")]
    NotExported {
        /// The missing function.
        export: &'static str,
    },
    /// The runtime failed the call for a reason other than a trap (e.g. no free instance slot).
    #[error("the runtime failed the call: {reason}")]
    Runtime {
        /// The runtime's message.
        reason: String,
    },
}

impl CallError {
    /// A short, bounded label for metrics and condition reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::DeadlineExceeded { .. } => "DeadlineExceeded",
            Self::MemoryLimit { .. } => "MemoryLimit",
            Self::StackOverflow => "StackOverflow",
            Self::Panic { .. } => "Panic",
            Self::Trap { .. } => "Trap",
            Self::Guest { .. } => "PluginError",
            Self::OutputTooLarge { .. } => "OutputTooLarge",
            Self::InvalidOutput { .. } => "InvalidOutput",
            Self::NotExported { .. } => "NotExported",
            Self::Runtime { .. } => "RuntimeError",
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Guest { retryable, .. } => *retryable,
            Self::NotExported { .. } => false,
            _ => true,
        }
    }
}

/// The runtime itself could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The wasmtime engine could not be created.
    #[error("could not create the WebAssembly engine: {reason}")]
    Engine {
        /// wasmtime's message.
        reason: String,
    },
    /// The WASI or plugin imports could not be added to the linker.
    #[error("could not set up the plugin imports: {reason}")]
    Linker {
        /// wasmtime's message.
        reason: String,
    },
    /// The precompiled-artifact cache directory is unusable.
    #[error(
        "cannot use the plugin cache directory {dir}: {source}; set --plugin-cache-dir to a writable directory"
    )]
    CacheDir {
        /// The directory.
        dir: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
