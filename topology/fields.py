"""Reading fields out of raw objects with errors that name the object and the field.

A small reader used by every ``from_object`` constructor: it walks dotted paths, checks
types, and raises :class:`~topology.errors.ObjectError` with the object's kind, name and the
exact field, so a bad object is rejected with a reason a human can act on.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from topology.errors import ObjectError


@functools.lru_cache(maxsize=1024)
def _parts(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


class FieldReader:
    """Typed access to one raw Kubernetes object.

    Parameters
    ----------
    obj:
        The raw object (a JSON mapping).
    kind:
        The kind to name in errors when the object does not say (``"Node"``).
    """

    def __init__(self, obj: Any, kind: str) -> None:
        if not isinstance(obj, Mapping):
            raise ObjectError(kind, "?", "<object>", f"expected a JSON object, got {type(obj).__name__}")
        self.obj: Mapping[str, Any] = obj
        self.kind = str(obj.get("kind") or kind)
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping):
            raise ObjectError(self.kind, "?", "metadata", "missing or not an object")
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise ObjectError(self.kind, "?", "metadata.name", "missing or empty")
        self.name: str = name
        namespace = meta.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            raise ObjectError(self.kind, name, "metadata.namespace", "not a string")
        self.namespace: str | None = namespace or None

    @property
    def ref(self) -> str:
        """``namespace/name`` for namespaced objects, else ``name``."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def error(self, field: str, reason: str) -> ObjectError:
        """An :class:`ObjectError` about ``field`` of this object."""
        return ObjectError(self.kind, self.ref, field, reason)

    def get(self, path: str, default: Any = None) -> Any:
        """The value at a dotted ``path``, or ``default`` if any step is absent or null."""
        node: Any = self.obj
        for part in _parts(path):
            # JSON decodes to dicts: the exact-type test spares the ABC check on every step
            # (an informer parses every watch event of every pod through here)
            if type(node) is not dict and not isinstance(node, Mapping):
                raise self.error(path, f"'{part}' is inside a {type(node).__name__}, not an object")
            node = node.get(part)
            if node is None:
                return default
        return node

    def mapping(self, path: str) -> Mapping[str, Any]:
        """An object at ``path`` (empty if absent)."""
        value = self.get(path, {})
        if type(value) is not dict and not isinstance(value, Mapping):
            raise self.error(path, f"expected an object, got {type(value).__name__}")
        return value

    def str_map(self, path: str) -> dict[str, str]:
        """A string-to-string map at ``path`` (labels, annotations, selectors)."""
        value = self.mapping(path)
        out: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not isinstance(item, str):
                raise self.error(f"{path}.{key}", "expected a string value")
            out[key] = item
        return out

    def list(self, path: str) -> list[Any]:
        """A list at ``path`` (empty if absent)."""
        value = self.get(path, [])
        if not isinstance(value, list):
            raise self.error(path, f"expected a list, got {type(value).__name__}")
        return value

    def string(self, path: str, default: str | None = None) -> str | None:
        """A string at ``path``, or ``default``."""
        value = self.get(path, default)
        if value is not None and not isinstance(value, str):
            raise self.error(path, f"expected a string, got {type(value).__name__}")
        return value

    def integer(self, path: str, default: int | None = None, *, minimum: int | None = None) -> int | None:
        """An integer at ``path`` (bools refused), at least ``minimum`` when given."""
        value = self.get(path, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(path, f"must be >= {minimum}, got {value}")
        return value
