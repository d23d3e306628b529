"""The one exception tree of kbl.

Every error kbl raises on purpose derives from :class:`KblError`, so callers can catch the
whole family at once and tell our errors from bugs. Errors about a Kubernetes object name the
object and the field, because "invalid quantity" alone does not tell a platform engineer which
of 5,000 nodes to fix.
"""

from __future__ import annotations


class KblError(Exception):
    """Base of every error kbl raises on purpose."""


class QuantityError(KblError, ValueError):
    """A Kubernetes resource quantity (``63770m``, ``126956280Ki``) could not be parsed."""


class ShardRangeError(KblError, ValueError):
    """A shard range such as ``"0-15,32"`` is malformed or out of bounds."""


class ObjectError(KblError, ValueError):
    """A Kubernetes object is invalid; the message names the object and the field.

    Parameters
    ----------
    kind:
        The object's kind, for example ``"Node"`` or ``"DataSet"``.
    name:
        ``namespace/name`` for namespaced objects, ``name`` otherwise (``"?"`` if unknown).
    field:
        A dotted path to the offending field, for example ``"spec.redundancy.replicas"``.
    reason:
        What is wrong, in words a human can act on.
    """

    def __init__(self, kind: str, name: str, field: str, reason: str) -> None:
        self.kind = kind
        self.name = name
        self.field = field
        self.reason = reason
        super().__init__(f"{kind} {name}: {field}: {reason}")


class SnapshotError(KblError, ValueError):
    """A snapshot file as a whole is unusable (not JSON/YAML, not a List or a known object)."""


class PlacementError(KblError, ValueError):
    """A placement cannot be computed or honoured (for example too few failure domains)."""


class ProtocolError(KblError, ValueError):
    """A request does not follow the kube-scheduler extender protocol (a missing or mistyped field)."""
