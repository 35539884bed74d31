//! On-disk cache of precompiled components, so a restart does not recompile.
//!
//! Entries are keyed by the component's sha256 and the engine's
//! compatibility hash (wasmtime version and compiler settings), written
//! atomically (temporary file + rename), and any entry that fails to load is
//! treated as a miss and replaced.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::digest::PluginDigest;

/// A directory of precompiled components for one engine configuration.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_hash: u64,
}

impl ArtifactCache {
    /// Opens (creating if needed) a cache directory for `engine`.
    pub fn open(dir: impl Into<PathBuf>, engine: &Engine) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir,
            engine_hash: hasher.finish(),
        })
    }

    /// The directory holding the entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, digest: &PluginDigest) -> PathBuf {
        self.dir
            .join(format!("{}-{:016x}.cwasm", digest.hex(), self.engine_hash))
    }

    /// Loads a precompiled component, or `None` on any kind of miss.
    pub fn load(&self, engine: &Engine, digest: &PluginDigest) -> Option<Component> {
        let path = self.path(digest);
        // Read into memory rather than mmap the file: a cache file truncated
        // or rewritten in place under a mapping would crash the process.
        let bytes = std::fs::read(&path).ok()?;
        // SAFETY: `deserialize` runs native code produced by Cranelift, so the
        // bytes must come from `Component::serialize`. They were written by
        // `store` below into a directory only the operator writes, and
        // wasmtime rejects bytes without its header, for another engine
        // configuration or another wasmtime version; those are misses.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %format!("{error:#}"), "discarding unusable precompiled component");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a compiled component. Failures are logged, never fatal: the
    /// cache only saves time.
    pub fn store(&self, digest: &PluginDigest, component: &Component) {
        if let Err(error) = self.try_store(digest, component) {
            tracing::warn!(dir = %self.dir.display(), %error, "could not cache precompiled component");
        }
    }

    fn try_store(&self, digest: &PluginDigest, component: &Component) -> std::io::Result<()> {
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        let target = self.path(digest);
        // Unique per process and write, so concurrent writers never share a file.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let temp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            digest.hex(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, &target)
    }
}
