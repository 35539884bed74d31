//! Leader election between two candidates through a Lease on the test API server.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use test_apiserver::TestApiServer;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wasm_operator::leader::{LeaderElector, LeaderError, LeaseConfig};
use wasm_operator::metrics::Metrics;

const LEASE: &str = "wasm-operator-leader";
const LEASE_DURATION: Duration = Duration::from_secs(3);
const RENEW_PERIOD: Duration = Duration::from_millis(500);

/// One campaigning candidate.
struct Candidate {
    leading: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), LeaderError>>,
}

impl Candidate {
    fn start(server: &TestApiServer, identity: &str) -> Self {
        let config = LeaseConfig::new("default", LEASE, identity)
            .lease_duration(LEASE_DURATION)
            .renew_period(RENEW_PERIOD);
        let metrics = Arc::new(Metrics::new());
        let elector = LeaderElector::new(server.client(), config)
            .expect("a valid configuration")
            .with_metrics(Arc::clone(&metrics));
        let leading = elector.leadership();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(elector.run(async {
            stopped.await.ok();
        }));
        Self {
            leading,
            metrics,
            stop,
            task,
        }
    }

    fn leads(&self) -> bool {
        *self.leading.borrow()
    }

    /// `leader_election_master_status` of the Lease in this candidate's metrics.
    fn master_status(&self) -> Option<f64> {
        let series = format!("leader_election_master_status{{name=\"{LEASE}\"}} ");
        self.metrics
            .encode()
            .lines()
            .find_map(|line| line.strip_prefix(&series)?.parse().ok())
    }

    /// Stops campaigning and releases the Lease.
    async fn stop(self) {
        self.stop.send(()).expect("the candidate is running");
        self.task
            .await
            .expect("the candidate does not panic")
            .expect("the Lease is released");
        assert!(!*self.leading.borrow());
    }
}

async fn holder(server: &TestApiServer) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(server.client(), "default");
    leases
        .get(LEASE)
        .await
        .expect("the Lease exists")
        .spec
        .and_then(|spec| spec.holder_identity)
}

/// Waits until exactly one of `a` and `b` leads, checking they never both do,
/// and returns which one (`true` for `a`).
async fn await_single_leader(a: &Candidate, b: &Candidate, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let (a_leads, b_leads) = (a.leads(), b.leads());
        assert!(!(a_leads && b_leads), "both candidates lead");
        if a_leads || b_leads {
            return a_leads;
        }
        assert!(Instant::now() < deadline, "nobody leads after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks for `period` that `leader` keeps leading and `follower` never does.
async fn assert_leadership_holds(leader: &Candidate, follower: &Candidate, period: Duration) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        assert!(leader.leads(), "the leader lost the Lease");
        assert!(!follower.leads(), "the follower leads as well");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_of_two_candidates_leads_and_a_stopped_leader_hands_over_at_once() {
    let server = TestApiServer::start()
        .await
        .expect("the test API server starts");
    let a = Candidate::start(&server, "replica-a");
    let b = Candidate::start(&server, "replica-b");

    let a_leads = await_single_leader(&a, &b, LEASE_DURATION).await;
    let (leader, follower, follower_name) = if a_leads {
        (a, b, "replica-b")
    } else {
        (b, a, "replica-a")
    };
    // Several renewals pass without the follower ever taking over.
    assert_leadership_holds(&leader, &follower, LEASE_DURATION * 2).await;

    let stopped = Instant::now();
    leader.stop().await;
    let mut leading = follower.leading.clone();
    tokio::time::timeout(LEASE_DURATION, leading.wait_for(|leads| *leads))
        .await
        .expect("the follower takes over within the lease duration")
        .expect("the follower is running");
    // Released, not expired: the follower took over at its next attempt.
    assert!(
        stopped.elapsed() < LEASE_DURATION,
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(holder(&server).await.as_deref(), Some(follower_name));
    follower.stop().await;
    assert_eq!(holder(&server).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_vanishes_is_replaced_once_its_lease_expires() {
    let server = TestApiServer::start()
        .await
        .expect("the test API server starts");
    let a = Candidate::start(&server, "replica-a");
    let mut leading = a.leading.clone();
    tokio::time::timeout(LEASE_DURATION, leading.wait_for(|leads| *leads))
        .await
        .expect("a lone candidate leads")
        .expect("the candidate is running");

    // The leader's process dies: no release, the Lease just stops being renewed.
    a.task.abort();
    let vanished = Instant::now();
    let b = Candidate::start(&server, "replica-b");
    let mut leading = b.leading.clone();
    tokio::time::timeout(LEASE_DURATION * 2, leading.wait_for(|leads| *leads))
        .await
        .expect("the second candidate takes over after expiry")
        .expect("the candidate is running");
    // Not before the Lease expired (renewTime is written in microseconds,
    // so allow the last renewal to have started up to one period earlier).
    let waited = vanished.elapsed();
    assert!(
        waited >= LEASE_DURATION - RENEW_PERIOD,
        "took over after {waited:?}"
    );
    assert_eq!(holder(&server).await.as_deref(), Some("replica-b"));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_reports_master_status_1_and_the_follower_0_until_it_takes_over() {
    let server = TestApiServer::start()
        .await
        .expect("the test API server starts");
    let a = Candidate::start(&server, "replica-a");
    assert_eq!(
        a.master_status(),
        Some(0.0),
        "not leading before campaigning"
    );
    let b = Candidate::start(&server, "replica-b");
    let (leader, follower) = if await_single_leader(&a, &b, LEASE_DURATION).await {
        (a, b)
    } else {
        (b, a)
    };
    // The follower has tried (and failed) at least once by now.
    tokio::time::sleep(RENEW_PERIOD * 2).await;
    assert_eq!(leader.master_status(), Some(1.0));
    assert_eq!(follower.master_status(), Some(0.0));

    let stopped_metrics = Arc::clone(&leader.metrics);
    leader.stop().await;
    let mut leading = follower.leading.clone();
    tokio::time::timeout(LEASE_DURATION, leading.wait_for(|leads| *leads))
        .await
        .expect("the follower takes over")
        .expect("the follower is running");
    assert_eq!(follower.master_status(), Some(1.0));
    let series = format!("leader_election_master_status{{name=\"{LEASE}\"}} 0");
    assert!(
        stopped_metrics.encode().contains(&series),
        "the stopped leader shows 0:\n{}",
        stopped_metrics.encode()
    );
    follower.stop().await;
}
