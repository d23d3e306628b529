"""The OpenAPI document of the extender's verbs, served at ``{prefix}/openapi.json``.

The verbs read raw bodies on the hot path (:mod:`extender.bodies`, then :mod:`extender.messages`),
so FastAPI has no request models to publish. This module describes, field for field, what those
parsers accept: the wrapper messages of ``k8s.io/kube-scheduler/extender/v1`` with their
PascalCase names and ``null``s (``ExtenderArgs`` in both forms, ``ExtenderFilterResult``,
``HostPriorityList``, ``ExtenderBindingArgs``, ``ExtenderPreemptionArgs``) and the parts of a
``v1.Pod`` and ``v1.Node`` that :mod:`topology` reads. A request valid against it gets ``200``;
an invalid one ``400`` with the reason (``413`` when too large); never a ``5xx``.

:class:`Vocabulary` narrows the free-form strings (dataset, KBL, namespace and node names) and
the collection sizes, so a fuzzer can be pointed at the objects a test cluster really holds;
the served document uses the open defaults.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from topology import labels

#: A Kubernetes quantity, as :func:`topology.quantities.parse_quantity` accepts it.
QUANTITY = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([numkMGTPE]|[KMGTPE]i)|[eE][+-]?[0-9]+)?$"
#: ``kbl.io/shards``: indexes and inclusive ranges, comma separated.
SHARDS = r"^\s*[0-9]+\s*(-\s*[0-9]+\s*)?(,\s*[0-9]+\s*(-\s*[0-9]+\s*)?)*$"
#: A DNS-1123 label (pod, namespace names).
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"

VERBS: dict[str, tuple[str, str]] = {
    "filter": ("ExtenderArgs", "ExtenderFilterResult"),
    "prioritize": ("ExtenderArgs", "HostPriorityList"),
    "bind": ("ExtenderBindingArgs", "ExtenderBindingResult"),
    "preempt": ("ExtenderPreemptionArgs", "ExtenderPreemptionResult"),
}


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Values and sizes the document allows; ``None`` means any string (within ``max_string``)."""

    datasets: tuple[str, ...] | None = None
    kbls: tuple[str, ...] | None = None
    namespaces: tuple[str, ...] | None = None
    node_names: tuple[str, ...] | None = None
    localities: tuple[str, ...] = ("preferred", "required")
    quantity: str = QUANTITY
    shards: str = SHARDS
    max_string: int = 253
    max_nodes: int = 50_000
    max_containers: int = 64
    max_map: int = 256
    max_victims: int = 1_000


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _choice(values: tuple[str, ...] | None, max_length: int) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)} if values is not None else {"type": "string", "maxLength": max_length}


def schemas(v: Vocabulary) -> dict[str, Any]:
    """The component schemas for a vocabulary."""
    name = {"type": "string", "minLength": 1, "maxLength": 63, "pattern": DNS_LABEL}
    text = {"type": "string", "maxLength": v.max_string}
    string_map = {"type": "object", "additionalProperties": text, "maxProperties": v.max_map}
    victim_pods = {"type": "array", "maxItems": v.max_victims}
    pdb = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
    return {
        "ResourceList": {
            "type": "object",
            "properties": {"cpu": {"type": "string", "pattern": v.quantity}, "memory": {"type": "string", "pattern": v.quantity}},
            "additionalProperties": False,
        },
        "Container": {
            "type": "object",
            "properties": {
                "name": name,
                "image": text,
                "resources": {"type": "object", "properties": {"requests": _ref("ResourceList"), "limits": _ref("ResourceList")}},
            },
        },
        "Toleration": {
            "type": "object",
            "properties": {
                "key": text,
                "operator": {"type": "string", "enum": ["Equal", "Exists"]},
                "value": text,
                "effect": {"type": "string", "enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
            },
        },
        "PodAnnotations": {
            "type": "object",
            "properties": {
                labels.POD_DATASET: _choice(v.datasets, v.max_string),
                labels.POD_SHARDS: {"type": "string", "pattern": v.shards, "maxLength": 65536},
                labels.POD_LOCALITY: {"type": "string", "enum": list(v.localities)},
                labels.POD_KBL: _choice(v.kbls, v.max_string),
            },
            "additionalProperties": text,
            "maxProperties": v.max_map,
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
                        "name": name,
                        "namespace": _choice(v.namespaces, 63),
                        "uid": {"type": "string", "maxLength": 36},
                        "annotations": _ref("PodAnnotations"),
                        "labels": string_map,
                    },
                },
                "spec": {
                    "type": "object",
                    "properties": {
                        "containers": {"type": "array", "items": _ref("Container"), "maxItems": v.max_containers},
                        "initContainers": {"type": "array", "items": _ref("Container"), "maxItems": v.max_containers},
                        "tolerations": {"type": "array", "items": _ref("Toleration"), "maxItems": v.max_containers},
                        "nodeName": _choice(v.node_names, v.max_string),
                        "schedulerName": text,
                        "nodeSelector": string_map,
                    },
                },
                "status": {
                    "type": "object",
                    "properties": {"phase": {"type": "string", "enum": ["Pending", "Running", "Succeeded", "Failed", "Unknown"]}},
                },
            },
        },
        "NodeName": _choice(v.node_names, v.max_string),
        "Node": {
            "type": "object",
            "required": ["metadata"],
            "properties": {
                "metadata": {"type": "object", "required": ["name"], "properties": {"name": _ref("NodeName"), "labels": string_map}}
            },
        },
        "NodeList": {
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "items": _nullable({"type": "array", "items": _ref("Node"), "maxItems": v.max_nodes}),
            },
        },
        # NodeNames set (nodeCacheCapable: true), or NodeNames null and Nodes a NodeList.
        "ExtenderArgs": {
            "anyOf": [
                {
                    "type": "object",
                    "required": ["Pod", "Nodes", "NodeNames"],
                    "properties": {
                        "Pod": _ref("Pod"),
                        "Nodes": _nullable({"type": "object", "enum": [None]}),
                        "NodeNames": {"type": "array", "items": _ref("NodeName"), "maxItems": v.max_nodes},
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
                "PodName": name,
                "PodNamespace": _choice(v.namespaces, 63),
                "PodUID": {"type": "string", "maxLength": 36},
                "Node": _ref("NodeName"),
            },
        },
        "ExtenderBindingResult": {"type": "object", "required": ["Error"], "properties": {"Error": {"type": "string"}}},
        "MetaVictims": {
            "type": "object",
            "properties": {
                "Pods": {
                    **victim_pods,
                    "items": {
                        "type": "object",
                        "required": ["UID"],
                        "properties": {"UID": {"type": "string", "minLength": 1, "maxLength": 36}},
                    },
                },
                "NumPDBViolations": pdb,
            },
        },
        "Victims": {
            "type": "object",
            "properties": {
                "Pods": {
                    **victim_pods,
                    "items": {
                        "type": "object",
                        "required": ["metadata"],
                        "properties": {
                            "metadata": {
                                "type": "object",
                                "required": ["uid"],
                                "properties": {"uid": {"type": "string", "minLength": 1, "maxLength": 36}, "name": name},
                            }
                        },
                    },
                },
                "NumPDBViolations": pdb,
            },
        },
        "ExtenderPreemptionArgs": {
            "type": "object",
            "required": ["Pod"],
            "properties": {
                "Pod": _ref("Pod"),
                "NodeNameToVictims": _nullable({"type": "object", "additionalProperties": _ref("Victims"), "maxProperties": v.max_nodes}),
                "NodeNameToMetaVictims": _nullable(
                    {"type": "object", "additionalProperties": _ref("MetaVictims"), "maxProperties": v.max_nodes}
                ),
            },
        },
        "ExtenderPreemptionResult": {
            "type": "object",
            "required": ["NodeNameToMetaVictims"],
            "properties": {"NodeNameToMetaVictims": {"type": "object", "additionalProperties": _ref("MetaVictims")}},
        },
        "Error": {"type": "object", "required": ["Error"], "properties": {"Error": {"type": "string", "minLength": 1}}},
    }


def document(*, prefix: str = "", vocabulary: Vocabulary | None = None) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document of the four verbs under ``prefix`` (a fresh copy each call).

    Parameters
    ----------
    prefix:
        The URL prefix the verbs are served under (``ExtenderSettings.url_prefix``).
    vocabulary:
        Narrower values and sizes (for fuzzing); the open defaults when ``None``.
    """
    v = vocabulary or Vocabulary()
    paths: dict[str, Any] = {}
    for verb, (request, reply) in VERBS.items():
        error = {"content": {"application/json": {"schema": _ref("Error")}}}
        paths[f"{prefix.rstrip('/')}/{verb}"] = {
            "post": {
                "operationId": verb,
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(request)}}},
                "responses": {
                    "200": {"description": "the answer", "content": {"application/json": {"schema": _ref(reply)}}},
                    "400": {"description": "a malformed request, with the reason", **error},
                    "413": {"description": "body larger than max_body_bytes", **error},
                },
            }
        }
    return {
        "openapi": "3.0.3",
        "info": {"title": "kbl scheduler extender", "version": "v1"},
        "paths": paths,
        "components": {"schemas": copy.deepcopy(schemas(v))},
    }
