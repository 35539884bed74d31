#!/usr/bin/env python3
"""Writes the JSON Schemas of the third-party kinds deploy/ uses, from the
pydantic models that PyPI packages generate from the upstream CRDs.

Run it in a throwaway virtualenv with the pinned packages (see README.md):

    python3 -m venv /tmp/schemas && /tmp/schemas/bin/pip install \
        cloudcoil==0.6.0 pydantic==2.14.4 \
        cloudcoil-models-cert-manager==1.17.1.0 \
        cloudcoil-models-prometheus-operator==0.80.1.0
    /tmp/schemas/bin/python deploy/schemas/generate.py

scripts/check-deploy.py reads the files it writes; it needs none of these
packages.
"""

import json
import pathlib

from cloudcoil.models.cert_manager import v1 as cert_manager
from cloudcoil.models.prometheus_operator import v1 as monitoring

HERE = pathlib.Path(__file__).resolve().parent
KINDS = [
    ("cert-manager.io/v1", cert_manager, ["Certificate", "Issuer", "ClusterIssuer"]),
    ("monitoring.coreos.com/v1", monitoring, ["ServiceMonitor", "PodMonitor", "PrometheusRule"]),
]


def tidy(node):
    """Drops pydantic's generated titles and defaults (they only repeat the
    field names and `null`), and makes `anyOf: [X, null]` plain X: an optional
    field of a CRD is absent rather than null, and validation errors then name
    the wrong field instead of "not valid under any of the given schemas"."""
    if isinstance(node, list):
        return [tidy(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: v for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    if node.get("default", 0) is None:
        del node["default"]
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del node["anyOf"]
        if len(rest) == 1:
            node.update(rest[0])
        else:
            node["anyOf"] = rest
    return {k: tidy(v) for k, v in node.items()}


def main():
    for api_version, module, kinds in KINDS:
        for kind in kinds:
            schema = tidy(getattr(module, kind).model_json_schema(by_alias=True))
            schema["x-source"] = {"apiVersion": api_version, "kind": kind}
            group = api_version.split("/")[0]
            path = HERE / f"{group}_{kind.lower()}.json"
            path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
            print(f"wrote {path.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main()
