//! `admission.k8s.io/v1` AdmissionReviews: the request the API server sends
//! and the response it expects.
//!
//! Own types rather than `kube::core::admission`: kube's
//! `AdmissionResponse` serializes `patch` as a JSON array of numbers
//! (kube-rs#1781), while the API server's field is Go's `[]byte`, whose
//! JSON form is base64; and its request type turns objects into
//! `DynamicObject`s, while the plugin must see the object exactly as
//! submitted for the patch to apply to it.

use base64::Engine as _;
use json_patch::Patch;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// The API version of every review this server reads and writes.
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// The kind of every review.
pub const KIND: &str = "AdmissionReview";

/// The HTTP status code of a denial's `status`, as the API server reports
/// a webhook's refusal (`Forbidden`).
pub const DENIED_CODE: u16 = 403;

/// An AdmissionReview as the API server sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewRequest {
    /// `admission.k8s.io/v1`.
    pub api_version: String,
    /// `AdmissionReview`.
    pub kind: String,
    /// The request; absent only in a malformed review.
    pub request: Option<AdmissionRequest>,
}

/// The `request` of an AdmissionReview: the fields the plugins see.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// This call's identifier, echoed in the response.
    pub uid: String,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: String,
    /// The object as submitted (null on DELETE).
    #[serde(default)]
    pub object: Option<Value>,
    /// The object before the change (null on CREATE).
    #[serde(default)]
    pub old_object: Option<Value>,
    /// Whether the request will not be persisted.
    #[serde(default)]
    pub dry_run: bool,
    /// Who asked.
    #[serde(default)]
    pub user_info: UserInfo,
}

/// The requesting user.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserInfo {
    /// The user's name.
    #[serde(default)]
    pub username: String,
}

impl ReviewRequest {
    /// Reads a review from a request body.
    ///
    /// # Errors
    /// A message saying what is wrong, for a 400 answer: not JSON, another
    /// version or kind, or no `request`.
    pub fn parse(body: &[u8]) -> Result<AdmissionRequest, String> {
        let review: Self = serde_json::from_slice(body)
            .map_err(|e| format!("the body is not an AdmissionReview: {e}"))?;
        if review.api_version != API_VERSION || review.kind != KIND {
            return Err(format!(
                "expected an {API_VERSION} {KIND}, got {} {}",
                review.api_version, review.kind
            ));
        }
        review
            .request
            .ok_or_else(|| "the AdmissionReview has no request".to_owned())
    }
}

/// The `response` of an AdmissionReview.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    /// The request's `uid`.
    pub uid: String,
    /// Whether the request may go on.
    pub allowed: bool,
    /// Why not, when denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<DenialStatus>,
    /// A JSON patch (RFC 6902) as JSON bytes, sent as base64.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_base64")]
    pub patch: Option<Vec<u8>>,
    /// `JSONPatch` exactly when there is a patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// Shown to the user (kubectl prints them), allowed or not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The `status` of a denial (a `metav1.Status` with its code and message).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DenialStatus {
    /// [`DENIED_CODE`].
    pub code: u16,
    /// What the user is told after `admission webhook "…" denied the request: `.
    pub message: String,
}

impl AdmissionResponse {
    /// Allows request `uid`.
    pub fn allow(uid: &str, warnings: Vec<String>) -> Self {
        Self {
            uid: uid.to_owned(),
            allowed: true,
            status: None,
            patch: None,
            patch_type: None,
            warnings,
        }
    }

    /// Denies request `uid`, telling the user `message`.
    pub fn deny(uid: &str, message: String, warnings: Vec<String>) -> Self {
        Self {
            allowed: false,
            status: Some(DenialStatus {
                code: DENIED_CODE,
                message,
            }),
            ..Self::allow(uid, warnings)
        }
    }

    /// The same answer, changing the object by `patch`.
    #[must_use]
    pub fn with_patch(mut self, patch: &Patch) -> Self {
        // A patch is strings and JSON values: it always serializes.
        self.patch = Some(serde_json::to_vec(patch).unwrap_or_default());
        self.patch_type = Some("JSONPatch");
        self
    }

    /// The whole AdmissionReview carrying this response, as JSON bytes.
    pub fn to_review_body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Review<'a> {
            api_version: &'static str,
            kind: &'static str,
            response: &'a AdmissionResponse,
        }
        // Strings, booleans and numbers only: serializing cannot fail.
        serde_json::to_vec(&Review {
            api_version: API_VERSION,
            kind: KIND,
            response: self,
        })
        .unwrap_or_default()
    }
}

fn as_base64<S: Serializer>(patch: &Option<Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
    match patch {
        Some(bytes) => {
            serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admission::patch::patch_between;

    fn review(request: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": request,
        }))
        .unwrap()
    }

    #[test]
    fn a_create_review_is_read_with_its_object_and_user() {
        let request = ReviewRequest::parse(&review(json!({
            "uid": "u-1", "operation": "CREATE",
            "object": {"spec": {"greeting": "hi"}}, "oldObject": null,
            "dryRun": true, "userInfo": {"username": "alice", "groups": ["g"]},
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
        })))
        .unwrap();
        assert_eq!(request.uid, "u-1");
        assert_eq!(request.operation, "CREATE");
        assert_eq!(request.object, Some(json!({"spec": {"greeting": "hi"}})));
        assert_eq!(request.old_object, None);
        assert!(request.dry_run);
        assert_eq!(request.user_info.username, "alice");
    }

    #[test]
    fn a_review_of_another_version_is_refused() {
        let body = serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
            "request": {"uid": "u", "operation": "CREATE"},
        }))
        .unwrap();
        let error = ReviewRequest::parse(&body).unwrap_err();
        assert!(error.contains("admission.k8s.io/v1beta1"), "{error}");
        assert!(ReviewRequest::parse(b"not json").is_err());
    }

    #[test]
    fn a_denial_carries_the_uid_code_403_and_the_message() {
        let body = AdmissionResponse::deny("u-2", "spec.greeting is required".into(), vec![])
            .to_review_body();
        let review: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            review,
            json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": "u-2", "allowed": false,
                    "status": {"code": 403, "message": "spec.greeting is required"},
                },
            })
        );
    }

    #[test]
    fn an_allowed_answer_has_no_status_and_keeps_warnings() {
        let body = AdmissionResponse::allow("u", vec!["deprecated field".into()]).to_review_body();
        let review: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            review["response"],
            json!({"uid": "u", "allowed": true, "warnings": ["deprecated field"]})
        );
    }

    #[test]
    fn a_patch_is_sent_as_base64_of_a_json_array_that_applies_to_the_submitted_object() {
        let submitted = json!({"metadata": {"name": "g"}, "spec": {"greeting": "hi"}});
        let mut wanted = submitted.clone();
        wanted["spec"]["audienceFrom"] = json!({"configMap": "audience", "key": "who"});
        let patch = patch_between(&submitted, &wanted).unwrap().unwrap();
        let body = AdmissionResponse::allow("u", vec![])
            .with_patch(&patch)
            .to_review_body();
        let review: Value = serde_json::from_slice(&body).unwrap();
        let response = &review["response"];
        assert_eq!(response["patchType"], "JSONPatch");
        // A string, as Go's []byte decoder requires; not an array of numbers.
        let encoded = response["patch"]
            .as_str()
            .expect("patch is a base64 string");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        let operations: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(operations.is_array(), "{operations}");
        let mut applied = submitted.clone();
        json_patch::patch(
            &mut applied,
            &serde_json::from_value::<Patch>(operations).unwrap(),
        )
        .unwrap();
        assert_eq!(applied, wanted);
    }
}
