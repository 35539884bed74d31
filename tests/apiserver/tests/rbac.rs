//! RBAC enforcement (`Builder::enforce_rbac`): a ServiceAccount's requests are allowed by
//! the stored roles and bindings, or denied with kube-apiserver's own `Forbidden` Status.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use kube::core::Status;
use kube::discovery::Discovery;
use serde_json::{Value, json};
use test_apiserver::TestApiServer;

const SA: &str = "system:serviceaccount:default:operator";

async fn server() -> TestApiServer {
    TestApiServer::builder()
        .enforce_rbac(true)
        .start()
        .await
        .expect("server starts")
}

fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn parse<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("valid object")
}

async fn grant(server: &TestApiServer, role: Value, binding: Value) {
    let client = server.client();
    let namespaced = role["kind"] == "Role";
    let ns = role["metadata"]["namespace"].as_str().unwrap_or("default");
    let pp = PostParams::default();
    if namespaced {
        Api::<Role>::namespaced(client.clone(), ns)
            .create(&pp, &parse(role))
            .await
            .expect("role");
    } else {
        Api::<ClusterRole>::all(client.clone())
            .create(&pp, &parse(role))
            .await
            .expect("cluster role");
    }
    if binding["kind"] == "RoleBinding" {
        let ns = binding["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        Api::<RoleBinding>::namespaced(client, ns)
            .create(&pp, &parse(binding))
            .await
            .expect("role binding");
    } else {
        Api::<ClusterRoleBinding>::all(client)
            .create(&pp, &parse(binding))
            .await
            .expect("cluster role binding");
    }
}

fn config_map(name: &str) -> ConfigMap {
    parse(json!({ "metadata": { "name": name }, "data": { "k": "v" } }))
}

#[tokio::test]
async fn a_service_account_without_roles_gets_the_real_forbidden_status() {
    let server = server().await;
    let client = server
        .service_account_client("default", "operator")
        .await
        .expect("client");
    let status = api_error(
        Api::<ConfigMap>::namespaced(client.clone(), "default")
            .list(&ListParams::default())
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        status.message,
        format!(
            "configmaps is forbidden: User \"{SA}\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
        )
    );
    let status = api_error(Api::<Namespace>::all(client.clone()).get("default").await);
    assert_eq!(
        status.message,
        format!(
            "namespaces \"default\" is forbidden: User \"{SA}\" cannot get resource \"namespaces\" in API group \"\" in the namespace \"default\""
        )
    );
    let status = api_error(
        Api::<Namespace>::all(client)
            .list(&ListParams::default())
            .await,
    );
    assert_eq!(
        status.message,
        format!(
            "namespaces is forbidden: User \"{SA}\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope"
        )
    );
    // The admin client is never restricted.
    Api::<Namespace>::all(server.client())
        .list(&ListParams::default())
        .await
        .expect("admin lists namespaces");
}

#[tokio::test]
async fn a_role_binding_grants_its_verbs_in_its_namespace_only() {
    let server = server().await;
    grant(
        &server,
        json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": { "name": "cm-reader", "namespace": "default" },
                "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"] }] }),
        // A ServiceAccount subject without a namespace is the binding's namespace.
        json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": { "name": "cm-reader", "namespace": "default" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader" },
                "subjects": [{ "kind": "ServiceAccount", "name": "operator" }] }),
    )
    .await;
    Api::<ConfigMap>::namespaced(server.client(), "default")
        .create(&PostParams::default(), &config_map("seed"))
        .await
        .expect("admin creates");
    let client = server
        .service_account_client("default", "operator")
        .await
        .expect("client");
    let cms = Api::<ConfigMap>::namespaced(client.clone(), "default");
    assert_eq!(
        cms.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        1
    );
    cms.get("seed").await.expect("get");
    let status = api_error(cms.create(&PostParams::default(), &config_map("new")).await);
    assert_eq!(
        status.message,
        format!(
            "configmaps is forbidden: User \"{SA}\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\""
        )
    );
    let status = api_error(
        Api::<ConfigMap>::namespaced(client, "kube-system")
            .get("seed")
            .await,
    );
    assert_eq!(
        status.message,
        format!(
            "configmaps \"seed\" is forbidden: User \"{SA}\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"kube-system\""
        )
    );
}

#[tokio::test]
async fn cluster_roles_match_groups_resource_names_and_subresources() {
    let server = server().await;
    grant(
        &server,
        json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": { "name": "operator" },
                "rules": [
                    { "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update"], "resourceNames": ["lock"] },
                    { "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"] },
                    { "apiGroups": ["*"], "resources": ["*/status"], "verbs": ["patch"] },
                ] }),
        json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": { "name": "operator" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "operator" },
                "subjects": [{ "kind": "ServiceAccount", "name": "operator", "namespace": "default" }] }),
    )
    .await;
    let client = server
        .service_account_client("default", "operator")
        .await
        .expect("client");
    let leases = Api::<Lease>::namespaced(client.clone(), "default");
    for name in ["lock", "other"] {
        let lease: Lease = parse(json!({ "metadata": { "name": name } }));
        leases
            .create(&PostParams::default(), &lease)
            .await
            .expect("create is unrestricted");
    }
    leases.get("lock").await.expect("named lease");
    let status = api_error(leases.get("other").await);
    assert_eq!(
        status.message,
        format!(
            "leases.coordination.k8s.io \"other\" is forbidden: User \"{SA}\" cannot get resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"default\""
        )
    );
    // A list is not covered by `resourceNames`.
    api_error(leases.list(&ListParams::default()).await);

    // `*/status` matches any status subresource, never the main resource.
    let patch = kube::api::Patch::Merge(json!({ "metadata": { "labels": { "a": "b" } } }));
    let pp = kube::api::PatchParams::default();
    let status = api_error(
        Api::<Namespace>::all(client.clone())
            .patch("default", &pp, &patch)
            .await,
    );
    assert_eq!(
        status.message,
        format!(
            "namespaces \"default\" is forbidden: User \"{SA}\" cannot patch resource \"namespaces\" in API group \"\" in the namespace \"default\""
        )
    );
}

#[tokio::test]
async fn a_binding_to_a_missing_role_says_so_in_the_reason() {
    let server = server().await;
    Api::<RoleBinding>::namespaced(server.client(), "default")
        .create(
            &PostParams::default(),
            &parse(json!({ "metadata": { "name": "dangling" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "missing" },
                "subjects": [{ "kind": "Group", "name": "system:serviceaccounts" }] })),
        )
        .await
        .expect("binding");
    let client = server
        .service_account_client("default", "operator")
        .await
        .expect("client");
    let status = api_error(
        Api::<ConfigMap>::namespaced(client, "default")
            .get("x")
            .await,
    );
    assert_eq!(
        status.message,
        format!(
            "configmaps \"x\" is forbidden: User \"{SA}\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"default\": RBAC: role.rbac.authorization.k8s.io \"missing\" not found"
        )
    );
}

#[tokio::test]
async fn discovery_is_open_to_every_service_account_and_unknown_tokens_are_unauthorized() {
    let server = server().await;
    let client = server
        .service_account_client("default", "nobody")
        .await
        .expect("client");
    let discovery = Discovery::new(client)
        .run()
        .await
        .expect("discovery allowed");
    assert!(discovery.has_group("coordination.k8s.io"));

    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(
            &server
                .service_account_kubeconfig("default", "nobody")
                .replace("test-sa-token.default.nobody", "forged"),
        )
        .expect("kubeconfig"),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("config");
    let forged = kube::Client::try_from(config).expect("client");
    let status = api_error(forged.apiserver_version().await);
    assert_eq!((status.code, status.reason.as_str()), (401, "Unauthorized"));
}
