//! Storage: the node's `StorageClass`, a provisioner that binds every claim of that class
//! (or of none: the class is the default) to a directory under the work directory, and
//! the Pod-side volumes (claims, Secrets, ConfigMaps, projected, `emptyDir`) as host paths
//! to bind.
//!
//! Backing directories are made `0777`, as the local-path and host-path provisioners do, so
//! a non-root container can create its data directory in a fresh volume.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, ProjectedVolumeSource,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::Shared;
use crate::env;

/// The provisioner name written on the class and on provisioned claims.
pub const PROVISIONER: &str = "test-node.wasm-operator.dev/local-path";

/// The annotation that marks a class as the default one.
const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// Creates the node's default `StorageClass`; `Ok(false)` when the API server does not serve
/// `storage.k8s.io/v1` StorageClasses (the provisioner then works from the claims alone).
pub(crate) async fn register_class(shared: &Shared) -> Result<bool, kube::Error> {
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": shared.storage_class, "annotations": {DEFAULT_CLASS: "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": true,
    }))
    .expect("a valid StorageClass");
    crate::create_if_served(&Api::all(shared.client.clone()), &class).await
}

/// The directory backing the volume `volume_name`.
pub(crate) fn volume_dir(workdir: &Path, volume_name: &str) -> PathBuf {
    workdir.join("volumes").join(volume_name)
}

/// Binds, grows and deletes the volumes of claims, for as long as the node runs.
pub(crate) async fn provision(shared: Arc<Shared>) {
    let api: Api<PersistentVolumeClaim> = Api::all(shared.client.clone());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let result = match event {
            Ok(watcher::Event::Apply(pvc) | watcher::Event::InitApply(pvc)) => {
                reconcile(&shared, &pvc).await
            }
            Ok(watcher::Event::Delete(pvc)) => release(&shared, &pvc).await,
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::debug!(%error, "watching claims");
                Ok(())
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, "provisioning");
        }
    }
}

/// Whether this node's provisioner serves `pvc`'s class.
fn ours(shared: &Shared, pvc: &PersistentVolumeClaim) -> bool {
    let class = pvc
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref());
    class.is_none_or(|c| c == shared.storage_class)
}

async fn reconcile(shared: &Shared, pvc: &PersistentVolumeClaim) -> Result<(), kube::Error> {
    if pvc.metadata.deletion_timestamp.is_some() || !ours(shared, pvc) {
        return Ok(());
    }
    let (Some(name), Some(namespace), Some(uid)) = (
        pvc.metadata.name.as_deref(),
        pvc.metadata.namespace.as_deref(),
        pvc.metadata.uid.as_deref(),
    ) else {
        return Ok(());
    };
    let api: Api<PersistentVolumeClaim> = Api::namespaced(shared.client.clone(), namespace);
    let spec = pvc.spec.clone().unwrap_or_default();
    let request = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone());
    let Some(request) = request else {
        return Ok(());
    };
    let access_modes = spec
        .access_modes
        .clone()
        .unwrap_or_else(|| vec!["ReadWriteOnce".to_owned()]);
    let status = pvc.status.clone().unwrap_or_default();
    let volume_name = match &spec.volume_name {
        Some(volume) => volume.clone(),
        None => {
            let volume = format!("pvc-{uid}");
            let dir = volume_dir(&shared.workdir, &volume);
            make_world_writable_dir(&dir).map_err(|e| kube::Error::Service(e.into()))?;
            register_volume(shared, pvc, &volume, &request, &access_modes).await?;
            // The DefaultStorageClass admission plugin would have filled the class in.
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({
                    "metadata": {"annotations": {
                        "pv.kubernetes.io/bind-completed": "yes",
                        "pv.kubernetes.io/bound-by-controller": "yes",
                        "volume.kubernetes.io/storage-provisioner": PROVISIONER,
                    }},
                    "spec": {"volumeName": volume, "storageClassName": shared.storage_class},
                })),
            )
            .await?;
            volume
        }
    };
    let capacity = status
        .capacity
        .as_ref()
        .and_then(|c| c.get("storage"))
        .map(|q| q.0.clone());
    // Capacity follows a grown request (the class allows expansion); a smaller request
    // leaves the capacity as it is (the real API server refuses the shrink).
    let grown = match &capacity {
        None => true,
        Some(current) => bytes(&request)
            .zip(bytes(current))
            .is_some_and(|(want, have)| want > have),
    };
    if status.phase.as_deref() != Some("Bound") || grown {
        let new_capacity = if grown {
            request.clone()
        } else {
            capacity.unwrap_or(request)
        };
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "phase": "Bound",
                "accessModes": access_modes,
                "capacity": {"storage": new_capacity},
                "allocatedResources": {"storage": new_capacity},
            }})),
        )
        .await?;
        tracing::debug!(%namespace, %name, %volume_name, capacity = %new_capacity, "claim bound");
    }
    Ok(())
}

/// Creates the `PersistentVolume` object when the API server serves PersistentVolumes.
async fn register_volume(
    shared: &Shared,
    pvc: &PersistentVolumeClaim,
    volume: &str,
    request: &str,
    access_modes: &[String],
) -> Result<(), kube::Error> {
    let dir = volume_dir(&shared.workdir, volume);
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": volume, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": request},
            "accessModes": access_modes,
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": shared.storage_class,
            "hostPath": {"path": dir},
            "claimRef": {
                "kind": "PersistentVolumeClaim",
                "namespace": pvc.metadata.namespace,
                "name": pvc.metadata.name,
                "uid": pvc.metadata.uid,
            },
        },
    }))
    .expect("a valid PersistentVolume");
    crate::create_if_served(&Api::all(shared.client.clone()), &pv)
        .await
        .map(drop)
}

/// Reclaim `Delete`: the claim is gone, so is its volume.
async fn release(shared: &Shared, pvc: &PersistentVolumeClaim) -> Result<(), kube::Error> {
    let Some(volume) = pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()) else {
        return Ok(());
    };
    if !ours(shared, pvc) {
        return Ok(());
    }
    let dir = volume_dir(&shared.workdir, volume);
    if let Err(error) = std::fs::remove_dir_all(&dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(%error, dir = %dir.display(), "deleting a volume");
    }
    match Api::<PersistentVolume>::all(shared.client.clone())
        .delete(volume, &Default::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

fn make_world_writable_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
}

/// A storage quantity in bytes (`10Gi`, `500M`, `1.5Gi`, `1e9`), `None` if unreadable.
pub(crate) fn bytes(quantity: &str) -> Option<f64> {
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

/// Where one Pod volume lives on the host.
#[derive(Clone, Debug)]
pub(crate) struct HostVolume {
    pub(crate) path: PathBuf,
    pub(crate) read_only: bool,
}

/// Materialises the volumes of `pod` under `pod_dir`: claims must be bound, Secrets and
/// ConfigMaps exist (unless optional). `Err` carries the reason the Pod waits, as the
/// kubelet's `FailedMount` event would say it.
pub(crate) async fn prepare(
    shared: &Shared,
    pod: &Pod,
    pod_dir: &Path,
) -> Result<BTreeMap<String, HostVolume>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = BTreeMap::new();
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for volume in volumes {
        let dir = pod_dir.join("volumes").join(&volume.name);
        let host = if let Some(claim) = &volume.persistent_volume_claim {
            let pvc = Api::<PersistentVolumeClaim>::namespaced(shared.client.clone(), namespace)
                .get_opt(&claim.claim_name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!("persistentvolumeclaim \"{}\" not found", claim.claim_name)
                })?;
            let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
            let volume_name = pvc.spec.as_ref().and_then(|s| s.volume_name.clone());
            match volume_name {
                Some(volume_name) if bound => HostVolume {
                    path: volume_dir(&shared.workdir, &volume_name),
                    read_only: claim.read_only.unwrap_or(false),
                },
                _ => {
                    return Err(format!(
                        "pod has unbound immediate PersistentVolumeClaims ({})",
                        claim.claim_name
                    ));
                }
            }
        } else if let Some(secret) = &volume.secret {
            let name = secret.secret_name.clone().unwrap_or_default();
            let data = env::secret_data(
                &shared.client,
                namespace,
                &name,
                secret.optional.unwrap_or(false),
            )
            .await?;
            let items = key_paths(&secret.items);
            write_files(&dir, &data, items, secret.default_mode.unwrap_or(0o644))
                .map_err(|e| e.to_string())?;
            HostVolume {
                path: dir,
                read_only: true,
            }
        } else if let Some(cm) = &volume.config_map {
            let data = env::config_map(
                &shared.client,
                namespace,
                &cm.name,
                cm.optional.unwrap_or(false),
            )
            .await?;
            let items = key_paths(&cm.items);
            write_files(&dir, &data, items, cm.default_mode.unwrap_or(0o644))
                .map_err(|e| e.to_string())?;
            HostVolume {
                path: dir,
                read_only: true,
            }
        } else if let Some(projected) = &volume.projected {
            project(shared, pod, namespace, projected, &dir).await?;
            HostVolume {
                path: dir,
                read_only: true,
            }
        } else if volume.empty_dir.is_some() {
            make_world_writable_dir(&dir).map_err(|e| e.to_string())?;
            HostVolume {
                path: dir,
                read_only: false,
            }
        } else {
            return Err(format!(
                "volume {:?}: only persistentVolumeClaim, secret, configMap, projected and \
                 emptyDir volumes are supported by the test node",
                volume.name
            ));
        };
        out.insert(volume.name.clone(), host);
    }
    Ok(out)
}

/// Writes a projected volume: every source's files into one directory, as the kubelet does
/// (a missing non-optional Secret or ConfigMap fails the Pod's start). Service account
/// tokens and cluster trust bundles are not projected: nothing here issues them.
async fn project(
    shared: &Shared,
    pod: &Pod,
    namespace: &str,
    projected: &ProjectedVolumeSource,
    dir: &Path,
) -> Result<(), String> {
    let default_mode = projected.default_mode.unwrap_or(0o644);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    for source in projected.sources.iter().flatten() {
        if let Some(secret) = &source.secret {
            let data = env::secret_data(
                &shared.client,
                namespace,
                &secret.name,
                secret.optional.unwrap_or(false),
            )
            .await?;
            write_files(dir, &data, key_paths(&secret.items), default_mode)
                .map_err(|e| e.to_string())?;
        } else if let Some(cm) = &source.config_map {
            let data = env::config_map(
                &shared.client,
                namespace,
                &cm.name,
                cm.optional.unwrap_or(false),
            )
            .await?;
            write_files(dir, &data, key_paths(&cm.items), default_mode)
                .map_err(|e| e.to_string())?;
        } else if let Some(downward) = &source.downward_api {
            let mut data = BTreeMap::new();
            let mut items = Vec::new();
            for item in downward.items.iter().flatten() {
                let Some(field) = &item.field_ref else {
                    return Err(format!(
                        "downwardAPI item {:?}: only fieldRef is supported by the test node",
                        item.path
                    ));
                };
                data.insert(item.path.clone(), env::field_path(pod, &field.field_path)?);
                items.push((item.path.clone(), item.path.clone(), item.mode));
            }
            write_files(dir, &data, Some(items), default_mode).map_err(|e| e.to_string())?;
        } else {
            return Err(
                "projected volume source: only secret, configMap and downwardAPI are supported by \
                 the test node"
                    .to_owned(),
            );
        }
    }
    Ok(())
}

/// The `items` of a Secret or ConfigMap source as (key, path, mode).
fn key_paths(items: &Option<Vec<KeyToPath>>) -> Option<Vec<(String, String, Option<i32>)>> {
    items.as_ref().map(|items| {
        items
            .iter()
            .map(|i| (i.key.clone(), i.path.clone(), i.mode))
            .collect()
    })
}

/// Writes the keys of a Secret or ConfigMap volume (all, or the `items` chosen: key, path,
/// mode) as files.
fn write_files(
    dir: &Path,
    data: &BTreeMap<String, String>,
    items: Option<Vec<(String, String, Option<i32>)>>,
    default_mode: i32,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let items =
        items.unwrap_or_else(|| data.keys().map(|k| (k.clone(), k.clone(), None)).collect());
    for (key, path, mode) in items {
        let Some(value) = data.get(&key) else {
            continue;
        };
        let file = dir.join(&path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, value)?;
        let mode = u32::try_from(mode.unwrap_or(default_mode)).unwrap_or(0o644);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn quantities_compare_across_suffixes() {
        assert_eq!(bytes("1Gi"), Some(1_073_741_824.0));
        assert!(bytes("2Gi").unwrap() > bytes("1500Mi").unwrap());
        assert!(bytes("1G").unwrap() < bytes("1Gi").unwrap());
        assert_eq!(bytes("12345"), Some(12345.0));
        assert_eq!(bytes("lots"), None);
    }
}
