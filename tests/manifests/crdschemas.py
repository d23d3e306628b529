"""Validation of objects against a shipped CRD, the way the API server admits them.

The API server checks a custom object against the CRD's ``openAPIV3Schema`` (OpenAPI 3.0
semantics: boolean ``exclusiveMinimum``, which JSON Schema draft 4 shares), rejects unknown
fields under strict field validation (the default of ``kubectl apply`` since 1.27), enforces
``x-kubernetes-list-type`` ``set``/``map`` uniqueness and evaluates the
``x-kubernetes-validations`` CEL rules, transition rules (those naming ``oldSelf``) on updates
only, where the old object has a value at the rule's path. :class:`CrdValidator` does the same
four things with ``jsonschema`` and ``cel-python`` (a real CEL implementation), so a test can say
"the API server would reject this" without a cluster. It does not apply schema defaults (the
shipped CRDs declare none) and does not estimate CEL cost.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celpy
import jsonschema
from celpy.adapter import json_to_cel
from celpy.celtypes import BoolType
from celpy.evaluation import CELEvalError

Obj = dict[str, Any]
_ABSENT = object()
_OLD_SELF = re.compile(r"\boldSelf\b")


@dataclass(frozen=True)
class _Rule:
    rule: str
    message: str
    program: Any


class CrdValidator:
    """Admission check of objects against one version of a CRD.

    Parameters
    ----------
    crd:
        The ``CustomResourceDefinition`` object as shipped.
    version:
        The served version whose schema to use.
    """

    def __init__(self, crd: Obj, version: str = "v1alpha1") -> None:
        versions = [v for v in crd["spec"]["versions"] if v["name"] == version]
        assert len(versions) == 1, f"{crd['metadata']['name']} has no version {version}"
        self.schema: Obj = versions[0]["schema"]["openAPIV3Schema"]
        self.group: str = crd["spec"]["group"]
        self.kind: str = crd["spec"]["names"]["kind"]
        self.version = version
        strict = _strict(copy.deepcopy(self.schema))
        jsonschema.Draft4Validator.check_schema(strict)
        self._validator = jsonschema.Draft4Validator(strict, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
        self._env = celpy.Environment()
        self._programs: dict[str, _Rule] = {}

    def errors(self, obj: Obj, old: Obj | None = None) -> list[str]:
        """Why the API server would refuse ``obj`` (empty when it would admit it): created, or
        replacing ``old`` (then the transition rules compare the two)."""
        out = []
        if obj.get("apiVersion") != f"{self.group}/{self.version}" or obj.get("kind") != self.kind:
            out.append(f"apiVersion/kind must be {self.group}/{self.version} {self.kind}")
        for err in self._validator.iter_errors(obj):
            where = ".".join(str(p) for p in err.absolute_path) or "<root>"
            out.append(f"{where}: {err.message}")
        if out:
            return out
        out.extend(self._walk(self.schema, obj, _ABSENT if old is None else old, ""))
        return out

    def admits(self, obj: Obj, old: Obj | None = None) -> bool:
        return not self.errors(obj, old)

    def rules(self) -> list[str]:
        """Every CEL rule of the schema (to check they compile)."""
        return [r["rule"] for _, node in _nodes(self.schema, "") for r in node.get("x-kubernetes-validations", [])]

    def _rule(self, raw: Obj) -> _Rule:
        text = raw["rule"]
        if text not in self._programs:
            self._programs[text] = _Rule(text, str(raw.get("message", text)), self._env.program(self._env.compile(text)))
        return self._programs[text]

    def _walk(self, schema: Obj, value: Any, old: Any, path: str) -> Iterator[str]:
        """``old``: the old object's value at ``path`` (``_ABSENT`` on create or where it had none)."""
        for raw in schema.get("x-kubernetes-validations", []):
            rule = self._rule(raw)
            transition = bool(_OLD_SELF.search(rule.rule))
            if transition and old is _ABSENT:
                continue  # the API server evaluates a transition rule on updates only
            activation = {"self": json_to_cel(value)}
            if transition:
                activation["oldSelf"] = json_to_cel(old)
            try:
                ok = rule.program.evaluate(activation)
            except CELEvalError as exc:
                yield f"{path or '<root>'}: rule {rule.rule!r} failed to evaluate: {exc.args[0]}"
                continue
            if not (isinstance(ok, BoolType) and bool(ok)):
                yield f"{path or '<root>'}: {rule.message}"
        if isinstance(value, dict):
            props = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            olds = old if isinstance(old, dict) else {}
            for key, item in value.items():
                if key in props:
                    yield from self._walk(props[key], item, olds.get(key, _ABSENT), f"{path}.{key}")
                elif isinstance(extra, dict):
                    yield from self._walk(extra, item, olds.get(key, _ABSENT), f"{path}.{key}")
        elif isinstance(value, list):
            yield from _list_type(schema, value, path)
            items = schema.get("items")
            if isinstance(items, dict):
                for i, item in enumerate(value):  # items are not correlated: only map-list items are, and no shipped rule needs that
                    yield from self._walk(items, item, _ABSENT, f"{path}[{i}]")


def _list_type(schema: Obj, value: list[Any], path: str) -> Iterator[str]:
    kind = schema.get("x-kubernetes-list-type")
    if kind == "set":
        seen = [repr(v) for v in value]
        if len(set(seen)) != len(seen):
            yield f"{path}: duplicate entries in a list of type set"
    elif kind == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        tuples = [tuple(repr(item.get(k)) for k in keys) for item in value if isinstance(item, dict)]
        if len(set(tuples)) != len(tuples):
            yield f"{path}: duplicate entries for map keys {keys}"


def _strict(schema: Obj) -> Obj:
    """The schema with unknown fields forbidden wherever the API server would refuse them."""
    for _, node in _nodes(schema, ""):
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
            and node is not schema.get("properties", {}).get("metadata")
        ):
            node["additionalProperties"] = False
    return schema


def _nodes(schema: Obj, path: str) -> Iterator[tuple[str, Obj]]:
    """Every schema node below ``schema`` (properties, items, additionalProperties), with its path."""
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{key}")
    for key in ("items", "additionalProperties"):
        sub = schema.get(key)
        if isinstance(sub, dict):
            yield from _nodes(sub, f"{path}[{key}]")


def schema_nodes(schema: Obj) -> Iterator[tuple[str, Obj]]:
    """Public form of the node walk, for structural-schema tests."""
    return _nodes(schema, "")
