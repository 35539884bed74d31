//! Per-plugin resource limits and the memory limiter that enforces them.

use std::time::Duration;

/// Resource limits for every call into one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLimits {
    /// Wall-clock budget of one call, enforced by epoch interruption and by an
    /// async timeout (epochs do not interrupt a blocked host call).
    pub deadline: Duration,
    /// Cap on the guest's linear memory, in bytes.
    pub memory_bytes: u64,
    /// Cap on the size of one response (children, status, SQL, events), in bytes.
    pub max_output_bytes: usize,
    /// Cap on log volume (structured log records) per call, in bytes; each
    /// record is charged [`LOG_RECORD_CHARGE`] bytes on top of its text.
    pub max_log_bytes: usize,
    /// Cap on the number of log records per call.
    pub max_log_records: usize,
    /// Cap on captured stdout and stderr per call, in bytes each.
    pub max_stdio_bytes: usize,
    /// Cap on the events of one decision; the rest are dropped (and counted).
    pub max_events: usize,
    /// The shortest requeue a plugin may ask for; shorter ones are raised to it.
    pub min_requeue: Duration,
    /// Cap on the events the host records per object per minute (enforced
    /// by the host when it records them; the rest are dropped and counted).
    pub max_events_per_minute: u32,
}

/// What one log record costs against [`PluginLimits::max_log_bytes`] besides
/// its text: about what the host's own log line around it takes, so that
/// tiny or empty records cannot flood the operator's log for free.
pub const LOG_RECORD_CHARGE: usize = 128;

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            max_output_bytes: 2 << 20,
            max_log_bytes: 64 << 10,
            max_log_records: 256,
            max_stdio_bytes: 16 << 10,
            max_events: 100,
            min_requeue: Duration::from_secs(1),
            max_events_per_minute: 30,
        }
    }
}

/// The largest memory cap a plugin may be given: the pooling allocator sizes
/// its slots for it.
pub const MAX_MEMORY_BYTES: u64 = 1 << 30;

/// Tables are small in Rust guests; this only stops runaway growth.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Enforces the memory cap and remembers that it was hit, so a failed
/// allocation is reported as a memory limit rather than as a generic trap.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit_bytes: u64,
    hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit_bytes: u64) -> Self {
        Self {
            limit_bytes,
            hit: false,
        }
    }

    /// Whether the guest tried to grow past its cap during this call.
    pub(crate) fn was_hit(&self) -> bool {
        self.hit
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit_bytes {
            // Trapping (rather than returning false) stops the guest at once
            // instead of letting its allocator abort with a vaguer trap.
            self.hit = true;
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes exceeded: the plugin asked for {desired} bytes",
                self.limit_bytes
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
