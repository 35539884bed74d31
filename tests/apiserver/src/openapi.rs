//! OpenAPI v3, as kube-apiserver serves it, so that `kubectl explain` works: the discovery
//! document `/openapi/v3` (`paths` → `serverRelativeURL` with `?hash=`) and one document
//! per group version, `/openapi/v3/api/v1` and `/openapi/v3/apis/<group>/<version>`.
//!
//! What kubectl's explain (v2, `pkg/explain/v2/templates/plaintext.tmpl`) reads from a
//! group-version document, and so what is built here:
//! - `paths["/apis/<g>/<v>[/namespaces/{namespace}]/<plural>[/{name}]"]` with operations
//!   carrying `x-kubernetes-group-version-kind` (`{group, kind, version}`): that is how it
//!   goes from the resource to the kind;
//! - `components.schemas` entries whose `x-kubernetes-group-version-kind` list holds that
//!   same object: the kind's schema, whose `properties` it walks along the field path,
//!   resolving `$ref`s within the document.
//!
//! Custom resources get their CRD version's `openAPIV3Schema` under the apiextensions
//! server's name (`<reversed group>.<version>.<Kind>`, e.g.
//! `tech.mikemiller.systems.v1alpha1.Database`) with the standard `apiVersion`, `kind` and
//! `metadata` (a `$ref` to `ObjectMeta`) in place of whatever the CRD says. Documents are
//! built from the registry on every request, so a CRD created or changed is explained at
//! once, and its hash changes with its content (clients cache by hash).
//!
//! Built-in kinds get minimal schemas (`apiVersion`, `kind`, `metadata`, and a few
//! top-level fields for ConfigMaps, Secrets, Pods and Services): enough for
//! `kubectl explain pod` to answer, not the real field documentation. No `/openapi/v2`:
//! kubectl only falls back to it when `/openapi/v3` fails.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use crate::registry::{Registry, ResourceType};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const OWNER_REFERENCE: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference";
const MANAGED_FIELDS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry";
const TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Time";

/// The media type of every document served here.
pub const JSON: &str = "application/json";

/// `api/v1` or `apis/<group>/<version>`: a group version's key in `/openapi/v3`'s `paths`.
fn path_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The content hash the real server puts in `serverRelativeURL`: SHA-512 of the document
/// as served, in upper-case hex (kube-openapi's `computeETag`).
pub fn hash(document: &Value) -> String {
    let bytes = serde_json::to_vec(document).unwrap_or_default();
    Sha512::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// `/openapi/v3`: every served group version with the URL (and hash) of its document.
pub fn discovery(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, versions) in registry.groups() {
        for version in versions {
            let Some(document) = group_version(registry, group, version) else {
                continue;
            };
            let key = path_key(group, version);
            paths.insert(
                key.clone(),
                json!({ "serverRelativeURL": format!("/openapi/v3/{key}?hash={}", hash(&document)) }),
            );
        }
    }
    json!({ "paths": paths })
}

/// The document of one group version, `None` when nothing is served there.
pub fn group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types: Vec<_> = registry.in_group_version(group, version).collect();
    if types.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = meta_schemas();
    for rt in types {
        let gvk = json!({ "group": rt.group, "kind": rt.kind, "version": rt.version });
        let name = schema_name(rt);
        for (path, item) in resource_paths(rt, &gvk, &name) {
            paths.insert(path, item);
        }
        let mut schema = kind_schema(rt);
        schema["x-kubernetes-group-version-kind"] = json!([gvk]);
        schemas.insert(name, schema);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": crate::discovery::version()["gitVersion"] },
        "paths": paths,
        "components": { "schemas": schemas },
    }))
}

/// The schema's key: the apiextensions server's `<reversed group>.<version>.<Kind>` for
/// custom resources, the Go package path for built-in kinds.
fn schema_name(rt: &ResourceType) -> String {
    if rt.custom {
        let reversed: Vec<&str> = rt.group.split('.').rev().collect();
        return format!("{}.{}.{}", reversed.join("."), rt.version, rt.kind);
    }
    let package = match rt.group.as_str() {
        "" => "io.k8s.api.core".to_string(),
        "apiextensions.k8s.io" => "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions".into(),
        group => format!("io.k8s.api.{}", group.split('.').next().unwrap_or(group)),
    };
    format!("{package}.{}.{}", rt.version, rt.kind)
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Collection and item paths (plus `/status`), each operation naming the kind.
fn resource_paths(rt: &ResourceType, gvk: &Value, name: &str) -> Vec<(String, Value)> {
    let prefix = if rt.group.is_empty() {
        format!("/api/{}", rt.version)
    } else {
        format!("/apis/{}/{}", rt.group, rt.version)
    };
    let operation = |action: &str| {
        json!({
            "operationId": format!("{action}{}", rt.kind),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "responses": { "200": { "description": "OK", "content": { JSON: { "schema": reference(name) } } } },
        })
    };
    // Writes take the query parameters the real server lists; kubectl looks for
    // `fieldValidation` on PATCH to validate on the server (else it wants /openapi/v2).
    let write = |action: &str| {
        let mut op = operation(action);
        let mut names = vec!["dryRun", "fieldManager", "fieldValidation"];
        if action == "patch" {
            names.push("force");
        }
        op["parameters"] = names
            .into_iter()
            .map(|name| json!({ "name": name, "in": "query", "schema": { "type": "string", "uniqueItems": true } }))
            .collect();
        op
    };
    let collection = json!({ "get": operation("list"), "post": write("post") });
    let item = json!({
        "get": operation("get"), "put": write("put"),
        "patch": write("patch"), "delete": operation("delete"),
    });
    let status = json!({ "get": operation("get"), "put": write("put"), "patch": write("patch") });
    let scoped = if rt.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", rt.plural)
    } else {
        format!("{prefix}/{}", rt.plural)
    };
    let mut paths = vec![
        (scoped.clone(), collection.clone()),
        (format!("{scoped}/{{name}}"), item),
    ];
    if rt.status {
        paths.push((format!("{scoped}/{{name}}/status"), status));
    }
    if rt.namespaced {
        // The list across all namespaces, as the real server has it.
        paths.push((
            format!("{prefix}/{}", rt.plural),
            json!({ "get": operation("list") }),
        ));
    }
    paths
}

/// `apiVersion`, `kind` and `metadata` as every kind has them.
fn standard_properties() -> Map<String, Value> {
    let mut properties = Map::new();
    properties.insert(
        "apiVersion".into(),
        json!({ "type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources" }),
    );
    properties.insert(
        "kind".into(),
        json!({ "type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds" }),
    );
    properties.insert(
        "metadata".into(),
        json!({ "allOf": [reference(OBJECT_META)], "default": {}, "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata" }),
    );
    properties
}

/// A custom resource's CRD schema with the standard fields, or a built-in kind's minimal one.
fn kind_schema(rt: &ResourceType) -> Value {
    let mut schema = match &rt.schema {
        Some(schema) => schema.clone(),
        None => builtin_schema(rt),
    };
    if !schema.is_object() {
        schema = json!({ "type": "object" });
    }
    let properties = schema
        .as_object_mut()
        .expect("object")
        .entry("properties")
        .or_insert_with(|| json!({}));
    if let Value::Object(properties) = properties {
        for (key, value) in standard_properties() {
            properties.insert(key, value);
        }
    }
    schema
}

fn builtin_schema(rt: &ResourceType) -> Value {
    let string_map = |description: &str| json!({ "type": "object", "additionalProperties": { "type": "string", "default": "" }, "description": description });
    let properties = match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "ConfigMap") => json!({
            "data": string_map("Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'."),
            "binaryData": { "type": "object", "additionalProperties": { "type": "string", "format": "byte" }, "description": "BinaryData contains the binary data: base64 values of keys not in Data." },
            "immutable": { "type": "boolean", "description": "Immutable, if set to true, ensures that data stored in the ConfigMap cannot be updated." },
        }),
        ("", "Secret") => json!({
            "data": { "type": "object", "additionalProperties": { "type": "string", "format": "byte" }, "description": "Data contains the secret data, each value base64-encoded." },
            "stringData": string_map("stringData allows specifying non-binary secret data in string form. It is merged into the data field on write, and never output when reading from the API."),
            "type": { "type": "string", "description": "Used to facilitate programmatic handling of secret data." },
            "immutable": { "type": "boolean", "description": "Immutable, if set to true, ensures that data stored in the Secret cannot be updated." },
        }),
        ("", "Pod") => json!({
            "spec": { "type": "object", "description": "Specification of the desired behavior of the pod (not detailed by the test API server)." },
            "status": { "type": "object", "description": "Most recently observed status of the pod (not detailed by the test API server)." },
        }),
        ("", "Service") => json!({
            "spec": { "type": "object", "description": "Spec defines the behavior of a service (not detailed by the test API server)." },
            "status": { "type": "object", "description": "Most recently observed status of the service (not detailed by the test API server)." },
        }),
        _ if rt.status => json!({
            "spec": { "type": "object", "description": "The desired state (not detailed by the test API server)." },
            "status": { "type": "object", "description": "The observed state (not detailed by the test API server)." },
        }),
        _ => json!({}),
    };
    json!({
        "type": "object",
        "description": format!("{} of the {} API (a minimal schema: the test API server does not carry the built-in kinds' field documentation).", rt.kind, if rt.group.is_empty() { "core" } else { &rt.group }),
        "properties": properties,
    })
}

/// `ObjectMeta` and what it refers to, in every document (kubectl resolves `$ref`s within
/// the document it fetched).
fn meta_schemas() -> Map<String, Value> {
    let string = |d: &str| json!({ "type": "string", "default": "", "description": d });
    let strings = |d: &str| json!({ "type": "array", "items": { "type": "string", "default": "" }, "description": d });
    let string_map = |d: &str| json!({ "type": "object", "additionalProperties": { "type": "string", "default": "" }, "description": d });
    let time = |d: &str| json!({ "allOf": [reference(TIME)], "description": d });
    let mut schemas = Map::new();
    schemas.insert(
        OBJECT_META.into(),
        json!({
            "type": "object",
            "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
            "properties": {
                "annotations": string_map("Annotations is an unstructured key value map stored with a resource that may be set by external tools to store and retrieve arbitrary metadata."),
                "creationTimestamp": time("CreationTimestamp is a timestamp representing the server time when this object was created. Set by the server; read-only."),
                "deletionGracePeriodSeconds": { "type": "integer", "format": "int64", "description": "Number of seconds allowed for this object to gracefully terminate before it will be removed from the system. Read-only." },
                "deletionTimestamp": time("DeletionTimestamp is the time after which this resource will be deleted, set by the server when a graceful deletion is requested. Read-only."),
                "finalizers": strings("Must be empty before the object is deleted from the registry. Each entry is an identifier for the responsible component that will remove the entry from the list."),
                "generateName": string("GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name field has not been provided."),
                "generation": { "type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state. Populated by the system. Read-only." },
                "labels": string_map("Map of string keys and values that can be used to organize and categorize (scope and select) objects."),
                "managedFields": { "type": "array", "items": { "allOf": [reference(MANAGED_FIELDS)], "default": {} }, "description": "ManagedFields maps workflow-id and version to the set of fields that are managed by that workflow." },
                "name": string("Name must be unique within a namespace. Cannot be updated."),
                "namespace": string("Namespace defines the space within which each name must be unique. Cannot be updated."),
                "ownerReferences": { "type": "array", "items": { "allOf": [reference(OWNER_REFERENCE)], "default": {} }, "description": "List of objects depended by this object. If ALL objects in the list have been deleted, this object will be garbage collected.", "x-kubernetes-list-map-keys": ["uid"], "x-kubernetes-list-type": "map" },
                "resourceVersion": string("An opaque value that represents the internal version of this object, used for optimistic concurrency, change detection, and the watch operation. Read-only."),
                "uid": string("UID is the unique in time and space value for this object, generated by the server on successful creation. Read-only."),
            },
        }),
    );
    schemas.insert(
        OWNER_REFERENCE.into(),
        json!({
            "type": "object",
            "description": "OwnerReference contains enough information to let you identify an owning object.",
            "required": ["apiVersion", "kind", "name", "uid"],
            "properties": {
                "apiVersion": string("API version of the referent."),
                "blockOwnerDeletion": { "type": "boolean", "description": "If true, the owner cannot be deleted from the key-value store until this reference is removed (foreground deletion)." },
                "controller": { "type": "boolean", "description": "If true, this reference points to the managing controller." },
                "kind": string("Kind of the referent."),
                "name": string("Name of the referent."),
                "uid": string("UID of the referent."),
            },
        }),
    );
    schemas.insert(
        MANAGED_FIELDS.into(),
        json!({
            "type": "object",
            "description": "ManagedFieldsEntry is a workflow-id, a FieldSet and the group version of the resource that the fieldset applies to.",
            "properties": {
                "apiVersion": string("APIVersion defines the version of this resource that this field set applies to."),
                "fieldsType": string("FieldsType is the discriminator for the different fields format and version. There is currently only one possible value: \"FieldsV1\""),
                "fieldsV1": { "type": "object", "description": "FieldsV1 holds the first JSON version format as described in the \"FieldsV1\" type." },
                "manager": string("Manager is an identifier of the workflow managing these fields."),
                "operation": string("Operation is the type of operation which lead to this ManagedFieldsEntry being created. The only valid values for this field are 'Apply' and 'Update'."),
                "subresource": string("Subresource is the name of the subresource used to update that object, or empty string if the object was updated through the main resource."),
                "time": time("Time is the timestamp of when the ManagedFields entry was added."),
            },
        }),
    );
    schemas.insert(
        TIME.into(),
        json!({ "type": "string", "format": "date-time", "description": "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON." }),
    );
    schemas
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry_with_database() -> Registry {
        let mut registry = Registry::with_builtins();
        registry.register_crd(&json!({
            "spec": {
                "group": "systems.mikemiller.tech", "scope": "Namespaced",
                "names": { "plural": "databases", "kind": "Database" },
                "versions": [{ "name": "v1alpha1", "served": true, "storage": true, "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": { "type": "object", "properties": { "size": { "type": "string" } } } },
                } } }],
            },
        }));
        registry
    }

    #[test]
    fn a_custom_resource_is_found_from_its_path_to_its_schema_as_kubectl_explain_does() {
        let registry = registry_with_database();
        let document = group_version(&registry, "systems.mikemiller.tech", "v1alpha1").unwrap();
        let path = &document["paths"]["/apis/systems.mikemiller.tech/v1alpha1/namespaces/{namespace}/databases"];
        let gvk = &path["get"]["x-kubernetes-group-version-kind"];
        assert_eq!(
            *gvk,
            json!({ "group": "systems.mikemiller.tech", "kind": "Database", "version": "v1alpha1" })
        );
        let schema =
            &document["components"]["schemas"]["tech.mikemiller.systems.v1alpha1.Database"];
        assert_eq!(schema["x-kubernetes-group-version-kind"], json!([gvk]));
        assert_eq!(
            schema["properties"]["spec"]["properties"]["size"]["type"],
            "string"
        );
        assert_eq!(
            schema["properties"]["metadata"]["allOf"][0]["$ref"],
            format!("#/components/schemas/{OBJECT_META}")
        );
        assert!(document["components"]["schemas"][OBJECT_META].is_object());
    }

    #[test]
    fn discovery_links_each_group_version_with_the_hash_of_its_document() {
        let registry = registry_with_database();
        let discovery = discovery(&registry);
        let document = group_version(&registry, "systems.mikemiller.tech", "v1alpha1").unwrap();
        let url = discovery["paths"]["apis/systems.mikemiller.tech/v1alpha1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert_eq!(
            url,
            format!(
                "/openapi/v3/apis/systems.mikemiller.tech/v1alpha1?hash={}",
                hash(&document)
            )
        );
        assert_eq!(hash(&document).len(), 128);
        assert!(discovery["paths"]["api/v1"].is_object());
    }
}
