"""The in-memory Kubernetes API (:class:`~kube.memory.MemoryApi`) served over HTTP on loopback.

``kbl bench data`` runs node agents as real processes; they need an API server. This front
speaks the REST shapes :class:`~kube.client.KubeClient` sends (the official client's paths) and
nothing more, on ``127.0.0.1:<free port>``, with the standard library's threading server:

- ``GET`` a collection: a list (``limit``/``continue``, ``labelSelector``) or, with
  ``watch=true``, a stream of JSON lines from ``resourceVersion`` until ``timeoutSeconds``
  (``ERROR`` event with code 410 when the version left the history, as the API server does);
- ``GET`` one object (``404`` Status when absent); ``POST`` (``409`` when the name is taken);
  ``PUT`` (replace, ``resourceVersion`` precondition); ``PATCH`` as a JSON merge patch, of the
  object or of its ``/status`` subresource; ``DELETE``;
- ``POST .../events`` recorded with :meth:`MemoryApi.create_event`; ``TokenReview`` and
  ``SubjectAccessReview`` answered for the one bench token (authenticated, allowed).

Paths are ``/api/v1[/namespaces/NS]/PLURAL[/NAME[/status]]`` and
``/apis/GROUP/VERSION[/namespaces/NS]/PLURAL[/NAME[/status]]``. No authentication: it listens on
loopback only, for a benchmark's own processes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kube.api import DATASETS, JOBS, KBLS, LEASES, NODE_HOLDINGS, NODES, PODS, ApiError, GoneError, Resource
from kube.memory import MemoryApi

#: Resources the front knows by name (scope from here; others take it from the URL).
KNOWN = {(r.group, r.plural): r for r in (NODES, PODS, DATASETS, KBLS, NODE_HOLDINGS, JOBS, LEASES)}


class QuietServer(ThreadingHTTPServer):
    """A threading HTTP server whose handler threads die with it and that says nothing when a
    client goes away mid-request (a killed agent is part of the benchmark)."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _resource(group: str, version: str, plural: str, namespaced_url: bool) -> Resource:
    known = KNOWN.get((group, plural))
    if known is not None:
        return known
    kind = plural[:-1].capitalize() if plural.endswith("s") else plural.capitalize()
    return Resource(group, version, plural, kind, namespaced=namespaced_url)


def _status(code: int, message: str) -> dict[str, Any]:
    reason = {404: "NotFound", 409: "Conflict", 410: "Expired", 400: "BadRequest", 415: "UnsupportedMediaType"}.get(code, "")
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code}


class ApiServer:
    """``MemoryApi`` over HTTP (module docstring). ``url`` once started; :meth:`close` to stop.

    Parameters
    ----------
    api:
        The in-memory API whose objects are served (the benchmark reads and writes it directly too).
    token:
        The bearer token a TokenReview accepts.
    """

    def __init__(self, api: MemoryApi, *, token: str = "") -> None:
        self.api = api
        self.token = token
        self.requests = 0
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                front._handle(self, "GET")

            def do_POST(self) -> None:
                front._handle(self, "POST")

            def do_PUT(self) -> None:
                front._handle(self, "PUT")

            def do_PATCH(self) -> None:
                front._handle(self, "PATCH")

            def do_DELETE(self) -> None:
                front._handle(self, "DELETE")

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self.server.serve_forever, name="bench-apiserver", daemon=True)

    def start(self) -> ApiServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ HTTP
    @staticmethod
    def _send(h: BaseHTTPRequestHandler, code: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _body(self, h: BaseHTTPRequestHandler) -> Any:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        return json.loads(raw) if raw else {}

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        self.requests += 1
        try:
            self._route(h, method)
        except GoneError as exc:
            self._send(h, 410, _status(410, exc.reason))
        except ApiError as exc:
            self._send(h, exc.status or 500, _status(exc.status or 500, exc.reason))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except (ValueError, KeyError) as exc:
            self._send(h, 400, _status(400, f"{type(exc).__name__}: {exc}"))

    def _route(self, h: BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        parts = [p for p in split.path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, f"no route for {split.path}")
        namespace = None
        if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
            namespace, rest = rest[1], rest[2:]
        if not rest:
            raise ApiError(404, f"no resource in {split.path}")
        plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else ""), (rest[2] if len(rest) > 2 else "")
        resource = _resource(group, version, plural, namespace is not None)
        if plural in ("tokenreviews", "subjectaccessreviews") and method == "POST":
            self._send(h, 201, self._review(plural, self._body(h)))
            return
        if plural == "events" and method == "POST":
            obj = self._body(h)
            self.api.create_event(
                obj.get("involvedObject") or {}, reason=str(obj.get("reason") or ""), message=str(obj.get("message") or ""),
                type="Warning" if obj.get("type") == "Warning" else "Normal",
            )
            self._send(h, 201, obj)
            return
        if method == "GET" and not name:
            if query.get("watch") in ("true", "True", "1"):
                self._watch(h, resource, namespace, query)
                return
            items, rv, token = self.api.list_page(
                resource, namespace=namespace, label_selector=query.get("labelSelector") or None,
                limit=int(query.get("limit") or 0) or None, continue_token=query.get("continue", ""),
            )
            meta = {"resourceVersion": rv, **({"continue": token} if token else {})}
            self._send(h, 200, {"kind": f"{resource.kind}List", "apiVersion": resource.api_version, "metadata": meta, "items": items})
            return
        if method == "GET":
            obj = self.api.get(resource, name, namespace=namespace)
            if obj is None:
                raise ApiError(404, f"{plural} {name!r} not found")
            self._send(h, 200, obj)
        elif method == "POST":
            self._send(h, 201, self.api.create(resource, self._body(h), namespace=namespace))
        elif method == "PUT":
            self._send(h, 200, self.api.replace(resource, name, self._body(h), namespace=namespace))
        elif method == "PATCH":
            if "merge-patch" not in (h.headers.get("Content-Type") or ""):
                raise ApiError(415, f"only application/merge-patch+json, not {h.headers.get('Content-Type')}")
            patch = self._body(h)
            if sub == "status":
                self._send(h, 200, self.api.patch_status(resource, name, patch, namespace=namespace))
            else:
                self._send(h, 200, self.api.patch(resource, name, patch, namespace=namespace))
        elif method == "DELETE":
            if self.api.get(resource, name, namespace=namespace) is None:
                raise ApiError(404, f"{plural} {name!r} not found")
            self.api.delete(resource, name, namespace)
            self._send(h, 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200})
        else:
            raise ApiError(405, f"{method} not supported")

    def _review(self, plural: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        spec = obj.get("spec") or {}
        if plural == "tokenreviews":
            ok = bool(self.token) and spec.get("token") == self.token
            user = {"username": "system:serviceaccount:kbl-bench:bench"}
            status: dict[str, Any] = (
                {"authenticated": True, "user": user, "audiences": spec.get("audiences") or []}
                if ok
                else {"authenticated": False, "error": "invalid bearer token"}
            )
        else:
            status = {"allowed": True, "reason": "kbl bench: every bench identity may read"}
        return {**obj, "status": status}

    def _watch(self, h: BaseHTTPRequestHandler, resource: Resource, namespace: str | None, query: Mapping[str, str]) -> None:
        """Events as JSON lines, chunked, until ``timeoutSeconds`` (the informers re-watch after)."""
        timeout_s = float(query.get("timeoutSeconds") or 300)
        since = query.get("resourceVersion") or str(self.api.version)
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def line(obj: Mapping[str, Any]) -> None:
            data = json.dumps(obj).encode() + b"\n"
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stopping.is_set():
            with self.api.lock:
                now = str(self.api.version)  # nothing of this kind up to here is missed by the scan below
            try:
                events = list(self.api.watch(resource, resource_version=since, timeout_s=1))
            except GoneError as exc:
                line({"type": "ERROR", "object": _status(410, exc.reason)})
                break
            for event in events:
                meta = event.object.get("metadata") or {}
                since = str(meta.get("resourceVersion") or since)
                if namespace and meta.get("namespace") != namespace:
                    continue
                line({"type": event.type, "object": dict(event.object)})
            if not events:
                since = max(since, now, key=int)
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()
