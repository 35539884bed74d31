//! When to fail over, and to which replica: pure decisions from what was
//! observed and what the status recorded, so that an operator restart in
//! the middle of a failover carries on where it was.
//!
//! # Rules
//! - A primary is unhealthy when its Pod is gone, being deleted or not
//!   Ready. The first reconcile that sees it so records the time in
//!   `status.failover.unhealthySince`; a healthy primary clears it.
//! - Once it has been unhealthy for the binding's `failoverDelaySeconds`
//!   (default 10), the replica that received the most WAL among those whose
//!   Pod is Ready, that are still in recovery and that were streaming when
//!   last seen is promoted (`pg_promote()` aimed at its PostgresServer), and
//!   becomes `status.currentPrimary` in the same decision. With none, the
//!   Database waits (and the primary's Pod is created again).
//! - A promotion is finished when the new primary is out of recovery;
//!   until then each reconcile asks again (`pg_promote` of a standby that is
//!   already being promoted is harmless).

use std::time::{Duration, SystemTime};

use postgres_api::FailoverStatus;

/// The primary's health, against the delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// The primary is healthy: nothing recorded.
    Healthy,
    /// Unhealthy since `since`; look again after `after`.
    Wait {
        /// When it was first seen unhealthy.
        since: SystemTime,
        /// What is left of the delay.
        after: Duration,
    },
    /// Unhealthy for longer than the delay, since `since`: fail over now.
    Now {
        /// When it was first seen unhealthy.
        since: SystemTime,
    },
}

/// Whether a failover of `primary` is due.
pub(crate) fn due(
    primary: &str,
    healthy: bool,
    previous: Option<&FailoverStatus>,
    now: SystemTime,
    delay: Duration,
) -> Due {
    if healthy {
        return Due::Healthy;
    }
    let since = previous
        .filter(|record| record.primary == primary)
        .and_then(|record| humantime::parse_rfc3339_weak(&record.unhealthy_since).ok())
        .filter(|since| *since <= now)
        .unwrap_or(now);
    let waited = now.duration_since(since).unwrap_or_default();
    if waited >= delay {
        Due::Now { since }
    } else {
        Due::Wait {
            since,
            after: delay - waited,
        }
    }
}

/// A replica that may be promoted: instance number and WAL received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// The instance number.
    pub(crate) instance: u32,
    /// WAL received, in bytes.
    pub(crate) received: i64,
}

/// The most advanced candidate (the lowest instance number among equals),
/// so that the least committed data is lost.
pub(crate) fn choose(candidates: &[Candidate]) -> Option<u32> {
    candidates
        .iter()
        .max_by(|a, b| {
            a.received
                .cmp(&b.received)
                .then(b.instance.cmp(&a.instance))
        })
        .map(|candidate| candidate.instance)
}

/// The record of an unhealthy `primary` since `since`.
pub(crate) fn record(
    primary: &str,
    since: SystemTime,
    promoting: Option<String>,
) -> FailoverStatus {
    FailoverStatus {
        primary: primary.to_owned(),
        unhealthy_since: humantime::format_rfc3339_seconds(since).to_string(),
        promoting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600 + seconds)
    }

    const DELAY: Duration = Duration::from_secs(10);

    #[test]
    fn a_healthy_primary_is_never_failed_over() {
        let previous = record("foo-db-1", at(0), None);
        assert_eq!(
            due("foo-db-1", true, Some(&previous), at(60), DELAY),
            Due::Healthy
        );
    }

    #[test]
    fn an_unhealthy_primary_waits_out_the_delay_from_when_it_was_first_seen() {
        assert_eq!(
            due("foo-db-1", false, None, at(5), DELAY),
            Due::Wait {
                since: at(5),
                after: DELAY
            }
        );
        let previous = record("foo-db-1", at(5), None);
        assert_eq!(
            due("foo-db-1", false, Some(&previous), at(9), DELAY),
            Due::Wait {
                since: at(5),
                after: Duration::from_secs(6)
            }
        );
        assert_eq!(
            due("foo-db-1", false, Some(&previous), at(15), DELAY),
            Due::Now { since: at(5) }
        );
    }

    #[test]
    fn a_record_of_another_primary_or_from_the_future_starts_the_wait_again() {
        let other = record("foo-db-2", at(0), None);
        assert_eq!(
            due("foo-db-1", false, Some(&other), at(30), DELAY),
            Due::Wait {
                since: at(30),
                after: DELAY
            }
        );
        let future = record("foo-db-1", at(100), None);
        assert_eq!(
            due("foo-db-1", false, Some(&future), at(30), DELAY),
            Due::Wait {
                since: at(30),
                after: DELAY
            }
        );
    }

    #[test]
    fn the_most_advanced_replica_is_chosen_and_ties_go_to_the_lowest_instance() {
        let candidates = [
            Candidate {
                instance: 3,
                received: 100,
            },
            Candidate {
                instance: 2,
                received: 200,
            },
            Candidate {
                instance: 4,
                received: 200,
            },
        ];
        assert_eq!(choose(&candidates), Some(2));
        assert_eq!(choose(&[]), None);
    }
}
