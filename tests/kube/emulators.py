"""kmock's KubernetesEmulator served over real HTTP from a thread with its own event loop.

The emulator is aiohttp-based; our client and informers are synchronous. Running the emulator
in a background thread lets the tests drive the real :class:`~kube.client.KubeClient`
over a real socket on 127.0.0.1, while reactions (drops, 410s, error statuses) are added to the
emulator from the test.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

import httpx
import kmock


class Emulator:
    """A running emulator: ``url``, ``kmock`` (the handler, for reactions and requests) and ``post``."""

    def __init__(self) -> None:
        self.url = ""
        self.kmock: Any = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="kmock", daemon=True)

    async def _main(self) -> None:
        async with kmock.KubernetesEmulator() as handler, kmock.Server(handler) as server:
            self.kmock = handler
            resources: Any = handler.resources  # declare what our client lists, even before objects exist
            for key in ("v1/nodes", "v1/pods", "v1/events", "kbl.io/v1alpha1/datasets", "kbl.io/v1alpha1/kbls",
                        "kbl.io/v1alpha1/nodeholdings", "kbl.io/v1alpha1/placementslices"):
                resources[key] = {}
            self.url = str(server.url).rstrip("/")
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()

    def start(self) -> Emulator:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("kmock emulator did not start")
        return self

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def post(self, path: str, obj: dict[str, Any]) -> None:
        """Create an object through the emulator's HTTP API (it then emits ADDED to watches)."""
        response = httpx.post(self.url + path, json=obj, timeout=10)
        assert response.status_code == 200, response.text

    def delete(self, path: str) -> None:
        response = httpx.delete(self.url + path, timeout=10)
        assert response.status_code == 200, response.text

    def requests(self, criterion: Any) -> list[Any]:
        return list(self.kmock[criterion])

    def serve_replace(self, group: str, version: str, plural: str) -> None:
        """Give one resource what the emulator lacks: a ``resourceVersion`` on every object created
        (``POST``) and ``PUT`` (replace) with the API server's optimistic concurrency (a stale
        ``metadata.resourceVersion`` gets ``409 Conflict``, a missing object ``404``)."""
        resource = kmock.resource(group, version, plural)
        versions = itertools.count(1000)

        def created(request: Any) -> Any:
            meta = request.data.get("metadata") or {}
            stored = self.kmock.objects[resource, request.namespace or meta.get("namespace"), meta["name"]]
            stored.patch({"metadata": {"resourceVersion": str(next(versions))}})
            return stored.raw

        def replaced(request: Any) -> Any:
            key = (resource, request.namespace, request.name)
            if key not in self.kmock.objects or self.kmock.objects[key].deleted:
                raise kmock.KubernetesObjectNotFoundError()
            current = self.kmock.objects[key].raw
            meta = dict(request.data.get("metadata") or {})
            wanted = meta.get("resourceVersion")
            if wanted and wanted != (current.get("metadata") or {}).get("resourceVersion"):
                raise kmock.KubernetesError(status=409, reason="Conflict", message=f"{plural} {request.name}: the object has been modified")
            meta.update(name=request.name, namespace=request.namespace, resourceVersion=str(next(versions)))
            self.kmock.objects[key] = {**request.data, "metadata": meta}
            return self.kmock.objects[key].raw

        self.kmock["post", resource] << created
        self.kmock["put", resource] << replaced

    def serve_reviews(self, tokens: dict[str, str]) -> None:
        """Answer TokenReviews and SubjectAccessReviews as an API server would, never storing them.

        A TokenReview authenticates the tokens of ``tokens`` (token -> user name; a ServiceAccount
        user gets the groups the API server gives it); remove a token to revoke it. A
        SubjectAccessReview is answered by :func:`kube.rbac.review` from the Role, ClusterRole
        and binding objects posted to the emulator (RBAC only: see :mod:`kube.rbac`)."""
        from kube import rbac

        token_reviews = kmock.resource("authentication.k8s.io", "v1", "tokenreviews")
        access_reviews = kmock.resource("authorization.k8s.io", "v1", "subjectaccessreviews")

        def forget(resource: Any, request: Any) -> None:
            del self.kmock.objects[resource, None, (request.data.get("metadata") or {}).get("name")]

        def token_review(request: Any) -> Any:
            forget(token_reviews, request)
            spec = request.data.get("spec") or {}
            user = tokens.get(str(spec.get("token")))
            if user is None:
                return {**request.data, "status": {"authenticated": False, "error": "invalid bearer token"}}
            namespace = user.split(":")[2] if user.startswith("system:serviceaccount:") else ""
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"] if namespace else []
            who = {"username": user, "uid": f"uid-{user}", "groups": [*groups, "system:authenticated"]}
            return {**request.data, "status": {"authenticated": True, "user": who, "audiences": spec.get("audiences") or []}}

        def access_review(request: Any) -> Any:
            forget(access_reviews, request)
            held = [o.raw for key, o in self.kmock.objects.items() if key[0].group == rbac.RBAC_GROUP and not o.deleted]
            return {**request.data, "status": rbac.review(held, request.data.get("spec") or {})}

        self.kmock["post", token_reviews] << token_review
        self.kmock["post", access_reviews] << access_review
