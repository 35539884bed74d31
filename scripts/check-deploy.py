#!/usr/bin/env python3
"""Renders every kustomization under deploy/ and validates every object strictly.

Built-in kinds are checked against the official Kubernetes schemas
(kubernetes-validate --strict: unknown fields are errors), custom resources
against the project's own CRD schemas (crds/, plus any CRD a file brings),
and third-party kinds (cert-manager's Certificate and Issuer, the Prometheus
operator's ServiceMonitor, PodMonitor and PrometheusRule) against the
schemas vendored in deploy/schemas/ (see its README), all with unknown
fields refused as `kubectl apply --validate=strict` refuses them. A kind
with no schema at all is an error. The example manifests under plugins/ and the
manifests of deploy/e2e/ are checked too.

A self-test first proves the check is not vacuous: a copy with a wrong field
in a Deployment and in a ReconcilerPlugin must be refused, and for each
vendored kind a minimal valid object passes while copies with a wrong field
(at the top of spec and deeper) are refused.

Needs kubectl (kustomize is built in) and `pip install kubernetes-validate`.
"""

import copy
import json
import pathlib
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The oldest Kubernetes the manifests claim to support, and the newest the
# installed kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())


def kustomizations():
    """Every directory under deploy/ with a kustomization that is not a Component."""
    for path in sorted((ROOT / "deploy").rglob("kustomization.yaml")):
        if yaml.safe_load(path.read_text()).get("kind") != "Component":
            yield path.parent


def render(directory):
    output = subprocess.run(
        ["kubectl", "kustomize", str(directory)], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def load(path):
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def strict(schema):
    """The CRD schema as the API server applies it with strict field validation."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            if isinstance(value, dict):
                walk(value)
            elif isinstance(value, list):
                for item in value:
                    walk(item)

    walk(schema)
    # apiVersion, kind and metadata are the API server's, not the schema's.
    properties = schema.setdefault("properties", {})
    for field in ("apiVersion", "kind", "metadata"):
        properties.setdefault(field, {})
    return schema


def crd_schemas(documents):
    schemas = {}
    for doc in documents:
        if doc.get("kind") != "CustomResourceDefinition":
            continue
        group = doc["spec"]["group"]
        kind = doc["spec"]["names"]["kind"]
        for version in doc["spec"]["versions"]:
            api_version = f"{group}/{version['name']}"
            schemas[(api_version, kind)] = strict(version["schema"]["openAPIV3Schema"])
    return schemas


def vendored_schemas():
    """The third-party kinds' schemas under deploy/schemas/, made strict."""
    schemas = {}
    for path in sorted((ROOT / "deploy" / "schemas").glob("*.json")):
        schema = json.loads(path.read_text())
        source = schema.pop("x-source")
        schemas[(source["apiVersion"], source["kind"])] = strict(schema)
    return schemas


# For each vendored kind: a minimal valid object, and where a wrong field
# goes in copies of it (a path of keys and list indexes, then the field).
VENDORED_SAMPLES = {
    ("cert-manager.io/v1", "Certificate"): (
        {"spec": {"secretName": "s", "dnsNames": ["a.b.svc"], "issuerRef": {"name": "ca", "kind": "Issuer"}}},
        [(["spec"], "dnsNamez"), (["spec", "issuerRef"], "kindd")],
    ),
    ("cert-manager.io/v1", "Issuer"): (
        {"spec": {"ca": {"secretName": "ca"}}},
        [(["spec"], "selfSignd"), (["spec", "ca"], "secretNam")],
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): (
        {"spec": {"selector": {"matchLabels": {"a": "b"}}, "endpoints": [{"port": "http", "path": "/metrics"}]}},
        [(["spec"], "endpoint"), (["spec", "endpoints", 0], "portt")],
    ),
    ("monitoring.coreos.com/v1", "PodMonitor"): (
        {"spec": {"selector": {"matchLabels": {"a": "b"}}, "podMetricsEndpoints": [{"port": "http"}]}},
        [(["spec"], "podMetricEndpoints"), (["spec", "podMetricsEndpoints", 0], "intervall")],
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): (
        {"spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "for": "5m"}]}]}},
        [(["spec"], "group"), (["spec", "groups", 0, "rules", 0], "expression")],
    ),
}


def errors(doc, schemas):
    """What is wrong with `doc`, as text; empty when it is valid."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in schemas:
        found = sorted(
            jsonschema.Draft7Validator(schemas[key]).iter_errors(doc), key=lambda e: e.path
        )
        return [f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in found]
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(map(str, error.path)) or "(root)"
            problems.append(f"Kubernetes {version}: {where}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"no schema for {key[1]} {key[0]} in Kubernetes {version} or crds/")
    return problems


def name(doc):
    meta = doc.get("metadata", {})
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{doc.get('kind')} {where}{meta.get('name')}"


def self_test(documents, schemas):
    """A wrong field in a copy must be refused, for a built-in kind, a custom
    one and every vendored third-party kind."""
    for kind, field in (("Deployment", "replicaz"), ("ReconcilerPlugin", "sourcee")):
        doc = copy.deepcopy(next(d for d in documents if d["kind"] == kind))
        doc["spec"][field] = 2
        if not errors(doc, schemas):
            sys.exit(f"check-deploy: self-test failed: a {kind} with spec.{field} was accepted")
    vendored = vendored_schemas()
    missing = sorted(set(VENDORED_SAMPLES) - set(vendored))
    if missing:
        sys.exit(f"check-deploy: self-test failed: no schema in deploy/schemas/ for {missing}")
    for (api_version, kind), (sample, wrong) in VENDORED_SAMPLES.items():
        doc = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x", "namespace": "y"}}
        doc.update(copy.deepcopy(sample))
        problems = errors(doc, schemas)
        if problems:
            sys.exit(f"check-deploy: self-test failed: a minimal valid {kind} was refused: {problems}")
        for path, field in wrong:
            bad = copy.deepcopy(doc)
            node = bad
            for key in path:
                node = node[key]
            node[field] = "x"
            if not errors(bad, schemas):
                where = ".".join(map(str, path + [field]))
                sys.exit(f"check-deploy: self-test failed: a {kind} with {where} was accepted")
    kinds = ", ".join(kind for _, kind in VENDORED_SAMPLES)
    print(f"check-deploy: self-test: a wrong field in a Deployment, a ReconcilerPlugin, {kinds} is refused")


def main():
    base = crd_schemas(load_all(ROOT / "crds"))
    base.update(vendored_schemas())
    failed = 0
    checked = 0
    rendered = {}
    for directory in kustomizations():
        rendered[directory] = render(directory)
    extra = [p for p in sorted((ROOT / "plugins").rglob("*.yaml")) if "target" not in p.parts]
    # The manifests deploy/e2e/run.sh applies besides the rendered overlay.
    extra += sorted((ROOT / "deploy" / "e2e").glob("*.yaml"))
    extra_docs = {path: load(path) for path in extra}
    schemas = dict(base)
    for documents in list(rendered.values()) + list(extra_docs.values()):
        schemas.update(crd_schemas(documents))
    self_test(next(iter(rendered.values())) + sum(extra_docs.values(), []), schemas)
    sources = [(d.relative_to(ROOT), docs) for d, docs in rendered.items()]
    sources += [(p.relative_to(ROOT), docs) for p, docs in extra_docs.items()]
    for source, documents in sources:
        for doc in documents:
            checked += 1
            for problem in errors(doc, schemas):
                failed += 1
                print(f"check-deploy: {source}: {name(doc)}: {problem}", file=sys.stderr)
        print(f"check-deploy: {source}: {len(documents)} objects")
    if failed:
        sys.exit(f"check-deploy: {failed} problems in {checked} objects")
    print(f"check-deploy: {checked} objects valid (Kubernetes {' and '.join(KUBERNETES_VERSIONS)} schemas, strict; custom resources against crds/ and deploy/schemas/)")


def load_all(directory):
    documents = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            documents += load(path)
    return documents


if __name__ == "__main__":
    main()
