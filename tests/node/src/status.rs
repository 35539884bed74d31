//! The Pod status the kubelet writes: phase, conditions, IPs, and per-container statuses.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The state of one container, as `containerStatuses[].state` shows it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum State {
    /// Not started (yet): `reason`, `message`.
    Waiting {
        reason: String,
        message: Option<String>,
    },
    /// Running since `started_at`.
    Running { started_at: String },
    /// Ended.
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        started_at: String,
        finished_at: String,
    },
}

impl State {
    /// The waiting state with `reason` and no message.
    pub(crate) fn waiting(reason: &str) -> Self {
        Self::Waiting {
            reason: reason.to_owned(),
            message: None,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Self::Waiting { reason, message } => {
                json!({"waiting": {"reason": reason, "message": message}})
            }
            Self::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            Self::Terminated {
                exit_code,
                signal,
                reason,
                started_at,
                finished_at,
            } => json!({"terminated": {
                "exitCode": exit_code,
                "signal": signal,
                "reason": reason,
                "startedAt": started_at,
                "finishedAt": finished_at,
            }}),
        }
    }
}

/// What `containerStatuses[]` (or `initContainerStatuses[]`) says of one container.
#[derive(Clone, Debug)]
pub(crate) struct ContainerStatus {
    pub(crate) name: String,
    pub(crate) image: String,
    pub(crate) state: State,
    pub(crate) last_state: Option<State>,
    pub(crate) restart_count: i32,
    pub(crate) ready: bool,
    /// The process group of the running (or last) process, shown as the container id.
    pub(crate) pgid: Option<i32>,
    /// Whether its startup probe (if any) has succeeded.
    pub(crate) started: bool,
}

impl ContainerStatus {
    /// A container not started yet.
    pub(crate) fn new(name: &str, image: &str, waiting: &str) -> Self {
        Self {
            name: name.to_owned(),
            image: image.to_owned(),
            state: State::waiting(waiting),
            last_state: None,
            restart_count: 0,
            ready: false,
            pgid: None,
            started: false,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "containerID": self.pgid.map(|p| format!("test-node://{p}")),
            "state": self.state.to_json(),
            "lastState": self.last_state.as_ref().map_or(json!({}), State::to_json),
            "ready": self.ready,
            "started": self.started && matches!(self.state, State::Running { .. }),
            "restartCount": self.restart_count,
        })
    }
}

/// Everything the status is rendered from.
#[derive(Debug)]
pub(crate) struct PodStatus {
    pub(crate) phase: &'static str,
    pub(crate) host_ip: String,
    pub(crate) pod_ip: String,
    pub(crate) start_time: String,
    pub(crate) init: Vec<ContainerStatus>,
    pub(crate) containers: Vec<ContainerStatus>,
    /// The last transition time of each condition, by type, with the status it had then.
    transitions: BTreeMap<&'static str, (bool, String)>,
}

impl PodStatus {
    /// The status of a Pod the kubelet has just accepted.
    pub(crate) fn new(host_ip: String, pod_ip: String, now: String) -> Self {
        Self {
            phase: "Pending",
            host_ip,
            pod_ip,
            start_time: now,
            init: Vec::new(),
            containers: Vec::new(),
            transitions: BTreeMap::new(),
        }
    }

    /// The `status` object, with condition transition times kept while a condition holds.
    pub(crate) fn render(&mut self, now: &str) -> Value {
        let incomplete: Vec<&str> = self
            .init
            .iter()
            .filter(|c| !matches!(&c.state, State::Terminated { exit_code: 0, .. }))
            .map(|c| c.name.as_str())
            .collect();
        let unready: Vec<&str> = self
            .containers
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.name.as_str())
            .collect();
        let initialized = incomplete.is_empty();
        let ready = unready.is_empty();
        let unready_message = format!("containers with unready status: [{}]", unready.join(" "));
        let conditions = [
            ("PodScheduled", true, None, None),
            (
                "Initialized",
                initialized,
                Some("ContainersNotInitialized"),
                Some(format!(
                    "containers with incomplete status: [{}]",
                    incomplete.join(" ")
                )),
            ),
            (
                "ContainersReady",
                ready,
                Some("ContainersNotReady"),
                Some(unready_message.clone()),
            ),
            (
                "Ready",
                ready,
                Some("ContainersNotReady"),
                Some(unready_message),
            ),
        ];
        let conditions: Vec<Value> = conditions
            .into_iter()
            .map(|(kind, status, reason, message)| {
                let (_, since) = self
                    .transitions
                    .entry(kind)
                    .and_modify(|(was, since)| {
                        if *was != status {
                            *was = status;
                            now.clone_into(since);
                        }
                    })
                    .or_insert_with(|| (status, now.to_owned()));
                let mut condition = json!({
                    "type": kind,
                    "status": if status { "True" } else { "False" },
                    "lastProbeTime": null,
                    "lastTransitionTime": since,
                });
                if !status {
                    condition["reason"] = json!(reason);
                    condition["message"] = json!(message);
                }
                condition
            })
            .collect();
        json!({
            "phase": self.phase,
            "conditions": conditions,
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time,
            "qosClass": "BestEffort",
            "initContainerStatuses": self.init.iter().map(ContainerStatus::to_json).collect::<Vec<_>>(),
            "containerStatuses": self.containers.iter().map(ContainerStatus::to_json).collect::<Vec<_>>(),
        })
    }
}

/// The current time as the API writes it (RFC 3339, seconds).
pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
