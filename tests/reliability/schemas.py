"""An OpenAPI 3.0 document of the extender's verbs, precise enough to fuzz with schemathesis.

The extender reads raw bodies on the hot path (``extender.bodies.read_json`` then
``extender.messages.parse_*``), so FastAPI publishes no request models (and the app serves no
``/openapi.json``). This document describes what those parsers really accept, field for field
after :mod:`extender.messages` (the TypedDicts ``ExtenderArgs``, ``ExtenderFilterResult``,
``HostPriority``, ``ExtenderBindingArgs``, ``ExtenderPreemptionArgs``) and the parts of a
``v1.Pod`` that :meth:`topology.pods.Pod.from_object` reads: a schema-valid request must get
``200``, an invalid one ``400`` naming the problem, and nothing may get a ``5xx``. It lives
beside the tests so the hot path stays untouched; the lead may choose to serve it.
"""

from __future__ import annotations

import copy
from typing import Any

#: A Kubernetes quantity the pod reader accepts (small, so sums stay far from overflow).
QUANTITY = r"^[0-9]{1,4}(\.[0-9]{1,2})?(m|k|M|G|Ki|Mi|Gi)?$"
#: ``kbl.io/shards``: indexes and inclusive ranges.
SHARDS = r"^[0-9]{1,3}(-[0-9]{1,3})?(,[0-9]{1,3}(-[0-9]{1,3})?){0,3}$"
NAME = {"type": "string", "minLength": 1, "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string", "maxLength": 64}, "maxProperties": 4}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


SCHEMAS: dict[str, Any] = {
    "ResourceList": {
        "type": "object",
        "properties": {"cpu": {"type": "string", "pattern": QUANTITY}, "memory": {"type": "string", "pattern": QUANTITY}},
        "additionalProperties": False,
    },
    "Container": {
        "type": "object",
        "properties": {
            "name": NAME,
            "image": {"type": "string", "maxLength": 64},
            "resources": {"type": "object", "properties": {"requests": _ref("ResourceList"), "limits": _ref("ResourceList")}},
        },
    },
    "Toleration": {
        "type": "object",
        "properties": {
            "key": {"type": "string", "maxLength": 63},
            "operator": {"type": "string", "enum": ["Equal", "Exists"]},
            "value": {"type": "string", "maxLength": 63},
            "effect": {"type": "string", "enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
        },
    },
    "PodAnnotations": {
        "type": "object",
        "properties": {
            "kbl.io/dataset": {"type": "string", "enum": ["genome", "missing"]},
            "kbl.io/shards": {"type": "string", "pattern": SHARDS},
            "kbl.io/locality": {"type": "string", "enum": ["preferred", "required", "Required", " preferred "]},
            "kbl.io/kbl": {"type": "string", "enum": ["genomics", "other"]},
        },
        "additionalProperties": {"type": "string", "maxLength": 64},
        "maxProperties": 6,
    },
    "Pod": {
        "type": "object",
        "required": ["metadata"],
        "properties": {
            "apiVersion": {"type": "string", "enum": ["v1"]},
            "kind": {"type": "string", "enum": ["Pod"]},
            "metadata": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": NAME,
                    "namespace": {"type": "string", "enum": ["lab", "default", "other"]},
                    "uid": {"type": "string", "maxLength": 36},
                    "annotations": _ref("PodAnnotations"),
                    "labels": STRING_MAP,
                },
            },
            "spec": {
                "type": "object",
                "properties": {
                    "containers": {"type": "array", "items": _ref("Container"), "maxItems": 3},
                    "initContainers": {"type": "array", "items": _ref("Container"), "maxItems": 2},
                    "tolerations": {"type": "array", "items": _ref("Toleration"), "maxItems": 3},
                    "nodeName": {"type": "string", "enum": ["node-0-0-0", "node-1-1-2", "nowhere"]},
                    "schedulerName": {"type": "string", "maxLength": 32},
                    "nodeSelector": STRING_MAP,
                },
            },
            "status": {
                "type": "object",
                "properties": {"phase": {"type": "string", "enum": ["Pending", "Running", "Succeeded", "Failed"]}},
            },
        },
    },
    "NodeName": {"type": "string", "enum": [f"node-{z}-{r}-{h}" for z in range(2) for r in range(2) for h in range(3)] + ["unknown-node"]},
    "Node": {
        "type": "object",
        "required": ["metadata"],
        "properties": {
            "metadata": {"type": "object", "required": ["name"], "properties": {"name": _ref("NodeName"), "labels": STRING_MAP}}
        },
    },
    "NodeList": {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "items": _nullable({"type": "array", "items": _ref("Node"), "maxItems": 13}),
        },
    },
    # ExtenderArgs: NodeNames set (nodeCacheCapable), or NodeNames null and Nodes a NodeList.
    "ExtenderArgs": {
        "anyOf": [
            {
                "type": "object",
                "required": ["Pod", "Nodes", "NodeNames"],
                "properties": {
                    "Pod": _ref("Pod"),
                    "Nodes": _nullable({"type": "object", "enum": [None]}),
                    "NodeNames": {"type": "array", "items": _ref("NodeName"), "maxItems": 13},
                },
            },
            {
                "type": "object",
                "required": ["Pod", "Nodes", "NodeNames"],
                "properties": {
                    "Pod": _ref("Pod"),
                    "Nodes": _ref("NodeList"),
                    "NodeNames": _nullable({"type": "array", "enum": [None]}),
                },
            },
        ]
    },
    "ExtenderFilterResult": {
        "type": "object",
        "required": ["Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"],
        "properties": {
            "Nodes": _nullable(_ref("NodeList")),
            "NodeNames": _nullable({"type": "array", "items": {"type": "string"}}),
            "FailedNodes": {"type": "object", "additionalProperties": {"type": "string"}},
            "FailedAndUnresolvableNodes": {"type": "object", "additionalProperties": {"type": "string"}},
            "Error": {"type": "string"},
        },
    },
    "HostPriorityList": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["Host", "Score"],
            "properties": {"Host": {"type": "string"}, "Score": {"type": "integer", "minimum": 0, "maximum": 10}},
            "additionalProperties": False,
        },
    },
    "ExtenderBindingArgs": {
        "type": "object",
        "required": ["PodName", "PodNamespace", "PodUID", "Node"],
        "properties": {
            "PodName": NAME,
            "PodNamespace": {"type": "string", "enum": ["lab", "default"]},
            "PodUID": {"type": "string", "maxLength": 36},
            "Node": _ref("NodeName"),
        },
    },
    "ExtenderBindingResult": {"type": "object", "required": ["Error"], "properties": {"Error": {"type": "string"}}},
    "MetaVictims": {
        "type": "object",
        "properties": {
            "Pods": {
                "type": "array",
                "maxItems": 3,
                "items": {
                    "type": "object",
                    "required": ["UID"],
                    "properties": {"UID": {"type": "string", "minLength": 1, "maxLength": 36}},
                },
            },
            "NumPDBViolations": {"type": "integer", "minimum": 0, "maximum": 100},
        },
    },
    "Victims": {
        "type": "object",
        "properties": {
            "Pods": {
                "type": "array",
                "maxItems": 3,
                "items": {
                    "type": "object",
                    "required": ["metadata"],
                    "properties": {
                        "metadata": {
                            "type": "object",
                            "required": ["uid"],
                            "properties": {"uid": {"type": "string", "minLength": 1, "maxLength": 36}, "name": NAME},
                        }
                    },
                },
            },
            "NumPDBViolations": {"type": "integer", "minimum": 0, "maximum": 100},
        },
    },
    "ExtenderPreemptionArgs": {
        "type": "object",
        "required": ["Pod"],
        "properties": {
            "Pod": _ref("Pod"),
            "NodeNameToVictims": _nullable({"type": "object", "additionalProperties": _ref("Victims"), "maxProperties": 4}),
            "NodeNameToMetaVictims": _nullable({"type": "object", "additionalProperties": _ref("MetaVictims"), "maxProperties": 4}),
        },
    },
    "ExtenderPreemptionResult": {
        "type": "object",
        "required": ["NodeNameToMetaVictims"],
        "properties": {"NodeNameToMetaVictims": {"type": "object", "additionalProperties": _ref("MetaVictims")}},
    },
    "Error": {"type": "object", "required": ["Error"], "properties": {"Error": {"type": "string", "minLength": 1}}},
}

VERBS: dict[str, tuple[str, str]] = {
    "/filter": ("ExtenderArgs", "ExtenderFilterResult"),
    "/prioritize": ("ExtenderArgs", "HostPriorityList"),
    "/bind": ("ExtenderBindingArgs", "ExtenderBindingResult"),
    "/preempt": ("ExtenderPreemptionArgs", "ExtenderPreemptionResult"),
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.0.3 document of the four verbs (a fresh copy each call)."""
    paths: dict[str, Any] = {}
    for path, (request, reply) in VERBS.items():
        paths[path] = {
            "post": {
                "operationId": path.strip("/"),
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(request)}}},
                "responses": {
                    "200": {"description": "the answer", "content": {"application/json": {"schema": _ref(reply)}}},
                    "400": {
                        "description": "a malformed request, with the reason",
                        "content": {"application/json": {"schema": _ref("Error")}},
                    },
                    "413": {"description": "body larger than max_body_bytes", "content": {"application/json": {"schema": _ref("Error")}}},
                },
            }
        }
    return {
        "openapi": "3.0.3",
        "info": {"title": "kbl scheduler extender", "version": "1"},
        "paths": paths,
        "components": {"schemas": copy.deepcopy(SCHEMAS)},
    }
