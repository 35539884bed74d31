//! A plugin's worst case for the host's memory: the operator process's peak
//! RSS while hostile guests run side by side, each under the default limits
//! (64 MiB memory, so a query result or a call's reads are capped at
//! 16 MiB), against the bound per concurrent call that the caps promise.
//!
//! - `query`: each call queries 100 MiB from a real PostgreSQL server;
//! - `output`: each call builds a 16 MiB answer (refused at the output cap);
//! - `memory`: each call touches as much memory as it may.
//!
//! Run with `scripts/bench.sh memory` (release build; plugins built first).
//! Numbers are printed, not asserted.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::{Value, json};
use support::postgres::PgServer;
use wasm_operator::grants::{Grants, ServerPattern};
use wasm_operator::postgres::{self, ResultLimits, ServerConnection};
use wasm_operator::runtime::{
    CallContext, HostServices, PluginLimits, QueryResult, ReconcileInput, SqlValue,
};
use wasm_operator::vocabulary::{ObjectKind, ServerKey};

/// Calls at once in each scenario.
const CONCURRENT: usize = 8;

/// Serves queries from one real server, the way the operator's directory
/// does (a session per query, reset after it).
struct OneServer {
    connection: ServerConnection,
    limits: ResultLimits,
}

#[async_trait]
impl HostServices for OneServer {
    async fn get(&self, _: &ObjectKind, _: Option<&str>, _: &str) -> Result<Option<Value>, String> {
        Ok(None)
    }

    async fn list(&self, _: &ObjectKind, _: Option<&str>, _: &str) -> Result<Vec<Value>, String> {
        Ok(Vec::new())
    }

    async fn query(
        &self,
        _: &ServerKey,
        database: Option<&str>,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<QueryResult, String> {
        let mut client = postgres::connect(&self.connection, database)
            .await
            .map_err(|e| e.to_string())?;
        let (result, _) = postgres::query(
            &mut client,
            &self.connection,
            statement,
            params,
            std::time::Duration::from_secs(30),
            self.limits,
        )
        .await;
        result.map_err(|e| e.to_string())
    }
}

/// The process's resident set and its peak, in MiB.
fn rss() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak RSS to the current RSS (Linux: `clear_refs` 5).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(run());
}

async fn run() {
    let limits = PluginLimits::default();
    let result_limits = ResultLimits {
        max_rows: 100_000,
        max_bytes: usize::try_from(limits.memory_bytes / 4).unwrap(),
    };
    let pg = PgServer::start();
    let server = ServerKey::new("db", "main");
    let context = CallContext {
        services: Arc::new(OneServer {
            connection: pg.connection(),
            limits: result_limits,
        }),
        grants: Arc::new(Grants {
            servers: vec![ServerPattern::exact(&server)],
            ..Grants::default()
        }),
    };
    let bound_mib =
        (limits.memory_bytes as f64 + result_limits.max_bytes as f64) / f64::from(1 << 20);
    println!(
        "memory: {CONCURRENT} concurrent calls per scenario; bound per call = memory cap {} MiB + result cap {} MiB = {bound_mib:.0} MiB",
        limits.memory_bytes >> 20,
        result_limits.max_bytes >> 20,
    );
    for (scenario, plugin, name) in [
        ("query", "hostile-doors", "query-big"),
        ("output", "hostile-output", "big"),
        ("memory", "hostile-memory", "big"),
    ] {
        let plugin = support::load(plugin).await;
        let input = ReconcileInput {
            object: support::greeting(name, json!({"greeting": "hi"})),
            settings: json!({}),
            servers: vec![server.clone()],
            ..ReconcileInput::default()
        };
        // Once alone first, so that the engine's own first-use memory is
        // not counted against the scenario.
        let _ = plugin.reconcile(&input, context.clone()).await;
        let (before, _) = rss();
        reset_peak();
        let started = Instant::now();
        let calls = (0..CONCURRENT).map(|_| {
            let (plugin, input, context) = (plugin.clone(), input.clone(), context.clone());
            tokio::spawn(async move { plugin.reconcile(&input, context).await })
        });
        let outcomes = futures::future::join_all(calls).await;
        let elapsed = started.elapsed();
        let (after, peak) = rss();
        let reason = match outcomes.into_iter().next() {
            Some(Ok(Err(error))) => error.to_string(),
            Some(Ok(Ok(_))) => "a decision".to_owned(),
            Some(Err(error)) => format!("task failed: {error}"),
            None => String::new(),
        };
        let growth = peak - before;
        println!(
            "memory/{scenario:<7} peak RSS +{growth:>6.1} MiB over {before:.1} MiB ({:>5.1} MiB per call, bound {bound_mib:.0}); after {after:.1} MiB; {:.2} s; each call: {}",
            growth / CONCURRENT as f64,
            elapsed.as_secs_f64(),
            reason.chars().take(120).collect::<String>(),
        );
    }
}
