//! End to end: the real `wasm-operator` binary against the test API server,
//! with the real example plugin loaded from a ConfigMap.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::cluster::{self, Cluster, Operator, eventually, metric, scrape};
use support::fixtures::{self, Binding, greetings};
use wasm_operator::crd::ReconcilerPlugin;
use wasm_operator::runtime::PluginDigest;
use wasm_operator::vocabulary::{OWNER_UID_LABEL, RETAIN_ANNOTATION, RETAINED_FROM_ANNOTATION};

const OPERATOR_NAMESPACE: &str = "wasm-operator";

/// The test bed: a cluster with the CRDs, the namespaces and a plugin's
/// component in the ConfigMap `example-plugin`.
struct Bed {
    inner: Cluster,
    component: Vec<u8>,
}

impl Bed {
    async fn start(name: &str, plugin: &str) -> Self {
        let inner = Cluster::with_greetings(name, &[OPERATOR_NAMESPACE, "default"]).await;
        let component = support::component(plugin);
        fixtures::put_component(
            &inner.client(),
            OPERATOR_NAMESPACE,
            "example-plugin",
            "plugin.wasm",
            &component,
        )
        .await;
        Self { inner, component }
    }

    fn client(&self) -> Client {
        self.inner.client()
    }

    async fn bind(&self, grants: Value) {
        Binding::named("greeting")
            .source_config_map(OPERATOR_NAMESPACE, "example-plugin", "plugin.wasm")
            .settings(json!({"defaultAudience": "operators"}))
            .grants(grants)
            .create(&self.client())
            .await;
    }

    /// Starts the operator; resyncs are rare so that writes can be counted.
    fn start_operator(&self, extra: &[&str]) -> Operator {
        self.inner
            .start_operator(&[&["--resync-seconds", "3600"], extra].concat())
    }
}

/// Waits for Greeting `name` to be refused because its child `child`
/// (`ConfigMap default/x`) exists without being its own.
async fn assert_child_conflict(api: &Api<DynamicObject>, name: &str, child: &str) {
    let ready = eventually(
        &format!("Greeting {name} to be refused"),
        Duration::from_secs(20),
        || async {
            let g = api.get(name).await.ok()?;
            ready_condition(&g).filter(|c| c["status"] == "False")
        },
    )
    .await;
    assert_eq!(ready["reason"], "ChildConflict", "{ready}");
    assert!(
        ready["message"].as_str().unwrap().contains(child),
        "{ready}"
    );
}

fn ready_condition(object: &DynamicObject) -> Option<Value> {
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greeting_gets_its_child_and_ready_status_updates_without_idle_writes_and_is_cleaned_up()
{
    let cluster = Bed::start("lifecycle", "example-plugin").await;
    cluster
        .bind(json!({"read": [{"version": "v1", "kind": "ConfigMap"}], "children": [{"version": "v1", "kind": "ConfigMap"}]}))
        .await;
    let operator = cluster.start_operator(&["--leader-election=false"]);
    let client = cluster.client();

    let bindings = Api::<ReconcilerPlugin>::all(client.clone());
    let binding = eventually("the binding to load", Duration::from_secs(30), || async {
        let b = bindings.get("greeting").await.ok()?;
        let ready = b
            .status
            .as_ref()?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(b)
    })
    .await;
    let digest = PluginDigest::of(&cluster.component).to_string();
    assert_eq!(
        binding.status.as_ref().unwrap().digest.as_deref(),
        Some(digest.as_str())
    );

    let created = fixtures::create_greeting(&client, "hello", "Hello").await;
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), "default");
    let child = eventually("the child ConfigMap", Duration::from_secs(20), || async {
        config_maps.get_opt("hello-greeting").await.ok().flatten()
    })
    .await;
    assert_eq!(child.data.as_ref().unwrap()["message"], "Hello, operators!");
    let owner = &child.owner_references()[0];
    assert_eq!(owner.uid, created.uid().unwrap());
    assert_eq!(owner.controller, Some(true));

    let api = greetings(&client, "default");
    let reconciled = eventually(
        "status Ready with observedGeneration 1",
        Duration::from_secs(20),
        || async {
            let g = api.get("hello").await.ok()?;
            let ready = ready_condition(&g)?;
            (ready["status"] == "True" && g.data["status"]["observedGeneration"] == 1).then_some(g)
        },
    )
    .await;
    assert_eq!(reconciled.data["status"]["pluginDigest"], digest);
    assert_eq!(reconciled.data["status"]["message"], "Hello, operators!");
    assert!(
        reconciled
            .finalizers()
            .contains(&"plugins.systems.mikemiller.tech/example-greeting".to_owned())
    );

    // Steady state: nothing changes, so nothing is written.
    let before = scrape(&operator.http).await;
    let child_version = child.resource_version();
    let status_version = reconciled.resource_version();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = scrape(&operator.http).await;
    assert_eq!(
        config_maps
            .get("hello-greeting")
            .await
            .unwrap()
            .resource_version(),
        child_version
    );
    assert_eq!(
        api.get("hello").await.unwrap().resource_version(),
        status_version
    );
    assert_eq!(
        metric(&before, "wasm_operator_writes_total"),
        metric(&after, "wasm_operator_writes_total"),
        "no write while nothing changes"
    );

    // A spec change reaches the child and the status.
    api.patch(
        "hello",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"greeting": "Hi"}})),
    )
    .await
    .unwrap();
    eventually(
        "the child to follow the spec",
        Duration::from_secs(20),
        || async {
            let c = config_maps.get("hello-greeting").await.ok()?;
            (c.data.as_ref()?["message"] == "Hi, operators!").then_some(())
        },
    )
    .await;
    eventually("observedGeneration 2", Duration::from_secs(20), || async {
        let g = api.get("hello").await.ok()?;
        (g.data["status"]["observedGeneration"] == 2).then_some(())
    })
    .await;

    // Metrics are scraped from the running operator.
    let text = scrape(&operator.http).await;
    for series in [
        "wasm_operator_reconciles_total",
        "wasm_operator_reconcile_duration_seconds",
        "wasm_operator_plugin_call_duration_seconds",
        "wasm_operator_writes_total",
        "wasm_operator_queue_depth",
    ] {
        assert!(
            text.contains(series),
            "{series} missing from /metrics:\n{text}"
        );
    }
    assert!(
        metric(&text, "wasm_operator_reconciles_total{") >= 2.0,
        "{text}"
    );

    // Delete: finalize runs, the finalizer goes, the child is collected.
    api.delete("hello", &DeleteParams::default()).await.unwrap();
    eventually(
        "the Greeting to be gone",
        Duration::from_secs(20),
        || async { api.get_opt("hello").await.ok()?.is_none().then_some(()) },
    )
    .await;
    eventually(
        "the child to be collected",
        Duration::from_secs(20),
        || async {
            config_maps
                .get_opt("hello-greeting")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_edited_or_deleted_by_hand_is_put_back_at_once_and_reads_come_from_the_cache() {
    let cluster = Bed::start("hand-edits", "example-plugin").await;
    cluster
        .bind(json!({"read": [{"version": "v1", "kind": "ConfigMap"}], "children": [{"version": "v1", "kind": "ConfigMap"}]}))
        .await;
    let client = cluster.client();
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), "default");
    config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "audiences", "namespace": "default"},
                "data": {"team": "platform"},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    // Resyncs are an hour apart: only the watches bring the child back.
    let _operator = cluster.start_operator(&["--leader-election=false"]);
    let greeting: DynamicObject = serde_json::from_value(fixtures::greeting(
        "default",
        "team",
        json!({"greeting": "Hello", "audienceFrom": {"configMap": "audiences", "key": "team"}}),
    ))
    .unwrap();
    greetings(&client, "default")
        .create(&PostParams::default(), &greeting)
        .await
        .unwrap();
    let message = |cm: &ConfigMap| cm.data.as_ref()?.get("message").cloned();
    let wait_message = |what: &'static str| {
        let config_maps = config_maps.clone();
        async move {
            eventually(what, Duration::from_secs(10), || async {
                let child = config_maps.get_opt("team-greeting").await.ok()??;
                (message(&child).as_deref() == Some("Hello, platform!")).then_some(child)
            })
            .await
        }
    };
    // The audience was read from the ConfigMap through the cache.
    wait_message("the child with the audience from the ConfigMap").await;

    config_maps
        .patch(
            "team-greeting",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"message": "tampered"}})),
        )
        .await
        .unwrap();
    wait_message("the edited child to be put back").await;

    config_maps
        .delete("team-greeting", &DeleteParams::default())
        .await
        .unwrap();
    let recreated = wait_message("the deleted child to be recreated").await;
    assert_eq!(
        recreated.owner_references()[0].name,
        "team",
        "the new child is owned by its Greeting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_error_shows_in_status_and_events_and_clears_after_a_fix() {
    let cluster = Bed::start("plugin-error", "example-plugin").await;
    cluster
        .bind(json!({"read": [{"version": "v1", "kind": "ConfigMap"}], "children": [{"version": "v1", "kind": "ConfigMap"}]}))
        .await;
    let _operator = cluster.start_operator(&["--leader-election=false"]);
    let client = cluster.client();
    let api = greetings(&client, "default");
    // Blank passes the CRD's minLength but the plugin refuses it.
    fixtures::create_greeting(&client, "blank", "   ").await;
    let ready = eventually("Ready=False", Duration::from_secs(20), || async {
        let g = api.get("blank").await.ok()?;
        ready_condition(&g).filter(|c| c["status"] == "False")
    })
    .await;
    assert_eq!(ready["reason"], "InvalidSpec");
    assert!(
        ready["message"].as_str().unwrap().contains("spec.greeting"),
        "{ready}"
    );

    let events = cluster::events(&client, "default");
    eventually("a Warning event", Duration::from_secs(20), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.data["type"] == "Warning"
                    && e.data["reason"] == "InvalidSpec"
                    && e.data["regarding"]["name"] == "blank"
            })
            .then_some(())
    })
    .await;

    api.patch(
        "blank",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"greeting": "Fixed"}})),
    )
    .await
    .unwrap();
    eventually(
        "Ready=True after the fix",
        Duration::from_secs(30),
        || async {
            let g = api.get("blank").await.ok()?;
            ready_condition(&g).filter(|c| c["status"] == "True")
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_kind_outside_the_grants_is_refused_and_nothing_is_applied() {
    let cluster = Bed::start("refused", "example-plugin").await;
    // The binding allows reads but no children: the plugin's ConfigMap is out of bounds.
    cluster
        .bind(json!({"read": [{"version": "v1", "kind": "ConfigMap"}], "children": []}))
        .await;
    let _operator = cluster.start_operator(&["--leader-election=false"]);
    let client = cluster.client();
    let api = greetings(&client, "default");
    fixtures::create_greeting(&client, "greedy", "Hello").await;
    let ready = eventually(
        "Ready=False with OutputRefused",
        Duration::from_secs(20),
        || async {
            let g = api.get("greedy").await.ok()?;
            ready_condition(&g).filter(|c| c["reason"] == "OutputRefused")
        },
    )
    .await;
    assert!(
        ready["message"].as_str().unwrap().contains("v1/ConfigMap"),
        "{ready}"
    );
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), "default");
    assert!(
        config_maps
            .get_opt("greedy-greeting")
            .await
            .unwrap()
            .is_none(),
        "nothing of the refused output is applied"
    );
    let g = api.get("greedy").await.unwrap();
    assert!(
        g.data["status"].get("message").is_none(),
        "the refused status is not written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over_within_the_lease() {
    let cluster = Bed::start("leader", "example-plugin").await;
    cluster
        .bind(json!({"read": [{"version": "v1", "kind": "ConfigMap"}], "children": [{"version": "v1", "kind": "ConfigMap"}]}))
        .await;
    let lease = [
        "--lease-namespace",
        OPERATOR_NAMESPACE,
        "--lease-seconds",
        "3",
    ];
    let mut first = cluster.start_operator(&[&lease[..], &["--identity", "first"]].concat());
    let client = cluster.client();
    let leases: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        OPERATOR_NAMESPACE,
        &ApiResource::from_gvk(&GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease")),
    );
    eventually(
        "the first replica to lead",
        Duration::from_secs(20),
        || async {
            let l = leases.get("wasm-operator").await.ok()?;
            (l.data["spec"]["holderIdentity"] == "first").then_some(())
        },
    )
    .await;
    let second = cluster.start_operator(&[&lease[..], &["--identity", "second"]].concat());
    fixtures::create_greeting(&client, "one", "Hello").await;
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), "default");
    eventually(
        "the leader to reconcile",
        Duration::from_secs(20),
        || async { config_maps.get_opt("one-greeting").await.ok().flatten() },
    )
    .await;
    let standby = scrape(&second.http).await;
    assert_eq!(
        metric(&standby, "wasm_operator_writes_total"),
        0.0,
        "the standby wrote:\n{standby}"
    );

    // Stop the leader hard (no release): the standby takes over within the lease.
    first.kill();
    let killed = Instant::now();
    fixtures::create_greeting(&client, "two", "Hello").await;
    eventually(
        "the standby to take over and reconcile",
        Duration::from_secs(15),
        || async { config_maps.get_opt("two-greeting").await.ok().flatten() },
    )
    .await;
    let handover = killed.elapsed();
    println!("leader handover took {handover:?} with a 3 s lease");
    assert!(
        handover < Duration::from_secs(3 + 3),
        "handover took {handover:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_trapping_on_one_object_keeps_reconciling_the_others() {
    let cluster = Bed::start("trap", "hostile-selective").await;
    cluster
        .bind(json!({"children": [{"version": "v1", "kind": "ConfigMap"}]}))
        .await;
    let operator = cluster.start_operator(&["--leader-election=false"]);
    let client = cluster.client();
    let api = greetings(&client, "default");
    fixtures::create_greeting(&client, "trap-me", "Hello").await;
    for name in ["calm-1", "calm-2", "calm-3"] {
        fixtures::create_greeting(&client, name, "Hello").await;
    }
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), "default");
    for name in ["calm-1", "calm-2", "calm-3"] {
        eventually(
            "the other objects to be reconciled",
            Duration::from_secs(20),
            || async {
                config_maps
                    .get_opt(&format!("{name}-greeting"))
                    .await
                    .ok()
                    .flatten()
            },
        )
        .await;
    }
    let ready = eventually(
        "the trapping object to report the panic",
        Duration::from_secs(20),
        || async {
            let g = api.get("trap-me").await.ok()?;
            ready_condition(&g).filter(|c| c["status"] == "False")
        },
    )
    .await;
    assert_eq!(ready["reason"], "Panic");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("hostile-selective traps on trap-me"),
        "{ready}"
    );
    // The trap is counted by kind, and the failed reconcile by reason.
    let text = scrape(&operator.http).await;
    for series in [
        r#"wasm_operator_plugin_traps_total{binding="greeting",plugin="hostile-selective",kind="Panic"}"#,
        r#"wasm_operator_reconcile_errors_total{binding="greeting",plugin="hostile-selective",kind="Greeting",reason="Panic"}"#,
    ] {
        assert!(metric(&text, series) >= 1.0, "{series} missing:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_named_like_an_object_the_plugin_does_not_own_is_refused_and_the_object_is_untouched()
 {
    let cluster = Bed::start("adopt", "hostile-doors").await;
    cluster
        .bind(json!({"children": [{"version": "v1", "kind": "ConfigMap"}]}))
        .await;
    let client = cluster.client();
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), "default");
    // Another application's object, with labels that look like the host's.
    let precious: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "precious", "labels": {
            "systems.mikemiller.tech/plugin": "hostile-doors",
            "app": "billing",
        }},
        "data": {"api-key": "keep-me"},
    }))
    .unwrap();
    let precious = config_maps
        .create(&PostParams::default(), &precious)
        .await
        .unwrap();
    let _operator = cluster.start_operator(&["--leader-election=false"]);
    let api = greetings(&client, "default");
    fixtures::create_greeting(&client, "adopt-it", "precious").await;
    fixtures::create_greeting(&client, "plain", "Hello").await;
    assert_child_conflict(&api, "adopt-it", "ConfigMap default/precious").await;
    // The other object is reconciled as usual.
    eventually(
        "the plain object's child",
        Duration::from_secs(20),
        || async { config_maps.get_opt("plain-doors").await.ok().flatten() },
    )
    .await;
    let untouched = config_maps.get("precious").await.unwrap();
    assert_eq!(untouched.resource_version(), precious.resource_version());
    assert!(untouched.owner_references().is_empty());
    assert!(
        !untouched
            .labels()
            .contains_key("systems.mikemiller.tech/owner-uid")
    );
    // Deleting the refused object leaves the other application's object.
    api.delete("adopt-it", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the refused object to go",
        Duration::from_secs(20),
        || async { api.get_opt("adopt-it").await.ok()?.is_none().then_some(()) },
    )
    .await;
    let after = config_maps.get("precious").await.unwrap();
    assert_eq!(after.data.unwrap()["api-key"], "keep-me");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_marked_retain_on_delete_outlives_its_owner_and_is_never_adopted_by_a_successor() {
    let cluster = Bed::start("retain", "example-plugin").await;
    cluster
        .bind(json!({"read": [{"version": "v1", "kind": "ConfigMap"}], "children": [{"version": "v1", "kind": "ConfigMap"}]}))
        .await;
    let _operator = cluster.start_operator(&["--leader-election=false"]);
    let client = cluster.client();
    let api = greetings(&client, "default");
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), "default");
    let create = |name: &'static str, spec: Value| {
        let api = api.clone();
        async move {
            let object: DynamicObject =
                serde_json::from_value(fixtures::greeting("default", name, spec)).unwrap();
            api.create(&PostParams::default(), &object).await.unwrap()
        }
    };
    let kept = create("kept", json!({"greeting": "Hello", "retainOnDelete": true})).await;
    fixtures::create_greeting(&client, "collected", "Hello").await;
    let child = eventually("both children", Duration::from_secs(20), || async {
        config_maps.get_opt("collected-greeting").await.ok()??;
        config_maps.get_opt("kept-greeting").await.ok()?
    })
    .await;
    assert_eq!(child.owner_references()[0].uid, kept.uid().unwrap());
    assert_eq!(child.annotations()[RETAIN_ANNOTATION], "true");

    for name in ["kept", "collected"] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for name in ["kept", "collected"] {
        eventually(
            "the Greeting to be gone",
            Duration::from_secs(20),
            || async { api.get_opt(name).await.ok()?.is_none().then_some(()) },
        )
        .await;
    }
    eventually(
        "the unmarked child to be collected",
        Duration::from_secs(20),
        || async {
            config_maps
                .get_opt("collected-greeting")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    let retained = config_maps
        .get_opt("kept-greeting")
        .await
        .unwrap()
        .expect("the marked child outlives its Greeting");
    assert!(
        retained.owner_references().is_empty(),
        "{:?}",
        retained.owner_references()
    );
    assert!(
        !retained.labels().contains_key(OWNER_UID_LABEL),
        "{:?}",
        retained.labels()
    );
    assert_eq!(
        retained.annotations()[RETAINED_FROM_ANNOTATION],
        format!("Greeting default/kept (uid {})", kept.uid().unwrap())
    );
    assert_eq!(
        retained.data.as_ref().unwrap()["message"],
        "Hello, operators!"
    );
    let events = cluster::events(&client, "default")
        .list(&ListParams::default())
        .await
        .unwrap();
    let note = events
        .items
        .iter()
        .find(|e| e.data["reason"] == "Retained" && e.data["regarding"]["name"] == "kept")
        .map(|e| e.data["note"].as_str().unwrap_or_default().to_owned())
        .expect("a Retained event about the deleted Greeting");
    assert!(note.contains("ConfigMap default/kept-greeting"), "{note}");

    // A new Greeting of the same name wants the same child: refused, and the
    // retained ConfigMap is left as it is.
    create("kept", json!({"greeting": "Bye"})).await;
    assert_child_conflict(&api, "kept", "ConfigMap default/kept-greeting").await;
    let untouched = config_maps.get("kept-greeting").await.unwrap();
    assert_eq!(untouched.resource_version(), retained.resource_version());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_events_and_an_immediate_requeue_are_capped() {
    let cluster = Bed::start("flood", "hostile-doors").await;
    cluster
        .bind(json!({"children": [{"version": "v1", "kind": "ConfigMap"}]}))
        .await;
    let client = cluster.client();
    let operator = cluster.start_operator(&["--leader-election=false"]);
    let api = greetings(&client, "default");
    fixtures::create_greeting(&client, "events-flood", "Hello").await;
    fixtures::create_greeting(&client, "requeue-now", "Hello").await;
    for name in ["events-flood", "requeue-now"] {
        eventually(
            "both objects reconciled",
            Duration::from_secs(20),
            || async {
                let g = api.get(name).await.ok()?;
                ready_condition(&g).filter(|c| c["status"] == "True")
            },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = scrape(&operator.http).await;
    // 20,000 events asked for; the object's budget of 30 a minute is written,
    // and the rest are counted as dropped.
    let written = metric(
        &text,
        "wasm_operator_writes_total{binding=\"greeting\",plugin=\"hostile-doors\",verb=\"event\"}",
    );
    assert!(written <= 30.0, "{written} events written\n{text}");
    let dropped = metric(&text, "wasm_operator_events_dropped_total");
    assert!(
        dropped >= 20_000.0 - 30.0,
        "{dropped} events dropped\n{text}"
    );
    let events = cluster::events(&client, "default")
        .list(&ListParams::default())
        .await
        .unwrap();
    let about_flood = events
        .items
        .iter()
        .filter(|e| e.data["regarding"]["name"] == "events-flood")
        .collect::<Vec<_>>();
    assert!(about_flood.len() <= 30, "{} events", about_flood.len());
    // A requeue after 0 ms is raised to the 1 s floor: a handful of
    // reconciles in these seconds, not thousands.
    let reconciles = metric(&text, "wasm_operator_reconciles_total{binding=\"greeting\"");
    assert!(reconciles <= 20.0, "{reconciles} reconciles\n{text}");
}

/// The body of an HTTP response read by [`scrape`].
fn body(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map_or(response, |(_, body)| body)
}

/// Runs `promtool check metrics` on `text` (Prometheus text format) when
/// promtool is installed, and fails when it is not but
/// `WASM_OPERATOR_REQUIRE_PROMTOOL` is set (as scripts/check-monitoring.sh
/// sets it). Returns whether it ran.
fn promtool_check_metrics(text: &str) -> bool {
    use std::io::Write;
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            assert!(
                std::env::var_os("WASM_OPERATOR_REQUIRE_PROMTOOL").is_none(),
                "{promtool} cannot run ({error}): apt-get install --no-install-recommends prometheus"
            );
            eprintln!("promtool not found ({error}): `promtool check metrics` not run");
            return false;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("promtool reads the scrape");
    let output = child.wait_with_output().expect("promtool finishes");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\non:\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_runtime_series_move_as_reconciles_happen_and_the_scrape_passes_promtool() {
    let cluster = Bed::start("controller-runtime-metrics", "hostile-selective").await;
    cluster
        .bind(json!({"children": [{"version": "v1", "kind": "ConfigMap"}]}))
        .await;
    let operator = cluster.start_operator(&["--leader-election=false"]);
    let client = cluster.client();
    let series = |name: &str| format!("{name}{{controller=\"greeting\"");
    let queue = |name: &str| format!("{name}{{name=\"greeting\",controller=\"greeting\"}}");
    let result = |result: &str| {
        format!("controller_runtime_reconcile_total{{controller=\"greeting\",result=\"{result}\"}}")
    };
    // The controller starts with the binding's concurrency (4 by default).
    eventually(
        "the controller's concurrency on /metrics",
        Duration::from_secs(30),
        || async {
            let text = cluster::try_scrape(&operator.http).await?;
            (metric(
                &text,
                &series("controller_runtime_max_concurrent_reconciles"),
            ) == 4.0)
                .then_some(())
        },
    )
    .await;

    fixtures::create_greeting(&client, "calm", "Hello").await;
    let settled = eventually(
        "a successful reconcile counted, taken from the queue and finished",
        Duration::from_secs(20),
        || async {
            let text = scrape(&operator.http).await;
            let done = metric(&text, &result("success")) >= 1.0
                && metric(&text, &queue("workqueue_work_duration_seconds_count")) >= 1.0
                && metric(&text, &series("controller_runtime_active_workers")) == 0.0
                && metric(&text, &queue("workqueue_depth")) == 0.0;
            done.then_some(text)
        },
    )
    .await;
    let successes = metric(&settled, &result("success"));
    let adds = metric(&settled, &queue("workqueue_adds_total"));
    assert!(adds >= 1.0, "{settled}");
    assert!(
        metric(&settled, &queue("workqueue_queue_duration_seconds_count")) >= 1.0,
        "{settled}"
    );
    assert!(
        metric(
            &settled,
            &series("controller_runtime_reconcile_time_seconds_count")
        ) >= successes,
        "{settled}"
    );
    assert_eq!(metric(&settled, &result("error")), 0.0, "{settled}");

    // A spec change is one more add and one more successful reconcile.
    greetings(&client, "default")
        .patch(
            "calm",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"greeting": "Hi"}})),
        )
        .await
        .unwrap();
    eventually(
        "the spec change reconciled",
        Duration::from_secs(20),
        || async {
            let text = scrape(&operator.http).await;
            (metric(&text, &result("success")) > successes
                && metric(&text, &queue("workqueue_adds_total")) > adds)
                .then_some(())
        },
    )
    .await;

    // A plugin that panics: errors, panics, and retries with the backoff.
    fixtures::create_greeting(&client, "trap-me", "Hello").await;
    let failing = eventually(
        "the trap counted as an error and retried twice",
        Duration::from_secs(30),
        || async {
            let text = scrape(&operator.http).await;
            (metric(&text, &queue("workqueue_retries_total")) >= 2.0).then_some(text)
        },
    )
    .await;
    for name in [
        "controller_runtime_reconcile_errors_total",
        "controller_runtime_reconcile_panics_total",
    ] {
        assert!(metric(&failing, &series(name)) >= 2.0, "{name}:\n{failing}");
    }
    assert!(metric(&failing, &result("error")) >= 2.0, "{failing}");
    // A retryable failure is not terminal.
    assert_eq!(
        metric(
            &failing,
            &series("controller_runtime_terminal_reconcile_errors_total")
        ),
        0.0
    );
    // The project's own series stay, beside controller-runtime's.
    assert!(
        metric(&failing, "wasm_operator_queue_depth{binding=\"greeting\"") >= 0.0
            && failing.contains("wasm_operator_reconciles_total{"),
        "{failing}"
    );

    // The real scrape, in the Prometheus text format, passes promtool's lint.
    let text = wasm_operator::metrics::prometheus_text(body(&failing));
    assert!(
        text.contains("# TYPE controller_runtime_reconcile_total counter"),
        "{text}"
    );
    if promtool_check_metrics(&text) {
        println!(
            "promtool check metrics passed on a scrape of {} bytes",
            text.len()
        );
    }
}
