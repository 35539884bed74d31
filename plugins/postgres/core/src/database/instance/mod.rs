//! A Database without `spec.serverRef`: a PostgreSQL instance of its own,
//! with a streaming replica when `spec.replication` is true.
//!
//! The plugin decides and the host applies. Each reconcile reads the
//! children the host passes (Pods with their status, PVCs with their
//! capacity, the Services' cluster IPs), queries the primary through its
//! PostgresServer (read-only), and returns the complete set of children and
//! the SQL for the primary:
//!
//! 1. Secrets (superuser, replication role; passwords generated here once
//!    and read back from the Secrets afterwards), the ConfigMap, the
//!    Services, a PVC per instance, the PodDisruptionBudget with two
//!    instances, and the primary's Pod (instance 1 first).
//! 2. Once a Pod has an IP: its PostgresServer (host = the Pod IP, admin
//!    credentials = the superuser Secret), so that plans and queries can be
//!    aimed at that one instance.
//! 3. Once the primary answers: the replication role and each replica's
//!    slot, the database and its owner by the machinery of a Database on
//!    an existing server, the credentials Secret pointing at `<name>-rw`,
//!    and the replicas' Pods (they clone the primary when they start).
//! 4. Then status: instances, the primary, each replica's lag, storage,
//!    the version; `Ready` and `Replicating`.
//!
//! Failover is decided in [`failover`]; the Pods' bootstrap in [`config`].
//!
//! # Guarantees
//! - A Pod spec does not depend on the instance's role, so a failover
//!   changes labels only; an old primary is deleted (fenced) and created
//!   again as a replica, which clones the new primary.
//! - A smaller `spec.size` and another `spec.version` than the instance
//!   has are refused before anything is returned: nothing changes.
//! - No password is in the status, an event or a log record.

mod children;
mod config;
mod failover;
mod layout;
mod observe;

#[cfg(test)]
mod tests;

use postgres_api::{
    Binding, CommonStatus, DatabaseSpec, DatabaseStatus, FailoverStatus, ReclaimPolicy,
    ReplicaStatus, SslMode, StorageStatus, VolumeStatus,
};
use serde_json::Value;
use wasm_operator_sdk::{
    Condition, ConditionStatus, Conditions, Context, Event, FinalizeResponse, GroupVersionKind,
    PluginError, Request, Response, SqlPlan, SqlStatement, generate_password, retain_on_delete,
};

use self::children::PodTemplate;
use self::failover::{Candidate, Due};
use self::layout::{Layout, PRIMARY, REPLICA, REPLICATION_USER};
use self::observe::{Children, Primary};
use super::dedicated::quantity_bytes;
use super::settings::DatabaseSettings;
use super::{Desired, Managed, manage, secret_name};
use crate::credentials::{Endpoint, existing_password};
use crate::outcome::READY_REASON;
use crate::ownership::Adoption;
use crate::servers::Server;
use crate::{PASSWORD_LENGTH, postgres_server_kind, role, secret_kind};

pub use observe::{PRIMARY_QUERY, REPLICA_QUERY};

/// `Ready=False` while the primary is being created.
pub const PROVISIONING: &str = "Provisioning";
/// `Ready=False` while a replica is being created or catching up.
pub const CREATING_REPLICA: &str = "CreatingReplica";
/// `Ready=False` while the primary is unhealthy and a replica takes over.
pub const FAILING_OVER: &str = "FailingOver";
/// `Ready=False` when the (only) primary is not ready.
pub const PRIMARY_UNAVAILABLE: &str = "PrimaryUnavailable";
/// The condition type saying whether every replica streams.
pub const REPLICATING: &str = "Replicating";
/// `Replicating=True`: every replica streams from the primary.
pub const STREAMING: &str = "Streaming";
/// `Replicating=False`: a replica does not stream (yet).
pub const NOT_STREAMING: &str = "NotStreaming";
/// The event of a failover's start.
pub const FAILOVER_STARTED: &str = "FailoverStarted";
/// The event of a failover's end.
pub const FAILOVER_COMPLETED: &str = "FailoverCompleted";
/// The major version of a dedicated instance without `spec.version`.
pub const DEFAULT_VERSION: u32 = 16;
/// The volume size of a dedicated instance without `spec.size`.
pub const DEFAULT_SIZE: &str = "10Gi";
/// How long to wait before looking again while something is on its way.
const SOON: std::time::Duration = std::time::Duration::from_secs(2);
/// How often a healthy instance is looked at (replica lag, health).
const LATER: std::time::Duration = std::time::Duration::from_secs(30);

/// The child kinds of a dedicated instance, besides Secrets.
pub(crate) fn child_kinds() -> [GroupVersionKind; 6] {
    [
        children::pod_kind(),
        children::claim_kind(),
        children::service_kind(),
        children::config_map_kind(),
        children::disruption_budget_kind(),
        postgres_server_kind(),
    ]
}

/// Checks that a Database's name can name its instance's children.
///
/// # Errors
/// `InvalidSpec` naming `metadata.name`.
pub(crate) fn check_name(object: &wasm_operator_sdk::Object) -> Result<(), PluginError> {
    // With `metadata.generateName` the name is not known at admission yet.
    if object.name().is_empty() {
        return Ok(());
    }
    Layout::new(object.name(), object.namespace().unwrap_or_default()).map(drop)
}

/// What the spec asks of the instance, validated against what exists.
struct Shape {
    version: u32,
    image: String,
    size_bytes: u128,
    request: String,
    count: u32,
    retain: bool,
}

/// Reconciles a Database that has no `spec.serverRef` (see the module docs).
///
/// # Errors
/// `InvalidSpec` for a name that cannot name Services, a version without
/// an image or other than the data's, a size smaller than the volumes';
/// `InvalidSettings` for bad settings; the errors of [`manage`] on the
/// primary.
pub(crate) fn reconcile(
    ctx: &Context<'_>,
    req: &Request,
    spec: &DatabaseSpec,
    desired: &Desired<'_>,
    status: DatabaseStatus,
) -> Result<Response, PluginError> {
    let object = &req.object;
    let namespace = object.namespace().ok_or_else(|| {
        PluginError::permanent("InvalidObject", "a Database must have a namespace")
    })?;
    let layout = Layout::new(object.name(), namespace)?;
    let settings: DatabaseSettings = req.settings_as()?;
    let existing = Children::of(req, &layout);
    let shape = shape(spec, &settings, &status, &existing)?;
    let parameters = settings.parameters()?;
    let superuser_password = kept_or_new(req, &layout.superuser())?;
    let replication_password = kept_or_new(req, &layout.replication())?;

    let mut primary = status
        .current_primary
        .as_deref()
        .and_then(|name| layout.number(name))
        .unwrap_or(1);
    let instances: Vec<u32> = if shape.count > 1 {
        vec![1, 2]
    } else {
        vec![primary]
    };
    let mut events = Vec::new();
    let mut plans = Vec::new();
    let mut record: Option<FailoverStatus> = None;
    let mut failing_over = false;
    let mut requeue = None;

    // Failover: decided before anything is queried, since a dead primary
    // cannot be.
    let promoting = status
        .failover
        .as_ref()
        .and_then(|f| f.promoting.as_deref())
        .and_then(|name| layout.number(name))
        .filter(|n| *n == primary);
    let primary_serving = existing.pods.get(&primary).is_some_and(|p| p.serving());
    let mut recreate_primary = true;
    if promoting.is_some() {
        failing_over = true;
        record = status.failover.clone();
    } else if shape.count > 1 && status.data_version.is_some() {
        // Only an instance that has served can fail over: until then an
        // absent primary is being created, not failing.
        let name = layout.instance(primary);
        let standby_ready = instances.iter().any(|n| {
            *n != primary
                && existing.pods.get(n).is_some_and(|p| p.serving())
                && was_streaming(&status, &layout.instance(*n))
        });
        match failover::due(
            &name,
            primary_serving,
            status.failover.as_ref(),
            ctx.now(),
            settings.failover_delay(),
        ) {
            Due::Healthy => {}
            Due::Wait { since, after } => {
                failing_over = standby_ready;
                recreate_primary = !standby_ready;
                record = Some(failover::record(&name, since, None));
                requeue = Some(after.min(SOON));
            }
            Due::Now { since } => {
                let candidates =
                    candidates(ctx, req, &layout, &existing, &status, &instances, primary);
                match failover::choose(&candidates) {
                    Some(target) => {
                        let target_name = layout.instance(target);
                        events.push(Event::warning(
                            FAILOVER_STARTED,
                            "Failover",
                            format!(
                                "primary {name} has not been ready since {}; promoting replica \
                                 {target_name}",
                                humantime::format_rfc3339_seconds(since)
                            ),
                        ));
                        plans.push(promote(&layout, target));
                        record = Some(failover::record(&name, since, Some(target_name)));
                        primary = target;
                        failing_over = true;
                        recreate_primary = false;
                    }
                    None => record = Some(failover::record(&name, since, None)),
                }
                requeue = Some(SOON);
            }
        }
    }

    // The primary, when it answers.
    let primary_key = layout.server_key(primary);
    let observed = if plans.is_empty() {
        queryable(req, &existing, primary, &primary_key)
            .then(|| observe::primary(ctx, &primary_key).ok())
            .flatten()
    } else {
        None
    };
    if let Some(seen) = &observed {
        let major = u32::try_from(seen.server_version_num / 10_000).unwrap_or(0);
        if major != shape.version {
            return Err(version_refused(shape.version, major));
        }
        if promoting.is_some() {
            if seen.in_recovery {
                plans.push(promote(&layout, primary));
            } else {
                events.push(Event::normal(
                    FAILOVER_COMPLETED,
                    "Failover",
                    format!(
                        "{} is the primary; the former primary is cloned again as a replica",
                        layout.instance(primary)
                    ),
                ));
                record = None;
                failing_over = false;
            }
        }
    }
    let writable = observed.as_ref().filter(|seen| !seen.in_recovery);

    let mut response = Response::new();
    let mut managed: Option<Managed> = None;
    if let Some(seen) = writable {
        if let Some(plan) =
            replication_plan(&layout, seen, &instances, primary, &replication_password)?
        {
            plans.push(plan);
        }
        let server = Server {
            endpoint: Endpoint {
                host: existing
                    .read_write_ip
                    .clone()
                    .unwrap_or_else(|| layout.read_write_dns()),
                port: layout::PORT,
                ssl_mode: SslMode::Disable,
            },
            adoption: Adoption { allowed: false },
        };
        let done = manage(
            ctx,
            req,
            spec,
            desired,
            &status.credentials,
            &primary_key,
            &server,
        )?;
        plans.extend(done.plans.iter().cloned());
        events.extend(done.events.iter().cloned());
        managed = Some(done);
    }

    // Children.
    response = response
        .child(children::superuser_secret(
            &layout,
            &superuser_password,
            shape.retain,
        ))
        .child(children::replication_secret(
            &layout,
            &replication_password,
            shape.retain,
        ))
        .child(children::config_map(
            &layout,
            config::postgresql_conf(shape.size_bytes, parameters),
        ));
    for service in children::services(&layout) {
        response = response.child(service);
    }
    if shape.count > 1 {
        response = response.child(children::disruption_budget(&layout));
    }
    let template = PodTemplate {
        layout: &layout,
        image: &shape.image,
        resources: settings.resources.as_ref(),
    };
    let mut ready_instances = 0;
    for &n in &instances {
        // A claim's class cannot change: an existing one keeps its own.
        let class = match existing.claims.get(&n) {
            Some(claim) => claim.storage_class.as_deref(),
            None => settings.storage_class_name.as_deref(),
        };
        response = response.child(children::claim(
            &layout,
            n,
            &shape.request,
            class,
            shape.retain,
        ));
        let role = if n == primary { PRIMARY } else { REPLICA };
        let pod = existing.pods.get(&n);
        let keep = match pod {
            Some(pod) if pod.terminating => false,
            // A former primary is fenced: deleted, then created again as a
            // replica that clones the new primary.
            Some(pod) => !(role == REPLICA && pod.role.as_deref() == Some(PRIMARY)),
            None if role == PRIMARY => recreate_primary,
            None => writable.is_some(),
        };
        if !keep {
            continue;
        }
        if pod.is_none() {
            events.push(Event::normal(
                "InstanceCreated",
                "CreateInstance",
                format!("creating instance {} ({role})", layout.instance(n)),
            ));
        }
        response = response.child(template.pod(n, role));
        if let Some(pod) = pod {
            if pod.serving() {
                ready_instances += 1;
            }
            if let Some(ip) = &pod.ip {
                response = response.child(children::postgres_server(&layout, n, ip));
            }
        }
    }
    let credentials_secret = secret_name(object.name());
    match &managed {
        Some(done) => response = response.child(done.secret.clone()),
        None => {
            if let Some(existing) = req.existing_child(&secret_kind(), &credentials_secret) {
                let mut kept = Response::new().keep(existing).children.remove(0);
                if shape.retain {
                    retain_on_delete(&mut kept);
                }
                response = response.child(kept);
            }
        }
    }

    // Status.
    let replicas: Vec<ReplicaStatus> = match &observed {
        Some(seen) if !seen.in_recovery => instances
            .iter()
            .filter(|n| **n != primary)
            .map(|n| {
                let slot = seen.slot(&Layout::slot(*n));
                ReplicaStatus {
                    name: layout.instance(*n),
                    state: slot
                        .filter(|s| s.active)
                        .and_then(|s| s.state.clone())
                        .unwrap_or_else(|| "disconnected".to_owned()),
                    lag_bytes: slot.and_then(|s| s.lag),
                }
            })
            .collect(),
        _ => status
            .replicas
            .iter()
            .filter(|r| {
                layout
                    .number(&r.name)
                    .is_some_and(|n| n != primary && instances.contains(&n))
            })
            .cloned()
            .collect(),
    };
    let streaming =
        replicas.iter().all(|r| r.state == "streaming") && replicas.len() + 1 == instances.len();
    let all_ready = ready_instances == instances.len();
    let (ready, requeue_default) = match (&managed, failing_over) {
        (_, true) => (
            Condition::not_ready(
                FAILING_OVER,
                format!(
                    "primary {} is not ready; {}",
                    record
                        .as_ref()
                        .map_or_else(|| layout.instance(primary), |r| r.primary.clone()),
                    match record.as_ref().and_then(|r| r.promoting.as_deref()) {
                        Some(target) => format!("promoting {target}"),
                        None => "waiting for the failover delay".to_owned(),
                    }
                ),
            ),
            SOON,
        ),
        (Some(_), false) if all_ready && streaming => (
            Condition::ready(
                READY_REASON,
                format!(
                    "database {:?} owned by role {:?} is ready on dedicated instance {} \
                     (primary){}",
                    desired.name,
                    desired.owner,
                    layout.instance(primary),
                    match replicas.len() {
                        0 => String::new(),
                        1 => " with 1 streaming replica".to_owned(),
                        many => format!(" with {many} streaming replicas"),
                    }
                ),
            ),
            LATER,
        ),
        (Some(_), false) => (
            Condition::not_ready(
                CREATING_REPLICA,
                format!(
                    "the primary {} is ready; waiting for {} of {} instances to be ready and \
                     streaming",
                    layout.instance(primary),
                    instances.len() - ready_instances.min(instances.len()),
                    instances.len()
                ),
            ),
            SOON,
        ),
        (None, false) if status.data_version.is_some() => (
            Condition::not_ready(
                PRIMARY_UNAVAILABLE,
                format!(
                    "the primary {} does not answer (yet){}",
                    layout.instance(primary),
                    if record.is_some() {
                        "; no streaming replica to promote"
                    } else {
                        ""
                    }
                ),
            ),
            SOON,
        ),
        (None, false) => (
            Condition::not_ready(
                PROVISIONING,
                format!(
                    "creating the primary {} (PostgreSQL {}, {} of storage)",
                    layout.instance(primary),
                    shape.version,
                    shape.request
                ),
            ),
            SOON,
        ),
    };
    let mut conditions = Conditions::from_object(object).set(ready, ctx.now());
    conditions = if shape.count > 1 {
        let replicating = if streaming && !replicas.is_empty() {
            Condition::new(
                REPLICATING,
                ConditionStatus::True,
                STREAMING,
                format!(
                    "{} streams from {}",
                    names(&replicas),
                    layout.instance(primary)
                ),
            )
        } else {
            Condition::new(
                REPLICATING,
                ConditionStatus::False,
                NOT_STREAMING,
                if replicas.is_empty() {
                    "no replica yet".to_owned()
                } else {
                    replicas
                        .iter()
                        .map(|r| format!("{} is {}", r.name, r.state))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            )
        };
        conditions.set(replicating, ctx.now())
    } else {
        conditions.remove(REPLICATING)
    };
    let credentials = &status.credentials;
    let new_status = DatabaseStatus {
        credentials: postgres_api::CredentialsStatus {
            server: if observed.is_some() {
                Some(primary_key.clone())
            } else {
                credentials.server.clone()
            },
            database_name: Some(desired.name.clone()),
            binding: if managed.is_some() || credentials.binding.is_some() {
                Some(Binding {
                    name: credentials_secret,
                })
            } else {
                None
            },
            password: managed
                .as_ref()
                .map(|m| m.password.clone())
                .or_else(|| credentials.password.clone()),
            common: CommonStatus {
                conditions: match conditions.into_value() {
                    Value::Array(all) => all,
                    _ => Vec::new(),
                },
                ..CommonStatus::default()
            },
        },
        instances: Some(u32::try_from(instances.len()).unwrap_or(0)),
        ready_instances: Some(u32::try_from(ready_instances).unwrap_or(0)),
        current_primary: Some(layout.instance(primary)),
        replicas,
        storage: Some(StorageStatus {
            requested: shape.request.clone(),
            volumes: instances
                .iter()
                .map(|n| VolumeStatus {
                    name: layout.instance(*n),
                    capacity: existing.claims.get(n).and_then(|c| c.capacity.clone()),
                })
                .collect(),
        }),
        server_version: observed
            .as_ref()
            .map(|seen| seen.server_version.clone())
            .or_else(|| status.server_version.clone()),
        data_version: observed
            .as_ref()
            .map(|_| shape.version)
            .or(status.data_version),
        failover: record,
    };
    ctx.info(
        "reconciled dedicated instance",
        &[
            ("database", object.name()),
            ("primary", &layout.instance(primary)),
            ("readyInstances", &ready_instances.to_string()),
            (
                "statements",
                &plans
                    .iter()
                    .map(|p| p.statements.len())
                    .sum::<usize>()
                    .to_string(),
            ),
        ],
    );
    response = response.status_of(&new_status)?;
    for plan in plans {
        response = response.sql(plan);
    }
    for event in events {
        response = response.event(event);
    }
    let after = [
        requeue,
        managed.as_ref().and_then(|m| m.requeue_after),
        Some(requeue_default),
    ]
    .into_iter()
    .flatten()
    .min();
    if let Some(after) = after {
        response = response.requeue_after(after);
    }
    Ok(response)
}

/// The cleanup of a dedicated instance: none to do (its children go with
/// it, or stay when marked to be retained), but say what stays.
pub(crate) fn finalize(req: &Request, spec: &DatabaseSpec) -> FinalizeResponse {
    let name = req.object.name();
    let response = FinalizeResponse::done();
    if spec.reclaim_policy == ReclaimPolicy::Retain {
        let volumes: Vec<String> = req
            .children
            .iter()
            .filter(|child| child.gvk() == children::claim_kind())
            .map(|child| child.name().to_owned())
            .collect();
        response.event(Event::normal(
            "Retained",
            "DeleteInstance",
            format!(
                "reclaimPolicy Retain: keeping volumes {} and Secrets {name}-superuser, \
                 {name}-replication and {}; delete them by hand when the data is no longer \
                 needed",
                if volumes.is_empty() {
                    "(none)".to_owned()
                } else {
                    volumes.join(", ")
                },
                secret_name(name)
            ),
        ))
    } else {
        response.event(Event::normal(
            "Deleted",
            "DeleteInstance",
            format!(
                "reclaimPolicy Delete: the instances of {name}, their volumes and Secrets are \
                 deleted with it"
            ),
        ))
    }
}

/// Validates what the spec asks against the status and the volumes.
fn shape(
    spec: &DatabaseSpec,
    settings: &DatabaseSettings,
    status: &DatabaseStatus,
    existing: &Children,
) -> Result<Shape, PluginError> {
    let version = spec.version.unwrap_or(DEFAULT_VERSION);
    if let Some(data) = status.data_version
        && data != version
    {
        return Err(version_refused(version, data));
    }
    let image = settings.image(version)?;
    let size = spec.size.as_deref().unwrap_or(DEFAULT_SIZE);
    let size_bytes = quantity_bytes(size).unwrap_or(0);
    for (n, claim) in &existing.claims {
        if let Some(request) = &claim.request
            && quantity_bytes(request).is_some_and(|bytes| bytes > size_bytes)
        {
            return Err(PluginError::invalid_spec(format!(
                "spec.size: {size:?} is smaller than {request:?}, the size of volume {n} of this \
                 Database; storage can grow but not shrink (set spec.size to at least \
                 {request:?})"
            )));
        }
    }
    Ok(Shape {
        version,
        image,
        size_bytes,
        request: size.to_owned(),
        count: if spec.replication == Some(true) { 2 } else { 1 },
        retain: spec.reclaim_policy == ReclaimPolicy::Retain,
    })
}

fn version_refused(version: u32, data: u32) -> PluginError {
    PluginError::invalid_spec(format!(
        "spec.version: {version} is not {data}, the major version of this Database's data; \
         in-place major upgrades are not supported yet (set spec.version back to {data})"
    ))
}

/// The password in the existing Secret `name`, or a new one.
fn kept_or_new(req: &Request, name: &str) -> Result<String, PluginError> {
    match existing_password(req, name) {
        Some(password) => Ok(password),
        None => generate_password(PASSWORD_LENGTH).map_err(|e| {
            PluginError::retryable("RandomFailed", format!("cannot generate a password: {e}"))
        }),
    }
}

/// Whether `instance` was streaming when the primary last answered.
fn was_streaming(status: &DatabaseStatus, instance: &str) -> bool {
    status
        .replicas
        .iter()
        .any(|r| r.name == instance && r.state == "streaming")
}

/// Whether instance `n` can be queried: its Pod serves, its PostgresServer
/// points at the Pod's IP, and the host granted it.
fn queryable(req: &Request, existing: &Children, n: u32, key: &str) -> bool {
    let Some(pod) = existing.pods.get(&n).filter(|p| p.serving()) else {
        return false;
    };
    let points_at_pod = matches!(
        (existing.servers.get(&n), &pod.ip),
        (Some(Some(host)), Some(ip)) if host == ip
    );
    points_at_pod && req.servers.iter().any(|server| server == key)
}

/// The replicas that may be promoted, each asked how much WAL it received.
fn candidates(
    ctx: &Context<'_>,
    req: &Request,
    layout: &Layout,
    existing: &Children,
    status: &DatabaseStatus,
    instances: &[u32],
    primary: u32,
) -> Vec<Candidate> {
    instances
        .iter()
        .filter(|n| **n != primary && was_streaming(status, &layout.instance(**n)))
        .filter(|n| queryable(req, existing, **n, &layout.server_key(**n)))
        .filter_map(|n| {
            let seen = observe::replica(ctx, &layout.server_key(*n)).ok()?;
            seen.in_recovery.then_some(Candidate {
                instance: *n,
                received: seen.received,
            })
        })
        .collect()
}

/// `pg_promote()` aimed at instance `n`.
fn promote(layout: &Layout, n: u32) -> SqlPlan {
    SqlPlan::new(layout.server_key(n)).statement(
        SqlStatement::new(
            "SELECT pg_promote(true, 30)",
            format!("promote {} to primary", layout.instance(n)),
        )
        .non_transactional(),
    )
}

/// The replication role and the replicas' slots on the primary, and the
/// removal of slots no replica uses any more.
fn replication_plan(
    layout: &Layout,
    seen: &Primary,
    instances: &[u32],
    primary: u32,
    password: &str,
) -> Result<Option<SqlPlan>, PluginError> {
    let replicas: Vec<u32> = instances
        .iter()
        .copied()
        .filter(|n| *n != primary)
        .collect();
    let mut plan = SqlPlan::new(layout.server_key(primary));
    if !replicas.is_empty() && !seen.replication_role {
        plan = plan.statement(role::create_role(
            REPLICATION_USER,
            password,
            " REPLICATION",
        )?);
    }
    for n in &replicas {
        let slot = Layout::slot(*n);
        if seen.slot(&slot).is_none() {
            plan = plan.statement(
                SqlStatement::new(
                    "select pg_create_physical_replication_slot($1, true)",
                    format!("create replication slot {slot} for {}", layout.instance(*n)),
                )
                .param(slot.as_str()),
            );
        }
    }
    for slot in &seen.slots {
        let wanted = replicas.iter().any(|n| Layout::slot(*n) == slot.name);
        if !wanted && !slot.active {
            plan = plan.statement(
                SqlStatement::new(
                    "select pg_drop_replication_slot($1)",
                    format!("drop replication slot {} (no replica uses it)", slot.name),
                )
                .param(slot.name.as_str()),
            );
        }
    }
    Ok((!plan.is_empty()).then_some(plan))
}

fn names(replicas: &[ReplicaStatus]) -> String {
    replicas
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
