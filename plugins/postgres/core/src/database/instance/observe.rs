//! What a dedicated instance looks like: its children as the host passed
//! them (Pods with their status, PVCs with their capacity, the `-rw`
//! Service's cluster IP, the PostgresServers' hosts), and read-only
//! queries aimed at one instance through its PostgresServer.

use std::collections::BTreeMap;

use serde_json::Value;
use wasm_operator_sdk::{Context, HostError, Object, QueryResult, Request, SqlValue};

use super::children::{claim_kind, pod_kind, service_kind};
use super::layout::{Layout, REPLICATION_USER, ROLE_LABEL};
use crate::postgres_server_kind;
use crate::rows::{flag, int, text};

/// The primary's state: version (`14.23`, without a packager's suffix), recovery, the replication role and the
/// instance slots with the walsender on each (`pg_stat_replication` joined
/// on the slot's active pid) and its replay lag in bytes. `$1` the
/// replication role's name.
pub const PRIMARY_QUERY: &str = "select split_part(current_setting('server_version'), ' ', 1) as server_version, \
     current_setting('server_version_num')::int as server_version_num, \
     pg_is_in_recovery() as in_recovery, \
     exists (select 1 from pg_roles where rolname = $1::text) as replication_role, \
     (select coalesce(jsonb_agg(jsonb_build_object('slot', s.slot_name, 'active', s.active, \
        'state', r.state, 'lag', case when pg_is_in_recovery() then null \
        else pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint end) \
        order by s.slot_name), '[]'::jsonb) \
       from pg_replication_slots s left join pg_stat_replication r on r.pid = s.active_pid \
       where s.slot_type = 'physical' and s.slot_name like 'instance\\_%') as slots";

/// A replica's state: whether it is still in recovery and how much WAL it
/// has received (bytes since `0/0`), to promote the most advanced one.
pub const REPLICA_QUERY: &str = "select pg_is_in_recovery() as in_recovery, \
     coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0'), \
              pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0'), 0)::bigint as received";

/// One instance Pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PodState {
    /// Being deleted.
    pub(crate) terminating: bool,
    /// `status.podIP`.
    pub(crate) ip: Option<String>,
    /// Condition `Ready` is `True`.
    pub(crate) ready: bool,
    /// The role label.
    pub(crate) role: Option<String>,
}

impl PodState {
    /// Running and Ready, not being deleted.
    pub(crate) fn serving(&self) -> bool {
        self.ready && !self.terminating
    }
}

/// One instance PVC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ClaimState {
    /// `spec.resources.requests.storage`.
    pub(crate) request: Option<String>,
    /// `status.capacity.storage`.
    pub(crate) capacity: Option<String>,
    /// `spec.storageClassName`.
    pub(crate) storage_class: Option<String>,
}

/// The children that exist, by instance number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Children {
    /// Instance Pods.
    pub(crate) pods: BTreeMap<u32, PodState>,
    /// Instance PVCs.
    pub(crate) claims: BTreeMap<u32, ClaimState>,
    /// Instance PostgresServers' `spec.host`.
    pub(crate) servers: BTreeMap<u32, Option<String>>,
    /// The `-rw` Service's `spec.clusterIP`.
    pub(crate) read_write_ip: Option<String>,
}

impl Children {
    /// Reads the existing children of `layout` from the request.
    pub(crate) fn of(req: &Request, layout: &Layout) -> Self {
        let mut children = Self::default();
        for child in &req.children {
            let kind = child.gvk();
            let number = layout.number(child.name());
            if kind == pod_kind()
                && let Some(n) = number
            {
                children.pods.insert(n, pod_state(child));
            } else if kind == claim_kind()
                && let Some(n) = number
            {
                children.claims.insert(
                    n,
                    ClaimState {
                        request: child
                            .str_at("/spec/resources/requests/storage")
                            .map(str::to_owned),
                        capacity: child.str_at("/status/capacity/storage").map(str::to_owned),
                        storage_class: child.str_at("/spec/storageClassName").map(str::to_owned),
                    },
                );
            } else if kind == postgres_server_kind()
                && let Some(n) = number
            {
                children
                    .servers
                    .insert(n, child.str_at("/spec/host").map(str::to_owned));
            } else if kind == service_kind() && child.name() == layout.read_write() {
                children.read_write_ip = child
                    .str_at("/spec/clusterIP")
                    .filter(|ip| !ip.is_empty() && *ip != "None")
                    .map(str::to_owned);
            }
        }
        children
    }
}

fn pod_state(pod: &Object) -> PodState {
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    PodState {
        terminating: pod.pointer("/metadata/deletionTimestamp").is_some(),
        ip: pod
            .str_at("/status/podIP")
            .filter(|ip| !ip.is_empty())
            .map(str::to_owned),
        ready,
        role: pod.label(ROLE_LABEL).map(str::to_owned),
    }
}

/// One instance slot on the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Its name (`instance_2`).
    pub(crate) name: String,
    /// A walsender uses it.
    pub(crate) active: bool,
    /// That walsender's state (`streaming`, `catchup`, …).
    pub(crate) state: Option<String>,
    /// Its replay lag in bytes.
    pub(crate) lag: Option<i64>,
}

/// The primary as [`PRIMARY_QUERY`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Primary {
    /// `server_version` (`14.23`).
    pub(crate) server_version: String,
    /// `server_version_num`.
    pub(crate) server_version_num: i64,
    /// Still a standby (a promotion not finished).
    pub(crate) in_recovery: bool,
    /// The replication role exists.
    pub(crate) replication_role: bool,
    /// The instance slots.
    pub(crate) slots: Vec<Slot>,
}

impl Primary {
    /// The slot named `name`.
    pub(crate) fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().find(|slot| slot.name == name)
    }
}

/// Runs [`PRIMARY_QUERY`] on server `key`.
///
/// # Errors
/// The host's error when the instance cannot be queried (yet).
pub(crate) fn primary(ctx: &Context<'_>, key: &str) -> Result<Primary, HostError> {
    let result = ctx.query(
        key,
        None,
        PRIMARY_QUERY,
        &[SqlValue::from(REPLICATION_USER)],
    )?;
    Ok(Primary {
        server_version: text(&result, "server_version").unwrap_or_default(),
        server_version_num: int(&result, "server_version_num").unwrap_or(0),
        in_recovery: flag(&result, "in_recovery"),
        replication_role: flag(&result, "replication_role"),
        slots: slots(&result),
    })
}

fn slots(result: &QueryResult) -> Vec<Slot> {
    let value: Value = match result.get(0, "slots") {
        Some(SqlValue::Json(text) | SqlValue::Text(text)) => {
            serde_json::from_str(text).unwrap_or(Value::Null)
        }
        _ => Value::Null,
    };
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|slot| {
            Some(Slot {
                name: slot["slot"].as_str()?.to_owned(),
                active: slot["active"].as_bool().unwrap_or(false),
                state: slot["state"].as_str().map(str::to_owned),
                lag: slot["lag"].as_i64(),
            })
        })
        .collect()
}

/// A replica as [`REPLICA_QUERY`] saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replica {
    /// Still a standby.
    pub(crate) in_recovery: bool,
    /// WAL received, in bytes since `0/0`.
    pub(crate) received: i64,
}

/// Runs [`REPLICA_QUERY`] on server `key`.
///
/// # Errors
/// The host's error when the instance cannot be queried.
pub(crate) fn replica(ctx: &Context<'_>, key: &str) -> Result<Replica, HostError> {
    let result = ctx.query(key, None, REPLICA_QUERY, &[])?;
    Ok(Replica {
        in_recovery: flag(&result, "in_recovery"),
        received: int(&result, "received").unwrap_or(0),
    })
}
