//! What the real API server's Service and PersistentVolumeClaim storage do beyond the
//! generic write path: `spec.clusterIP` allocation (random, from a service CIDR of
//! loopback addresses, so that a test node can listen on it), the Service defaults, the
//! immutability of an allocated clusterIP, and the refusal to shrink a bound claim.
//!
//! `prepare` (which sees the old object but cannot fail) finds these errors and keeps them
//! here until `validate` (which can fail but sees only the new object) reports them, in the
//! order the real server reports them: before the object is stored.
//!
//! The allocator belongs to one server: it is found through that server's own `services`
//! [`ResourceType`] (each server's registry builds its own), held by a `Weak` so that its
//! address cannot be reused while the entry lives. Allocations are released when a Service
//! of the same namespace and name is created again (the old one must be gone) and
//! otherwise never: the generic delete path calls nothing here, so an explicit IP of a
//! deleted Service of another name stays taken. Dynamic allocation is random over a /12, as
//! the real allocator picks at random, so leaked addresses cost nothing.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde_json::{Value, json};

use crate::meta;
use crate::registry::ResourceType;

/// The service CIDR: `127.64.0.0/12`, loopback (every 127/8 address binds on Linux) and
/// apart from the test node's Pod addresses (`127.100.0.0`–`127.199.255.255`).
pub const SERVICE_CIDR: &str = "127.64.0.0/12";
const BASE: u32 = u32::from_be_bytes([127, 64, 0, 0]);
const SIZE: u32 = 1 << 20;

/// A field error found by `prepare`, reported by `validate`: (field, message).
type Cause = (String, String);

/// The allocations and pending errors of one server.
#[derive(Debug, Default)]
struct Allocator {
    /// IP → (namespace, name, uid) of the Service holding it.
    used: BTreeMap<u32, (String, String, String)>,
    /// (resource, namespace, name) → the causes `validate` must report.
    pending: HashMap<(String, String, String), Vec<Cause>>,
}

type Entry = (Weak<ResourceType>, Arc<Mutex<Allocator>>);

static ALLOCATORS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The allocator of the server whose type `rt` is (created on first use).
fn allocator(rt: &Arc<ResourceType>) -> Arc<Mutex<Allocator>> {
    let mut all = lock(&ALLOCATORS);
    all.retain(|(weak, _)| weak.strong_count() > 0);
    let weak = Arc::downgrade(rt);
    if let Some((_, found)) = all.iter().find(|(w, _)| w.ptr_eq(&weak)) {
        return found.clone();
    }
    let created = Arc::new(Mutex::new(Allocator::default()));
    all.push((weak, created.clone()));
    created
}

/// Services: defaults, clusterIP allocation on create, the allocated IPs kept on update.
pub fn prepare_service(rt: &Arc<ResourceType>, old: Option<&Value>, new: &mut Value) {
    let allocator = allocator(rt);
    let mut allocator = lock(&allocator);
    let key = pending_key("services", new);
    allocator.pending.remove(&key);
    default_service(new);
    if spec_str(new, "type") == Some("ExternalName") {
        return;
    }
    let causes = match old {
        Some(old) if spec_str(old, "type") != Some("ExternalName") => keep_allocated(old, new),
        _ => allocator.allocate(new),
    };
    if !causes.is_empty() {
        allocator.pending.insert(key, causes);
    }
}

/// PersistentVolumeClaims: a bound claim's request may not go down to its capacity (the
/// `RecoverVolumeExpansionFailure` rule, on by default since Kubernetes 1.32 and GA in 1.34:
/// a request above the capacity may still be lowered, to recover from a failed expansion).
pub fn prepare_claim(rt: &Arc<ResourceType>, old: Option<&Value>, new: &Value) {
    let allocator = allocator(rt);
    let mut allocator = lock(&allocator);
    let key = pending_key("persistentvolumeclaims", new);
    allocator.pending.remove(&key);
    let Some(old) = old else { return };
    let request = |v: &Value| {
        v.pointer("/spec/resources/requests/storage")
            .and_then(Value::as_str)
            .and_then(bytes)
    };
    let capacity = old
        .pointer("/status/capacity/storage")
        .and_then(Value::as_str)
        .and_then(bytes);
    let bound = old.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
    if let (true, Some(was), Some(now), Some(capacity)) =
        (bound, request(old), request(new), capacity)
        && now < was
        && now <= capacity
    {
        allocator.pending.insert(
            key,
            vec![(
                "spec.resources.requests.storage".into(),
                "Forbidden: field can not be less than status.capacity".into(),
            )],
        );
    }
}

/// The causes `prepare_service`/`prepare_claim` found for `object`, taken.
pub fn take_causes(rt: &Arc<ResourceType>, object: &Value) -> Vec<(String, String)> {
    if !matches!(rt.plural.as_str(), "services" | "persistentvolumeclaims") || !rt.group.is_empty()
    {
        return Vec::new();
    }
    let allocator = allocator(rt);
    let key = pending_key(&rt.plural, object);
    lock(&allocator).pending.remove(&key).unwrap_or_default()
}

fn pending_key(resource: &str, object: &Value) -> (String, String, String) {
    (
        resource.to_owned(),
        meta::namespace(object).to_owned(),
        meta::name(object).to_owned(),
    )
}

impl Allocator {
    /// Allocates (or checks and takes) the clusterIP of a new Service.
    fn allocate(&mut self, new: &mut Value) -> Vec<Cause> {
        let namespace = meta::namespace(new).to_owned();
        let name = meta::name(new).to_owned();
        let uid = meta::uid(new).to_owned();
        // A Service of this name created again: the one that held an IP under it is gone.
        self.used
            .retain(|_, (ns, n, u)| !(*ns == namespace && *n == name && *u != uid));
        let requested = spec_str(new, "clusterIP")
            .filter(|ip| !ip.is_empty())
            .map(str::to_owned)
            .or_else(|| {
                new.pointer("/spec/clusterIPs/0")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
        let ip = match requested.as_deref() {
            Some("None") => {
                new["spec"]["clusterIP"] = json!("None");
                new["spec"]["clusterIPs"] = json!(["None"]);
                return Vec::new();
            }
            Some(text) => {
                let refuse = |why: String| {
                    vec![(
                        "spec.clusterIPs".to_owned(),
                        format!(
                            "Invalid value: []string{{{text:?}}}: failed to allocate IP {text}: {why}"
                        ),
                    )]
                };
                let Ok(ip) = text.parse::<Ipv4Addr>() else {
                    return vec![(
                        "spec.clusterIPs[0]".to_owned(),
                        format!(
                            "Invalid value: {text:?}: must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
                        ),
                    )];
                };
                let n = u32::from(ip);
                if !(BASE + 1..BASE + SIZE - 1).contains(&n) {
                    return refuse(format!(
                        "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {SERVICE_CIDR}"
                    ));
                }
                if self.used.contains_key(&n) {
                    return refuse("provided IP is already allocated".to_owned());
                }
                n
            }
            None => match self.random_free() {
                Some(n) => n,
                None => {
                    return vec![(
                        "spec.clusterIPs".to_owned(),
                        "Internal error: failed to allocate a serviceIP: range is full".to_owned(),
                    )];
                }
            },
        };
        self.used.insert(ip, (namespace, name, uid));
        let text = Ipv4Addr::from(ip).to_string();
        new["spec"]["clusterIP"] = json!(text);
        new["spec"]["clusterIPs"] = json!([text]);
        Vec::new()
    }

    fn random_free(&self) -> Option<u32> {
        for _ in 0..64 {
            let n = BASE + 1 + random() % (SIZE - 2);
            if !self.used.contains_key(&n) {
                return Some(n);
            }
        }
        (BASE + 1..BASE + SIZE - 1).find(|n| !self.used.contains_key(n))
    }
}

/// An update keeps the allocated IPs: omitted ones are copied from the old object (so that
/// re-applying a manifest without them works), changed ones are refused, as the real
/// server's `patchAllocatedValues`, `normalizeClusterIPs` and update validation do.
fn keep_allocated(old: &Value, new: &mut Value) -> Vec<Cause> {
    let ips = |v: &Value| -> Vec<String> {
        v.pointer("/spec/clusterIPs")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let old_ip = spec_str(old, "clusterIP").unwrap_or("").to_owned();
    let old_ips = ips(old);
    if spec_str(new, "clusterIP").unwrap_or("").is_empty() {
        new["spec"]["clusterIP"] = json!(old_ip);
    }
    let new_ip = spec_str(new, "clusterIP").unwrap_or("").to_owned();
    let mut new_ips = ips(new);
    if new_ips.is_empty() && new_ip == old_ip {
        new_ips.clone_from(&old_ips);
    }
    if new_ip != old_ip && new_ips == old_ips && !new_ips.is_empty() {
        new_ips[0].clone_from(&new_ip);
    }
    if new_ips.is_empty() {
        new_ips.push(new_ip);
    }
    new["spec"]["clusterIPs"] = json!(new_ips);
    if old_ip == "None" && new_ips.first().map(String::as_str) == Some("None") {
        return Vec::new();
    }
    let shown = format!(
        "[]string{{{}}}",
        new_ips
            .iter()
            .map(|ip| format!("{ip:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    old_ips
        .iter()
        .enumerate()
        .filter(|(i, ip)| new_ips.get(*i) != Some(ip))
        .map(|(i, _)| {
            (
                format!("spec.clusterIPs[{i}]"),
                format!("Invalid value: {shown}: may not change once set"),
            )
        })
        .collect()
}

/// The defaults the real server writes into a Service.
fn default_service(new: &mut Value) {
    if !new.get("spec").is_some_and(Value::is_object) {
        new["spec"] = json!({});
    }
    let spec = &mut new["spec"];
    let external = spec.get("type").and_then(Value::as_str) == Some("ExternalName");
    let defaults = [
        ("type", json!("ClusterIP")),
        ("sessionAffinity", json!("None")),
    ];
    for (field, value) in defaults {
        if spec.get(field).is_none_or(Value::is_null) {
            spec[field] = value;
        }
    }
    if !external {
        for (field, value) in [
            ("ipFamilies", json!(["IPv4"])),
            ("ipFamilyPolicy", json!("SingleStack")),
            ("internalTrafficPolicy", json!("Cluster")),
        ] {
            if spec.get(field).is_none_or(Value::is_null) {
                spec[field] = value;
            }
        }
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            if port.get("protocol").is_none_or(Value::is_null) {
                port["protocol"] = json!("TCP");
            }
            if port.get("targetPort").is_none_or(Value::is_null)
                && let Some(number) = port.get("port").cloned()
            {
                port["targetPort"] = number;
            }
        }
    }
}

fn spec_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("spec")?.get(field)?.as_str()
}

/// A pseudo-random number (the standard library's per-instance random hash keys).
fn random() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(jiff::Timestamp::now().as_nanosecond().unsigned_abs());
    u32::try_from(hasher.finish() & u64::from(u32::MAX)).unwrap_or(0)
}

/// A storage quantity in bytes (`10Gi`, `500M`, `1.5Gi`), `None` if unreadable.
fn bytes(quantity: &str) -> Option<f64> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("m", 1e-3),
    ];
    let quantity = quantity.trim();
    for (suffix, factor) in SUFFIXES {
        if let Some(number) = quantity.strip_suffix(suffix) {
            return number.parse::<f64>().ok().map(|n| n * factor);
        }
    }
    quantity.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_without_the_ip_keeps_it_and_a_changed_one_is_refused() {
        let old = json!({"spec": {"clusterIP": "127.64.0.9", "clusterIPs": ["127.64.0.9"]}});
        let mut omitted = json!({"spec": {"ports": []}});
        assert!(keep_allocated(&old, &mut omitted).is_empty());
        assert_eq!(omitted["spec"]["clusterIPs"], json!(["127.64.0.9"]));
        let mut changed = json!({"spec": {"clusterIP": "127.64.0.10"}});
        assert_eq!(
            keep_allocated(&old, &mut changed),
            vec![(
                "spec.clusterIPs[0]".to_owned(),
                "Invalid value: []string{\"127.64.0.10\"}: may not change once set".to_owned()
            )]
        );
    }

    #[test]
    fn dynamic_addresses_are_inside_the_range_and_distinct() {
        let mut allocator = Allocator::default();
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..50 {
            let mut svc = json!({"metadata": {"name": format!("s{i}"), "namespace": "d", "uid": format!("{i}")}, "spec": {}});
            assert!(allocator.allocate(&mut svc).is_empty());
            let ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
            assert_eq!(ip.octets()[0], 127);
            assert!((64..80).contains(&ip.octets()[1]), "{ip}");
            assert!(seen.insert(ip));
        }
    }
}
