//! Kubernetes label selectors in their string form, as [`TestHost`](crate::TestHost) applies them.

use std::collections::BTreeMap;

/// A label selector string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector requirement {requirement:?}: {problem}")]
pub struct SelectorError {
    /// The offending requirement.
    pub requirement: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector: `app=web,tier!=cache,env in (a,b),!legacy`.
///
/// Supports `=`, `==`, `!=`, `in`, `notin`, `key` and `!key`; all
/// requirements must hold. The empty selector selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses the string form.
    ///
    /// # Errors
    /// [`SelectorError`] naming the requirement that does not parse.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let requirements = split_requirements(selector)
            .into_iter()
            .map(parse_requirement)
            .collect::<Result<_, _>>()?;
        Ok(Self { requirements })
    }

    /// Whether `labels` satisfy every requirement.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<&str, &str>) -> bool {
        self.requirements
            .iter()
            .all(|requirement| match requirement {
                Requirement::Equals(key, value) => {
                    labels.get(key.as_str()) == Some(&value.as_str())
                }
                Requirement::NotEquals(key, value) => {
                    labels.get(key.as_str()) != Some(&value.as_str())
                }
                Requirement::In(key, values) => labels
                    .get(key.as_str())
                    .is_some_and(|actual| values.iter().any(|v| v == actual)),
                Requirement::NotIn(key, values) => labels
                    .get(key.as_str())
                    .is_none_or(|actual| values.iter().all(|v| v != actual)),
                Requirement::Exists(key) => labels.contains_key(key.as_str()),
                Requirement::DoesNotExist(key) => !labels.contains_key(key.as_str()),
            })
    }
}

/// Splits on commas outside parentheses, dropping empty parts.
fn split_requirements(selector: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0_u32, 0);
    for (index, ch) in selector.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&selector[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&selector[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_requirement(text: &str) -> Result<Requirement, SelectorError> {
    let fail = |problem| SelectorError {
        requirement: text.to_owned(),
        problem,
    };
    let key = |k: &str| {
        let k = k.trim();
        if k.is_empty() || k.contains(char::is_whitespace) {
            Err(fail("the key must be one non-empty word"))
        } else {
            Ok(k.to_owned())
        }
    };
    if let Some((k, v)) = text.split_once("!=") {
        return Ok(Requirement::NotEquals(key(k)?, v.trim().to_owned()));
    }
    if let Some((k, v)) = text.split_once("==").or_else(|| text.split_once('=')) {
        return Ok(Requirement::Equals(key(k)?, v.trim().to_owned()));
    }
    if let Some(k) = text.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key(k)?));
    }
    let Some((k, rest)) = text.split_once(char::is_whitespace) else {
        return Ok(Requirement::Exists(key(text)?));
    };
    let rest = rest.trim();
    let (negated, list) = if let Some(list) = rest.strip_prefix("notin") {
        (true, list)
    } else if let Some(list) = rest.strip_prefix("in") {
        (false, list)
    } else {
        return Err(fail("expected `=`, `!=`, `in` or `notin`"));
    };
    let values = list
        .trim()
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .ok_or_else(|| fail("the values must be in parentheses"))?
        .split(',')
        .map(|v| v.trim().to_owned())
        .collect();
    Ok(if negated {
        Requirement::NotIn(key(k)?, values)
    } else {
        Requirement::In(key(k)?, values)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels<'a>(pairs: &[(&'a str, &'a str)]) -> BTreeMap<&'a str, &'a str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn equality_and_inequality_requirements_all_must_hold() {
        let selector = LabelSelector::parse("app=web, tier!=cache").unwrap();
        assert!(selector.matches(&labels(&[("app", "web"), ("tier", "front")])));
        assert!(selector.matches(&labels(&[("app", "web")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "cache")])));
        assert!(!selector.matches(&labels(&[("app", "db")])));
    }

    #[test]
    fn set_and_existence_requirements_match() {
        let selector =
            LabelSelector::parse("env in (prod, staging),team notin (x),owner,!legacy").unwrap();
        assert!(selector.matches(&labels(&[("env", "prod"), ("owner", "a")])));
        assert!(!selector.matches(&labels(&[("env", "dev"), ("owner", "a")])));
        assert!(!selector.matches(&labels(&[("env", "prod"), ("owner", "a"), ("legacy", "")])));
        assert!(!selector.matches(&labels(&[("env", "prod"), ("owner", "a"), ("team", "x")])));
    }

    #[test]
    fn empty_selector_selects_everything_and_garbage_is_an_error() {
        assert!(LabelSelector::parse("").unwrap().matches(&labels(&[])));
        assert!(LabelSelector::parse("env within (a)").is_err());
    }
}
