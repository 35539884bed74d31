//! The RFC 6902 patch from the object a user submitted to the object a
//! plugin's `mutate` wants stored.
//!
//! The plugin returns a whole object (simpler to write and to test than
//! patch operations); the API server wants a JSON patch. The patch is
//! applied to a copy of the submitted object before it is sent, so that a
//! patch that would not reproduce the plugin's object is never sent.

use json_patch::Patch;
use serde_json::Value;

/// Why no patch could be made.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The computed patch did not apply to the submitted object.
    #[error("the patch does not apply to the submitted object: {0}")]
    DoesNotApply(#[source] json_patch::PatchError),
    /// The computed patch applied but did not give the plugin's object.
    #[error("the patch does not turn the submitted object into the plugin's object")]
    Mismatch,
}

/// The patch turning `submitted` into `wanted`, or `None` when they are equal.
///
/// # Guarantees
/// A returned patch applied to `submitted` gives exactly `wanted`.
///
/// # Errors
/// A [`PatchError`] when that could not be shown (a bug of the diff, kept
/// from reaching the API server).
pub fn patch_between(submitted: &Value, wanted: &Value) -> Result<Option<Patch>, PatchError> {
    let patch = json_patch::diff(submitted, wanted);
    if patch.0.is_empty() {
        return Ok(None);
    }
    let mut copy = submitted.clone();
    json_patch::patch(&mut copy, &patch).map_err(PatchError::DoesNotApply)?;
    if copy != *wanted {
        return Err(PatchError::Mismatch);
    }
    Ok(Some(patch))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn greeting() -> Value {
        json!({
            "apiVersion": "examples.systems.mikemiller.tech/v1alpha1",
            "kind": "Greeting",
            "metadata": {"name": "hello", "annotations": {"a/b": "1"}},
            "spec": {"greeting": "hi", "list": [1, 2, 3]},
        })
    }

    #[test]
    fn an_unchanged_object_needs_no_patch() {
        assert!(patch_between(&greeting(), &greeting()).unwrap().is_none());
    }

    #[test]
    fn the_patch_turns_the_submitted_object_into_the_plugins() {
        let mut wanted = greeting();
        wanted["spec"]["audienceFrom"] = json!({"configMap": "audience", "key": "who"});
        wanted["spec"]["list"] = json!([1, 3]);
        wanted["metadata"]["annotations"]["x/y~z"] = json!("2");
        let patch = patch_between(&greeting(), &wanted).unwrap().unwrap();
        let mut copy = greeting();
        json_patch::patch(&mut copy, &patch).unwrap();
        assert_eq!(copy, wanted);
        // Keys with `/` and `~` are escaped as RFC 6901 says.
        let text = serde_json::to_string(&patch).unwrap();
        assert!(text.contains("/metadata/annotations/x~1y~0z"), "{text}");
    }

    #[test]
    fn removed_fields_are_removed_by_the_patch() {
        let mut wanted = greeting();
        wanted["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        let patch = patch_between(&greeting(), &wanted).unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!([{"op": "remove", "path": "/metadata/annotations"}])
        );
    }
}
