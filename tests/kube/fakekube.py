"""The fake Kubernetes API of the controller tests: the in-memory API of :mod:`kube.memory`."""

from __future__ import annotations

from kube.memory import MemoryApi as FakeKube

__all__ = ["FakeKube"]
