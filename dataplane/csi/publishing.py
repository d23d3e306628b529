"""Publish and unpublish one volume: authorize, start its FUSE daemon, bind the local replicas.

``publish`` (idempotent: the same volume at the same target is a no-op):

1. the DataSet in the pod's namespace (``NOT_FOUND`` without it);
2. a SubjectAccessReview of the pod's service account (``PERMISSION_DENIED`` and a Warning Event
   on the pod when it may not ``get`` the DataSet);
3. the volume's files (:func:`dataplane.csi.volumes.entries`); a FUSE daemon
   (:mod:`dataplane.csi.fusing`, its own process) mounted at the target shows all of them;
4. each shard this node holds a ready replica of is bind-mounted read-only from the agent's disk
   over its FUSE file: the pod reads it at local-disk speed, no copy, no daemon in the path.

``unpublish`` unmounts everything at and under the target (deepest first, a dead FUSE mount
detached), stops the daemon and removes the target folder; a target that is not mounted is a
no-op. One JSON file per volume under ``state_dir`` survives a restart of the driver.

**A daemon that dies** leaves its volume answering ``ENOTCONN``; :meth:`Publisher.heal` (run
every few seconds by the driver) detaches the dead mount and starts a new daemon at the same
target with the same binds, so new opens work again. Descriptors opened before stay dead
(``ENOTCONN``), as with any FUSE filesystem.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dataplane.agent.layouts import Layout
from dataplane.csi import mounting
from dataplane.csi.fusing import SUBTYPE, Manifest
from dataplane.csi.permitting import refuse, review
from dataplane.csi.settings import CsiSettings
from dataplane.csi.volumes import InvalidVolumeError, VolumeAsk, entries
from kube.api import DATASETS, KubeApi
from topology.datasets import DataSet
from topology.errors import KblError

log = logging.getLogger(__name__)


class PublishError(KblError):
    """A publish or unpublish that failed; ``code`` is the gRPC status code's name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Published:
    volume_id: str
    target: str
    namespace: str
    dataset: str
    manifest: str
    binds: list[tuple[str, str]]  # (local replica, path under the target)
    pid: int = 0
    process: subprocess.Popen[bytes] | None = None

    def to_json(self) -> str:
        keys = ("volume_id", "target", "namespace", "dataset", "manifest", "binds", "pid")
        return json.dumps({k: getattr(self, k) for k in keys})

    @classmethod
    def from_json(cls, raw: str) -> Published:
        data = json.loads(raw)
        data["binds"] = [tuple(b) for b in data["binds"]]
        return cls(**data)


class Publisher:
    """The node service's work, apart from gRPC (tests call it directly too)."""

    def __init__(self, api: KubeApi, settings: CsiSettings) -> None:
        self.api = api
        self.settings = settings
        self.layout = Layout(Path(settings.root))
        self.state_dir = Path(settings.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.volumes: dict[str, Published] = {}
        for path in self.state_dir.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                p = Published.from_json(path.read_text())
                self.volumes[p.volume_id] = p

    # ------------------------------------------------------------------ state
    def _state_path(self, volume_id: str) -> Path:
        return self.state_dir / f"{hashlib.sha256(volume_id.encode()).hexdigest()[:32]}.json"

    def _save(self, p: Published) -> None:
        tmp = self._state_path(p.volume_id).with_suffix(".tmp")
        tmp.write_text(p.to_json())
        tmp.replace(self._state_path(p.volume_id))

    def _forget(self, volume_id: str) -> None:
        self.volumes.pop(volume_id, None)
        for path in (self._state_path(volume_id), self._state_path(volume_id).with_suffix(".manifest")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # ---------------------------------------------------------------- publish
    def publish(self, ask: VolumeAsk) -> None:
        with self.lock:
            known = self.volumes.get(ask.volume_id)
            if known is not None and known.target == ask.target and mounting.is_mounted(ask.target):
                return
            for other in self.volumes.values():
                if other.target == ask.target and other.volume_id != ask.volume_id and mounting.is_mounted(ask.target):
                    raise PublishError("ALREADY_EXISTS", f"{ask.target} already holds volume {other.volume_id}")
            obj = self.api.get(DATASETS, ask.dataset, namespace=ask.namespace)
            if obj is None:
                raise PublishError("NOT_FOUND", f"DataSet {ask.namespace}/{ask.dataset} not found")
            if self.settings.authorize:
                verdict = review(self.api, ask.namespace, ask.service_account, ask.dataset)
                if not verdict.allowed:
                    raise PublishError("PERMISSION_DENIED", refuse(self.api, ask, verdict))
            try:
                spec = DataSet.from_object(obj).spec
                files = entries(spec, self.layout)
            except (InvalidVolumeError, KblError) as exc:
                raise PublishError("FAILED_PRECONDITION", f"DataSet {ask.namespace}/{ask.dataset}: {exc}") from None
            manifest = Manifest(
                target=ask.target,
                shards_url=f"{self.settings.agent_url.rstrip('/')}/v1/namespaces/{ask.namespace}/datasets/{ask.dataset}/shards/",
                token_file=self.settings.token_file,
                files=[(e.index, e.name, e.size) for e in files],
                readahead_bytes=self.settings.readahead_bytes,
                read_timeout_s=self.settings.read_timeout_s,
                ca_file=self.settings.ca_file,
                cert_file=self.settings.cert_file,
                key_file=self.settings.key_file,
                tls_name=self.settings.tls_name,
            )
            manifest_path = self._state_path(ask.volume_id).with_suffix(".manifest")
            manifest_path.write_text(manifest.to_json())
            p = Published(
                ask.volume_id, ask.target, ask.namespace, ask.dataset, str(manifest_path), [(e.local, e.name) for e in files if e.local]
            )
            if mounting.is_mounted(ask.target):  # a half-done earlier try (the driver restarted in between)
                mounting.unmount_all(ask.target)
            self._mount(p)
            self.volumes[p.volume_id] = p
            self._save(p)
            remote = len(files) - len(p.binds)
            log.info("published %s/%s at %s: %d local replicas bound, %d shards through the agent", ask.namespace, ask.dataset,
                     ask.target, len(p.binds), remote)

    def _mount(self, p: Published) -> None:
        Path(p.target).mkdir(parents=True, exist_ok=True)
        errors = Path(p.manifest).with_suffix(".log")
        with errors.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "dataplane.csi.fusing", p.manifest], stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.settings.mount_timeout_s
        while not any(point == os.path.normpath(p.target) and fstype == f"fuse.{SUBTYPE}" for point, fstype in mounting.mounts()):
            if process.poll() is not None or time.monotonic() > deadline:
                _stop(process)
                tail = errors.read_text(errors="replace")[-400:].strip()
                raise PublishError("UNAVAILABLE", f"the volume's FUSE daemon did not mount {p.target}: {tail or 'timed out'}")
            time.sleep(0.02)
        p.process, p.pid = process, process.pid
        if not mounting.set_readahead(p.target, self.settings.kernel_readahead_bytes):
            log.info("%s: the kernel's readahead could not be raised (read-only /sys?): 128 KiB FUSE reads", p.target)
        try:
            for local, name in p.binds:
                mounting.bind_readonly(local, Path(p.target) / name)
        except OSError as exc:
            mounting.unmount_all(p.target)
            _stop(process)
            raise PublishError("INTERNAL", f"bind-mounting a local replica into {p.target}: {exc}") from None

    # -------------------------------------------------------------- unpublish
    def unpublish(self, volume_id: str, target: str) -> None:
        with self.lock:
            p = self.volumes.get(volume_id)
            try:
                mounting.unmount_all(target)
            except OSError as exc:
                raise PublishError("INTERNAL", f"unmounting {target}: {exc}") from None
            if p is not None:
                if p.process is not None:
                    _stop(p.process)
                elif p.pid and _is_daemon(p.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p.pid, signal.SIGTERM)
            with contextlib.suppress(FileNotFoundError):
                Path(target).rmdir()
            self._forget(volume_id)

    # ------------------------------------------------------------------- heal
    def heal(self) -> list[str]:
        """Restart the daemon of every volume whose daemon died; returns their volume ids."""
        healed = []
        with self.lock:
            for p in list(self.volumes.values()):
                alive = p.process.poll() is None if p.process is not None else (p.pid > 0 and _is_daemon(p.pid))
                if alive:
                    continue
                log.warning("the FUSE daemon of %s at %s is gone: mounting it again", p.volume_id, p.target)
                with contextlib.suppress(OSError):
                    mounting.unmount_all(p.target)
                try:
                    self._mount(p)
                except PublishError as exc:
                    log.warning("%s: %s", p.volume_id, exc)
                    continue
                self._save(p)
                healed.append(p.volume_id)
        return healed

    def close(self) -> None:
        """Stop nothing: published volumes outlive the driver's gRPC server (their daemons are their own sessions)."""


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _is_daemon(pid: int) -> bool:
    """Is ``pid`` a FUSE daemon of this driver (not a recycled pid)?"""
    try:
        return b"dataplane.csi.fusing" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
