//! The Kubernetes side of the Postgres end-to-end tests and benchmarks: a
//! `PostgresServer` with its admin Secret, and the Postgres plugins bound
//! from their built components.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DynamicObject, ObjectMeta, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

/// The API resource of one of the operator's kinds.
pub fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "systems.mikemiller.tech",
        "v1alpha1",
        kind,
    ))
}

/// Creates an object of one of the operator's kinds (namespaced when
/// `namespace` is given).
pub async fn create(client: &Client, namespace: Option<&str>, object: Value) {
    let kind = object["kind"].as_str().unwrap().to_owned();
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource(&kind)),
        None => Api::all_with(client.clone(), &resource(&kind)),
    };
    api.create(
        &PostParams::default(),
        &serde_json::from_value(object).unwrap(),
    )
    .await
    .unwrap_or_else(|e| panic!("creating a {kind}: {e}"));
}

/// Registers the throwaway server on `port` as PostgresServer `ns/main`,
/// with its admin Secret `ns/main-admin`, usable from `allowed` namespaces.
pub async fn register_server(client: &Client, ns: &str, port: u16, allowed: &[&str]) {
    let value = |text: &str| ByteString(text.as_bytes().to_vec());
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("main-admin".into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        data: Some(
            [
                ("username".to_owned(), value(test_postgres::ADMIN_USER)),
                ("password".to_owned(), value(test_postgres::ADMIN_PASSWORD)),
            ]
            .into(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    create(
        client,
        Some(ns),
        json!({
            "apiVersion": "systems.mikemiller.tech/v1alpha1",
            "kind": "PostgresServer",
            "metadata": {"name": "main", "namespace": ns},
            "spec": {
                "host": "127.0.0.1",
                "port": port,
                "sslMode": "disable",
                "adminCredentials": {"secretName": "main-admin"},
                "allowedNamespaces": allowed,
            },
        }),
    )
    .await;
}

/// Binds the plugins `postgres-server`, `postgres-database` and
/// `postgres-user` whose names are in `plugins`, from their components in
/// `target/plugins`, with the reads each needs, Secret children and every
/// server; `concurrency` when given.
pub async fn bind_plugins(client: &Client, plugins: &[&str], concurrency: Option<u16>) {
    for &name in plugins {
        let reads: &[&str] = match name {
            "postgres-server" => &[],
            "postgres-database" => &["PostgresServer"],
            "postgres-user" => &["PostgresServer", "Database"],
            other => panic!("no Postgres plugin named {other}"),
        };
        let path = super::plugin_dir().join(format!("{name}-plugin.wasm"));
        assert!(
            path.exists(),
            "{} is missing; build the plugins with scripts/build-plugins.sh",
            path.display()
        );
        let mut binding = super::fixtures::Binding::named(name)
            .source_file(&path)
            .grants(json!({
                "read": reads.iter().map(|k| json!({"group": "systems.mikemiller.tech", "version": "v1alpha1", "kind": k})).collect::<Vec<_>>(),
                "children": [{"version": "v1", "kind": "Secret"}],
                "servers": ["*"],
            }));
        if let Some(concurrency) = concurrency {
            binding = binding.limits(json!({"concurrency": concurrency}));
        }
        binding.create(client).await;
    }
}

/// The Api of one of the operator's kinds in namespace `ns`.
pub fn api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource(kind))
}

/// The object's `Ready` condition, if it has one.
pub fn ready(object: &DynamicObject) -> Option<&Value> {
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
}

/// Waits at most `limit` for `Ready=True` and returns the object.
pub async fn wait_ready(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
    limit: std::time::Duration,
) -> DynamicObject {
    let api = api(client, ns, kind);
    super::cluster::eventually(
        &format!("{kind} {ns}/{name} to be Ready"),
        limit,
        || async {
            let object = api.get(name).await.ok()?;
            (ready(&object)?["status"] == "True").then_some(object)
        },
    )
    .await
}

/// Waits at most `limit` until the API server has both webhook
/// configurations the operator registers for `binding`.
pub async fn webhooks_registered(client: &Client, binding: &str, limit: std::time::Duration) {
    for (plural, kind) in [
        (
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
        ),
        (
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
        ),
    ] {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind),
            plural,
        );
        let configurations: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        super::cluster::eventually(&format!("{kind} {binding}"), limit, || async {
            configurations.get_opt(binding).await.ok()?.map(|_| ())
        })
        .await;
    }
}
