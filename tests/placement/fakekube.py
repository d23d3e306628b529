"""The fake Kubernetes API of the controller tests: the in-memory API of :mod:`placement.controller.memory`."""

from __future__ import annotations

from placement.controller.memory import MemoryApi as FakeKube

__all__ = ["FakeKube"]
