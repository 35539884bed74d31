//! How a failed command prints: one readable line with the whole cause chain.
//!
//! `anyhow`'s `{:#}` joins the chain with `: `, but kube's `Error::Api`
//! displays as `ApiError: <message>: <reason> (Status { … })` — a Debug dump
//! of the API server's answer — and its source, the `Status`, then repeats
//! the message. Here an API error prints as the API server's message with its
//! reason and code, and a cause that repeats the one before it is said once.

use kube::core::Status;

/// `error` and its causes on one line, outermost first, joined by `: `.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut status_told = false;
    for cause in error.chain() {
        let text = if let Some(kube::Error::Api(status)) = cause.downcast_ref::<kube::Error>() {
            status_told = true;
            describe(status)
        } else if let Some(status) = cause
            .downcast_ref::<Status>()
            .or_else(|| cause.downcast_ref::<Box<Status>>().map(AsRef::as_ref))
        {
            if std::mem::take(&mut status_told) {
                continue;
            }
            describe(status)
        } else {
            cause.to_string()
        };
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if !text.is_empty() {
            parts.push(text);
        }
    }
    // "HyperError: connection refused" followed by "connection refused": say it once.
    let mut line: Vec<String> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let shortened = match parts.get(i + 1) {
            Some(next) if part.ends_with(next.as_str()) => part[..part.len() - next.len()]
                .trim_end_matches([':', ' '])
                .to_owned(),
            _ => part.clone(),
        };
        if !shortened.is_empty() && line.last() != Some(&shortened) {
            line.push(shortened);
        }
    }
    line.join(": ")
}

/// The API server's answer as a person reads it: its message, reason and code.
fn describe(status: &Status) -> String {
    match (status.message.is_empty(), status.reason.is_empty()) {
        (false, false) => format!(
            "{} ({}, HTTP {})",
            status.message, status.reason, status.code
        ),
        (false, true) => format!("{} (HTTP {})", status.message, status.code),
        (true, false) => format!("{} (HTTP {})", status.reason, status.code),
        (true, true) => format!("the API server answered HTTP {}", status.code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    fn not_found() -> kube::Error {
        let status: Status = serde_json::from_value(serde_json::json!({
            "status": "Failure",
            "message": "namespaces \"wasm-operator\" not found",
            "reason": "NotFound",
            "code": 404,
            "details": { "name": "wasm-operator", "kind": "namespaces" },
        }))
        .expect("a Status");
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn an_api_error_prints_as_its_message_without_a_debug_dump() {
        let error = Err::<(), _>(not_found())
            .context("cannot write ConfigMap wasm-operator/p")
            .context("pushing p.wasm")
            .unwrap_err();
        assert_eq!(
            one_line(&error),
            "pushing p.wasm: cannot write ConfigMap wasm-operator/p: namespaces \
             \"wasm-operator\" not found (NotFound, HTTP 404)"
        );
    }

    #[test]
    fn a_cause_repeated_at_the_end_of_its_parent_is_said_once() {
        let error = anyhow::anyhow!("connection refused").context("HyperError: connection refused");
        assert_eq!(one_line(&error), "HyperError: connection refused");
    }
}
