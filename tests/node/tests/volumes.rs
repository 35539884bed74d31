//! The provisioner: claims bound to directories, grown, and deleted with their directory.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::{Cluster, eventually};

fn claim(name: &str, size: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
        },
    })
}

async fn bound_with(
    api: &Api<PersistentVolumeClaim>,
    name: &str,
    capacity: &str,
) -> PersistentVolumeClaim {
    eventually(
        &format!("claim {name} bound with {capacity}"),
        Duration::from_secs(20),
        || async {
            api.get(name).await.ok().filter(|pvc| {
                let status = pvc.status.as_ref();
                status.and_then(|s| s.phase.as_deref()) == Some("Bound")
                    && status
                        .and_then(|s| s.capacity.as_ref())
                        .and_then(|c| c.get("storage"))
                        .is_some_and(|q| q.0 == capacity)
            })
        },
    )
    .await
}

#[tokio::test]
async fn a_claim_without_a_class_is_bound_to_a_directory_of_the_default_class() {
    let cluster = Cluster::start("claim-bound").await;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), "default");
    cluster
        .create::<PersistentVolumeClaim>(claim("data", "1Gi"))
        .await;

    let pvc = bound_with(&api, "data", "1Gi").await;
    let spec = pvc.spec.unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("standard"));
    let volume = spec.volume_name.expect("a volume name");
    assert_eq!(volume, format!("pvc-{}", pvc.metadata.uid.unwrap()));
    assert!(cluster.node.volume_dir(&volume).is_dir());
    let status = pvc.status.unwrap();
    assert_eq!(status.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
}

#[tokio::test]
async fn a_grown_request_is_reflected_in_capacity_and_a_shrink_is_refused() {
    let cluster = Cluster::start("claim-grown").await;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), "default");
    cluster
        .create::<PersistentVolumeClaim>(claim("data", "1Gi"))
        .await;
    bound_with(&api, "data", "1Gi").await;

    let request =
        |size: &str| Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": size}}}}));
    api.patch("data", &PatchParams::default(), &request("2Gi"))
        .await
        .unwrap();
    bound_with(&api, "data", "2Gi").await;

    // As on a real cluster (RecoverVolumeExpansionFailure, GA in 1.34), a request at or
    // below the capacity is refused.
    let refused = api
        .patch("data", &PatchParams::default(), &request("1500Mi"))
        .await
        .expect_err("a shrink is refused");
    let kube::Error::Api(status) = refused else {
        panic!("not an API error: {refused}")
    };
    assert_eq!(status.code, 422);
    assert_eq!(
        status.message,
        "PersistentVolumeClaim \"data\" is invalid: spec.resources.requests.storage: \
         Forbidden: field can not be less than status.capacity"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    bound_with(&api, "data", "2Gi").await;
}

#[tokio::test]
async fn deleting_a_claim_deletes_its_directory() {
    let cluster = Cluster::start("claim-deleted").await;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), "default");
    cluster
        .create::<PersistentVolumeClaim>(claim("data", "1Gi"))
        .await;
    let volume = bound_with(&api, "data", "1Gi")
        .await
        .spec
        .unwrap()
        .volume_name
        .unwrap();
    let dir = cluster.node.volume_dir(&volume);
    std::fs::write(dir.join("file"), "content").unwrap();

    api.delete("data", &DeleteParams::default()).await.unwrap();
    eventually(
        "the volume's directory gone",
        Duration::from_secs(20),
        || async { (!dir.exists()).then_some(()) },
    )
    .await;
}
