"""A recording :class:`~kube.api.KubeApi` for logic tests of the app (no HTTP).

It records bindings and events and can be told to fail; list/watch/get/patch are not used by
the app and fail loudly if called.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

from kube.api import ApiError, Resource, WatchEvent


class RecordingApi:
    def __init__(self) -> None:
        self.bindings: list[tuple[str, str, str, str]] = []
        self.events: list[tuple[dict[str, Any], str, str, str]] = []
        self.fail_binding: ApiError | None = None

    def list(
        self, resource: Resource, *, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        raise AssertionError("the app must not list")

    def watch(self, resource: Resource, *, resource_version: str, timeout_s: int = 300) -> Iterator[WatchEvent]:
        raise AssertionError("the app must not watch")

    def get(self, resource: Resource, name: str, *, namespace: str | None = None) -> dict[str, Any] | None:
        raise AssertionError("scoring never calls the API server")

    def patch(self, resource: Resource, name: str, patch: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        raise AssertionError("the app must not patch")

    def patch_status(self, resource: Resource, name: str, patch: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        raise AssertionError("the app must not patch")

    def create(self, resource: Resource, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        raise AssertionError("the app must not create objects")

    def replace(self, resource: Resource, name: str, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        raise AssertionError("the app must not replace objects")

    def create_binding(self, namespace: str, pod: str, uid: str, node: str) -> None:
        if self.fail_binding is not None:
            raise self.fail_binding
        self.bindings.append((namespace, pod, uid, node))

    def evict(self, namespace: str, pod: str) -> bool:
        raise AssertionError("the extender never evicts")

    def create_event(
        self, involved: Mapping[str, Any], *, reason: str, message: str, type: Literal["Normal", "Warning"] = "Normal"
    ) -> None:
        self.events.append((dict(involved), reason, message, type))


class PodWriter:
    """The gate controller's writer, recorded: the pod patches it sends and the pods it deletes
    (``deletes=False``: a delete fails the test)."""

    def __init__(self, *, deletes: bool = True) -> None:
        self.patches: list[Any] = []
        self.deleted: list[str] = []
        self.deletes = deletes

    def patch_pod(self, namespace: str, name: str, patch: Any) -> Any:
        self.patches.append(patch)
        return patch

    def delete_pod(self, namespace: str, name: str) -> None:
        if not self.deletes:
            raise AssertionError("nothing to delete")
        self.deleted.append(name)
