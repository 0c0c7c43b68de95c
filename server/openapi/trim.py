#!/usr/bin/env python3
"""Trims the upstream Kubernetes OpenAPI v3 documents to the schemas wasmfleet serves.

Writes `server/src/api/openapi_schemas.json`: one minified map from schema name to schema,
holding every schema reachable from the kinds in the kind registry (and nothing else). The
server builds each group-version's document from it at run time (`api::openapi`).

Inputs: the upstream documents `api__v1_openapi.json`, `apis__apps__v1_openapi.json`,
`apis__batch__v1_openapi.json`, `apis__discovery.k8s.io__v1_openapi.json` (kubernetes/kubernetes `api/openapi-spec/v3/`, or
kubernetes/client-go `openapi/openapitest/testdata/`) in the directory given as the first
argument, and next to this script `policy_v1.json` (the PodDisruptionBudget schemas, taken
from `apis__policy__v1_openapi.json`) and `networking_v1.json` (the Ingress and IngressClass
schemas, taken from `apis__networking.k8s.io__v1_openapi.json` of Kubernetes 1.33),
`core_v1_config.json` (ConfigMap and Secret, as in `api__v1_openapi.json`) and
`gateway_v1.json` (Gateway API kinds, which are CRDs upstream: written here, a described
object per kind whose spec and status keep unknown fields, as a CRD without a full schema)
and `rbac_v1.json` (the RBAC kinds, written here with wasmfleet's descriptions) and
`coordination_v1.json` (Lease and LeaseSpec, as in `apis__coordination.k8s.io__v1_openapi.json`)
and `metrics_v1beta1.json` (NodeMetrics, PodMetrics and ContainerMetrics of metrics-server's
`metrics.k8s.io/v1beta1`, written here with wasmfleet's descriptions; `window` inlined as a
string).

Usage: python3 server/openapi/trim.py DIR
"""

import json
import os
import sys

KINDS = {
    ("", "v1"): [
        "Namespace", "Node", "Pod", "Event", "Service", "Endpoints", "ConfigMap", "Secret",
        "ServiceAccount",
    ],
    ("discovery.k8s.io", "v1"): ["EndpointSlice"],
    ("apps", "v1"): ["Deployment", "ReplicaSet", "DaemonSet"],
    ("batch", "v1"): ["Job", "CronJob"],
    ("policy", "v1"): ["PodDisruptionBudget"],
    ("networking.k8s.io", "v1"): ["Ingress", "IngressClass"],
    ("gateway.networking.k8s.io", "v1"): ["GatewayClass", "Gateway", "HTTPRoute"],
    ("rbac.authorization.k8s.io", "v1"): ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"],
    ("coordination.k8s.io", "v1"): ["Lease"],
    ("metrics.k8s.io", "v1beta1"): ["NodeMetrics", "PodMetrics"],
}
DOCS = [
    "api__v1_openapi.json",
    "apis__apps__v1_openapi.json",
    "apis__batch__v1_openapi.json",
    "apis__discovery.k8s.io__v1_openapi.json",
]


def refs(node, out):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                out.add(value.rsplit("/", 1)[-1])
            else:
                refs(value, out)
    elif isinstance(node, list):
        for value in node:
            refs(value, out)


def main(src):
    schemas = {}
    for name in DOCS:
        with open(os.path.join(src, name)) as f:
            schemas.update(json.load(f)["components"]["schemas"])
    for extra in [
        "policy_v1.json", "networking_v1.json", "gateway_v1.json", "core_v1_config.json",
        "rbac_v1.json", "coordination_v1.json", "metrics_v1beta1.json",
    ]:
        with open(os.path.join(os.path.dirname(__file__), extra)) as f:
            schemas.update(json.load(f))
    wanted = {(g, v, k) for (g, v), kinds in KINDS.items() for k in kinds}
    todo = [
        name
        for name, schema in schemas.items()
        for gvk in schema.get("x-kubernetes-group-version-kind", [])
        if (gvk["group"], gvk["version"], gvk["kind"]) in wanted
    ]
    keep = set()
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        found = set()
        refs(schemas[name], found)
        todo.extend(found - keep)
    out = {name: schemas[name] for name in sorted(keep)}
    target = os.path.join(os.path.dirname(__file__), "..", "src", "api", "openapi_schemas.json")
    with open(target, "w") as f:
        json.dump(out, f, separators=(",", ":"), sort_keys=True)
    print(f"{len(out)} schemas, {os.path.getsize(target)} bytes -> {target}")


if __name__ == "__main__":
    main(sys.argv[1])
