//! Probes (`exec`, `tcpSocket`, `httpGet`) and their thresholds, as the kubelet runs them
//! for readiness, liveness and startup.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::processes::Processes;
use crate::sandbox::Sandbox;

/// Where one container's probe stands.
#[derive(Debug)]
pub(crate) struct ProbeState {
    probe: Probe,
    next: Instant,
    successes: i32,
    failures: i32,
}

impl ProbeState {
    /// A probe that first runs after `initialDelaySeconds` from `started`.
    pub(crate) fn new(probe: Probe, started: Instant) -> Self {
        let delay = seconds(probe.initial_delay_seconds, 0);
        Self {
            probe,
            next: started + delay,
            successes: 0,
            failures: 0,
        }
    }

    /// The probe's own `terminationGracePeriodSeconds` (for a kill on liveness or startup
    /// failure), if it sets one.
    pub(crate) fn grace_seconds(&self) -> Option<i64> {
        self.probe.termination_grace_period_seconds
    }

    /// Runs the probe if it is due, and says the result it leads to once a threshold is
    /// reached (`None`: not due, or no threshold crossed).
    pub(crate) async fn tick(&mut self, target: &Target<'_>) -> Option<bool> {
        if Instant::now() < self.next {
            return None;
        }
        let timeout = seconds(self.probe.timeout_seconds, 1);
        let ok = tokio::time::timeout(timeout, run(&self.probe, target))
            .await
            .unwrap_or(false);
        self.next = Instant::now() + seconds(self.probe.period_seconds, 10);
        if ok {
            self.failures = 0;
            self.successes += 1;
            (self.successes >= self.probe.success_threshold.unwrap_or(1)).then_some(true)
        } else {
            self.successes = 0;
            self.failures += 1;
            (self.failures >= self.probe.failure_threshold.unwrap_or(3)).then_some(false)
        }
    }
}

/// What a probe runs against.
pub(crate) struct Target<'a> {
    pub(crate) pod_ip: &'a str,
    pub(crate) container: &'a Container,
    pub(crate) sandbox: &'a Sandbox,
    pub(crate) env: &'a [(String, String)],
    pub(crate) processes: &'a Processes,
}

fn seconds(value: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(value.unwrap_or(default)).unwrap_or(0))
}

async fn run(probe: &Probe, target: &Target<'_>) -> bool {
    if let Some(exec) = &probe.exec {
        return exec_succeeds(exec.command.as_deref().unwrap_or_default(), target).await;
    }
    if let Some(tcp) = &probe.tcp_socket {
        let host = tcp.host.as_deref().unwrap_or(target.pod_ip);
        let Some(port) = port(&tcp.port, target.container) else {
            return false;
        };
        return tokio::net::TcpStream::connect((host, port)).await.is_ok();
    }
    if let Some(http) = &probe.http_get {
        let host = http.host.as_deref().unwrap_or(target.pod_ip);
        let Some(port) = port(&http.port, target.container) else {
            return false;
        };
        return http_succeeds(host, port, http.path.as_deref().unwrap_or("/")).await;
    }
    false
}

/// An `exec` probe: the command in the container's sandbox, success on exit code 0. Its
/// process group is ended whatever happens (a timed-out probe is dropped mid-wait).
async fn exec_succeeds(command: &[String], target: &Target<'_>) -> bool {
    let Ok(devnull) = std::fs::File::create("/dev/null") else {
        return false;
    };
    let Ok(mut child) = target
        .sandbox
        .command(command, target.env, &devnull)
        .and_then(|mut c| c.spawn())
    else {
        return false;
    };
    let Some(pgid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        return false;
    };
    target.processes.add(pgid);
    let guard = EndOnDrop(pgid, target.processes);
    let ok = child.wait().await.is_ok_and(|s| s.success());
    drop(guard);
    ok
}

struct EndOnDrop<'a>(i32, &'a Processes);

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.1.end(self.0);
    }
}

/// An `httpGet` probe: a status from 200 to 399.
async fn http_succeeds(host: &str, port: u16, path: &str) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect((host, port)).await else {
        return false;
    };
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/test-node\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    if stream.read_exact(&mut head).await.is_err() {
        return false;
    }
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|code| code.parse::<u16>().ok())
        .is_some_and(|code| (200..400).contains(&code))
}

/// A probe's port: a number, or the name of one of the container's ports.
fn port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}
