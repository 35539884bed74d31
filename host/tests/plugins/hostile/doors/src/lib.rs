//! Hostile test guest: tries one of the sandbox's side doors, chosen by the
//! prefix of the reconciled object's name:
//!
//! - `events-*`: a decision carrying 20,000 events;
//! - `requeue-*`: asks to be reconciled again after 0 ms;
//! - `logs-*`: 100,000 one-byte log records and 100,000 empty ones;
//! - `adopt-*`: a ConfigMap child named after `spec.greeting`, an object the
//!   plugin does not own;
//! - `stack-*`: recurses until the stack overflows;
//! - `query-*`: queries 100 MiB from its first server;
//! - anything else: a plain ConfigMap child.

use std::time::Duration;

use wasm_operator_sdk::{
    ChildBuilder, Context, Event, GroupVersionKind, Plugin, PluginError, PluginInfo, Request,
    Response, export_plugin,
};

/// Tries the door its object's name names.
pub struct Doors;

impl Plugin for Doors {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "hostile-doors",
            "0.1.0",
            GroupVersionKind::new("examples.systems.mikemiller.tech", "v1alpha1", "Greeting"),
        )
        .child_kind(GroupVersionKind::core("v1", "ConfigMap"))
        .sql()
    }

    fn reconcile(ctx: &Context<'_>, req: &Request) -> Result<Response, PluginError> {
        let name = req.object.name();
        let namespace = req.object.namespace().unwrap_or_default();
        let child = |child: &str| {
            ChildBuilder::config_map(child)
                .namespace(namespace)
                .data("by", "hostile-doors")
                .build()
        };
        let response = if name.starts_with("events-") {
            (0..20_000).fold(Response::new(), |response, i| {
                response.event(Event::normal("Flood", "Reconcile", format!("event {i}")))
            })
        } else if name.starts_with("requeue-") {
            Response::new().requeue_after(Duration::ZERO)
        } else if name.starts_with("logs-") {
            for _ in 0..100_000 {
                ctx.info("x", &[]);
                ctx.info("", &[]);
            }
            Response::new()
        } else if name.starts_with("adopt-") {
            let target = req
                .object
                .pointer("/spec/greeting")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            Response::new().child(child(&target))
        } else if name.starts_with("query-") {
            let server = req.servers.first().map(String::as_str).unwrap_or_default();
            let result = ctx.query(
                server,
                None,
                "SELECT repeat('x', 10240) FROM generate_series(1, 10000)",
                &[],
            )?;
            Response::new().requeue_after(Duration::from_secs(result.rows.len() as u64))
        } else if name.starts_with("stack-") {
            Response::new().requeue_after(Duration::from_millis(recurse(1)))
        } else {
            Response::new().child(child(&format!("{name}-doors")))
        };
        Ok(response)
    }
}

/// Never returns: each frame keeps a buffer alive across the next call.
#[allow(unconditional_recursion, reason = "the point: overflow the stack")]
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 64]);
    recurse(depth + 1) + frame[(depth % 64) as usize]
}

export_plugin!(Doors);
