"""Informers: a full list, then a watch from its resourceVersion, in a background thread.

An :class:`Informer` keeps a consumer in step with one resource of the API server, the way
client-go's reflector does, in a simpler shape:

1. **List** everything and hand it to ``on_relist(items)`` (the consumer replaces what it knew);
   ``synced`` is set after the first full list, never before.
2. **Watch** from the list's ``resourceVersion``, calling ``on_event(event)`` per event and
   remembering the newest ``metadata.resourceVersion`` seen (bookmarks included).
3. When the stream ends (server timeout) or **drops** (connection error), watch again from the
   last resourceVersion, after an exponential backoff on errors (``backoff_s`` doubling up to
   ``max_backoff_s``, with seeded jitter). A **410 Gone** means that version is too old: list
   again (step 1) at once.

:meth:`Informer.stop` ends the loop: it wakes a sleeping backoff and, when the API offers
``interrupt_watch(thread_id)`` (as :class:`~kube.client.KubeClient` does), breaks a
blocked read; otherwise the watch's own timeout bounds the wait.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kube.api import ApiError, GoneError, KubeApi, Resource, WatchEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InformerSettings:
    """Timing of an informer, in seconds.

    ``watch_timeout_s`` is the server-side timeout of one watch request; ``backoff_s`` the first
    wait after an error, doubled per consecutive error up to ``max_backoff_s``; ``jitter`` the
    random fraction added to each wait; ``seed`` seeds that randomness.
    """

    watch_timeout_s: int = 300
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    jitter: float = 0.2
    seed: int | None = None


class Informer:
    """List + watch one resource in a background thread (module docstring).

    Parameters
    ----------
    api:
        The Kubernetes API.
    resource:
        What to list and watch.
    on_event:
        Called with every ADDED/MODIFIED/DELETED/BOOKMARK event, in the informer's thread.
    on_relist:
        Called with the full item list after every (re)list, in the informer's thread.
    settings:
        Timing; defaults to :class:`InformerSettings`.

    Attributes
    ----------
    synced:
        Set once the first full list has been handed to ``on_relist``.
    resource_version:
        The newest resourceVersion seen ("" before the first list).
    lists, watches, errors:
        How many lists and watch requests were made, and how many errors were met.
    """

    def __init__(
        self,
        api: KubeApi,
        resource: Resource,
        *,
        on_event: Callable[[WatchEvent], None],
        on_relist: Callable[[Iterable[Mapping[str, Any]]], None],
        settings: InformerSettings | None = None,
    ) -> None:
        self.api = api
        self.resource = resource
        self.on_event = on_event
        self.on_relist = on_relist
        self.settings = settings or InformerSettings()
        self.synced = threading.Event()
        self.resource_version = ""
        self.lists = 0
        self.watches = 0
        self.errors = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._random = random.Random(self.settings.seed)

    def start(self) -> Informer:
        """Start the background thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"informer-{self.resource.plural}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop the loop and wait for the thread; returns True if it ended within ``timeout_s``."""
        self._stop.set()
        thread = self._thread
        if thread is None:
            return True
        interrupt = getattr(self.api, "interrupt_watch", None)
        deadline = time.monotonic() + timeout_s
        while thread.is_alive() and time.monotonic() < deadline:
            if callable(interrupt) and thread.ident is not None:
                interrupt(thread.ident)  # again and again: the watch may open just after a call
            thread.join(min(0.1, max(0.0, deadline - time.monotonic())))
        return not thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        failures = 0
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    items, version = self.api.list(self.resource)
                    self.lists += 1
                    self.on_relist(items)
                    self.resource_version = version
                    self.synced.set()
                    need_list = False
                self.watches += 1
                for event in self.api.watch(self.resource, resource_version=self.resource_version, timeout_s=self.settings.watch_timeout_s):
                    if self._stop.is_set():
                        return
                    if event.type != "BOOKMARK":
                        self.on_event(event)
                    version = _version(event.object)
                    if version:
                        self.resource_version = version
                failures = 0  # a stream that ended normally: resume from where it stopped
            except GoneError as exc:
                self.errors += 1
                self.last_error = str(exc)
                log.info("%s: %s; relisting", self.resource.plural, exc)
                need_list = True
            except ApiError as exc:
                if self._stop.is_set():
                    return
                self.errors += 1
                self.last_error = str(exc)
                failures += 1
                wait = min(self.settings.max_backoff_s, self.settings.backoff_s * 2 ** (failures - 1))
                wait *= 1.0 + self.settings.jitter * self._random.random()
                log.warning("%s: %s; retrying in %.1f s", self.resource.plural, exc, wait)
                self._stop.wait(wait)
            except Exception:  # a bug in a consumer must not end the informer silently: relist and go on
                self.errors += 1
                failures += 1
                log.exception("%s: consumer failed; relisting", self.resource.plural)
                need_list = True
                self._stop.wait(min(self.settings.max_backoff_s, self.settings.backoff_s * 2 ** (failures - 1)))


def _version(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        version = meta.get("resourceVersion")
        if isinstance(version, str):
            return version
    return ""
