//! One Pod on the node, from acceptance to removal: the kubelet's pod worker.
//!
//! Order, as the kubelet does it: the Pod IP and `startTime`; images (an unknown one leaves
//! the Pod `Pending` with `ErrImageNeverPull`); volumes (waits until claims are bound and
//! Secrets and ConfigMaps exist); init containers one at a time, each to exit code 0; then
//! every container, restarted per `restartPolicy` with the kubelet's back-off (10 s doubling
//! to 5 min); readiness probes. Deletion (a `deletionTimestamp`, held by the node's
//! finalizer until here) sends SIGTERM to every container, SIGKILL after the grace period,
//! then releases the Pod.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus as ApiPodStatus};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::process::Child;
use tokio::sync::watch;

use crate::container::{self, Launched};
use crate::images::{self, Image};
use crate::probe::{ProbeState, Target};
use crate::sandbox::Sandbox;
use crate::status::{ContainerStatus, PodStatus, State, now};
use crate::volumes::{self, HostVolume};
use crate::{FINALIZER, Shared, processes};

/// How often the worker looks at its processes, probes and the Pod.
const TICK: Duration = Duration::from_millis(100);

/// The kubelet's restart back-off after the first (immediate) restart, doubled per restart
/// up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The grace period when neither the deletion nor the Pod names one.
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// Runs the Pod whose latest version `updates` carries (`None`: it is gone from the API).
pub(crate) async fn run(shared: Arc<Shared>, updates: watch::Receiver<Option<Pod>>) {
    let Some(pod) = updates.borrow().clone() else {
        return;
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let pod_ip = shared.allocate_ip().to_string();
    let mut worker = Worker {
        dir: shared.workdir.join("pods").join(&uid),
        status: PodStatus::new(shared.host_ip.to_string(), pod_ip, now()),
        api: Api::namespaced(
            shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        ),
        name: pod.metadata.name.clone().unwrap_or_default(),
        shared,
        updates,
        pod,
        init: Vec::new(),
        containers: Vec::new(),
        written: None,
    };
    worker.run().await;
    if let Err(error) = std::fs::remove_dir_all(&worker.dir) {
        tracing::debug!(%error, "removing a Pod's directory");
    }
}

/// How the Pod's deletion stands.
enum Deletion {
    /// Not deleted.
    No,
    /// `deletionTimestamp` set: terminate within this grace period.
    Graceful(Duration),
    /// Gone from the API already: kill at once.
    Gone,
}

struct Worker {
    shared: Arc<Shared>,
    updates: watch::Receiver<Option<Pod>>,
    pod: Pod,
    api: Api<Pod>,
    name: String,
    dir: PathBuf,
    status: PodStatus,
    init: Vec<Run>,
    containers: Vec<Run>,
    /// The status last written, so that unchanged status is not written again.
    written: Option<Value>,
}

/// One container's runtime side.
struct Run {
    spec: Container,
    image: Option<Image>,
    child: Option<Child>,
    sandbox: Option<Sandbox>,
    env: Vec<(String, String)>,
    /// The readiness probe.
    probe: Option<ProbeState>,
    liveness: Option<ProbeState>,
    startup: Option<ProbeState>,
    /// Whether the startup probe (if any) has succeeded.
    started: bool,
    /// When an exited container may start again.
    restart_at: Option<Instant>,
    /// When a container killed by a failed liveness or startup probe gets SIGKILL.
    kill_at: Option<Instant>,
}

impl Worker {
    async fn run(&mut self) {
        if let Err(error) = self.hold_deletion().await {
            tracing::warn!(%error, pod = %self.name, "adding the node's finalizer");
        }
        let spec = self.pod.spec.clone().unwrap_or_default();
        let runs = |list: &[Container]| -> Vec<Run> {
            list.iter()
                .map(|c| Run {
                    image: c.image.as_deref().and_then(images::resolve),
                    spec: c.clone(),
                    child: None,
                    sandbox: None,
                    env: Vec::new(),
                    probe: None,
                    liveness: None,
                    startup: None,
                    started: false,
                    restart_at: None,
                    kill_at: None,
                })
                .collect()
        };
        self.init = runs(spec.init_containers.as_deref().unwrap_or_default());
        self.containers = runs(&spec.containers);
        let waiting = if self.init.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        self.status.init = self
            .init
            .iter()
            .map(|r| status_of(r, "PodInitializing"))
            .collect();
        self.status.containers = self
            .containers
            .iter()
            .map(|r| status_of(r, waiting))
            .collect();
        if self.lacks_images() {
            self.write_status().await;
            self.wait_for_deletion().await;
            return self.release().await;
        }
        let volumes = loop {
            match volumes::prepare(&self.shared, &self.pod, &self.dir).await {
                Ok(volumes) => break volumes,
                Err(message) => {
                    tracing::debug!(pod = %self.name, %message, "volumes not ready");
                    self.write_status().await;
                    if self.pause(Duration::from_millis(500)).await {
                        return self.release().await;
                    }
                }
            }
        };
        for index in 0..self.init.len() {
            if !self.run_init(index, &volumes).await {
                return self.release().await;
            }
        }
        self.supervise(&volumes).await;
        self.release().await;
    }

    /// Marks every container whose image the node lacks as waiting on `ErrImageNeverPull`.
    fn lacks_images(&mut self) -> bool {
        let mut lacking = false;
        let runs = self.init.iter().zip(self.status.init.iter_mut());
        let runs = runs.chain(
            self.containers
                .iter()
                .zip(self.status.containers.iter_mut()),
        );
        for (run, status) in runs {
            if run.image.is_none() {
                lacking = true;
                status.state = State::Waiting {
                    reason: "ErrImageNeverPull".to_owned(),
                    message: Some(format!(
                        "Container image \"{}\" is not present with pull policy of Never",
                        run.spec.image.as_deref().unwrap_or_default()
                    )),
                };
            }
        }
        lacking
    }

    /// Runs init container `index` until it exits 0; `false` if the Pod failed or is being
    /// deleted instead.
    async fn run_init(&mut self, index: usize, volumes: &BTreeMap<String, HostVolume>) -> bool {
        loop {
            if let Err((reason, message)) = self.start(true, index, volumes).await {
                self.status.init[index].state = State::Waiting {
                    reason,
                    message: Some(message),
                };
                self.write_status().await;
                if self.pause(Duration::from_secs(1)).await {
                    return false;
                }
                continue;
            }
            self.write_status().await;
            loop {
                if self.shared.failed() {
                    self.while_failed().await;
                }
                if !matches!(self.deletion(), Deletion::No) {
                    self.terminate().await;
                    return false;
                }
                if let Some(code) = self.reap(true, index) {
                    if code == 0 {
                        self.write_status().await;
                        return true;
                    }
                    if self.restart_policy() == "Never" {
                        self.status.phase = "Failed";
                        self.write_status().await;
                        self.wait_for_deletion().await;
                        return false;
                    }
                    let delay = backoff(self.status.init[index].restart_count);
                    self.status.init[index].restart_count += 1;
                    self.write_status().await;
                    if self.pause(delay).await {
                        return false;
                    }
                    break;
                }
                tokio::time::sleep(TICK).await;
            }
        }
    }

    /// Starts every container and looks after them until the Pod is deleted.
    async fn supervise(&mut self, volumes: &BTreeMap<String, HostVolume>) {
        for index in 0..self.containers.len() {
            self.start_or_wait(index, volumes).await;
        }
        loop {
            if self.shared.failed() {
                self.while_failed().await;
            }
            self.update_phase();
            self.write_status().await;
            if !matches!(self.deletion(), Deletion::No) {
                return self.terminate().await;
            }
            let policy = self.restart_policy();
            for index in 0..self.containers.len() {
                if let Some(code) = self.reap(false, index) {
                    let restart = policy == "Always" || (policy == "OnFailure" && code != 0);
                    if restart {
                        let delay = backoff(self.status.containers[index].restart_count);
                        self.containers[index].restart_at = Some(Instant::now() + delay);
                        if !delay.is_zero() {
                            self.back_off(index, delay);
                        }
                    }
                }
                let run = &self.containers[index];
                if run.kill_at.is_some_and(|at| Instant::now() >= at)
                    && run.child.is_some()
                    && let Some(pgid) = self.status.containers[index].pgid
                {
                    processes::signal_group(pgid, libc::SIGKILL);
                }
                if self.containers[index]
                    .restart_at
                    .is_some_and(|at| Instant::now() >= at)
                {
                    self.containers[index].restart_at = None;
                    self.status.containers[index].restart_count += 1;
                    self.start_or_wait(index, volumes).await;
                }
                self.probe(index).await;
            }
            tokio::time::sleep(TICK).await;
        }
    }

    async fn start_or_wait(&mut self, index: usize, volumes: &BTreeMap<String, HostVolume>) {
        if let Err((reason, message)) = self.start(false, index, volumes).await {
            self.status.containers[index].state = State::Waiting {
                reason,
                message: Some(message),
            };
            // A container that cannot be created is retried as a restart would be.
            self.containers[index].restart_at = Some(Instant::now() + Duration::from_secs(1));
        }
    }

    /// Starts one container's process; `Err((reason, message))` as the kubelet reports a
    /// container it could not create.
    async fn start(
        &mut self,
        init: bool,
        index: usize,
        volumes: &BTreeMap<String, HostVolume>,
    ) -> Result<(), (String, String)> {
        let run = if init {
            &self.init[index]
        } else {
            &self.containers[index]
        };
        let spec = run.spec.clone();
        let image = run
            .image
            .clone()
            .expect("images are checked before starting");
        let mut pod = self.pod.clone();
        let status = pod.status.get_or_insert_with(ApiPodStatus::default);
        status.pod_ip = Some(self.status.pod_ip.clone());
        status.host_ip = Some(self.status.host_ip.clone());
        status.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP {
            ip: self.status.pod_ip.clone(),
        }]);
        let container_dir = self.dir.join("containers").join(&spec.name);
        let Launched {
            child,
            sandbox,
            env,
            pgid,
        } = container::launch(&self.shared, &pod, &spec, &image, volumes, &container_dir).await?;
        self.shared.processes.add(pgid);
        let started_at = now();
        let (run, status) = if init {
            (&mut self.init[index], &mut self.status.init[index])
        } else {
            (
                &mut self.containers[index],
                &mut self.status.containers[index],
            )
        };
        let started = Instant::now();
        let probe = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            p.clone().map(|p| ProbeState::new(p, started))
        };
        run.probe = probe(&spec.readiness_probe);
        run.liveness = probe(&spec.liveness_probe);
        run.startup = probe(&spec.startup_probe);
        run.started = run.startup.is_none();
        run.kill_at = None;
        status.started = run.started;
        status.ready = !init && run.probe.is_none() && run.started;
        if matches!(status.state, State::Terminated { .. }) {
            status.last_state = Some(status.state.clone());
        }
        status.state = State::Running { started_at };
        status.pgid = Some(pgid);
        self.shared.running.insert(&self.pod, &spec.name, pgid);
        run.child = Some(child);
        run.sandbox = Some(sandbox);
        run.env = env;
        Ok(())
    }

    /// If the container's process has exited: ends its group, records `terminated`, and
    /// returns the exit code (128 + signal for a killed process, as runtimes report it).
    fn reap(&mut self, init: bool, index: usize) -> Option<i32> {
        let (run, status) = if init {
            (&mut self.init[index], &mut self.status.init[index])
        } else {
            (
                &mut self.containers[index],
                &mut self.status.containers[index],
            )
        };
        let exit = run.child.as_mut()?.try_wait().ok()??;
        run.child = None;
        run.kill_at = None;
        if let Some(pgid) = status.pgid {
            self.shared.processes.end(pgid);
            self.shared.running.remove(pgid);
        }
        use std::os::unix::process::ExitStatusExt;
        let signal = exit.signal();
        let code = exit.code().unwrap_or_else(|| 128 + signal.unwrap_or(0));
        let started_at = match &status.state {
            State::Running { started_at } => started_at.clone(),
            _ => now(),
        };
        let reason = if code == 0 { "Completed" } else { "Error" };
        let terminated = State::Terminated {
            exit_code: code,
            signal,
            reason: reason.to_owned(),
            started_at,
            finished_at: now(),
        };
        status.state = terminated;
        status.ready = false;
        Some(code)
    }

    /// Runs the container's due probes: the startup probe until it succeeds, then liveness
    /// and readiness. A failed startup or liveness probe kills the container (SIGTERM, then
    /// SIGKILL after the probe's or the Pod's grace period); the restart policy decides the
    /// rest, as for any exit.
    async fn probe(&mut self, index: usize) {
        let pod_grace = self.grace_seconds();
        let Run {
            spec,
            child: Some(_),
            sandbox: Some(sandbox),
            env,
            probe,
            liveness,
            startup,
            started,
            kill_at: kill_at @ None,
            ..
        } = &mut self.containers[index]
        else {
            return;
        };
        let target = Target {
            pod_ip: &self.status.pod_ip,
            container: spec,
            sandbox,
            env,
            processes: &self.shared.processes,
        };
        let status = &mut self.status.containers[index];
        let mut kill_grace = None;
        if !*started {
            if let Some(startup) = startup.as_mut() {
                match startup.tick(&target).await {
                    Some(true) => {
                        *started = true;
                        status.started = true;
                        status.ready = probe.is_none();
                    }
                    Some(false) => kill_grace = Some(startup.grace_seconds()),
                    None => {}
                }
            }
        } else {
            if let Some(liveness) = liveness.as_mut()
                && liveness.tick(&target).await == Some(false)
            {
                kill_grace = Some(liveness.grace_seconds());
            }
            if kill_grace.is_none()
                && let Some(probe) = probe.as_mut()
                && let Some(ready) = probe.tick(&target).await
            {
                status.ready = ready;
            }
        }
        if let Some(grace) = kill_grace {
            status.ready = false;
            let seconds = grace.unwrap_or(pod_grace);
            *kill_at =
                Some(Instant::now() + Duration::from_secs(u64::try_from(seconds).unwrap_or(0)));
            if let Some(pgid) = status.pgid {
                processes::signal_process(pgid, libc::SIGTERM);
            }
        }
    }

    /// A container waiting to be restarted shows `CrashLoopBackOff`, its last run in
    /// `lastState`, as the kubelet reports it.
    fn back_off(&mut self, index: usize, delay: Duration) {
        let status = &mut self.status.containers[index];
        if matches!(status.state, State::Terminated { .. }) {
            status.last_state = Some(status.state.clone());
        }
        status.state = State::Waiting {
            reason: "CrashLoopBackOff".to_owned(),
            message: Some(format!(
                "back-off {}s restarting failed container={} pod={}_{}({})",
                delay.as_secs(),
                status.name,
                self.name,
                self.pod.metadata.namespace.as_deref().unwrap_or("default"),
                self.pod.metadata.uid.as_deref().unwrap_or_default(),
            )),
        };
    }

    /// The node has failed: every process is gone (a power loss), nothing is written or
    /// started until it recovers; then the containers start again, as after a reboot.
    async fn while_failed(&mut self) {
        while self.shared.failed() {
            for pgid in self.running_groups() {
                processes::signal_group(pgid, libc::SIGKILL);
            }
            for index in 0..self.init.len() {
                self.reap(true, index);
            }
            for index in 0..self.containers.len() {
                if self.reap(false, index).is_some() {
                    self.containers[index].restart_at = Some(Instant::now());
                }
            }
            self.written = None;
            tokio::time::sleep(TICK).await;
        }
    }

    fn update_phase(&mut self) {
        let terminated: Vec<i32> = self
            .status
            .containers
            .iter()
            .zip(&self.containers)
            .filter(|(_, run)| run.restart_at.is_none())
            .filter_map(|(status, _)| match status.state {
                State::Terminated { exit_code, .. } => Some(exit_code),
                _ => None,
            })
            .collect();
        self.status.phase = if terminated.len() == self.containers.len() {
            if terminated.iter().all(|c| *c == 0) {
                "Succeeded"
            } else {
                "Failed"
            }
        } else {
            "Running"
        };
    }

    /// SIGTERM to every running container, SIGKILL to those left after the grace period.
    async fn terminate(&mut self) {
        let grace = match self.deletion() {
            Deletion::Graceful(grace) => grace,
            Deletion::Gone | Deletion::No => Duration::ZERO,
        };
        // SIGTERM goes to each container's first process only, as a runtime signals a
        // container's PID 1; the rest of its group is the process's own business.
        for pgid in self.running_groups() {
            crate::processes::signal_process(pgid, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        loop {
            for index in 0..self.init.len() {
                self.reap(true, index);
            }
            for index in 0..self.containers.len() {
                self.reap(false, index);
            }
            if self.running_groups().is_empty() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(TICK).await;
        }
        for pgid in self.running_groups() {
            crate::processes::signal_group(pgid, libc::SIGKILL);
        }
        for run in self.init.iter_mut().chain(self.containers.iter_mut()) {
            if let Some(child) = run.child.as_mut() {
                let _ = child.wait().await;
            }
        }
        for index in 0..self.init.len() {
            self.reap(true, index);
        }
        for index in 0..self.containers.len() {
            self.reap(false, index);
        }
        self.update_phase();
        self.write_status().await;
    }

    fn running_groups(&self) -> Vec<i32> {
        let init = self.init.iter().zip(&self.status.init);
        init.chain(self.containers.iter().zip(&self.status.containers))
            .filter(|(run, _)| run.child.is_some())
            .filter_map(|(_, status)| status.pgid)
            .collect()
    }

    /// Waits `delay`; `true` if the Pod is being deleted (its processes are then ended).
    async fn pause(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if !matches!(self.deletion(), Deletion::No) {
                self.terminate().await;
                return true;
            }
            tokio::time::sleep(TICK).await;
        }
        false
    }

    async fn wait_for_deletion(&mut self) {
        while matches!(self.deletion(), Deletion::No) {
            if self.updates.changed().await.is_err() {
                return;
            }
        }
    }

    fn deletion(&self) -> Deletion {
        let current = self.updates.borrow();
        let Some(pod) = current.as_ref() else {
            return Deletion::Gone;
        };
        if pod.metadata.deletion_timestamp.is_none() {
            return Deletion::No;
        }
        // The real API server copies the DeleteOptions' gracePeriodSeconds (default: the
        // Pod's terminationGracePeriodSeconds) into deletionGracePeriodSeconds; the test API
        // server writes 0 for every kind, so the Pod's own grace period is what counts.
        let seconds = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(DEFAULT_GRACE_SECONDS);
        Deletion::Graceful(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
    }

    /// The Pod's `terminationGracePeriodSeconds` (default 30).
    fn grace_seconds(&self) -> i64 {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(DEFAULT_GRACE_SECONDS)
    }

    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".to_owned())
    }

    /// Writes the status if it changed since the last write.
    async fn write_status(&mut self) {
        if self.shared.failed() {
            // A failed node's kubelet writes nothing.
            return;
        }
        let status = self.status.render(&now());
        if self.written.as_ref() == Some(&status) {
            return;
        }
        match self
            .api
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
        {
            Ok(_) => self.written = Some(status),
            Err(error) => tracing::debug!(%error, pod = %self.name, "writing a Pod's status"),
        }
    }

    /// Adds the node's finalizer, so that a deleted Pod stays (terminating) until its
    /// processes have ended, as it does on a real cluster. Retried on conflicts: the
    /// scheduler's status write may land just after the version the worker started from.
    async fn hold_deletion(&self) -> Result<(), kube::Error> {
        let mut last = None;
        for _ in 0..10 {
            let current = match self.api.get_opt(&self.name).await? {
                Some(pod) if pod.metadata.uid == self.pod.metadata.uid => pod,
                _ => return Ok(()),
            };
            let mut finalizers = current.metadata.finalizers.clone().unwrap_or_default();
            if finalizers.iter().any(|f| f == FINALIZER)
                || current.metadata.deletion_timestamp.is_some()
            {
                return Ok(());
            }
            finalizers.push(FINALIZER.to_owned());
            let patch = json!({"metadata": {
                "finalizers": finalizers,
                "resourceVersion": current.metadata.resource_version,
            }});
            match self
                .api
                .patch(&self.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(status)) if status.code == 409 => last = Some(status),
                Err(error) => return Err(error),
            }
        }
        Err(kube::Error::Api(last.expect("ten conflicts")))
    }

    /// Removes the node's finalizer: the Pod goes from the API.
    async fn release(&mut self) {
        for _ in 0..10 {
            let current = match self.api.get_opt(&self.name).await {
                Ok(Some(pod)) if pod.metadata.uid == self.pod.metadata.uid => pod,
                Ok(_) => return,
                Err(error) => {
                    tracing::debug!(%error, "reading a Pod to release");
                    tokio::time::sleep(TICK).await;
                    continue;
                }
            };
            let finalizers: Vec<String> = current
                .metadata
                .finalizers
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f != FINALIZER)
                .collect();
            let patch = json!({"metadata": {
                "finalizers": finalizers,
                "resourceVersion": current.metadata.resource_version,
            }});
            match self
                .api
                .patch(&self.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => return,
                Err(error) => tracing::debug!(%error, "releasing a Pod"),
            }
        }
    }
}

/// The initial status of a container.
fn status_of(run: &Run, waiting: &str) -> ContainerStatus {
    ContainerStatus::new(
        &run.spec.name,
        run.spec.image.as_deref().unwrap_or_default(),
        waiting,
    )
}

/// The restart delay after `restarts` restarts: none for the first (the kubelet's back-off
/// entry for a container only exists once it has restarted), then 10 s doubling.
fn backoff(restarts: i32) -> Duration {
    if restarts <= 0 {
        return Duration::ZERO;
    }
    let doublings = u32::try_from((restarts - 1).clamp(0, 10)).unwrap_or(0);
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}
