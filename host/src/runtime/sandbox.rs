//! The per-call sandbox: the state of one store, the WASI context with
//! nothing in it, and the host imports a plugin may call.
//!
//! Every call gets a fresh store, so no memory or state leaks between calls
//! or between objects, and a trapped instance is simply dropped.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde_json::Value;
use tokio::io::AsyncWrite;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::types::SqlValue;
use super::bindings::{kube, log, sql, types};
use super::host_services::{HostServices, NoServices, QueryResult};
use super::limits::{LOG_RECORD_CHARGE, MemoryLimiter, PluginLimits};
use crate::grants::Grants;
use crate::vocabulary::{ObjectKind, ServerKey};

/// What a call may read and who serves it.
#[derive(Clone)]
pub struct CallContext {
    /// The backends serving reads.
    pub services: Arc<dyn HostServices>,
    /// What the plugin may read: its grants, narrowed to the object the
    /// call is about.
    pub grants: Arc<Grants>,
}

impl CallContext {
    /// A context that grants and serves nothing.
    pub fn none() -> Self {
        Self {
            services: Arc::new(NoServices),
            grants: Arc::new(Grants::default()),
        }
    }
}

/// The data of one store: everything a single call can touch.
pub(crate) struct CallState {
    plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    ctx: CallContext,
    log_budget: usize,
    log_records_left: usize,
    /// Bytes of cached objects the call may still read.
    read_budget: usize,
    read_limit: usize,
    logs_dropped: usize,
    pub(crate) stdout: CappedOutput,
    pub(crate) stderr: CappedOutput,
}

impl CallState {
    pub(crate) fn new(plugin: Arc<str>, limits: &PluginLimits, ctx: CallContext) -> Self {
        let stdout = CappedOutput::new(limits.max_stdio_bytes);
        let stderr = CappedOutput::new(limits.max_stdio_bytes);
        // No preopens, environment, arguments, sockets or name lookup: the
        // builder's defaults grant none of these; the network is also
        // switched off explicitly so a future default change cannot open it.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        Self {
            plugin,
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.memory_bytes),
            ctx,
            log_budget: limits.max_log_bytes,
            log_records_left: limits.max_log_records,
            read_budget: read_limit(limits),
            read_limit: read_limit(limits),
            logs_dropped: 0,
            stdout,
            stderr,
        }
    }

    /// Sends what the guest printed, and any dropped-log notice, to tracing.
    pub(crate) fn flush_output(&self) {
        for (stream, out) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let (text, truncated) = (out.text(), out.truncated());
            if !text.is_empty() {
                tracing::info!(target: "wasm_operator::plugin", plugin = %self.plugin, stream, truncated, "{}", text.trim_end());
            }
        }
        if self.logs_dropped > 0 {
            tracing::warn!(target: "wasm_operator::plugin", plugin = %self.plugin, dropped = self.logs_dropped, "plugin exceeded its log volume limit; records dropped");
        }
    }

    /// Charges `objects` (JSON text) against the call's read budget.
    fn charge_reads(&mut self, kind: &ObjectKind, objects: &[String]) -> Result<(), String> {
        let size: usize = objects.iter().map(String::len).sum();
        if size > self.read_budget {
            self.read_budget = 0;
            return Err(format!(
                "reading {kind} would bring more than the {} bytes one call may read (a quarter of the plugin's memory cap); narrow the namespace or the label selector",
                self.read_limit
            ));
        }
        self.read_budget -= size;
        Ok(())
    }

    fn check_read_grant(&self, kind: &ObjectKind) -> Result<(), String> {
        if self.ctx.grants.may_read(kind) {
            Ok(())
        } else {
            Err(format!(
                "reading {kind} is not granted to plugin {}; request it in describe().capabilities.read-kinds and allow it in the binding's spec.grants.read",
                self.plugin
            ))
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for CallState {}

impl log::Host for CallState {
    async fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        let size = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let size = size + LOG_RECORD_CHARGE;
        if size > self.log_budget || self.log_records_left == 0 {
            self.log_budget = 0;
            self.logs_dropped += 1;
            return;
        }
        self.log_budget -= size;
        self.log_records_left -= 1;
        let enabled = match level {
            log::Level::Trace => {
                tracing::enabled!(target: "wasm_operator::plugin", tracing::Level::TRACE)
            }
            log::Level::Debug => {
                tracing::enabled!(target: "wasm_operator::plugin", tracing::Level::DEBUG)
            }
            log::Level::Info => {
                tracing::enabled!(target: "wasm_operator::plugin", tracing::Level::INFO)
            }
            log::Level::Warn => {
                tracing::enabled!(target: "wasm_operator::plugin", tracing::Level::WARN)
            }
            log::Level::Error => {
                tracing::enabled!(target: "wasm_operator::plugin", tracing::Level::ERROR)
            }
        };
        if !enabled {
            // Nobody listens at this level: skip building the record.
            return;
        }
        let fields: serde_json::Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let fields = Value::Object(fields);
        let plugin = &*self.plugin;
        match level {
            log::Level::Trace => {
                tracing::trace!(target: "wasm_operator::plugin", plugin, %fields, "{message}")
            }
            log::Level::Debug => {
                tracing::debug!(target: "wasm_operator::plugin", plugin, %fields, "{message}")
            }
            log::Level::Info => {
                tracing::info!(target: "wasm_operator::plugin", plugin, %fields, "{message}")
            }
            log::Level::Warn => {
                tracing::warn!(target: "wasm_operator::plugin", plugin, %fields, "{message}")
            }
            log::Level::Error => {
                tracing::error!(target: "wasm_operator::plugin", plugin, %fields, "{message}")
            }
        }
    }
}

impl kube::Host for CallState {
    #[tracing::instrument(name = "wasm_operator.kube.get", skip_all, fields(plugin = %self.plugin, kind, name))]
    async fn get(
        &mut self,
        kind: types::GroupVersionKind,
        namespace: Option<String>,
        name: String,
    ) -> Result<Option<String>, String> {
        let kind = ObjectKind::from(kind);
        self.check_read_grant(&kind)?;
        let object = self
            .ctx
            .services
            .get(&kind, namespace.as_deref(), &name)
            .await?;
        let object = object.map(|o| o.to_string());
        self.charge_reads(&kind, object.as_slice())?;
        Ok(object)
    }

    #[tracing::instrument(name = "wasm_operator.kube.list", skip_all, fields(plugin = %self.plugin))]
    async fn list(
        &mut self,
        kind: types::GroupVersionKind,
        namespace: Option<String>,
        label_selector: String,
    ) -> Result<Vec<String>, String> {
        let kind = ObjectKind::from(kind);
        self.check_read_grant(&kind)?;
        let objects = self
            .ctx
            .services
            .list(&kind, namespace.as_deref(), &label_selector)
            .await?;
        let objects: Vec<String> = objects.iter().map(Value::to_string).collect();
        self.charge_reads(&kind, &objects)?;
        Ok(objects)
    }
}

impl sql::Host for CallState {
    #[tracing::instrument(name = "wasm_operator.sql.query", skip_all, fields(plugin = %self.plugin, server))]
    async fn query(
        &mut self,
        server: String,
        database: Option<String>,
        statement: String,
        params: Vec<SqlValue>,
    ) -> Result<QueryResult, String> {
        let Some(key) = ServerKey::parse(&server).filter(|key| self.ctx.grants.may_use(key)) else {
            return Err(format!(
                "querying server {server} is not granted to plugin {} for this object",
                self.plugin
            ));
        };
        self.ctx
            .services
            .query(&key, database.as_deref(), &statement, &params)
            .await
    }
}

/// What one call may read from the caches: a quarter of its memory cap,
/// like a query's result (the text is copied into the guest's memory).
fn read_limit(limits: &PluginLimits) -> usize {
    usize::try_from(limits.memory_bytes / 4).unwrap_or(usize::MAX)
}

/// A guest's stdout or stderr: kept in memory up to a cap; the rest is
/// dropped silently (a guest must not trap because it printed too much).
#[derive(Clone)]
pub(crate) struct CappedOutput {
    inner: Arc<Mutex<CappedBuffer>>,
}

struct CappedBuffer {
    bytes: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl CappedOutput {
    fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(CappedBuffer {
                bytes: Vec::new(),
                cap,
                truncated: false,
            })),
        }
    }

    /// The text written so far.
    pub(crate) fn text(&self) -> String {
        let buffer = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buffer.bytes).into_owned()
    }

    /// Whether output past the cap was dropped.
    fn truncated(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .truncated
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    // Writes land in the buffer synchronously, so what a guest printed just
    // before it trapped (a panic message) is there when the trap is classified.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl CappedOutput {
    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = buffer.cap.saturating_sub(buffer.bytes.len());
        if bytes.len() > room {
            buffer.truncated = true;
        }
        buffer
            .bytes
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready; past the cap, output is dropped rather than refused.
        Ok(64 << 10)
    }
}

#[async_trait::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CappedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        // Claim the whole write so the guest never sees an error.
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
