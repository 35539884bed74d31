//! Leader election through a `coordination.k8s.io/v1` Lease, so that of
//! several operator replicas only one reconciles at a time.
//!
//! Written here rather than taken from a crate: `kube-leader-election` 0.44
//! needs kube 4 and `kube-coordinate` 2.0.0-rc.0 needs kube 2, and this
//! crate is on kube 5. The algorithm is client-go's: take the Lease when it
//! is free or expired, renew it every period, and write only with the
//! `resourceVersion` just read, so of two candidates racing for it exactly
//! one write succeeds.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// Default time a Lease stays valid after its last renewal.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);

/// Default time between two renewals by the leader.
pub const DEFAULT_RENEW_PERIOD: Duration = Duration::from_secs(5);

/// Longest wait before retrying after a failed request, and between two
/// looks at a Lease someone else holds: a released Lease is taken over
/// within about this long, not a renew period later.
const RETRY_PERIOD: Duration = Duration::from_secs(1);

/// What went wrong electing a leader.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The renew period leaves no time to retry a failed renewal before the
    /// Lease expires.
    #[error(
        "the lease renew period ({} ms) must be shorter than half the lease duration ({} ms)",
        renew_period.as_millis(),
        lease_duration.as_millis()
    )]
    RenewPeriodTooLong {
        /// The configured renew period.
        renew_period: Duration,
        /// The configured lease duration.
        lease_duration: Duration,
    },
    /// Releasing the Lease at shutdown failed; successors wait for it to
    /// expire instead.
    #[error("could not release the Lease {namespace}/{name}")]
    Release {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Which Lease to hold, as whom, and for how long.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity, unique among candidates (e.g. the Pod name).
    pub identity: String,
    /// How long the Lease stays valid after a renewal; written to the Lease
    /// in whole seconds, rounded up.
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_period: Duration,
}

impl LeaseConfig {
    /// The Lease `namespace/name` held as `identity`, with the default
    /// duration (15 s) and renew period (5 s).
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_period: DEFAULT_RENEW_PERIOD,
        }
    }

    /// Sets how long the Lease stays valid after a renewal.
    #[must_use]
    pub fn lease_duration(mut self, duration: Duration) -> Self {
        self.lease_duration = duration;
        self
    }

    /// Sets how often the leader renews.
    #[must_use]
    pub fn renew_period(mut self, period: Duration) -> Self {
        self.renew_period = period;
        self
    }

    /// The Lease's validity as written to `leaseDurationSeconds`.
    fn lease_seconds(&self) -> i32 {
        let seconds =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(seconds.max(1)).unwrap_or(i32::MAX)
    }

    /// How long after the start of its last successful renewal the leader
    /// gives up leadership: one renew period before anyone else may take
    /// the Lease over, so two replicas never both believe they lead.
    fn renew_deadline(&self) -> Duration {
        self.lease_duration.saturating_sub(self.renew_period)
    }
}

/// What a candidate may do with a Lease as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Claim {
    /// We hold it: renew it.
    Renew,
    /// Nobody holds it, or the holder let it expire: take it over.
    TakeOver,
    /// Someone else holds it and it is still valid.
    HeldBy(String),
}

/// Decides what `identity` may do with a Lease whose spec is `spec`, at `now`.
///
/// A Lease is free when it names no holder (a released Lease), and expired
/// when `renewTime + leaseDurationSeconds` is in the past; a Lease with no
/// renew time has expired. The holder's own `leaseDurationSeconds` counts,
/// falling back to `default_seconds`.
fn claim(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp, default_seconds: i32) -> Claim {
    let Some(spec) = spec else {
        return Claim::TakeOver;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Claim::TakeOver;
    }
    if holder == identity {
        return Claim::Renew;
    }
    let seconds = spec.lease_duration_seconds.unwrap_or(default_seconds);
    // A renew time so late that adding the duration overflows is in the future.
    let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
        renewed
            .0
            .checked_add(SignedDuration::from_secs(i64::from(seconds)))
            .is_ok_and(|expiry| expiry < now)
    });
    if expired {
        Claim::TakeOver
    } else {
        Claim::HeldBy(holder.to_owned())
    }
}

/// The spec after `identity` renews or takes over `current` at `now`.
fn claimed_spec(
    current: Option<&LeaseSpec>,
    claim: &Claim,
    identity: &str,
    now: Timestamp,
    lease_seconds: i32,
) -> LeaseSpec {
    let mut spec = current.cloned().unwrap_or_default();
    if *claim == Claim::TakeOver {
        // A new Lease starts at 0 transitions; every takeover of an existing one counts.
        spec.lease_transitions = Some(match current {
            None => 0,
            Some(current) => current.lease_transitions.unwrap_or(0).saturating_add(1),
        });
        spec.holder_identity = Some(identity.to_owned());
        spec.acquire_time = Some(MicroTime(now));
    }
    spec.lease_duration_seconds = Some(lease_seconds);
    spec.renew_time = Some(MicroTime(now));
    spec
}

/// The result of one attempt to acquire or renew.
enum Attempt {
    /// We hold the Lease until at least a renew deadline from the attempt's start.
    Leading,
    /// Someone else holds it (or won the race for it).
    Following,
}

/// Campaigns for a Lease and reports whether this replica leads.
///
/// # Guarantees
/// - Writes to the Lease carry the `resourceVersion` just read, so of two
///   candidates only one can take a free Lease.
/// - Leadership turns false no later than the lease duration minus one
///   renew period after the start of the last successful renewal, before
///   any other candidate may take the Lease over (assuming the candidates'
///   clocks agree within a renew period).
/// - On shutdown, leadership turns false first, then the Lease is released
///   (its holder cleared) so a successor takes over at its next attempt.
/// - A follower looks at the Lease every second (at most every renew
///   period), so it takes a released Lease over within about a second.
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    leading: watch::Sender<bool>,
    metrics: Option<Arc<Metrics>>,
}

impl LeaderElector {
    /// An elector for `config`, not yet campaigning and not leading.
    ///
    /// # Errors
    /// [`LeaderError::RenewPeriodTooLong`] when the renew period is not
    /// shorter than half the lease duration.
    pub fn new(client: Client, config: LeaseConfig) -> Result<Self, LeaderError> {
        if config.renew_period.is_zero() || config.renew_period * 2 >= config.lease_duration {
            return Err(LeaderError::RenewPeriodTooLong {
                renew_period: config.renew_period,
                lease_duration: config.lease_duration,
            });
        }
        Ok(Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            leading: watch::Sender::new(false),
            metrics: None,
        })
    }

    /// Shows leadership in `metrics` as client-go does:
    /// `leader_election_master_status{name=<Lease name>}` is 1 while this
    /// replica leads and 0 while it stands by (from now on, before the
    /// first attempt).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        metrics.set_leader(&self.config.name, *self.leading.borrow());
        self.metrics = Some(metrics);
        self
    }

    /// Whether this replica leads, now and as it changes.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Campaigns until `shutdown` completes, then releases the Lease if held.
    ///
    /// API errors while campaigning are logged and retried; they cost
    /// leadership only once the renew deadline passes.
    ///
    /// # Assumptions
    /// Whoever acts on leadership stops when it turns false; to hand over
    /// cleanly, stop that work before completing `shutdown`.
    ///
    /// # Errors
    /// [`LeaderError::Release`] when the held Lease could not be released.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), LeaderError> {
        let mut shutdown = std::pin::pin!(shutdown);
        // Start of the last successful renewal, while leading.
        let mut renewed_at: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let budget = match renewed_at {
                Some(renewed) => {
                    (renewed + self.config.renew_deadline()).saturating_duration_since(started)
                }
                None => self.config.renew_period,
            };
            let attempt = tokio::select! {
                attempt = tokio::time::timeout(budget, self.try_acquire_or_renew()) => attempt,
                () = &mut shutdown => break,
            };
            let succeeded = match attempt {
                Ok(Ok(Attempt::Leading)) => {
                    renewed_at = Some(started);
                    true
                }
                Ok(Ok(Attempt::Following)) => {
                    renewed_at = None;
                    true
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, lease = %self.config.name, "the Lease request failed");
                    false
                }
                Err(_elapsed) => {
                    tracing::warn!(lease = %self.config.name, "the Lease request timed out");
                    false
                }
            };
            if renewed_at.is_some_and(|renewed| renewed.elapsed() >= self.config.renew_deadline()) {
                tracing::warn!(lease = %self.config.name, "could not renew the Lease in time; no longer leading");
                renewed_at = None;
            }
            self.set_leading(renewed_at.is_some());
            let mut wait = if succeeded && renewed_at.is_some() {
                self.config.renew_period
            } else {
                self.config.renew_period.min(RETRY_PERIOD)
            };
            if let Some(renewed) = renewed_at {
                // Wake at the renew deadline at the latest, to give leadership up on time.
                wait = wait.min(
                    (renewed + self.config.renew_deadline())
                        .saturating_duration_since(Instant::now()),
                );
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = &mut shutdown => break,
            }
        }
        self.set_leading(false);
        if renewed_at.is_some() {
            self.release().await?;
        }
        Ok(())
    }

    fn set_leading(&self, leading: bool) {
        if let Some(metrics) = &self.metrics {
            metrics.set_leader(&self.config.name, leading);
        }
        self.leading.send_if_modified(|current| {
            let changed = *current != leading;
            if changed {
                tracing::info!(lease = %self.config.name, identity = %self.config.identity, leading, "leadership changed");
            }
            *current = leading;
            changed
        });
    }

    /// Reads the Lease, and creates, renews or takes it over when allowed.
    async fn try_acquire_or_renew(&self) -> Result<Attempt, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.config.name).await?;
        let claim = claim(
            current.as_ref().and_then(|lease| lease.spec.as_ref()),
            &self.config.identity,
            now,
            self.config.lease_seconds(),
        );
        if let Claim::HeldBy(holder) = &claim {
            tracing::debug!(lease = %self.config.name, %holder, "the Lease is held by another candidate");
            return Ok(Attempt::Following);
        }
        let spec = claimed_spec(
            current.as_ref().and_then(|lease| lease.spec.as_ref()),
            &claim,
            &self.config.identity,
            now,
            self.config.lease_seconds(),
        );
        let written = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            // `replace` sends the resourceVersion read above: the API server
            // refuses it with 409 Conflict if anyone wrote in between.
            Some(mut lease) => {
                lease.spec = Some(spec);
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => {
                tracing::debug!(lease = %self.config.name, "another candidate wrote the Lease first");
                Ok(Attempt::Following)
            }
            Err(error) => Err(error),
        }
    }

    /// Clears the holder of the Lease if it is still ours.
    async fn release(&self) -> Result<(), LeaderError> {
        let release_error = |source| LeaderError::Release {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source,
        };
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(release_error)?
        else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                tracing::info!(lease = %self.config.name, "released the Lease");
                Ok(())
            }
            // Someone wrote the Lease since we read it: it is no longer ours to release.
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(()),
            Err(source) => Err(release_error(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("a valid timestamp")
    }

    fn held_by(holder: &str, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            renew_time: Some(MicroTime(at(renewed))),
            lease_duration_seconds: Some(duration),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_missing_lease_may_be_taken() {
        assert_eq!(claim(None, "a", at(NOW), 15), Claim::TakeOver);
    }

    #[test]
    fn a_released_lease_may_be_taken_at_once() {
        let mut spec = held_by("b", NOW, 15);
        spec.holder_identity = None;
        assert_eq!(claim(Some(&spec), "a", at(NOW), 15), Claim::TakeOver);
        spec.holder_identity = Some(String::new());
        assert_eq!(claim(Some(&spec), "a", at(NOW), 15), Claim::TakeOver);
    }

    #[test]
    fn a_lease_renewed_within_its_duration_is_held_by_its_holder() {
        let spec = held_by("b", NOW - 10, 15);
        assert_eq!(
            claim(Some(&spec), "a", at(NOW), 15),
            Claim::HeldBy("b".to_owned())
        );
    }

    #[test]
    fn a_lease_not_renewed_within_its_duration_may_be_taken_over() {
        let spec = held_by("b", NOW - 16, 15);
        assert_eq!(claim(Some(&spec), "a", at(NOW), 15), Claim::TakeOver);
    }

    #[test]
    fn the_holders_duration_counts_rather_than_the_candidates() {
        let spec = held_by("b", NOW - 20, 30);
        assert_eq!(
            claim(Some(&spec), "a", at(NOW), 15),
            Claim::HeldBy("b".to_owned())
        );
    }

    #[test]
    fn the_holder_renews_even_after_expiry() {
        let spec = held_by("a", NOW - 100, 15);
        assert_eq!(claim(Some(&spec), "a", at(NOW), 15), Claim::Renew);
    }

    #[test]
    fn taking_over_from_another_holder_counts_a_transition() {
        let spec = held_by("b", NOW - 16, 15);
        let taken = claimed_spec(Some(&spec), &Claim::TakeOver, "a", at(NOW), 10);
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.lease_duration_seconds, Some(10));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(NOW))));
        assert_eq!(taken.renew_time, Some(MicroTime(at(NOW))));
    }

    #[test]
    fn creating_a_lease_starts_at_zero_transitions() {
        let created = claimed_spec(None, &Claim::TakeOver, "a", at(NOW), 15);
        assert_eq!(created.holder_identity.as_deref(), Some("a"));
        assert_eq!(created.lease_transitions, Some(0));
    }

    #[test]
    fn a_renew_time_too_late_to_add_to_never_expires() {
        let spec = held_by("b", 253_402_207_000, i32::MAX);
        assert_eq!(
            claim(Some(&spec), "a", at(NOW), 15),
            Claim::HeldBy("b".to_owned())
        );
    }

    #[tokio::test]
    async fn a_renew_period_of_half_the_lease_or_more_is_refused() {
        let client = || {
            // A client is needed only to build the Api; nothing is sent.
            let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a valid URL"));
            Client::try_from(config).expect("a client for a static config")
        };
        let config = LeaseConfig::new("ns", "lease", "a");
        assert!(matches!(
            LeaderElector::new(
                client(),
                config.clone().renew_period(Duration::from_millis(7500))
            ),
            Err(LeaderError::RenewPeriodTooLong { .. })
        ));
        assert!(LeaderElector::new(client(), config).is_ok());
    }

    #[test]
    fn renewing_keeps_the_acquire_time_and_transitions() {
        let mut spec = held_by("a", NOW - 5, 15);
        spec.acquire_time = Some(MicroTime(at(NOW - 60)));
        let renewed = claimed_spec(Some(&spec), &Claim::Renew, "a", at(NOW), 15);
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(NOW - 60))));
        assert_eq!(renewed.lease_transitions, Some(3));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(NOW))));
    }

    #[test]
    fn lease_durations_are_written_in_whole_seconds_rounded_up() {
        let config = LeaseConfig::new("ns", "lease", "a");
        assert_eq!(config.lease_seconds(), 15);
        assert_eq!(
            config
                .clone()
                .lease_duration(Duration::from_millis(1500))
                .lease_seconds(),
            2
        );
        assert_eq!(config.renew_deadline(), Duration::from_secs(10));
    }
}
