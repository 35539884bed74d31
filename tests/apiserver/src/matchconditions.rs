//! Webhook `matchConditions` (admissionregistration.k8s.io/v1, GA in Kubernetes 1.30): CEL
//! expressions deciding whether a webhook whose rules and selectors match is called.
//!
//! As kube-apiserver does it:
//! - **at create/update** of a webhook configuration (`validateMatchConditions`): at most 64
//!   per webhook; each `expression` required and compiling to `bool`; each `name` required,
//!   a qualified name, unique within the webhook. Errors name the field
//!   (`webhooks[0].matchConditions[1].expression`), expression errors before name errors;
//! - **at admission** (`matchconditions.Matcher`): the variables `object`, `oldObject`
//!   (null for CREATE / DELETE), `request` (the AdmissionRequest without `uid`, `object` and
//!   `oldObject`) and `namespaceObject` (null for webhooks); the conditions are evaluated in
//!   order, and **any false skips the webhook**, even when another failed to evaluate; when
//!   none is false but some failed, `failurePolicy` decides: `Fail` rejects the request,
//!   `Ignore` skips the webhook; otherwise the webhook is called.
//!
//! The interpreter is cel-rust's `cel` crate (the successor of `cel-interpreter`), with its
//! standard library and its strings extension. It parses but does not type-check, so
//! `check.rs` does the part of cel-go's checker that the apiserver's validation relies on:
//! declared variables, fields of the typed `request`, operand types of the logical,
//! comparison and `in` operators, and the result type (`must evaluate to bool`). Its
//! limits, each refused at create rather than evaluated differently:
//! - `authorizer` (and `authorizer.requestResource`): the Kubernetes authorizer library is
//!   not there, so an expression using it is refused with a message saying so;
//! - functions the checker does not know are typed `dyn` (an expression whose result is
//!   then not known to be bool is refused as cel-go would refuse it); a function the
//!   interpreter lacks (e.g. Kubernetes' `quantity()`) fails at evaluation, under
//!   `failurePolicy`;
//! - errors differ in wording from cel-go's beyond the `ERROR: <input>:L:C: ` prefix
//!   (`no such key: <key>` is mapped to cel-go's); `&&` and `||` absorb errors on either
//!   side, as cel-go's do;
//! - no cost budget.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use serde_json::Value;

mod check;

/// At most this many conditions per webhook.
pub const MAX_CONDITIONS: usize = 64;

/// What the webhook's conditions decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// No condition (or all true): call the webhook.
    Call,
    /// A condition was false, or one failed under `failurePolicy: Ignore`: skip it.
    Skip,
    /// A condition failed under `failurePolicy: Fail`: the message of the errors.
    Fail(String),
}

/// The inputs the expressions see.
pub struct Inputs<'a> {
    /// The new object (none for DELETE).
    pub object: Option<&'a Value>,
    /// The old object (none for CREATE).
    pub old_object: Option<&'a Value>,
    /// The AdmissionRequest as sent to webhooks.
    pub request: &'a Value,
}

static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| {
    let mut env = cel::Env::stdlib();
    // The Kubernetes CEL environment has the strings library (lowerAscii, split, …). It
    // only fails on a name clash with the standard library, which would leave the standard
    // functions in place: nothing to do then.
    let _ = env.add_extension(cel::extensions::strings);
    Arc::new(env)
});

/// Validates a webhook's `matchConditions` (`path` is e.g. `webhooks[0].matchConditions`):
/// the `(field, message)` causes of a 422, empty when valid.
pub fn validate(path: &str, conditions: &Value) -> Vec<(String, String)> {
    let Some(conditions) = conditions.as_array() else {
        return match conditions {
            Value::Null => Vec::new(),
            _ => vec![(path.into(), "Invalid value: must be a list".into())],
        };
    };
    let mut causes = Vec::new();
    if conditions.len() > MAX_CONDITIONS {
        causes.push((
            path.to_string(),
            format!(
                "Too many: {}: must have at most {MAX_CONDITIONS} items",
                conditions.len()
            ),
        ));
    }
    let mut names = HashSet::new();
    for (i, condition) in conditions.iter().enumerate() {
        let field = |f: &str| format!("{path}[{i}].{f}");
        let expression = condition
            .get("expression")
            .and_then(Value::as_str)
            .unwrap_or("");
        if expression.trim().is_empty() {
            causes.push((field("expression"), "Required value".into()));
        } else if let Err(reason) = compile(expression.trim()) {
            causes.push((
                field("expression"),
                format!("Invalid value: {}: {reason}", quote(expression)),
            ));
        }
        let name = condition.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            causes.push((field("name"), "Required value".into()));
        } else {
            causes.extend(qualified_name_errors(name).into_iter().map(|m| {
                (
                    field("name"),
                    format!("Invalid value: {}: {m}", quote(name)),
                )
            }));
            if !names.insert(name) {
                causes.push((field("name"), format!("Duplicate value: {}", quote(name))));
            }
        }
    }
    causes
}

/// Go's `%q` for the texts quoted in field errors.
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// Evaluates a webhook's conditions (none: [`Decision::Call`]) as the Matcher does.
pub fn decide(hook: &Value, inputs: &Inputs<'_>) -> Decision {
    let Some(conditions) = hook
        .get("matchConditions")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    else {
        return Decision::Call;
    };
    let mut errors = Vec::new();
    for condition in conditions {
        let expression = condition
            .get("expression")
            .and_then(Value::as_str)
            .unwrap_or("");
        match evaluate(expression, inputs) {
            Ok(true) => {}
            // Any false condition skips the webhook, whatever the others did.
            Ok(false) => return Decision::Skip,
            Err(error) => errors.push(format!(
                "expression '{expression}' resulted in error: {error}"
            )),
        }
    }
    if errors.is_empty() {
        Decision::Call
    } else if hook.get("failurePolicy").and_then(Value::as_str) == Some("Ignore") {
        Decision::Skip
    } else if errors.len() == 1 {
        Decision::Fail(errors.remove(0))
    } else {
        // utilerrors.NewAggregate's format.
        Decision::Fail(format!("[{}]", errors.join(", ")))
    }
}

fn evaluate(expression: &str, inputs: &Inputs<'_>) -> Result<bool, String> {
    let program = ENV.compile(expression).map_err(|e| e.to_string())?;
    let mut context = cel::Context::with_env(ENV.clone());
    let json = |v: Option<&Value>| v.map_or(cel::Value::Null, to_cel);
    context.add_variable_from_value("object", json(inputs.object));
    context.add_variable_from_value("oldObject", json(inputs.old_object));
    context.add_variable_from_value("request", to_cel(inputs.request));
    context.add_variable_from_value("namespaceObject", cel::Value::Null);
    match program.execute(&context) {
        Ok(cel::Value::Bool(result)) => Ok(result),
        Ok(other) => Err(format!(
            "no such overload: the result is {other:?}, not a bool"
        )),
        Err(cel::ExecutionError::NoSuchKey(key)) => Err(format!("no such key: {key}")),
        Err(error) => Err(error.to_string()),
    }
}

/// JSON as the apiserver hands unstructured objects to CEL: integers are `int`, other
/// numbers `double`.
fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::from(s.clone()),
        Value::Array(items) => cel::Value::from(items.iter().map(to_cel).collect::<Vec<_>>()),
        Value::Object(fields) => cel::Value::from(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_cel(v)))
                .collect::<HashMap<String, cel::Value>>(),
        ),
    }
}

/// Parses and checks an expression: `Err` carries the apiserver's detail
/// (`compilation failed: ERROR: <input>:1:5: …` or `must evaluate to bool`).
pub fn compile(expression: &str) -> Result<(), String> {
    let program = ENV
        .compile(expression)
        .map_err(|e| format!("compilation failed: {e}"))?;
    check::result_is_bool(expression, &program)
}

/// `apivalidation.ValidateQualifiedName`: an optional DNS-subdomain prefix and `/`, then a
/// name of at most 63 alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn qualified_name_errors(value: &str) -> Vec<String> {
    const NAME_FMT: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    let parts: Vec<&str> = value.split('/').collect();
    let (prefix, name) = match parts.as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => {
            return vec![format!(
                "a qualified name {NAME_FMT} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    let mut errors = Vec::new();
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errors.push("prefix part must be non-empty".to_string());
        } else if !is_dns_subdomain(prefix) {
            errors.push("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string());
        }
    }
    if name.is_empty() {
        errors.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        errors.push("name part must be no more than 63 characters".into());
    }
    let inner_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let ends_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !(name.is_empty() || (inner_ok && ends_ok)) {
        errors.push(NAME_FMT.into());
    }
    errors
}

fn is_dns_subdomain(value: &str) -> bool {
    value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const INJECT: &str = "has(object.metadata.annotations) && 'systems.mikemiller.tech/inject-credentials' in object.metadata.annotations";

    fn pod(annotations: Option<Value>) -> Value {
        let mut pod = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "p" } });
        if let Some(a) = annotations {
            pod["metadata"]["annotations"] = a;
        }
        pod
    }

    fn hook(conditions: &[&str], policy: &str) -> Value {
        let conditions: Vec<Value> = conditions
            .iter()
            .enumerate()
            .map(|(i, e)| json!({ "name": format!("c{i}"), "expression": e }))
            .collect();
        json!({ "name": "h.example.com", "failurePolicy": policy, "matchConditions": conditions })
    }

    fn decide_for(hook: &Value, object: &Value) -> Decision {
        let request = json!({ "operation": "CREATE", "name": "p", "namespace": "default",
            "userInfo": { "username": "alice", "groups": ["devs"] } });
        decide(
            hook,
            &Inputs {
                object: Some(object),
                old_object: None,
                request: &request,
            },
        )
    }

    #[test]
    fn the_injection_condition_matches_only_annotated_pods() {
        let hook = hook(&[INJECT], "Fail");
        let annotated = pod(Some(
            json!({ "systems.mikemiller.tech/inject-credentials": "db" }),
        ));
        assert_eq!(decide_for(&hook, &annotated), Decision::Call);
        assert_eq!(
            decide_for(&hook, &pod(Some(json!({ "other": "x" })))),
            Decision::Skip
        );
        assert_eq!(decide_for(&hook, &pod(None)), Decision::Skip);
        assert_eq!(compile(INJECT), Ok(()));
    }

    #[test]
    fn a_false_condition_skips_even_when_another_fails_and_errors_follow_the_policy() {
        let failing = "object.metadata.annotations['x'] == 'y'";
        let object = pod(None);
        assert_eq!(
            decide_for(&hook(&[failing, "false"], "Fail"), &object),
            Decision::Skip
        );
        assert_eq!(
            decide_for(&hook(&[failing, "true"], "Fail"), &object),
            Decision::Fail(format!(
                "expression '{failing}' resulted in error: no such key: annotations"
            ))
        );
        assert_eq!(
            decide_for(&hook(&[failing], "Ignore"), &object),
            Decision::Skip
        );
    }

    #[test]
    fn request_fields_are_typed_and_read() {
        let by_user = hook(
            &["request.userInfo.username == 'alice' && 'devs' in request.userInfo.groups"],
            "Fail",
        );
        assert_eq!(decide_for(&by_user, &pod(None)), Decision::Call);
        let strings = hook(&["object.metadata.name.upperAscii() == 'P'"], "Fail");
        assert_eq!(
            decide_for(&strings, &pod(None)),
            Decision::Call,
            "the strings extension"
        );
        assert!(
            compile("request.nope == 'x'")
                .unwrap_err()
                .contains("undefined field 'nope'")
        );
    }

    #[test]
    fn compile_refuses_what_cel_go_refuses() {
        assert_eq!(
            compile("object.metadata.name").unwrap_err(),
            "must evaluate to bool"
        );
        assert_eq!(
            compile("request.name").unwrap_err(),
            "must evaluate to bool"
        );
        let syntax = compile("object.metadata.name ==").unwrap_err();
        assert!(
            syntax.starts_with("compilation failed: ERROR: <input>:1:"),
            "{syntax}"
        );
        let undeclared = compile("params.x == 1").unwrap_err();
        assert!(
            undeclared.contains("ERROR: <input>:1:1: undeclared reference to 'params'"),
            "{undeclared}"
        );
        assert!(
            compile("'a' && true")
                .unwrap_err()
                .contains("'_&&_' applied to '(string, bool)'")
        );
        assert!(compile("'a' in 'abc'").unwrap_err().contains("@in"));
        assert!(
            compile("authorizer.path('/x').check('get').allowed()")
                .unwrap_err()
                .contains("'authorizer' is not supported")
        );
        assert_eq!(compile("object.spec.items.all(i, i.ready == true)"), Ok(()));
        assert_eq!(compile("size(object.metadata.name) > 3"), Ok(()));
        assert_eq!(compile("object.metadata.name.startsWith('db-')"), Ok(()));
    }

    #[test]
    fn validation_names_each_field_as_the_apiserver_does() {
        let conditions = json!([
            { "name": "ok", "expression": "true" },
            { "name": "ok", "expression": "object.x" },
            { "name": "Not Valid!", "expression": " " },
        ]);
        let causes = validate("webhooks[0].matchConditions", &conditions);
        let fields: Vec<&str> = causes.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "webhooks[0].matchConditions[1].expression",
                "webhooks[0].matchConditions[1].name",
                "webhooks[0].matchConditions[2].expression",
                "webhooks[0].matchConditions[2].name",
            ]
        );
        assert_eq!(
            causes[0].1,
            "Invalid value: \"object.x\": must evaluate to bool"
        );
        assert_eq!(causes[1].1, "Duplicate value: \"ok\"");
        assert_eq!(causes[2].1, "Required value");
        let many: Vec<Value> = (0..65)
            .map(|i| json!({ "name": format!("c{i}"), "expression": "true" }))
            .collect();
        let causes = validate("webhooks[0].matchConditions", &Value::Array(many));
        assert_eq!(
            causes,
            [(
                "webhooks[0].matchConditions".to_string(),
                "Too many: 65: must have at most 64 items".to_string()
            )]
        );
    }
}
