//! Pods run for real: scheduling, init containers, environment, mounts, identity, status,
//! probes, unknown images, failures and deletion.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, DeleteParams};
use serde_json::json;
use support::{Cluster, condition, eventually, image};

fn container_state<'a>(
    pod: &'a Pod,
    name: &str,
) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .chain(status.init_container_statuses.iter())
        .flatten()
        .find(|c| c.name == name)
}

#[tokio::test]
async fn a_pod_runs_init_containers_in_order_then_its_container_with_env_mounts_and_user() {
    let cluster = Cluster::start("pod-runs").await;
    cluster
        .create::<Secret>(
            json!({"metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}}),
        )
        .await;
    cluster
        .create::<ConfigMap>(
            json!({"metadata": {"name": "settings"}, "data": {"greeting": "hello"}}),
        )
        .await;
    cluster
        .create::<PersistentVolumeClaim>(json!({
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }))
        .await;
    let image = image();
    let report = concat!(
        "{ echo \"user=$(id -un):$(id -u):$(id -g)\"; echo \"pwd=$(pwd)\"; echo \"ip=$POD_IP\"; ",
        "echo \"name=$POD_NAME ns=$POD_NS\"; echo \"password=$PASSWORD greeting=$GREETING\"; ",
        "echo \"files=$(cat /secret/password)/$(cat /config/greeting)\"; ",
        "echo \"order=$(cat /scratch/order | tr '\\n' ,)\"; echo \"host=$(hostname)\"; echo \"arg=$1\"; ",
        "touch /secret/x 2>/dev/null && echo ro=no || echo ro=yes; ",
        "} > /data/report; exec sleep 600",
    );
    cluster
        .create::<Pod>(json!({
            "metadata": {"name": "worker"},
            "spec": {
                "securityContext": {"runAsUser": 999, "runAsGroup": 999},
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "secret", "secret": {"secretName": "creds"}},
                    {"name": "config", "configMap": {"name": "settings"}},
                    {"name": "scratch", "emptyDir": {}},
                ],
                "initContainers": [
                    {"name": "first", "image": image, "command": ["sh", "-c", "echo first > /scratch/order"],
                     "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]},
                    {"name": "second", "image": image, "command": ["sh", "-c", "echo second >> /scratch/order"],
                     "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]},
                ],
                "containers": [{
                    "name": "main",
                    "image": image,
                    "command": ["sh", "-c", report, "sh"],
                    "args": ["$(POD_NAME)-arg"],
                    "workingDir": "/data",
                    "env": [
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}},
                    ],
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data"},
                        {"name": "secret", "mountPath": "/secret"},
                        {"name": "config", "mountPath": "/config"},
                        {"name": "scratch", "mountPath": "/scratch"},
                    ],
                    "readinessProbe": {"exec": {"command": ["test", "-s", "/data/report"]}, "periodSeconds": 1},
                }],
            },
        }))
        .await;

    let pod = cluster
        .pod_when("worker", "the Pod Ready", |p| condition(p, "Ready"))
        .await;
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(cluster.node.name()));
    let status = pod.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert!(condition(&pod, kind), "{kind} is True");
    }
    let pod_ip = status.pod_ip.clone().unwrap();
    assert!(pod_ip.starts_with("127."), "{pod_ip}");
    assert_eq!(status.pod_ips.as_ref().unwrap()[0].ip, pod_ip);
    assert_eq!(
        status.host_ip.as_deref(),
        Some(cluster.node.host_ip().to_string().as_str())
    );
    for init in ["first", "second"] {
        let terminated = container_state(&pod, init)
            .unwrap()
            .state
            .as_ref()
            .unwrap()
            .terminated
            .clone()
            .unwrap();
        assert_eq!(
            (terminated.exit_code, terminated.reason.as_deref()),
            (0, Some("Completed"))
        );
    }
    let main = container_state(&pod, "main").unwrap();
    assert!(main.ready && main.state.as_ref().unwrap().running.is_some());
    assert_eq!(main.restart_count, 0);

    let pvc: PersistentVolumeClaim = Api::namespaced(cluster.client.clone(), "default")
        .get("data")
        .await
        .unwrap();
    let volume = cluster
        .node
        .volume_dir(&pvc.spec.unwrap().volume_name.unwrap());
    let report = std::fs::read_to_string(volume.join("report")).unwrap();
    assert_eq!(
        report,
        format!(
            "user=postgres:999:999\npwd=/data\nip={pod_ip}\nname=worker ns=default\n\
             password=s3cret greeting=hello\nfiles=s3cret/hello\norder=first,second,\n\
             host=worker\narg=worker-arg\nro=yes\n"
        )
    );
}

#[tokio::test]
async fn readiness_follows_an_exec_probe_both_ways() {
    let cluster = Cluster::start("pod-readiness").await;
    cluster
        .create::<Pod>(json!({
            "metadata": {"name": "flapping"},
            "spec": {"containers": [{
                "name": "main", "image": image(),
                "command": ["sh", "-c", "sleep 1; touch /tmp/ready; sleep 3; rm /tmp/ready; exec sleep 600"],
                "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]},
                                   "periodSeconds": 1, "failureThreshold": 1},
            }]},
        }))
        .await;

    let running = cluster
        .pod_when("flapping", "the container running", |p| {
            container_state(p, "main").is_some_and(|c| c.state.as_ref().unwrap().running.is_some())
        })
        .await;
    assert!(
        !condition(&running, "Ready"),
        "not Ready before the probe succeeds"
    );
    cluster
        .pod_when("flapping", "Ready", |p| condition(p, "Ready"))
        .await;
    let unready = cluster
        .pod_when("flapping", "not Ready again", |p| !condition(p, "Ready"))
        .await;
    assert_eq!(unready.status.unwrap().phase.as_deref(), Some("Running"));
}

#[tokio::test]
async fn a_pod_of_an_unknown_image_stays_pending_with_err_image_never_pull() {
    let cluster = Cluster::start("pod-unknown-image").await;
    cluster
        .create::<Pod>(json!({
            "metadata": {"name": "nginx"},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "command": ["nginx"]}]},
        }))
        .await;

    let pod = cluster
        .pod_when("nginx", "the container waiting", |p| {
            container_state(p, "web")
                .and_then(|c| c.state.as_ref()?.waiting.as_ref())
                .is_some_and(|w| w.reason.as_deref() == Some("ErrImageNeverPull"))
        })
        .await;
    let waiting = container_state(&pod, "web")
        .unwrap()
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(
        waiting.message.as_deref(),
        Some("Container image \"nginx:1.27\" is not present with pull policy of Never")
    );
    let status = pod.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert!(condition(
        &cluster.pods().get("nginx").await.unwrap(),
        "PodScheduled"
    ));
    assert_eq!(
        pod.spec.unwrap().node_name.as_deref(),
        Some(cluster.node.name())
    );
}

#[tokio::test]
async fn a_container_exiting_non_zero_under_restart_policy_never_fails_the_pod() {
    let cluster = Cluster::start("pod-fails").await;
    cluster
        .create::<Pod>(json!({
            "metadata": {"name": "job"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "task", "image": image(), "command": ["sh", "-c", "exit 3"]}],
            },
        }))
        .await;

    let pod = cluster
        .pod_when("job", "the Pod Failed", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
        })
        .await;
    let terminated = container_state(&pod, "task")
        .unwrap()
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (3, Some("Error"))
    );
    assert!(!condition(&pod, "Ready"));
}

#[tokio::test]
async fn a_restarted_container_counts_its_restarts_and_keeps_its_last_state() {
    let cluster = Cluster::start("pod-restarts").await;
    cluster
        .create::<Pod>(json!({
            "metadata": {"name": "flaky"},
            "spec": {"containers": [{"name": "task", "image": image(), "command": ["sh", "-c", "exit 1"]}]},
        }))
        .await;

    // The first restart is immediate (the kubelet backs off from the second on).
    let pod = cluster
        .pod_when("flaky", "one restart", |p| {
            container_state(p, "task").is_some_and(|c| {
                c.restart_count >= 1
                    && c.last_state
                        .as_ref()
                        .is_some_and(|s| s.terminated.is_some())
            })
        })
        .await;
    let last = container_state(&pod, "task")
        .unwrap()
        .last_state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(last.exit_code, 1);
}

#[tokio::test]
async fn deletion_sends_sigterm_and_the_pod_goes_once_the_container_has_ended() {
    let cluster = Cluster::start("pod-sigterm").await;
    cluster
        .create::<Pod>(json!({
            "metadata": {"name": "graceful"},
            "spec": {"containers": [{
                "name": "main", "image": image(),
                "command": ["sh", "-c", "trap 'echo got-sigterm; exit 0' TERM; echo started; while true; do sleep 0.1; done"],
            }]},
        }))
        .await;
    cluster
        .pod_when("graceful", "the Pod Ready", |p| condition(p, "Ready"))
        .await;

    cluster
        .pods()
        .delete("graceful", &DeleteParams::default())
        .await
        .unwrap();
    let pods = cluster.pods();
    eventually("the Pod gone", Duration::from_secs(20), || async {
        pods.get_opt("graceful")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        cluster.node.container_log("default", "graceful", "main"),
        "started\ngot-sigterm\n"
    );
}

#[tokio::test]
async fn deletion_kills_a_container_ignoring_sigterm_after_the_grace_period() {
    let cluster = Cluster::start("pod-grace").await;
    cluster
        .create::<Pod>(json!({
            "metadata": {"name": "stubborn"},
            "spec": {
                "terminationGracePeriodSeconds": 2,
                "containers": [{
                    "name": "main", "image": image(),
                    "command": ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"],
                }],
            },
        }))
        .await;
    cluster
        .pod_when("stubborn", "the Pod Ready", |p| condition(p, "Ready"))
        .await;
    let groups = cluster.node.process_groups();

    let deleted = Instant::now();
    cluster
        .pods()
        .delete("stubborn", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = cluster.pods().get("stubborn").await.unwrap();
    assert!(
        terminating.metadata.deletion_timestamp.is_some(),
        "the Pod stays while terminating"
    );
    let pods = cluster.pods();
    eventually("the Pod gone", Duration::from_secs(20), || async {
        pods.get_opt("stubborn")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let took = deleted.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(test_node::running_in_groups(&groups).is_empty());
}

#[tokio::test]
async fn every_process_ends_when_the_node_is_dropped_even_by_a_panic() {
    let groups = tokio::spawn(async {
        let cluster = Cluster::start("drop").await;
        cluster
            .create::<Pod>(json!({
                "metadata": {"name": "sleeper"},
                "spec": {"containers": [{"name": "main", "image": image(),
                    "command": ["sh", "-c", "sleep 600 & sleep 600"]}]},
            }))
            .await;
        cluster
            .pod_when("sleeper", "the Pod Ready", |p| condition(p, "Ready"))
            .await;
        let groups = cluster.node.process_groups();
        assert!(!test_node::running_in_groups(&groups).is_empty());
        std::fs::write(cluster.dir.join("groups"), format!("{groups:?}")).unwrap();
        panic!("the test fails with its Pods running");
    })
    .await
    .expect_err("the task panicked");
    assert!(groups.is_panic());
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("test-node-drop-{}", std::process::id()));
    let recorded = std::fs::read_to_string(dir.join("groups")).unwrap();
    let groups: Vec<i32> = recorded
        .trim_matches(['[', ']'])
        .split(", ")
        .map(|g| g.parse().unwrap())
        .collect();
    assert!(
        test_node::running_in_groups(&groups).is_empty(),
        "{groups:?}"
    );
}

#[tokio::test]
async fn a_failing_liveness_probe_restarts_the_container_and_counts_it() {
    let cluster = Cluster::start("pod-liveness").await;
    cluster
        .create::<Pod>(json!({
            "metadata": {"name": "unhealthy"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "main", "image": image(),
                "command": ["sh", "-c", "touch /tmp/healthy; sleep 1; rm /tmp/healthy; exec sleep 600"],
                "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]},
                    "periodSeconds": 1, "failureThreshold": 1},
            }]},
        }))
        .await;
    let pod = cluster
        .pod_when("unhealthy", "a restart after the liveness failure", |p| {
            container_state(p, "main").is_some_and(|c| {
                c.restart_count >= 1 && c.state.as_ref().is_some_and(|s| s.running.is_some())
            })
        })
        .await;
    let last = container_state(&pod, "main")
        .unwrap()
        .last_state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(last.exit_code, 143, "ended by the kubelet's SIGTERM");
}

#[tokio::test]
async fn a_startup_probe_holds_readiness_until_it_succeeds() {
    let cluster = Cluster::start("pod-startup").await;
    let started = Instant::now();
    cluster
        .create::<Pod>(json!({
            "metadata": {"name": "slow"},
            "spec": {"containers": [{
                "name": "main", "image": image(),
                "command": ["sh", "-c", "rm -f /tmp/up; sleep 2; touch /tmp/up; exec sleep 600"],
                "startupProbe": {"exec": {"command": ["test", "-f", "/tmp/up"]},
                    "periodSeconds": 1, "failureThreshold": 30},
            }]},
        }))
        .await;
    let running = cluster
        .pod_when("slow", "the container running", |p| {
            container_state(p, "main")
                .is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
        .await;
    let status = container_state(&running, "main").unwrap();
    assert_eq!(
        (status.started, status.ready),
        (Some(false), false),
        "not started nor ready before the startup probe succeeds"
    );
    let ready = cluster
        .pod_when("slow", "the Pod Ready", |p| condition(p, "Ready"))
        .await;
    assert!(started.elapsed() >= Duration::from_secs(2));
    let status = container_state(&ready, "main").unwrap();
    assert_eq!((status.started, status.restart_count), (Some(true), 0));
}

#[tokio::test]
async fn http_get_probes_follow_the_status_code_a_server_answers() {
    let cluster = Cluster::start("pod-http-probe").await;
    let web = |name: &str, probes: serde_json::Value| {
        let mut container = json!({
            "name": "web", "image": image(),
            "command": ["python3", "-m", "http.server", "--bind", "$(POD_IP)", "8080"],
            "workingDir": "/srv",
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "ports": [{"name": "http", "containerPort": 8080}],
        });
        for (k, v) in probes.as_object().unwrap() {
            container[k] = v.clone();
        }
        json!({"metadata": {"name": name}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}})
    };
    cluster
        .create::<Pod>(web(
            "served",
            json!({"readinessProbe": {
            "httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}}),
        ))
        .await;
    cluster
        .create::<Pod>(web("missing", json!({"livenessProbe": {
            "httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 2}})))
        .await;
    cluster
        .pod_when("served", "200 from / makes it Ready", |p| {
            condition(p, "Ready")
        })
        .await;
    cluster
        .pod_when("missing", "404 from /healthz restarts it", |p| {
            container_state(p, "web").is_some_and(|c| c.restart_count >= 1)
        })
        .await;
}

#[tokio::test]
async fn a_projected_volume_gathers_secret_config_map_and_downward_api_files() {
    let cluster = Cluster::start("pod-projected").await;
    cluster
        .create::<Secret>(json!({"metadata": {"name": "creds"}, "stringData": {"password": "s3cret", "user": "app"}}))
        .await;
    cluster
        .create::<ConfigMap>(
            json!({"metadata": {"name": "settings"}, "data": {"greeting": "hello"}}),
        )
        .await;
    let report = concat!(
        "cd /binding && echo \"$(cat user):$(cat pass):$(cat greeting):$(cat name):$(ls | tr '\\n' ,)\"; ",
        "touch /binding/x 2>/dev/null && echo ro=no || echo ro=yes; exec sleep 600",
    );
    cluster
        .create::<Pod>(json!({
            "metadata": {"name": "projected"},
            "spec": {
                "volumes": [{"name": "binding", "projected": {"sources": [
                    {"secret": {"name": "creds", "items": [{"key": "password", "path": "pass"}, {"key": "user", "path": "user"}]}},
                    {"configMap": {"name": "settings"}},
                    {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                ]}}],
                "containers": [{
                    "name": "main", "image": image(),
                    "command": ["sh", "-c", report],
                    "volumeMounts": [{"name": "binding", "mountPath": "/binding", "readOnly": true}],
                }],
            },
        }))
        .await;
    let log = eventually(
        "the projected files reported",
        Duration::from_secs(30),
        || async {
            let log = cluster.node.container_log("default", "projected", "main");
            log.contains("ro=").then_some(log)
        },
    )
    .await;
    assert!(
        log.contains("app:s3cret:hello:projected:greeting,name,pass,user,"),
        "{log}"
    );
    assert!(log.contains("ro=yes"), "{log}");

    // A projected Secret that does not exist keeps the Pod from starting.
    cluster
        .create::<Pod>(json!({
            "metadata": {"name": "missing"},
            "spec": {
                "volumes": [{"name": "binding", "projected": {"sources": [{"secret": {"name": "absent"}}]}}],
                "containers": [{"name": "main", "image": image(), "command": ["sleep", "600"],
                                "volumeMounts": [{"name": "binding", "mountPath": "/binding"}]}],
            },
        }))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pod: Pod = cluster.pods().get("missing").await.unwrap();
    assert!(
        container_state(&pod, "main").is_none_or(|c| c.state.as_ref().unwrap().running.is_none()),
        "a container started without its projected Secret"
    );
}
