"""Kubernetes Events about pods, rate-limited, sent off the request path.

The extender explains itself with Events on the pod (``kubectl describe pod``), as Stork does,
most importantly when the node holding a pod's data was not among the candidates kube-scheduler
offered (the ``percentageOfNodesToScore`` trap). :class:`EventRecorder` limits them twice: at
most one per pod per ``event_interval_s``, and a global token bucket of ``events_per_s`` with
``event_burst``. Events are created by one background worker thread through
:meth:`kube.api.KubeApi.create_event`, so a slow API server never slows a scheduling
request. Without an API (snapshot mode) they are only counted and logged.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Literal

from extender.settings import ExtenderSettings
from kube.api import KubeApi
from topology.errors import KblError

log = logging.getLogger(__name__)

#: Pods remembered for the per-pod interval (oldest forgotten first).
MAX_REMEMBERED_PODS = 10_000
#: Events waiting for the worker; more are dropped (counted), never queued without bound.
MAX_QUEUED = 256


class EventRecorder:
    """Rate-limited Events about pods (module docstring).

    ``counts`` holds how many events were ``sent``, ``logged`` (no API), ``rate_limited``,
    ``dropped`` (queue full) and ``failed`` (API error).
    """

    def __init__(self, settings: ExtenderSettings, api: KubeApi | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.api = api
        self._clock = clock
        self._lock = threading.Lock()
        self._last: OrderedDict[str, float] = OrderedDict()
        self._tokens = float(settings.event_burst)
        self._refilled = clock()
        self.counts: dict[str, int] = {"sent": 0, "logged": 0, "rate_limited": 0, "dropped": 0, "failed": 0}
        self._queue: queue.Queue[tuple[dict[str, Any], str, str, Literal["Normal", "Warning"]] | None] = queue.Queue(MAX_QUEUED)
        self._worker: threading.Thread | None = None

    def _allow(self, key: str) -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.settings.event_interval_s:
            return False
        self._tokens = min(float(self.settings.event_burst), self._tokens + (now - self._refilled) * self.settings.events_per_s)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > MAX_REMEMBERED_PODS:
            self._last.popitem(last=False)
        return True

    def record(self, pod: Mapping[str, Any], reason: str, message: str, type: Literal["Normal", "Warning"] = "Normal") -> bool:
        """Queue an Event about ``pod`` (raw object); returns False when rate-limited or dropped."""
        meta = pod.get("metadata") or {}
        key = f"{meta.get('namespace') or 'default'}/{meta.get('name')}:{reason}"
        with self._lock:
            if not self._allow(key):
                self.counts["rate_limited"] += 1
                return False
            if self.api is None:
                self.counts["logged"] += 1
                log.info("event %s on pod %s: %s", reason, key.split(":", maxsplit=1)[0], message)
                return True
            self._start()
        involved = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta.get("name"),
            "namespace": meta.get("namespace") or "default",
            "uid": meta.get("uid") or "",
        }
        try:
            self._queue.put_nowait((involved, reason, message, type))
        except queue.Full:
            with self._lock:
                self.counts["dropped"] += 1
            return False
        return True

    def _start(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._run, name="kbl-events", daemon=True)
            self._worker.start()

    def _run(self) -> None:
        assert self.api is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            involved, reason, message, type_ = item
            try:
                self.api.create_event(involved, reason=reason, message=message, type=type_)
            except KblError as exc:
                with self._lock:
                    self.counts["failed"] += 1
                log.warning("could not create event %s on %s/%s: %s", reason, involved["namespace"], involved["name"], exc)
            else:
                with self._lock:
                    self.counts["sent"] += 1
            finally:
                self._queue.task_done()

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until queued events have been handed to the API (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        """Stop the worker after the queued events."""
        if self._worker is not None and self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(timeout=5.0)
