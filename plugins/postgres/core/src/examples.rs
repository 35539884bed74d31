//! The example manifests in `plugins/postgres/examples` decode into the API
//! types, their bindings grant exactly what the plugins ask for, and the
//! example Database plans its creation, and the examples pass admission.

use postgres_api::{DatabaseSpec, DatabaseUserSpec, PostgresServerSpec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use wasm_operator_sdk::{
    AdmissionPlugin, Context, GroupVersionKind, Plugin, PluginInfo, QueryResult, Request, SqlValue,
    TestHost, Validation,
};

use crate::fixtures::{admit_create, jsonb, row};
use crate::{
    CredentialsInjectorPlugin, DatabasePlugin, DatabaseUserPlugin, PostgresServerPlugin, queries,
};

const FILES: &[(&str, &str)] = &[
    (
        "bindings.yaml",
        include_str!("../../examples/bindings.yaml"),
    ),
    ("server.yaml", include_str!("../../examples/server.yaml")),
    (
        "database.yaml",
        include_str!("../../examples/database.yaml"),
    ),
    (
        "database-user.yaml",
        include_str!("../../examples/database-user.yaml"),
    ),
    (
        "injected-deployment.yaml",
        include_str!("../../examples/injected-deployment.yaml"),
    ),
];

fn documents() -> Vec<Value> {
    FILES
        .iter()
        .flat_map(|(file, text)| {
            serde_saphyr::from_multiple::<Value>(text).unwrap_or_else(|e| panic!("{file}: {e}"))
        })
        .collect()
}

fn of_kind(kind: &str) -> Vec<Value> {
    documents()
        .into_iter()
        .filter(|d| d["kind"] == kind)
        .collect()
}

/// Decodes `spec` and checks every field given is one the type knows
/// (serde ignores unknown fields, which would hide a typo).
fn decodes<T: DeserializeOwned + Serialize>(document: &Value) {
    let name = &document["metadata"]["name"];
    let spec: T =
        serde_json::from_value(document["spec"].clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let back = serde_json::to_value(spec).unwrap();
    for key in document["spec"].as_object().unwrap().keys() {
        assert!(back.get(key).is_some(), "{name}: unknown field spec.{key}");
    }
}

#[test]
fn example_resources_decode_without_unknown_fields() {
    let servers = of_kind("PostgresServer");
    let databases = of_kind("Database");
    let users = of_kind("DatabaseUser");
    assert_eq!((servers.len(), databases.len(), users.len()), (1, 1, 1));
    decodes::<PostgresServerSpec>(&servers[0]);
    decodes::<DatabaseSpec>(&databases[0]);
    decodes::<DatabaseUserSpec>(&users[0]);
}

fn kinds(value: &Value) -> Vec<GroupVersionKind> {
    value
        .as_array()
        .map(|all| {
            all.iter()
                .map(|k| {
                    GroupVersionKind::new(
                        k["group"].as_str().unwrap_or_default(),
                        k["version"].as_str().unwrap_or_default(),
                        k["kind"].as_str().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn example_bindings_grant_exactly_what_each_plugin_asks_for() {
    let bindings = of_kind("ReconcilerPlugin");
    // Each plugin, and whether it talks to servers (the injector only
    // admits: it reads objects and never connects).
    let infos: [(PluginInfo, bool); 4] = [
        (PostgresServerPlugin::describe(), true),
        (DatabasePlugin::describe(), true),
        (DatabaseUserPlugin::describe(), true),
        (CredentialsInjectorPlugin::describe(), false),
    ];
    assert_eq!(bindings.len(), infos.len());
    for (info, uses_servers) in infos {
        let binding = bindings
            .iter()
            .find(|b| b["metadata"]["name"] == info.name.as_str())
            .unwrap_or_else(|| panic!("no binding named {}", info.name));
        let grants = &binding["spec"]["grants"];
        let mut read = kinds(&grants["read"]);
        let mut wanted = info.read_kinds.clone();
        read.sort();
        wanted.sort();
        assert_eq!(read, wanted, "{}: read grants", info.name);
        assert_eq!(
            kinds(&grants["children"]),
            info.child_kinds,
            "{}",
            info.name
        );
        assert_eq!(
            grants["servers"].as_array().is_some_and(|s| !s.is_empty()),
            uses_servers,
            "{}: servers granted",
            info.name
        );
        let source = &binding["spec"]["source"]["configMap"];
        assert_eq!(
            source["name"].as_str(),
            Some(format!("{}-plugin", info.name).as_str()),
            "the ConfigMap is named for the component's package"
        );
    }
}

#[test]
fn example_database_plans_its_creation_on_the_example_server() {
    let server = of_kind("PostgresServer").remove(0);
    let mut database = of_kind("Database").remove(0);
    database["metadata"]["uid"] = json!("uid-1");
    let observed = row(&[
        ("server_version_num", SqlValue::Int(160_004)),
        ("role_exists", SqlValue::Boolean(false)),
        ("role_can_login", SqlValue::Boolean(false)),
        ("database_exists", SqlValue::Boolean(false)),
        ("encoding", SqlValue::Null),
        ("locale", SqlValue::Null),
        ("owner", SqlValue::Null),
        ("connection_limit", SqlValue::Null),
        ("unavailable_extensions", jsonb(json!([]))),
    ]);
    let host = TestHost::new().with_object(server).with_query_result(
        queries::DATABASE_OBSERVE,
        Ok::<QueryResult, String>(observed),
    );
    let request = Request::new(database).with_server("db/main");
    let response = DatabasePlugin::reconcile(&Context::new(&host), &request).unwrap();
    let statements: Vec<&str> = response
        .sql
        .iter()
        .flat_map(|p| p.statements.iter().map(|s| s.statement.as_str()))
        .collect();
    let mark = "'wasm-operator: created for Database infra/foo-db (uid uid-1)'";
    assert_eq!(
        statements[1..],
        [
            format!("COMMENT ON ROLE \"foo\" IS {mark}").as_str(),
            "CREATE DATABASE \"foo-db\" OWNER \"foo\" CONNECTION LIMIT 50",
            format!("COMMENT ON DATABASE \"foo-db\" IS {mark}").as_str(),
            "CREATE SCHEMA IF NOT EXISTS \"reports\" AUTHORIZATION \"foo\"",
            "CREATE EXTENSION IF NOT EXISTS \"pgcrypto\"",
        ]
    );
    assert_eq!(
        response.children[0]["metadata"]["name"],
        "foo-db-credentials"
    );
}

#[test]
fn example_database_and_user_are_admitted_and_only_the_database_name_is_written_out() {
    let server = of_kind("PostgresServer").remove(0);
    let database = of_kind("Database").remove(0);
    let user = of_kind("DatabaseUser").remove(0);
    let host = TestHost::new()
        .with_object(server)
        .with_object(database.clone());
    let ctx = Context::new(&host);
    let admit = admit_create(database.clone());
    assert_eq!(
        DatabasePlugin::validate(&ctx, &admit).unwrap(),
        Validation::allow()
    );
    let defaulted = DatabasePlugin::mutate(&ctx, &admit)
        .unwrap()
        .object
        .unwrap();
    let mut expected = database;
    expected["spec"]["databaseName"] = json!("foo-db");
    assert_eq!(defaulted, expected);

    let admit = admit_create(user);
    assert_eq!(
        DatabaseUserPlugin::validate(&ctx, &admit).unwrap(),
        Validation::allow()
    );
    assert_eq!(
        DatabaseUserPlugin::mutate(&ctx, &admit).unwrap().object,
        None
    );
}

#[test]
fn the_example_deployments_pods_get_both_credentials_in_the_listed_container_only() {
    let deployment = of_kind("Deployment").remove(0);
    let template = &deployment["spec"]["template"];
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": template["metadata"].clone(),
        "spec": template["spec"].clone()
    });
    pod["metadata"]["namespace"] = deployment["metadata"]["namespace"].clone();
    let host = of_kind("Database")
        .into_iter()
        .chain(of_kind("DatabaseUser"))
        .fold(TestHost::new(), TestHost::with_object);
    let ctx = Context::new(&host);
    let admit = admit_create(pod);
    assert_eq!(
        CredentialsInjectorPlugin::validate(&ctx, &admit).unwrap(),
        Validation::allow()
    );
    let injected = CredentialsInjectorPlugin::mutate(&ctx, &admit)
        .unwrap()
        .object
        .unwrap();
    let [app, metrics] = [0, 1].map(|i| &injected["spec"]["containers"][i]);
    let names: Vec<&str> = app["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(names.contains(&"PGPASSWORD") && names.contains(&"REPORTING_PGPASSWORD"));
    assert!(metrics.get("env").is_none());
    assert_eq!(
        injected["metadata"]["annotations"][crate::INJECTED_ANNOTATION],
        "foo-db-credentials,reporting-user-credentials"
    );
}
