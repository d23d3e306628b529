"""Calling the extender app in-process, fast, and judging its replies against the protocol.

:class:`AsgiCaller` drives the ASGI app directly (one event loop for many calls, no client
library in between), so fuzzing spends its time generating cases, not in transport setup; the
app runs exactly the code a socket would reach. :func:`reply_problem` says what is wrong with a
reply to a given request (``None`` when it is a correct answer in kube-scheduler's terms).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import orjson


def encode(body: Any) -> bytes:
    """A request body as bytes: raw bytes as given, anything else as JSON (big integers too)."""
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, default=repr).encode()


class AsgiCaller:
    """POST bodies to an ASGI app on a private event loop; call :meth:`close` when done."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.calls = 0

    def close(self) -> None:
        self.loop.close()

    def post(self, path: str, body: bytes, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        """``(status, reply body)`` of one POST."""
        self.calls += 1
        return self.loop.run_until_complete(self._post(path, body, headers or {}))

    async def _post(self, path: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 0
        chunks: list[bytes] = []

        async def send(message: Mapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": raw_headers,
            "scheme": "http",
            "server": ("127.0.0.1", 80),
            "client": ("127.0.0.1", 1),
        }
        await self.app(scope, receive, send)
        return status, b"".join(chunks)


def _offered(request: Any) -> list[str] | None:
    """The offered node names of a well-formed ExtenderArgs (PascalCase or any casing)."""
    if not isinstance(request, Mapping):
        return None
    fields = {k.lower(): v for k, v in request.items() if isinstance(k, str)}
    names = request.get("NodeNames", fields.get("nodenames"))
    if isinstance(names, list):
        return [n for n in names if isinstance(n, str)]
    nodes = request.get("Nodes", fields.get("nodes"))
    if isinstance(nodes, Mapping) and isinstance(nodes.get("items"), list):
        return [str(((i or {}).get("metadata") or {}).get("name")) for i in nodes["items"] if isinstance(i, Mapping)]
    if isinstance(nodes, Mapping):
        return []
    return None


def reply_problem(verb: str, request: Any, status: int, data: bytes) -> str | None:
    """What is wrong with ``(status, data)`` as the reply to ``request`` on ``verb``, or ``None``.

    Any status other than 200, 400 and 413 is wrong (a 5xx most of all). A 400 or 413 must
    carry a non-empty ``Error``. A 200 must be the protocol's reply shape and only name nodes
    (and victims) that were offered.
    """
    if status not in (200, 400, 413):
        return f"HTTP {status}: {data[:300]!r}"
    try:
        reply = orjson.loads(data)
    except orjson.JSONDecodeError:
        return f"HTTP {status} with a body that is not JSON: {data[:200]!r}"
    if status != 200:
        if not isinstance(reply, dict) or not isinstance(reply.get("Error"), str) or not reply["Error"]:
            return f"HTTP {status} without an Error message: {reply!r:.200}"
        return None
    if verb == "filter":
        return _filter_problem(request, reply)
    if verb == "prioritize":
        offered = _offered(request)
        if not isinstance(reply, list) or offered is None or [e.get("Host") for e in reply] != offered:
            return f"prioritize: hosts {reply!r:.200} are not the offered names {offered!r:.200}"
        for entry in reply:
            if set(entry) != {"Host", "Score"} or not isinstance(entry["Score"], int) or not 0 <= entry["Score"] <= 10:
                return f"prioritize: bad entry {entry!r}"
        return None
    if verb == "bind":
        if not isinstance(reply, dict) or set(reply) != {"Error"} or not isinstance(reply["Error"], str):
            return f"bind: bad reply {reply!r:.200}"
        return None
    if verb == "preempt":
        return _preempt_problem(request, reply)
    return f"unknown verb {verb}"


def _filter_problem(request: Any, reply: Any) -> str | None:
    keys = {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
    if not isinstance(reply, dict) or set(reply) != keys or reply["Error"] != "":
        return f"filter: bad reply shape {reply!r:.300}"
    offered = _offered(request)
    if offered is None:
        return "filter: 200 for a request without candidates"
    if reply["NodeNames"] is not None:
        passing = reply["NodeNames"]
        if reply["Nodes"] is not None:
            return "filter: both Nodes and NodeNames set in the reply"
    else:
        nodes = reply["Nodes"]
        if not isinstance(nodes, dict) or not isinstance(nodes.get("items"), list):
            return "filter: neither NodeNames nor a NodeList in the reply"
        passing = [i["metadata"]["name"] for i in nodes["items"]]
    failed, unresolvable = reply["FailedNodes"], reply["FailedAndUnresolvableNodes"]
    judged = set(passing) | set(failed) | set(unresolvable)
    if not set(passing) <= set(offered) or judged != set(offered):
        return f"filter: passing/failed nodes {sorted(judged)[:5]} are not exactly the offered {sorted(set(offered))[:5]}"
    if set(passing) & (set(failed) | set(unresolvable)):
        return "filter: a node both passes and fails"
    if any(not isinstance(v, str) or not v for v in [*failed.values(), *unresolvable.values()]):
        return "filter: a failed node without a reason"
    return None


def _preempt_problem(request: Any, reply: Any) -> str | None:
    if not isinstance(reply, dict) or set(reply) != {"NodeNameToMetaVictims"} or not isinstance(reply["NodeNameToMetaVictims"], dict):
        return f"preempt: bad reply shape {reply!r:.200}"
    fields = {k.lower(): v for k, v in request.items()} if isinstance(request, Mapping) else {}
    meta = fields.get("nodenametometavictims")
    full = fields.get("nodenametovictims")
    allowed: dict[str, set[str]] = {}
    if isinstance(meta, Mapping):
        for node, victims in meta.items():
            allowed[node] = {str(p.get("UID")) for p in ((victims or {}).get("Pods") or [])}
    elif isinstance(full, Mapping):
        for node, victims in full.items():
            allowed[node] = {str((p.get("metadata") or {}).get("uid")) for p in ((victims or {}).get("Pods") or [])}
    for node, victims in reply["NodeNameToMetaVictims"].items():
        uids = [p.get("UID") for p in victims.get("Pods", [])]
        if node not in allowed or not uids or not set(uids) <= allowed[node]:
            return f"preempt: node {node} with victims {uids} was not offered with those victims"
        if not isinstance(victims.get("NumPDBViolations"), int):
            return "preempt: NumPDBViolations is not an integer"
    return None
