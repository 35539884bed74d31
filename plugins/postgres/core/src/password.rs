//! Which password a role gets: the one in its Secret, or a new one when
//! there is none or a rotation is due.
//!
//! A rotation is due when the `systems.mikemiller.tech/rotate-password`
//! annotation holds a value other than `status.password.lastRequest`, or
//! when the rotation interval has elapsed since `status.password.lastRotated`.

use std::time::{Duration, SystemTime};

use postgres_api::{PasswordStatus, ROTATE_PASSWORD_ANNOTATION};
use wasm_operator_sdk::{PluginError, generate_password};

use crate::PASSWORD_LENGTH;

/// Why a new password was generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NewPassword {
    /// There was no password in the Secret (first reconcile, or the Secret
    /// or its `password` key was lost).
    Missing,
    /// The rotation annotation changed to this value.
    Requested(String),
    /// The rotation interval elapsed.
    IntervalElapsed,
}

/// The password decided for this reconcile.
#[derive(Debug, Clone)]
pub(crate) struct PasswordDecision {
    /// The password for the Secret and the role.
    pub(crate) password: String,
    /// Set when the password is new this reconcile.
    pub(crate) new: Option<NewPassword>,
    /// `status.password` to record.
    pub(crate) status: PasswordStatus,
    /// When the next interval rotation is due, from now.
    pub(crate) next_rotation: Option<Duration>,
}

/// The longest requeue asked for a coming rotation. A plugin's requeue
/// replaces the host's periodic resync (5 minutes by default) for that
/// object, and that resync is what catches drift; a rotation due later is
/// picked up by a resync within this much of its due time.
pub const ROTATION_REQUEUE_LIMIT: Duration = Duration::from_secs(300);

impl PasswordDecision {
    /// When to reconcile again for the next rotation: only when it is due
    /// sooner than [`ROTATION_REQUEUE_LIMIT`].
    pub(crate) fn requeue_after(&self) -> Option<Duration> {
        self.next_rotation
            .filter(|after| *after < ROTATION_REQUEUE_LIMIT)
    }
}

/// The rotation inputs of one object.
pub(crate) struct Rotation<'a> {
    /// The password in the existing Secret, if any.
    pub(crate) existing: Option<String>,
    /// The object's annotations.
    pub(crate) annotation: Option<&'a str>,
    /// The object's current `status.password`.
    pub(crate) status: Option<&'a PasswordStatus>,
    /// The rotation interval, if any, and the field it came from.
    pub(crate) interval: Option<(&'a str, &'a str)>,
}

/// Decides the password.
///
/// # Errors
/// `InvalidSpec` for an unparsable interval (naming its field); a retryable
/// `RandomFailed` when the secure random source fails.
pub(crate) fn decide(
    rotation: Rotation<'_>,
    now: SystemTime,
) -> Result<PasswordDecision, PluginError> {
    let interval = rotation
        .interval
        .map(|(field, text)| check_interval(field, text))
        .transpose()?;
    let previous = rotation.status.cloned().unwrap_or_default();
    let last_rotated = previous
        .last_rotated
        .as_deref()
        .and_then(|text| humantime::parse_rfc3339_weak(text).ok());
    let requested = rotation
        .annotation
        .filter(|value| previous.last_request.as_deref() != Some(*value));
    let elapsed = match (interval, last_rotated) {
        (Some(interval), Some(last)) => last + interval <= now,
        _ => false,
    };

    let new = match (&rotation.existing, requested) {
        (None, _) => Some(NewPassword::Missing),
        (Some(_), Some(value)) => Some(NewPassword::Requested(value.to_owned())),
        (Some(_), None) if elapsed => Some(NewPassword::IntervalElapsed),
        (Some(_), None) => None,
    };
    let password = match (&new, rotation.existing) {
        (None, Some(existing)) => existing,
        _ => generate_password(PASSWORD_LENGTH).map_err(|e| {
            PluginError::retryable("RandomFailed", format!("cannot generate a password: {e}"))
        })?,
    };
    let rotated_at = match (&new, last_rotated) {
        (None, Some(last)) => last,
        _ => now,
    };
    let status = PasswordStatus {
        last_rotated: if new.is_none() && last_rotated.is_some() {
            previous.last_rotated
        } else {
            Some(humantime::format_rfc3339_seconds(rotated_at).to_string())
        },
        last_request: rotation
            .annotation
            .map(str::to_owned)
            .or(previous.last_request),
    };
    let next_rotation = interval.map(|interval| {
        (rotated_at + interval)
            .duration_since(now)
            .unwrap_or_default()
            .max(Duration::from_secs(1))
    });
    Ok(PasswordDecision {
        password,
        new,
        status,
        next_rotation,
    })
}

/// The rotation annotation of an object, if set.
pub(crate) fn rotation_annotation(object: &wasm_operator_sdk::Object) -> Option<&str> {
    object
        .annotations()
        .get(ROTATE_PASSWORD_ANNOTATION)
        .copied()
}

/// Checks the rotation interval in `field` and returns it.
///
/// # Errors
/// `InvalidSpec` naming `field` when [`parse_interval`] refuses it.
pub(crate) fn check_interval(field: &str, text: &str) -> Result<Duration, PluginError> {
    parse_interval(text)
        .map_err(|message| PluginError::invalid_spec(format!("{field}: {text:?} {message}")))
}

/// Parses a rotation interval: one or more `<number><unit>` with units `s`,
/// `m`, `h`, `d` (`720h`, `30m`, `1d12h`). It must be longer than zero.
///
/// # Errors
/// A message (without the field) saying what is wrong.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    const HELP: &str = "is not a duration (use whole numbers with units s, m, h or d, e.g. 720h)";
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.trim().chars() {
        if let Some(digit) = c.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(digit)))
                    .ok_or_else(|| HELP.to_owned())?,
            );
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(HELP.to_owned()),
        };
        let value = number.take().ok_or_else(|| HELP.to_owned())?;
        total = value
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(|| HELP.to_owned())?;
    }
    if number.is_some() || text.trim().is_empty() {
        return Err(HELP.to_owned());
    }
    if total == 0 {
        return Err("must be longer than zero".to_owned());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn status(last_rotated: &str, last_request: Option<&str>) -> PasswordStatus {
        PasswordStatus {
            last_rotated: Some(last_rotated.into()),
            last_request: last_request.map(str::to_owned),
        }
    }

    #[test]
    fn intervals_in_the_documented_units_parse() {
        assert_eq!(parse_interval("720h"), Ok(Duration::from_secs(720 * 3600)));
        assert_eq!(parse_interval("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_interval("1d12h"), Ok(Duration::from_secs(129_600)));
        assert_eq!(parse_interval("45s"), Ok(Duration::from_secs(45)));
        for bad in ["", "h", "10", "10w", "1.5h", "-1h", "99999999999999999999d"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_interval("0h"), Err("must be longer than zero".into()));
    }

    #[test]
    fn existing_password_is_kept_without_a_request() {
        let previous = status("1970-01-01T00:00:10Z", Some("one"));
        let decision = decide(
            Rotation {
                existing: Some("kept".into()),
                annotation: Some("one"),
                status: Some(&previous),
                interval: None,
            },
            at(100),
        )
        .unwrap();
        assert_eq!(decision.password, "kept");
        assert_eq!(decision.new, None);
        assert_eq!(decision.status, previous, "status is reproduced exactly");
        assert_eq!(decision.next_rotation, None);
    }

    #[test]
    fn missing_password_is_generated_and_stamped() {
        let decision = decide(
            Rotation {
                existing: None,
                annotation: Some("first"),
                status: None,
                interval: None,
            },
            at(0),
        )
        .unwrap();
        assert_eq!(decision.password.len(), PASSWORD_LENGTH);
        assert_eq!(decision.new, Some(NewPassword::Missing));
        assert_eq!(
            decision.status,
            status("1970-01-01T00:00:00Z", Some("first")),
            "an annotation present at creation is recorded, not acted on again"
        );
    }

    #[test]
    fn changed_annotation_rotates_once() {
        let previous = status("1970-01-01T00:00:00Z", Some("one"));
        let decision = decide(
            Rotation {
                existing: Some("old".into()),
                annotation: Some("two"),
                status: Some(&previous),
                interval: None,
            },
            at(60),
        )
        .unwrap();
        assert_ne!(decision.password, "old");
        assert_eq!(decision.new, Some(NewPassword::Requested("two".into())));
        assert_eq!(decision.status, status("1970-01-01T00:01:00Z", Some("two")));
    }

    #[test]
    fn elapsed_interval_rotates_and_requeues_at_the_next_due_time() {
        let previous = status("1970-01-01T00:00:00Z", None);
        let rotation = |now| {
            decide(
                Rotation {
                    existing: Some("old".into()),
                    annotation: None,
                    status: Some(&previous),
                    interval: Some(("spec.credentials.passwordRotation.interval", "1h")),
                },
                now,
            )
            .unwrap()
        };
        let early = rotation(at(600));
        assert_eq!(early.new, None);
        assert_eq!(early.next_rotation, Some(Duration::from_secs(3000)));
        let due = rotation(at(3600));
        assert_eq!(due.new, Some(NewPassword::IntervalElapsed));
        assert_eq!(
            due.status.last_rotated.as_deref(),
            Some("1970-01-01T01:00:00Z")
        );
        assert_eq!(due.next_rotation, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn bad_interval_is_invalid_spec_naming_the_field() {
        let error = decide(
            Rotation {
                existing: Some("p".into()),
                annotation: None,
                status: None,
                interval: Some(("spec.passwordRotation.interval", "monthly")),
            },
            at(0),
        )
        .unwrap_err();
        assert_eq!(error.reason, "InvalidSpec");
        assert!(
            error
                .message
                .starts_with("spec.passwordRotation.interval: \"monthly\" is not a duration"),
            "{}",
            error.message
        );
    }
}
