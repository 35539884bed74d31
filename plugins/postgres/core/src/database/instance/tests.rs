//! Native tests of a dedicated instance's decisions, with the SDK's
//! `TestHost`: each test plays the cluster between reconciles (the Pods the
//! plugin returned get an IP and a Ready condition, claims are bound,
//! Services get a cluster IP) and checks what a user would see.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use wasm_operator_sdk::{
    Context, EventType, Plugin, PluginError, QueryResult, Request, Response, SqlValue, TestHost,
};

use super::layout::{DATABASE_LABEL, ROLE_LABEL};
use crate::database::DatabasePlugin;
use crate::fixtures::{PASSWORD, jsonb, row, secret, secret_value, statements, verifier_result};
use crate::queries;

const NS: &str = "infra";
const RW_IP: &str = "10.96.0.10";

/// The seed, verbatim, as the API server stores it.
fn seed() -> Value {
    json!({
        "apiVersion": "systems.mikemiller.tech/v1alpha1", "kind": "Database",
        "metadata": {"name": "foo-db", "namespace": NS, "uid": "uid-1", "generation": 1},
        "spec": {"replication": true, "size": "120Gi", "version": 14,
                 "credentials": {"username": "foo"}}
    })
}

fn with_spec(mut object: Value, fields: Value) -> Value {
    let spec = object["spec"].as_object_mut().unwrap();
    for (key, value) in fields.as_object().unwrap() {
        spec.insert(key.clone(), value.clone());
    }
    object
}

fn pod_ip(name: &str) -> String {
    format!("127.0.1.{}", name.rsplit('-').next().unwrap())
}

/// How the test cluster treats the Pods the plugin returned.
#[derive(Clone, Copy, PartialEq)]
enum Pods {
    /// Scheduled, with an IP, not Ready yet.
    Starting,
    /// Ready.
    Ready,
}

/// The children a cluster would hold after applying `response`: Pods with
/// an IP (Ready or not), bound claims with the requested capacity,
/// Services with a cluster IP.
fn applied(response: &Response, pods: Pods) -> Vec<Value> {
    response
        .children
        .iter()
        .map(|child| {
            let mut child = child.clone();
            let name = child["metadata"]["name"].as_str().unwrap().to_owned();
            match child["kind"].as_str().unwrap() {
                "Pod" => {
                    child["status"] = json!({
                        "phase": "Running", "podIP": pod_ip(&name),
                        "conditions": [{"type": "Ready",
                            "status": if pods == Pods::Ready { "True" } else { "False" }}]
                    });
                }
                "PersistentVolumeClaim" => {
                    let request = child["spec"]["resources"]["requests"]["storage"].clone();
                    child["spec"]["storageClassName"] = json!("standard");
                    child["status"] = json!({"phase": "Bound", "capacity": {"storage": request}});
                }
                "Service" => {
                    let ip = if name == "foo-db-rw" {
                        RW_IP
                    } else {
                        "10.96.0.11"
                    };
                    child["spec"]["clusterIP"] = json!(ip);
                }
                _ => {}
            }
            child
        })
        .collect()
}

/// The object with the status `response` wrote.
fn after(mut object: Value, response: &Response) -> Value {
    object["status"] = response.status.clone().unwrap();
    object
}

fn request(object: Value, children: Vec<Value>) -> Request {
    let mut request = Request::new(object)
        .with_server("infra/foo-db-1")
        .with_server("infra/foo-db-2");
    for child in children {
        request = request.with_child(child);
    }
    request
}

fn reconcile(host: &TestHost, request: &Request) -> Result<Response, PluginError> {
    DatabasePlugin::reconcile(&Context::new(host), request)
}

fn child<'a>(response: &'a Response, kind: &str, name: &str) -> Option<&'a Value> {
    response
        .children
        .iter()
        .find(|c| c["kind"] == kind && c["metadata"]["name"] == name)
}

fn names(response: &Response) -> Vec<String> {
    response
        .children
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["kind"].as_str().unwrap(),
                c["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

fn condition<'a>(response: &'a Response, type_: &str) -> Option<&'a Value> {
    response.status.as_ref().unwrap()["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
}

fn reasons(response: &Response) -> Vec<&str> {
    response.events.iter().map(|e| e.reason.as_str()).collect()
}

/// What the primary reports.
fn primary_result(version: &str, in_recovery: bool, role: bool, slots: Value) -> QueryResult {
    let (major, minor) = version.split_once('.').unwrap();
    let num = major.parse::<i64>().unwrap() * 10_000 + minor.parse::<i64>().unwrap();
    row(&[
        ("server_version", SqlValue::Text(version.into())),
        ("server_version_num", SqlValue::Int(num)),
        ("in_recovery", SqlValue::Boolean(in_recovery)),
        ("replication_role", SqlValue::Boolean(role)),
        ("slots", jsonb(slots)),
    ])
}

/// The database observe query's answer: nothing yet, or all in place and
/// marked for `infra/foo-db`.
fn database_result(num: i64, converged: bool) -> QueryResult {
    let mark = |exists: bool| {
        if exists {
            SqlValue::Text("wasm-operator: created for Database infra/foo-db (uid uid-1)".into())
        } else {
            SqlValue::Null
        }
    };
    let text = |value: &str| {
        if converged {
            SqlValue::Text(value.into())
        } else {
            SqlValue::Null
        }
    };
    row(&[
        ("server_version_num", SqlValue::Int(num)),
        ("role_exists", SqlValue::Boolean(converged)),
        ("role_can_login", SqlValue::Boolean(converged)),
        ("role_mark", mark(converged)),
        ("role_superuser", SqlValue::Boolean(false)),
        ("role_createrole", SqlValue::Boolean(false)),
        ("role_replication", SqlValue::Boolean(false)),
        ("role_bypassrls", SqlValue::Boolean(false)),
        ("database_exists", SqlValue::Boolean(converged)),
        ("database_mark", mark(converged)),
        ("encoding", text("UTF8")),
        ("locale", text("C")),
        ("owner", text("foo")),
        (
            "connection_limit",
            if converged {
                SqlValue::Int(-1)
            } else {
                SqlValue::Null
            },
        ),
        ("unavailable_extensions", jsonb(json!([]))),
    ])
}

fn streaming_slot(n: u32, lag: i64) -> Value {
    json!({"slot": format!("instance_{n}"), "active": true, "state": "streaming", "lag": lag})
}

/// A host whose primary answers as given and whose database is fresh or converged.
fn answering(primary: QueryResult, converged: bool) -> TestHost {
    TestHost::new()
        .with_query_result(queries::INSTANCE_PRIMARY, Ok(primary))
        .with_query_result(
            queries::DATABASE_OBSERVE,
            Ok(database_result(140_023, converged)),
        )
        .with_query_result(queries::ROLE_VERIFIER, Ok(verifier_result(PASSWORD)))
}

/// The seed reconciled until its primary runs: the first response applied
/// with Ready Pods, then the second (which gives the PostgresServer).
fn primary_running(object: Value) -> (Value, Vec<Value>) {
    let host = TestHost::new();
    let first = reconcile(&host, &request(object.clone(), Vec::new())).unwrap();
    let object = after(object, &first);
    let children = applied(&first, Pods::Ready);
    let second = reconcile(&host, &request(object.clone(), children)).unwrap();
    (after(object, &second), applied(&second, Pods::Ready))
}

#[test]
fn the_seed_first_gets_its_secrets_config_services_volumes_budget_and_primary_pod() {
    let host = TestHost::new();
    let response = reconcile(&host, &request(seed(), Vec::new())).unwrap();
    assert_eq!(
        names(&response),
        [
            "Secret foo-db-superuser",
            "Secret foo-db-replication",
            "ConfigMap foo-db-config",
            "Service foo-db-rw",
            "Service foo-db-ro",
            "Service foo-db-r",
            "PodDisruptionBudget foo-db",
            "PersistentVolumeClaim foo-db-1",
            "Pod foo-db-1",
            "PersistentVolumeClaim foo-db-2",
        ],
        "the replica's Pod waits for the primary"
    );
    assert!(response.sql.is_empty() && host.queries().is_empty());
    for n in [1, 2] {
        let claim = child(&response, "PersistentVolumeClaim", &format!("foo-db-{n}")).unwrap();
        assert_eq!(
            claim["spec"],
            json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "120Gi"}}})
        );
    }
    let selector =
        |name: &str| child(&response, "Service", name).unwrap()["spec"]["selector"].clone();
    assert_eq!(
        selector("foo-db-rw"),
        json!({DATABASE_LABEL: "foo-db", ROLE_LABEL: "primary"})
    );
    assert_eq!(
        selector("foo-db-ro"),
        json!({DATABASE_LABEL: "foo-db", ROLE_LABEL: "replica"})
    );
    assert_eq!(selector("foo-db-r"), json!({DATABASE_LABEL: "foo-db"}));
    let budget = &child(&response, "PodDisruptionBudget", "foo-db").unwrap()["spec"];
    assert_eq!(budget["minAvailable"], 1);
    assert_eq!(
        budget["selector"]["matchLabels"],
        json!({DATABASE_LABEL: "foo-db"})
    );
    assert_eq!(budget["unhealthyPodEvictionPolicy"], "AlwaysAllow");
    let config = &child(&response, "ConfigMap", "foo-db-config").unwrap()["data"];
    assert!(
        config["postgresql.conf"]
            .as_str()
            .unwrap()
            .contains("max_slot_wal_keep_size = '12288MB'")
    );
    assert!(
        config["pg_hba.conf"]
            .as_str()
            .unwrap()
            .contains("host replication streaming_replica all scram-sha-256")
    );
    let superuser = child(&response, "Secret", "foo-db-superuser").unwrap();
    assert_eq!(superuser["type"], "kubernetes.io/basic-auth");
    assert_eq!(secret_value(superuser, "username"), "postgres");
    assert_eq!(
        secret_value(superuser, "password").len(),
        crate::PASSWORD_LENGTH
    );
    let replication = child(&response, "Secret", "foo-db-replication").unwrap();
    assert_eq!(secret_value(replication, "username"), "streaming_replica");
    assert_ne!(
        secret_value(replication, "password"),
        secret_value(superuser, "password")
    );

    let status = response.status.as_ref().unwrap();
    assert_eq!(status["instances"], 2);
    assert_eq!(status["readyInstances"], 0);
    assert_eq!(status["currentPrimary"], "foo-db-1");
    assert_eq!(status["storage"]["requested"], "120Gi");
    assert!(
        status.get("failover").is_none(),
        "an instance being created is not failing"
    );
    let ready = condition(&response, "Ready").unwrap();
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("Provisioning"))
    );
    assert_eq!(
        condition(&response, "Replicating").unwrap()["status"],
        "False"
    );
    assert!(response.requeue_after.unwrap() <= Duration::from_secs(2));
}

#[test]
fn the_instance_pod_is_complete_for_a_real_cluster() {
    let response = reconcile(&TestHost::new(), &request(seed(), Vec::new())).unwrap();
    let pod = child(&response, "Pod", "foo-db-1").unwrap();
    assert_eq!(pod["metadata"]["labels"][ROLE_LABEL], "primary");
    let spec = &pod["spec"];
    assert_eq!(
        spec["securityContext"],
        json!({"runAsUser": 999, "runAsGroup": 999, "runAsNonRoot": true, "fsGroup": 999})
    );
    assert_eq!(
        spec["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "foo-db-1"
    );
    let init = &spec["initContainers"][0];
    assert_eq!(init["image"], "postgres:14");
    assert_eq!(
        init["command"],
        json!(["sh", "/etc/postgresql-instance/config/bootstrap.sh"])
    );
    let env = |container: &Value, name: &str| {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        env(init, "ROLE")["valueFrom"]["fieldRef"]["fieldPath"],
        format!("metadata.labels['{ROLE_LABEL}']")
    );
    assert_eq!(env(init, "SLOT")["value"], "instance_1");
    assert_eq!(
        env(init, "PGPASSWORD")["valueFrom"]["secretKeyRef"],
        json!({"name": "foo-db-replication", "key": "password"})
    );
    let postgres = &spec["containers"][0];
    assert_eq!(postgres["image"], "postgres:14");
    assert_eq!(postgres["command"], json!(["postgres"]));
    let args: Vec<&str> = postgres["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"listen_addresses=$(POD_IP)"), "{args:?}");
    assert!(args.contains(&"config_file=/etc/postgresql-instance/config/postgresql.conf"));
    assert_eq!(
        env(postgres, "PGDATA")["value"],
        "/var/lib/postgresql/data/pgdata"
    );
    assert_eq!(
        env(postgres, "POD_IP")["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    assert_eq!(
        postgres["volumeMounts"][0]["mountPath"],
        "/var/lib/postgresql/data"
    );
    let probe = postgres["readinessProbe"]["exec"]["command"][2]
        .as_str()
        .unwrap();
    assert!(probe.contains("pg_isready"), "{probe}");
    assert!(
        postgres.get("resources").is_none(),
        "no resources unless the settings give them"
    );
}

#[test]
fn once_the_primary_answers_the_replication_role_slot_database_and_owner_are_planned_and_the_replica_created()
 {
    let (object, children) = primary_running(seed());
    assert!(
        children.iter().any(|c| c["kind"] == "PostgresServer"),
        "a Pod with an IP gets its server"
    );
    let host = answering(primary_result("14.23", false, false, json!([])), false);
    let response = reconcile(&host, &request(object, children)).unwrap();

    let server = child(&response, "PostgresServer", "foo-db-1").unwrap();
    assert_eq!(
        server["spec"],
        json!({"host": "127.0.1.1", "port": 5432, "sslMode": "disable",
               "adminCredentials": {"secretName": "foo-db-superuser"}})
    );
    assert_eq!(response.sql[0].server, "infra/foo-db-1");
    let all = statements(&response.sql);
    assert!(
        all[0].starts_with("CREATE ROLE \"streaming_replica\" LOGIN PASSWORD 'SCRAM-SHA-256$4096:")
    );
    assert!(all[0].ends_with("' REPLICATION"), "{}", all[0]);
    assert!(response.sql[0].statements[0].sensitive);
    assert_eq!(
        all[1],
        "select pg_create_physical_replication_slot($1, true)"
    );
    assert_eq!(
        response.sql[0].statements[1].params,
        [SqlValue::from("instance_2")]
    );
    assert!(all[2].starts_with("CREATE ROLE \"foo\" LOGIN PASSWORD 'SCRAM-SHA-256$4096:"));
    assert!(
        all.contains(&"CREATE DATABASE \"foo-db\" OWNER \"foo\"".to_owned()),
        "{all:#?}"
    );
    assert!(
        response
            .sql
            .iter()
            .all(|plan| plan.server == "infra/foo-db-1")
    );

    let replica =
        child(&response, "Pod", "foo-db-2").expect("the replica is created with the slot");
    assert_eq!(replica["metadata"]["labels"][ROLE_LABEL], "replica");
    let credentials = child(&response, "Secret", "foo-db-credentials").unwrap();
    assert_eq!(
        secret_value(credentials, "host"),
        RW_IP,
        "through the -rw Service"
    );
    assert_eq!(secret_value(credentials, "dbname"), "foo-db");
    assert_eq!(secret_value(credentials, "username"), "foo");
    assert!(secret_value(credentials, "uri").starts_with("postgresql://foo:"));
    assert!(
        secret_value(credentials, "uri")
            .ends_with(&format!("@{RW_IP}:5432/foo-db?sslmode=disable"))
    );
    let status = response.status.as_ref().unwrap();
    assert_eq!(status["server"], "infra/foo-db-1");
    assert_eq!(status["serverVersion"], "14.23");
    assert_eq!(status["dataVersion"], 14);
    assert_eq!(status["binding"]["name"], "foo-db-credentials");
    assert_eq!(
        condition(&response, "Ready").unwrap()["reason"],
        "CreatingReplica"
    );
    assert!(reasons(&response).contains(&"Created"));
}

#[test]
fn no_password_is_in_the_status_events_or_logs() {
    let (object, children) = primary_running(seed());
    let host = answering(primary_result("14.23", false, false, json!([])), false);
    let response = reconcile(&host, &request(object, children)).unwrap();
    let passwords: Vec<String> = [
        "foo-db-superuser",
        "foo-db-replication",
        "foo-db-credentials",
    ]
    .iter()
    .map(|name| secret_value(child(&response, "Secret", name).unwrap(), "password"))
    .collect();
    let status = response.status.as_ref().unwrap().to_string();
    let events: Vec<String> = response.events.iter().map(|e| e.note.clone()).collect();
    let logs = format!("{:?}", host.logs());
    let sql: Vec<String> = statements(&response.sql);
    for password in &passwords {
        assert_eq!(password.len(), crate::PASSWORD_LENGTH);
        assert!(!status.contains(password.as_str()));
        assert!(events.iter().all(|e| !e.contains(password.as_str())));
        assert!(!logs.contains(password.as_str()));
        assert!(
            sql.iter().all(|s| !s.contains(password.as_str())),
            "only verifiers reach PostgreSQL"
        );
    }
}

#[test]
fn every_later_reconcile_keeps_the_passwords_it_generated() {
    let host = TestHost::new();
    let first = reconcile(&host, &request(seed(), Vec::new())).unwrap();
    let second = reconcile(
        &host,
        &request(after(seed(), &first), applied(&first, Pods::Starting)),
    )
    .unwrap();
    for name in ["foo-db-superuser", "foo-db-replication"] {
        assert_eq!(
            secret_value(child(&first, "Secret", name).unwrap(), "password"),
            secret_value(child(&second, "Secret", name).unwrap(), "password"),
            "{name}"
        );
    }
    assert!(child(&second, "PostgresServer", "foo-db-1").is_some());
    assert!(
        second.events.is_empty(),
        "nothing new: {:?}",
        reasons(&second)
    );
}

#[test]
fn a_converged_seed_is_ready_with_two_streaming_instances_and_reports_lag_storage_and_version() {
    let (object, mut children) = primary_running(seed());
    let host = answering(primary_result("14.23", false, false, json!([])), false);
    let third = reconcile(&host, &request(object.clone(), children.clone())).unwrap();
    let object = after(object, &third);
    children = applied(&third, Pods::Ready);
    // The credentials Secret as the host stored it, with its password.
    children.retain(|c| c["metadata"]["name"] != "foo-db-credentials");
    children.push(secret("foo-db-credentials"));
    let host = answering(
        primary_result("14.23", false, true, json!([streaming_slot(2, 4096)])),
        true,
    );
    let response = reconcile(&host, &request(object, applied_again(&third, children))).unwrap();

    assert!(
        response.sql.is_empty(),
        "converged: {:?}",
        statements(&response.sql)
    );
    let ready = condition(&response, "Ready").unwrap();
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("True"), &json!("Ready")),
        "{ready}"
    );
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("with 1 streaming replica")
    );
    let replicating = condition(&response, "Replicating").unwrap();
    assert_eq!(
        (&replicating["status"], &replicating["reason"]),
        (&json!("True"), &json!("Streaming"))
    );
    let status = response.status.as_ref().unwrap();
    assert_eq!(status["instances"], 2);
    assert_eq!(status["readyInstances"], 2);
    assert_eq!(status["currentPrimary"], "foo-db-1");
    assert_eq!(
        status["replicas"],
        json!([{"name": "foo-db-2", "state": "streaming", "lagBytes": 4096}])
    );
    assert_eq!(
        status["storage"],
        json!({"requested": "120Gi", "volumes": [
            {"name": "foo-db-1", "capacity": "120Gi"}, {"name": "foo-db-2", "capacity": "120Gi"}]})
    );
    assert_eq!(status["serverVersion"], "14.23");
    assert!(response.requeue_after.unwrap() >= Duration::from_secs(10));
    assert!(child(&response, "PostgresServer", "foo-db-2").is_some());
}

/// `children` with the Pods of `response` that were not there yet added
/// (the replica), Ready.
fn applied_again(response: &Response, mut children: Vec<Value>) -> Vec<Value> {
    for pod in applied(response, Pods::Ready) {
        let present = children
            .iter()
            .any(|c| c["kind"] == pod["kind"] && c["metadata"]["name"] == pod["metadata"]["name"]);
        if !present {
            children.push(pod);
        }
    }
    children
}

#[test]
fn without_replication_there_is_one_instance_and_no_replica_pod_or_budget() {
    let single = with_spec(seed(), json!({"replication": false}));
    let (object, children) = primary_running(single);
    let host = answering(primary_result("14.23", false, false, json!([])), false);
    let response = reconcile(&host, &request(object, children)).unwrap();
    let kinds = names(&response);
    assert!(!kinds.iter().any(|k| k.ends_with("foo-db-2")), "{kinds:?}");
    assert!(
        !kinds.iter().any(|k| k.starts_with("PodDisruptionBudget")),
        "{kinds:?}"
    );
    assert!(
        !statements(&response.sql)
            .iter()
            .any(|s| s.contains("streaming_replica") || s.contains("slot")),
        "no replication role or slot"
    );
    let status = response.status.as_ref().unwrap();
    assert_eq!(status["instances"], 1);
    assert!(condition(&response, "Replicating").is_none());
    assert_eq!(condition(&response, "Ready").unwrap()["status"], "True");
}

#[test]
fn a_larger_size_grows_the_volumes_and_a_smaller_one_is_refused_naming_spec_size() {
    let (object, children) = primary_running(seed());
    let grown = with_spec(object.clone(), json!({"size": "200Gi"}));
    let response = reconcile(&TestHost::new(), &request(grown, children.clone())).unwrap();
    for n in [1, 2] {
        let claim = child(&response, "PersistentVolumeClaim", &format!("foo-db-{n}")).unwrap();
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "200Gi");
        assert_eq!(
            claim["spec"]["storageClassName"], "standard",
            "an existing claim keeps its class"
        );
    }
    assert!(
        response.status.as_ref().unwrap()["storage"]["volumes"][0]["capacity"] == "120Gi",
        "the capacity shows what the volume reports, not the request"
    );
    let shrunk = with_spec(object, json!({"size": "100Gi"}));
    let host = TestHost::new();
    let error = reconcile(&host, &request(shrunk, children)).unwrap_err();
    assert_eq!(error.reason, "InvalidSpec");
    assert!(
        error
            .message
            .starts_with("spec.size: \"100Gi\" is smaller than \"120Gi\""),
        "{}",
        error.message
    );
    assert!(host.queries().is_empty());
}

#[test]
fn unmapped_and_hostile_versions_and_sizes_are_invalid_spec_naming_the_field_and_nothing_is_created()
 {
    for (fields, start) in [
        (
            json!({"version": 17}),
            "spec.version: no image for PostgreSQL 17",
        ),
        (
            json!({"version": 99}),
            "spec.version: 99 is not a supported",
        ),
        (json!({"size": "-1Gi"}), "spec.size:"),
        (json!({"size": "1e3"}), "spec.size:"),
    ] {
        let host = TestHost::new();
        let error = reconcile(
            &host,
            &request(with_spec(seed(), fields.clone()), Vec::new()),
        )
        .unwrap_err();
        assert_eq!(error.reason, "InvalidSpec", "{fields}");
        assert!(
            error.message.starts_with(start),
            "{fields}: {}",
            error.message
        );
        assert!(host.queries().is_empty());
    }
    let error = reconcile(
        &TestHost::new(),
        &request(with_spec(seed(), json!({"version": 17})), Vec::new()),
    )
    .unwrap_err();
    assert!(
        error.message.ends_with("available versions: 14, 15, 16"),
        "{}",
        error.message
    );
}

#[test]
fn versions_15_and_16_run_their_own_images_and_17_runs_when_the_settings_map_it() {
    for version in [15, 16] {
        let object = with_spec(seed(), json!({"version": version}));
        let response = reconcile(&TestHost::new(), &request(object, Vec::new())).unwrap();
        let pod = child(&response, "Pod", "foo-db-1").unwrap();
        assert_eq!(
            pod["spec"]["containers"][0]["image"],
            format!("postgres:{version}")
        );
    }
    let request = request(with_spec(seed(), json!({"version": 17})), Vec::new())
        .with_settings(json!({"images": {"17": "postgres:17.6"}}));
    let response = reconcile(&TestHost::new(), &request).unwrap();
    assert_eq!(
        child(&response, "Pod", "foo-db-1").unwrap()["spec"]["containers"][0]["image"],
        "postgres:17.6"
    );
}

#[test]
fn a_changed_major_version_is_refused_since_in_place_upgrades_are_not_supported() {
    let (object, children) = primary_running(seed());
    let host = answering(primary_result("14.23", false, false, json!([])), false);
    let third = reconcile(&host, &request(object.clone(), children.clone())).unwrap();
    let upgraded = with_spec(after(object, &third), json!({"version": 15}));
    let error = reconcile(&TestHost::new(), &request(upgraded, children.clone())).unwrap_err();
    assert_eq!(error.reason, "InvalidSpec");
    assert!(
        error.message.starts_with("spec.version: 15 is not 14"),
        "{}",
        error.message
    );
    assert!(
        error
            .message
            .contains("in-place major upgrades are not supported yet")
    );

    // Without a status (lost), the running server's major still decides.
    let (fresh, children) = primary_running(with_spec(seed(), json!({"version": 15})));
    let error = reconcile(&host, &request(fresh, children)).unwrap_err();
    assert!(
        error.message.starts_with("spec.version: 15 is not 14"),
        "{}",
        error.message
    );
}

#[test]
fn settings_resources_parameters_and_storage_class_reach_pods_config_and_new_volumes() {
    let settings = json!({
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "parameters": {"shared_buffers": "256MB"},
        "storageClassName": "fast"
    });
    let request = request(seed(), Vec::new()).with_settings(settings.clone());
    let response = reconcile(&TestHost::new(), &request).unwrap();
    let pod = child(&response, "Pod", "foo-db-1").unwrap();
    assert_eq!(
        pod["spec"]["containers"][0]["resources"],
        settings["resources"]
    );
    assert_eq!(
        pod["spec"]["initContainers"][0]["resources"],
        settings["resources"]
    );
    assert_eq!(
        child(&response, "PersistentVolumeClaim", "foo-db-1").unwrap()["spec"]["storageClassName"],
        "fast"
    );
    let conf = &child(&response, "ConfigMap", "foo-db-config").unwrap()["data"]["postgresql.conf"];
    assert!(conf.as_str().unwrap().contains("shared_buffers = '256MB'"));

    let bad = Request::new(seed()).with_settings(json!({"parameters": {"listen_addresses": "*"}}));
    assert_eq!(
        reconcile(&TestHost::new(), &bad).unwrap_err().reason,
        "InvalidSettings"
    );
    let unknown = Request::new(seed()).with_settings(json!({"image": "postgres:14"}));
    assert_eq!(
        reconcile(&TestHost::new(), &unknown).unwrap_err().reason,
        "InvalidSettings"
    );
}

#[test]
fn retain_marks_volumes_and_secrets_to_outlive_the_database_and_delete_does_not() {
    let retained = reconcile(&TestHost::new(), &request(seed(), Vec::new())).unwrap();
    let annotation = |response: &Response, kind: &str, name: &str| {
        child(response, kind, name).unwrap()["metadata"]["annotations"]
            [wasm_operator_sdk::RETAIN_ANNOTATION]
            .clone()
    };
    for (kind, name) in [
        ("PersistentVolumeClaim", "foo-db-1"),
        ("PersistentVolumeClaim", "foo-db-2"),
        ("Secret", "foo-db-superuser"),
    ] {
        assert_eq!(annotation(&retained, kind, name), "true", "{kind} {name}");
    }
    assert_eq!(annotation(&retained, "Pod", "foo-db-1"), Value::Null);
    let deleted = reconcile(
        &TestHost::new(),
        &request(
            with_spec(seed(), json!({"reclaimPolicy": "Delete"})),
            Vec::new(),
        ),
    )
    .unwrap();
    assert_eq!(
        annotation(&deleted, "PersistentVolumeClaim", "foo-db-1"),
        Value::Null
    );

    let (object, children) = primary_running(seed());
    let finalized =
        DatabasePlugin::finalize(&Context::new(&TestHost::new()), &request(object, children))
            .unwrap();
    assert!(finalized.done && finalized.sql.is_empty());
    assert_eq!(finalized.events[0].reason, "Retained");
    assert!(
        finalized.events[0]
            .note
            .contains("keeping volumes foo-db-1, foo-db-2"),
        "{}",
        finalized.events[0].note
    );
}

/// The seed converged with its replica streaming, at `now`: the object
/// with its status and the children as the cluster holds them.
fn converged(host_now: SystemTime) -> (Value, Vec<Value>) {
    let (object, children) = primary_running(seed());
    let host =
        answering(primary_result("14.23", false, false, json!([])), false).with_now(host_now);
    let third = reconcile(&host, &request(object.clone(), children.clone())).unwrap();
    let object = after(object, &third);
    let mut children = applied_again(&third, applied(&third, Pods::Ready));
    children.retain(|c| c["metadata"]["name"] != "foo-db-credentials");
    children.push(secret("foo-db-credentials"));
    let host = answering(
        primary_result("14.23", false, true, json!([streaming_slot(2, 0)])),
        true,
    )
    .with_now(host_now);
    let fourth = reconcile(&host, &request(object.clone(), children.clone())).unwrap();
    assert_eq!(condition(&fourth, "Ready").unwrap()["status"], "True");
    let mut children = applied_again(&fourth, children);
    children.retain(|c| {
        c["kind"] != "PostgresServer"
            || child(
                &fourth,
                "PostgresServer",
                c["metadata"]["name"].as_str().unwrap(),
            )
            .is_some()
    });
    (after(object, &fourth), children)
}

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600 + seconds)
}

fn without(children: &[Value], kind: &str, name: &str) -> Vec<Value> {
    children
        .iter()
        .filter(|c| !(c["kind"] == kind && c["metadata"]["name"] == name))
        .cloned()
        .collect()
}

fn replica_result(in_recovery: bool, received: i64) -> QueryResult {
    row(&[
        ("in_recovery", SqlValue::Boolean(in_recovery)),
        ("received", SqlValue::Int(received)),
    ])
}

#[test]
fn a_primary_gone_for_the_failover_delay_is_replaced_by_its_replica_which_the_old_one_then_follows()
{
    let (object, children) = converged(at(0));
    let gone = without(&children, "Pod", "foo-db-1");

    // Gone at 0 s: the time is recorded, the Pod is not created again (a
    // replica can take over), nothing is promoted yet.
    let host = TestHost::new().with_now(at(1));
    let waiting = reconcile(&host, &request(object.clone(), gone.clone())).unwrap();
    assert!(waiting.sql.is_empty());
    assert!(child(&waiting, "Pod", "foo-db-1").is_none());
    assert_eq!(
        waiting.status.as_ref().unwrap()["failover"]["primary"],
        "foo-db-1"
    );
    assert_eq!(
        condition(&waiting, "Ready").unwrap()["reason"],
        "FailingOver"
    );
    assert!(waiting.requeue_after.unwrap() <= Duration::from_secs(2));
    let object = after(object, &waiting);

    // Still gone after the delay (10 s): the replica is promoted and takes
    // the primary's label, so foo-db-rw follows it.
    let host = TestHost::new()
        .with_now(at(12))
        .with_query_result(queries::INSTANCE_REPLICA, Ok(replica_result(true, 1 << 20)));
    let promoting = reconcile(&host, &request(object.clone(), gone.clone())).unwrap();
    assert_eq!(promoting.sql.len(), 1);
    assert_eq!(
        promoting.sql[0].server, "infra/foo-db-2",
        "aimed at the replica"
    );
    assert_eq!(statements(&promoting.sql), ["SELECT pg_promote(true, 30)"]);
    assert!(promoting.sql[0].statements[0].non_transactional);
    let started = &promoting.events[0];
    assert_eq!(
        (started.reason.as_str(), started.event_type),
        ("FailoverStarted", EventType::Warning)
    );
    assert_eq!(
        child(&promoting, "Pod", "foo-db-2").unwrap()["metadata"]["labels"][ROLE_LABEL],
        "primary"
    );
    assert!(child(&promoting, "Pod", "foo-db-1").is_none());
    assert!(
        child(&promoting, "PersistentVolumeClaim", "foo-db-1").is_some(),
        "its data is kept"
    );
    let status = promoting.status.as_ref().unwrap();
    assert_eq!(status["currentPrimary"], "foo-db-2");
    assert_eq!(status["failover"]["promoting"], "foo-db-2");
    let object = after(object, &promoting);

    // Promoted: the failover completes, the old primary gets a slot on the
    // new one and comes back as its replica (it clones it when it starts).
    let host = answering(primary_result("14.23", false, true, json!([])), true);
    let mut relabelled = gone.clone();
    for c in &mut relabelled {
        if c["kind"] == "Pod" && c["metadata"]["name"] == "foo-db-2" {
            c["metadata"]["labels"][ROLE_LABEL] = json!("primary");
        }
    }
    let completed = reconcile(&host, &request(object.clone(), relabelled)).unwrap();
    assert!(
        reasons(&completed).contains(&"FailoverCompleted"),
        "{:?}",
        reasons(&completed)
    );
    assert_eq!(completed.sql[0].server, "infra/foo-db-2");
    assert_eq!(
        completed.sql[0].statements[0].params,
        [SqlValue::from("instance_1")]
    );
    let old = child(&completed, "Pod", "foo-db-1").expect("the old primary comes back");
    assert_eq!(old["metadata"]["labels"][ROLE_LABEL], "replica");
    let status = completed.status.as_ref().unwrap();
    assert!(status.get("failover").is_none());
    assert_eq!(status["server"], "infra/foo-db-2");
    let credentials = child(&completed, "Secret", "foo-db-credentials").unwrap();
    assert_eq!(
        secret_value(credentials, "host"),
        RW_IP,
        "clients keep the -rw address"
    );
}

#[test]
fn a_primary_back_within_the_delay_is_not_failed_over_and_without_a_streaming_replica_none_is() {
    let (object, children) = converged(at(0));
    let not_ready: Vec<Value> = children
        .iter()
        .cloned()
        .map(|mut c| {
            if c["kind"] == "Pod" && c["metadata"]["name"] == "foo-db-1" {
                c["status"]["conditions"][0]["status"] = json!("False");
            }
            c
        })
        .collect();
    let waiting = reconcile(
        &TestHost::new().with_now(at(1)),
        &request(object.clone(), not_ready.clone()),
    )
    .unwrap();
    assert!(
        child(&waiting, "Pod", "foo-db-1").is_some(),
        "a Pod that is there is kept while it may recover"
    );
    let host = answering(
        primary_result("14.23", false, true, json!([streaming_slot(2, 0)])),
        true,
    )
    .with_now(at(5));
    let back = reconcile(
        &host,
        &request(after(object.clone(), &waiting), children.clone()),
    )
    .unwrap();
    assert!(back.status.as_ref().unwrap().get("failover").is_none());
    assert_eq!(condition(&back, "Ready").unwrap()["status"], "True");

    // The replica was not streaming when last seen: no promotion, the
    // primary's Pod is created again.
    let mut lagging = after(object, &waiting);
    lagging["status"]["replicas"][0]["state"] = json!("catchup");
    let gone = without(&not_ready, "Pod", "foo-db-1");
    let host = TestHost::new()
        .with_now(at(30))
        .with_query_result(queries::INSTANCE_REPLICA, Ok(replica_result(true, 1)));
    let stuck = reconcile(&host, &request(lagging, gone)).unwrap();
    assert!(stuck.sql.is_empty());
    assert_eq!(
        child(&stuck, "Pod", "foo-db-1").unwrap()["metadata"]["labels"][ROLE_LABEL],
        "primary"
    );
    assert_eq!(
        condition(&stuck, "Ready").unwrap()["reason"],
        "PrimaryUnavailable"
    );
}

#[test]
fn the_dedicated_example_is_the_seed_verbatim_and_gets_its_instance() {
    let text = include_str!("../../../../examples/dedicated-database.yaml");
    let documents: Vec<Value> = serde_saphyr::from_multiple(text).unwrap();
    let mut database = documents
        .into_iter()
        .find(|d| d["kind"] == "Database")
        .unwrap();
    assert_eq!(database["spec"], seed()["spec"]);
    database["metadata"]["uid"] = json!("uid-1");
    let response = reconcile(&TestHost::new(), &request(database, Vec::new())).unwrap();
    assert!(child(&response, "Pod", "foo-db-1").is_some());
}

#[test]
fn a_server_ref_added_to_a_database_with_an_instance_is_refused_and_nothing_is_pruned() {
    let (object, children) = primary_running(seed());
    let moved = with_spec(object, json!({"serverRef": {"name": "main"}}));
    let error = reconcile(&TestHost::new(), &request(moved, children)).unwrap_err();
    assert_eq!(error.reason, "InvalidSpec");
    assert!(
        error.message.starts_with("spec.serverRef:"),
        "{}",
        error.message
    );
}
