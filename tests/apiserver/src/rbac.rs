//! Opt-in authentication and RBAC authorization, as kube-apiserver's bearer-token
//! authenticator, `RequestInfoResolver` and RBAC authorizer do: request attributes from the
//! URL, rules gathered from the stored ClusterRoleBindings and the request namespace's
//! RoleBindings, and the `Forbidden` message of `responsewriters.Forbidden`.

use std::collections::HashMap;
use std::sync::Mutex;

use http::Method;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::query::Query;
use crate::registry::GroupResource;
use crate::store::State;

/// The token of the admin kubeconfig ([`crate::TestApiServer::client`]); its holder is in
/// `system:masters`, which the real authorizer never restricts.
pub const ADMIN_TOKEN: &str = "test-token";

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Bearer tokens minted for ServiceAccounts: token → (namespace, name).
#[derive(Default)]
pub struct Tokens(Mutex<HashMap<String, (String, String)>>);

impl Tokens {
    /// The token for `system:serviceaccount:<namespace>:<name>`, minted on first use.
    pub fn mint(&self, namespace: &str, name: &str) -> String {
        let token = format!("test-sa-token.{namespace}.{name}");
        self.0
            .lock()
            .expect("tokens lock")
            .insert(token.clone(), (namespace.into(), name.into()));
        token
    }

    fn lookup(&self, token: &str) -> Option<(String, String)> {
        self.0.lock().expect("tokens lock").get(token).cloned()
    }
}

/// Who sent a request.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `user.Info` as AdmissionReview `userInfo` shows it.
    pub user_info: Value,
    /// `system:masters`: never authorized against RBAC.
    pub admin: bool,
}

impl Identity {
    fn username(&self) -> &str {
        self.user_info["username"].as_str().unwrap_or("")
    }

    fn groups(&self) -> impl Iterator<Item = &str> {
        self.user_info["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    }
}

/// Identifies the caller. A minted ServiceAccount token is that ServiceAccount (with the
/// groups the ServiceAccount authenticator adds); any other token is the admin, and with
/// `enforce` only [`ADMIN_TOKEN`] is (anything else is 401, as an unknown token is on a real
/// server). The admin may impersonate with `Impersonate-*` headers (kubectl `--as`); the
/// impersonated user is then authorized like any other.
///
/// # Errors
/// 401 `Unauthorized` for an unknown token under `enforce`; 403 when a ServiceAccount
/// tries to impersonate (it would need the `impersonate` verb, which is not modelled).
pub fn authenticate(
    headers: &http::HeaderMap,
    tokens: &Tokens,
    enforce: bool,
) -> Result<Identity, ApiError> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let token = text("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let impersonated = text("impersonate-user");
    if let Some((namespace, name)) = token.and_then(|t| tokens.lookup(t)) {
        let username = format!("system:serviceaccount:{namespace}:{name}");
        if let Some(target) = impersonated {
            let message = format!(
                "users \"{target}\" is forbidden: User \"{username}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
            );
            return Err(ApiError::forbidden(message));
        }
        return Ok(Identity {
            user_info: json!({
                "username": username,
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{namespace}"), "system:authenticated"],
            }),
            admin: false,
        });
    }
    if enforce && token != Some(ADMIN_TOKEN) {
        return Err(ApiError::custom(401, "Unauthorized", "Unauthorized"));
    }
    let Some(username) = impersonated else {
        return Ok(Identity {
            user_info: json!({ "username": "test-apiserver-user", "groups": ["system:authenticated"] }),
            admin: true,
        });
    };
    let mut groups: Vec<&str> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !groups.contains(&"system:authenticated") {
        groups.push("system:authenticated");
    }
    let admin = groups.contains(&"system:masters");
    let mut user_info = json!({ "username": username, "groups": groups });
    if let Some(uid) = text("impersonate-uid") {
        user_info["uid"] = json!(uid);
    }
    Ok(Identity { user_info, admin })
}

/// What a request does, as `RequestInfoResolver` reads it from the URL.
#[derive(Debug, PartialEq, Eq)]
struct Attributes {
    verb: String,
    /// `None` for a non-resource request (discovery, `/version`, …).
    resource: Option<ResourceAttributes>,
    path: String,
}

#[derive(Debug, PartialEq, Eq)]
struct ResourceAttributes {
    group: String,
    namespace: String,
    resource: String,
    subresource: String,
    name: String,
}

fn attributes(method: &Method, path: &str, query: &Query) -> Attributes {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => ("", &[][..]),
    };
    let non_resource = || Attributes {
        verb: method.as_str().to_lowercase(),
        resource: None,
        path: path.to_string(),
    };
    if rest.is_empty() || rest[0].is_empty() {
        return non_resource();
    }
    let mut namespace = "";
    let mut rest = rest;
    if rest[0] == "namespaces" && rest.len() > 1 {
        namespace = rest[1];
        // `namespaces/<ns>/status` and `/finalize` are the Namespace's own subresources.
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    let at = |i: usize| rest.get(i).copied().unwrap_or("").to_string();
    let mut name = at(1);
    let verb = match *method {
        Method::GET | Method::HEAD if query.flag("watch") => "watch",
        Method::GET | Method::HEAD if name.is_empty() => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if name.is_empty() => "deletecollection",
        Method::DELETE => "delete",
        _ => "",
    };
    // A list or watch selecting one name is authorized as that name, as the real resolver
    // does, so `resourceNames` rules allow single-object informers.
    if name.is_empty()
        && matches!(verb, "list" | "watch")
        && let Some(selector) = query.get("fieldSelector")
    {
        let names: Vec<&str> = selector
            .split(',')
            .filter_map(|term| {
                term.strip_prefix("metadata.name==")
                    .or_else(|| term.strip_prefix("metadata.name="))
            })
            .collect();
        if let [only] = names.as_slice() {
            name = (*only).to_string();
        }
    }
    Attributes {
        verb: verb.into(),
        resource: Some(ResourceAttributes {
            group: group.into(),
            namespace: namespace.into(),
            resource: at(0),
            subresource: at(2),
            name,
        }),
        path: path.to_string(),
    }
}

/// Rules every authenticated user has through the bootstrap `system:discovery`,
/// `system:basic-user` and `system:public-info-viewer` ClusterRoles (not stored as objects).
fn bootstrap_rules() -> Vec<Value> {
    vec![
        json!({ "verbs": ["get"], "nonResourceURLs": [
            "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
            "/readyz", "/version", "/version/",
        ] }),
        json!({ "verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"] }),
        json!({ "verbs": ["create"], "apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"] }),
    ]
}

/// Authorizes the request for `identity`.
///
/// # Errors
/// 403 `Forbidden` with the real server's message when no rule allows it.
pub fn authorize(
    state: &State,
    identity: &Identity,
    method: &Method,
    path: &str,
    query: &Query,
) -> Result<(), ApiError> {
    if identity.admin {
        return Ok(());
    }
    let attrs = attributes(method, path, query);
    let mut errors = Vec::new();
    let mut rules = bootstrap_rules();
    let role = |kind: &str, namespace: &str, name: &str, errors: &mut Vec<String>| {
        let (resource, ns) = match kind {
            "ClusterRole" => ("clusterroles", ""),
            _ => ("roles", namespace),
        };
        let gr = GroupResource {
            group: RBAC_GROUP.into(),
            resource: resource.into(),
        };
        match state.get(&gr, &(ns.to_string(), name.to_string())) {
            Some(role) => role["rules"].as_array().cloned().unwrap_or_default(),
            None => {
                errors.push(format!(
                    "{}.{RBAC_GROUP} \"{name}\" not found",
                    kind.to_lowercase()
                ));
                Vec::new()
            }
        }
    };
    let bindings = |resource: &str, namespace: Option<&str>| -> Vec<Value> {
        let gr = GroupResource {
            group: RBAC_GROUP.into(),
            resource: resource.into(),
        };
        state.list(&gr, namespace).cloned().collect()
    };
    let scopes = [
        ("clusterrolebindings", None),
        (
            "rolebindings",
            attrs.resource.as_ref().map(|r| r.namespace.as_str()),
        ),
    ];
    for (resource, namespace) in scopes {
        if resource == "rolebindings" && namespace.is_none_or(str::is_empty) {
            continue;
        }
        for binding in bindings(resource, namespace) {
            let binding_ns = namespace.unwrap_or("");
            let applies = binding["subjects"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| subject_applies(s, identity, binding_ns));
            if applies {
                let kind = binding["roleRef"]["kind"].as_str().unwrap_or("");
                let name = binding["roleRef"]["name"].as_str().unwrap_or("");
                rules.extend(role(kind, binding_ns, name, &mut errors));
            }
        }
    }
    if rules.iter().any(|rule| rule_allows(rule, &attrs)) {
        return Ok(());
    }
    let user = identity.username();
    let mut message = match &attrs.resource {
        Some(r) => {
            let resource = if r.subresource.is_empty() {
                r.resource.clone()
            } else {
                format!("{}/{}", r.resource, r.subresource)
            };
            let scope = if r.namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace \"{}\"", r.namespace)
            };
            format!(
                "User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
                attrs.verb, r.group
            )
        }
        None => format!(
            "User \"{user}\" cannot {} path \"{}\"",
            attrs.verb, attrs.path
        ),
    };
    // The RBAC authorizer's reason lists the roles its bindings name but that do not exist.
    if !errors.is_empty() {
        let joined = if errors.len() == 1 {
            errors[0].clone()
        } else {
            format!("[{}]", errors.join(", "))
        };
        message = format!("{message}: RBAC: {joined}");
    }
    // `apierrors.NewForbidden(groupResource, name, err)`.
    let error = match &attrs.resource {
        Some(r) => {
            let qualified = if r.group.is_empty() {
                r.resource.clone()
            } else {
                format!("{}.{}", r.resource, r.group)
            };
            let text = if r.name.is_empty() {
                format!("{qualified} is forbidden: {message}")
            } else {
                format!("{qualified} \"{}\" is forbidden: {message}", r.name)
            };
            let mut error = ApiError::forbidden(text);
            let mut details = json!({ "group": r.group, "kind": r.resource });
            if !r.name.is_empty() {
                details["name"] = json!(r.name);
            }
            error.details = Some(details);
            error
        }
        None => ApiError::forbidden(format!("forbidden: {message}")),
    };
    Err(error)
}

/// `appliesTo` of the RBAC authorizer; a ServiceAccount subject without a namespace means
/// the binding's own.
fn subject_applies(subject: &Value, identity: &Identity, binding_namespace: &str) -> bool {
    let name = subject["name"].as_str().unwrap_or("");
    match subject["kind"].as_str() {
        Some("User") => identity.username() == name,
        Some("Group") => identity.groups().any(|g| g == name),
        Some("ServiceAccount") => {
            let namespace = subject["namespace"]
                .as_str()
                .filter(|ns| !ns.is_empty())
                .unwrap_or(binding_namespace);
            identity.username() == format!("system:serviceaccount:{namespace}:{name}")
        }
        _ => false,
    }
}

fn strings(rule: &Value, field: &str) -> Vec<String> {
    rule[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn rule_allows(rule: &Value, attrs: &Attributes) -> bool {
    let has =
        |field: &str, value: &str| strings(rule, field).iter().any(|v| v == "*" || v == value);
    if !has("verbs", &attrs.verb) {
        return false;
    }
    let Some(r) = &attrs.resource else {
        return strings(rule, "nonResourceURLs").iter().any(|url| {
            url == "*"
                || *url == attrs.path
                || url
                    .strip_suffix('*')
                    .is_some_and(|prefix| attrs.path.starts_with(prefix))
        });
    };
    if !has("apiGroups", &r.group) {
        return false;
    }
    let combined = if r.subresource.is_empty() {
        r.resource.clone()
    } else {
        format!("{}/{}", r.resource, r.subresource)
    };
    // `ResourceMatches`: `*`, the exact `resource[/subresource]`, or `*/<subresource>`;
    // `<resource>/*` is not a wildcard in RBAC.
    let resource_ok = strings(rule, "resources").iter().any(|res| {
        res == "*"
            || *res == combined
            || (!r.subresource.is_empty() && res.strip_prefix("*/") == Some(&r.subresource))
    });
    let names = strings(rule, "resourceNames");
    resource_ok && (names.is_empty() || names.contains(&r.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(method: Method, path: &str, query: &str) -> Attributes {
        attributes(&method, path, &Query::parse(query))
    }

    #[test]
    fn request_info_as_the_real_resolver_reads_it() {
        let a = attrs(Method::GET, "/api/v1/namespaces/infra/pods/p/log", "");
        let r = a.resource.expect("resource request");
        assert_eq!(
            (
                a.verb.as_str(),
                r.namespace.as_str(),
                r.resource.as_str(),
                r.name.as_str(),
                r.subresource.as_str()
            ),
            ("get", "infra", "pods", "p", "log")
        );
        let a = attrs(Method::GET, "/api/v1/namespaces/infra", "");
        let r = a.resource.expect("resource request");
        assert_eq!(
            (r.namespace.as_str(), r.resource.as_str(), r.name.as_str()),
            ("infra", "namespaces", "infra")
        );
        let a = attrs(
            Method::GET,
            "/apis/example.com/v1/things",
            "watch=1&fieldSelector=metadata.name%3Dx",
        );
        let r = a.resource.expect("resource request");
        assert_eq!(
            (a.verb.as_str(), r.group.as_str(), r.name.as_str()),
            ("watch", "example.com", "x")
        );
        assert_eq!(
            attrs(Method::GET, "/apis/example.com/v1", "").resource,
            None
        );
        assert_eq!(
            attrs(Method::DELETE, "/api/v1/namespaces/a/secrets", "").verb,
            "deletecollection"
        );
    }
}
