//! Loads plugin components and runs them in a sandbox.
//!
//! One [`Runtime`] holds the engine (component model, epoch interruption,
//! pooling allocator with on-demand fallback), the linker with the host
//! imports, and the precompiled-artifact cache. [`Runtime::load`] turns
//! component bytes into a [`Plugin`]; every call into a plugin gets a fresh
//! store, so no state leaks between calls and a trapped instance is simply
//! dropped.
//!
//! Components built for any minor version of the contract up to the host's
//! own (within its major version) load and run: `bindings` links their
//! imports under their version's names, `contract` finds their version and
//! role (reconciler, or admission-only), and `exports` calls their exports
//! by that version with the newest types.

mod artifacts;
mod bindings;
mod contract;
mod decision;
mod description;
mod digest;
mod epoch;
mod error;
mod exports;
mod host_services;
mod limits;
mod plugin;
mod sandbox;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use artifacts::ArtifactCache;
pub use bindings::{WIT_PACKAGE, WIT_VERSION};
pub use decision::{
    Decision, DesiredChild, Event, EventType, FinalizeDecision, SqlPlan, SqlStatement, SqlValue,
    sql_value_size,
};
pub use description::{AdmissionScope, MatchCondition, PluginDescription, PluginRole};
pub use digest::PluginDigest;
pub use error::{CallError, LoadError, RuntimeError};
pub use host_services::{HostServices, NoServices, QueryResult};
pub use limits::{LOG_RECORD_CHARGE, MAX_MEMORY_BYTES, PluginLimits};
pub use plugin::{
    AdmissionRequest, LoadSource, Mutation, Operation, Plugin, ReconcileInput, Validation,
};
pub use sandbox::CallContext;

use epoch::EpochTicker;
use sandbox::CallState;

/// Bytes of each pooled memory slot kept resident (reset by copying rather
/// than released) between instances.
const KEEP_RESIDENT_BYTES: usize = 2 << 20;

/// Settings of a [`Runtime`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Where precompiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Use the on-demand allocator even where pooling would work.
    pub disable_pooling: bool,
}

/// The engine, linker and cache shared by every plugin.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    cache: Option<ArtifactCache>,
    ticker: Arc<EpochTicker>,
    pooling: bool,
}

impl Runtime {
    /// Creates the engine and linker, and opens the cache.
    ///
    /// # Errors
    /// When the engine cannot be created even with the on-demand allocator,
    /// or the cache directory cannot be created.
    pub fn new(config: &RuntimeConfig) -> Result<Self, RuntimeError> {
        let (engine, pooling) = create_engine(config.disable_pooling)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| RuntimeError::Linker {
            reason: format!("{e:#}"),
        })?;
        bindings::ScopedAdmissionPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .and_then(|()| bindings::add_older_imports(&mut linker))
            .map_err(|e| RuntimeError::Linker {
                reason: format!("{e:#}"),
            })?;
        let cache = config
            .cache_dir
            .as_ref()
            .map(|dir| {
                ArtifactCache::open(dir, &engine).map_err(|source| RuntimeError::CacheDir {
                    dir: dir.clone(),
                    source,
                })
            })
            .transpose()?;
        let ticker = Arc::new(EpochTicker::start(engine.clone()));
        Ok(Self {
            engine,
            linker,
            cache,
            ticker,
            pooling,
        })
    }

    /// Whether the pooling allocator is in use (else the on-demand one).
    pub fn uses_pooling_allocator(&self) -> bool {
        self.pooling
    }

    /// The precompiled-artifact cache, if enabled.
    pub fn cache(&self) -> Option<&ArtifactCache> {
        self.cache.as_ref()
    }

    /// Loads a plugin from component bytes: checks the header, compiles off
    /// the async threads (or loads from the cache), checks the WIT contract,
    /// pre-instantiates, and calls `describe`.
    ///
    /// # Errors
    /// A [`LoadError`] naming the problem: not a component, malformed,
    /// incompatible WIT version, missing export, unsatisfied import, or a
    /// failed `describe`.
    #[tracing::instrument(name = "wasm_operator.runtime.load", skip_all, fields(size = bytes.len()))]
    pub async fn load(&self, bytes: &[u8]) -> Result<Plugin, LoadError> {
        let started = Instant::now();
        check_header(bytes)?;
        let digest = PluginDigest::of(bytes);
        let (component, source) = self.compile(bytes, &digest).await?;
        let contract = contract::check(&self.engine, &component, &digest)?;
        let pre =
            self.linker
                .instantiate_pre(&component)
                .map_err(|e| LoadError::UnsatisfiedImport {
                    digest: digest.clone(),
                    reason: format!("{e:#}"),
                })?;
        let exports = exports::Exports::find(&component, &contract).map_err(|export| {
            LoadError::MissingExport {
                digest: digest.clone(),
                export,
                hint: "implement every function of the interface",
            }
        })?;
        let loaded = plugin::LoadedComponent {
            digest: digest.clone(),
            pre,
            exports,
            ticker: Arc::clone(&self.ticker),
            source,
            load_time: started.elapsed(),
            wit_version: contract.wit_version,
        };
        let plugin = Plugin::new(loaded)
            .await
            .map_err(|source| LoadError::Describe {
                digest,
                source: Box::new(source),
            })?;
        let (source, elapsed) = plugin.load_report();
        tracing::info!(plugin = %plugin.description().name, digest = %plugin.digest(), ?source, elapsed_ms = elapsed.as_millis() as u64, "plugin loaded");
        Ok(plugin)
    }

    async fn compile(
        &self,
        bytes: &[u8],
        digest: &PluginDigest,
    ) -> Result<(Component, LoadSource), LoadError> {
        if let Some(component) = self
            .cache
            .as_ref()
            .and_then(|c| c.load(&self.engine, digest))
        {
            return Ok((component, LoadSource::Cached));
        }
        let engine = self.engine.clone();
        let cache = self.cache.clone();
        let owned = bytes.to_vec();
        let task_digest = digest.clone();
        // Cranelift takes tens of milliseconds (hundreds in debug builds):
        // never on an async worker thread.
        let compiled = tokio::task::spawn_blocking(move || {
            let component = Component::new(&engine, &owned)?;
            if let Some(cache) = cache {
                cache.store(&task_digest, &component);
            }
            Ok::<_, wasmtime::Error>(component)
        })
        .await
        .map_err(|e| LoadError::CompileTask {
            digest: digest.clone(),
            reason: e.to_string(),
        })?;
        let component = compiled.map_err(|e| LoadError::Malformed {
            digest: digest.clone(),
            reason: format!("{e:#}"),
        })?;
        Ok((component, LoadSource::Compiled))
    }
}

/// Tells a component from a core module or from garbage by its preamble.
fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(LoadError::NotAComponent {
            found: "no WebAssembly magic number",
        });
    }
    // Bytes 4..8: version and layer; layer 1 is a component, 0 a core module.
    match (bytes[6], bytes[7]) {
        (1, 0) => Ok(()),
        (0, 0) => Err(LoadError::NotAComponent {
            found: "a core WebAssembly module",
        }),
        _ => Err(LoadError::NotAComponent {
            found: "an unknown WebAssembly layer",
        }),
    }
}

fn create_engine(disable_pooling: bool) -> Result<(Engine, bool), RuntimeError> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    if !disable_pooling {
        let mut pooled = config.clone();
        let mut pool = PoolingAllocationConfig::default();
        // Sized for a few hundred concurrent calls; each memory slot reserves
        // address space (not RAM) for the largest allowed cap.
        pool.total_component_instances(256)
            .total_core_instances(1024)
            .total_memories(256)
            .total_tables(512)
            .total_stacks(256)
            .max_memory_size(MAX_MEMORY_BYTES as usize)
            // When a call ends, reset the pages the guest wrote (found with
            // Linux's PAGEMAP_SCAN, 6.7+) by copying the initial image over
            // them, up to KEEP_RESIDENT_BYTES; the rest is given back to the
            // kernel. A fresh instance then does not page-fault on the heap
            // every call touches, and teardown costs what the call dirtied.
            // Without PAGEMAP_SCAN, the first KEEP_RESIDENT_BYTES of every
            // slot would be reset whether written or not: about 1 MiB of
            // memset per call for a Rust guest (1 MiB stack, then data),
            // which cost more than the rest of a small call.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(128 << 10);
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        match Engine::new(&pooled) {
            Ok(engine) => return Ok((engine, true)),
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "pooling allocator unavailable; using the on-demand allocator")
            }
        }
    }
    let engine = Engine::new(&config).map_err(|e| RuntimeError::Engine {
        reason: format!("{e:#}"),
    })?;
    Ok((engine, false))
}
