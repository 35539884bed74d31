//! Test-only builders: objects, existing children, canned query results and
//! admission requests.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use wasm_operator_sdk::{
    AdmissionRequest, Object, Operation, QueryResult, SqlPlan, SqlValue, TestHost,
    scram_sha_256_verifier,
};

use crate::queries;

/// The server every fixture uses.
pub const SERVER: &str = "infra/main";
/// The password in existing credentials Secrets.
pub const PASSWORD: &str = "existing-password-0123456789abcd";

/// A PostgresServer `infra/main` at `pg.infra.svc:5432` with `sslMode: disable`.
pub fn postgres_server() -> Value {
    json!({
        "apiVersion": "systems.mikemiller.tech/v1alpha1", "kind": "PostgresServer",
        "metadata": {"name": "main", "namespace": "infra", "generation": 1},
        "spec": {
            "host": "pg.infra.svc", "port": 5432, "sslMode": "disable",
            "adminCredentials": {"secretName": "main-admin"},
            "allowedNamespaces": ["apps"]
        },
        "status": {"reachable": true, "serverVersion": "15.8", "serverVersionNum": 150008}
    })
}

/// An object of `kind` in `infra` with `spec`, generation 1.
pub fn object(kind: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "systems.mikemiller.tech/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": "infra", "uid": "uid-1", "generation": 1},
        "spec": spec
    })
}

/// `object` with its status set as a previous reconcile left it (observed
/// generation = generation, `Ready=True`) plus `fields`.
pub fn reconciled(mut object: Value, fields: Value) -> Value {
    let mut status = json!({
        "observedGeneration": object["metadata"]["generation"],
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "Ready", "message": "ready",
            "lastTransitionTime": "2024-06-01T00:00:00Z", "observedGeneration": 1
        }]
    });
    if let (Some(status), Some(fields)) = (status.as_object_mut(), fields.as_object()) {
        status.extend(fields.clone());
    }
    object["status"] = status;
    object
}

/// An existing credentials Secret child holding [`PASSWORD`].
pub fn secret(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "infra"},
        "type": "kubernetes.io/basic-auth",
        "data": {"password": STANDARD.encode(PASSWORD), "username": STANDARD.encode("x")}
    })
}

/// The decoded value of `key` in a Secret child.
pub fn secret_value(secret: &Value, key: &str) -> String {
    let encoded = secret["data"][key].as_str().unwrap_or_default();
    String::from_utf8(STANDARD.decode(encoded).unwrap_or_default()).unwrap_or_default()
}

/// A one-row result.
pub fn row(columns: &[(&str, SqlValue)]) -> QueryResult {
    QueryResult::new(columns.iter().map(|(name, _)| *name))
        .row(columns.iter().map(|(_, value)| value.clone()).collect())
}

/// The stored verifier of a role whose password is `password`.
pub fn verifier_result(password: &str) -> QueryResult {
    row(&[(
        "rolpassword",
        SqlValue::Text(scram_sha_256_verifier(password)),
    )])
}

/// A host with the PostgresServer cached. (`TestHost` answers with the
/// first canned result of a statement, so tests that need another verifier
/// start here.)
pub fn server_host() -> TestHost {
    TestHost::new().with_object(postgres_server())
}

/// [`server_host`] whose roles' stored verifier matches [`PASSWORD`].
pub fn host() -> TestHost {
    server_host().with_query_result(queries::ROLE_VERIFIER, Ok(verifier_result(PASSWORD)))
}

/// Every statement of `plans`, in order.
pub fn statements(plans: &[SqlPlan]) -> Vec<String> {
    plans
        .iter()
        .flat_map(|plan| plan.statements.iter().map(|s| s.statement.clone()))
        .collect()
}

/// JSON text for a jsonb column.
pub fn jsonb(value: Value) -> SqlValue {
    SqlValue::Json(value.to_string())
}

/// An admission request by `alice`, not a dry run, with the empty settings
/// the Postgres plugins take.
pub fn admission(
    operation: Operation,
    object: Option<Value>,
    old: Option<Value>,
) -> AdmissionRequest {
    AdmissionRequest {
        operation,
        object: object.map(Object::new),
        old_object: old.map(Object::new),
        user: "alice".into(),
        dry_run: false,
        settings: json!({}),
    }
}

/// A create of `object`.
pub fn admit_create(object: Value) -> AdmissionRequest {
    admission(Operation::Create, Some(object), None)
}

/// An update from `old` to `new`.
pub fn admit_update(old: Value, new: Value) -> AdmissionRequest {
    admission(Operation::Update, Some(new), Some(old))
}
