"""Shared test fixtures: the real node object from ../shared/fixtures and paths; ``slow`` opt-in."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.aws import aws, moto_server, no_sleep
from tests.kube.emulators import Emulator

__all__ = ["aws", "moto_server", "no_sleep"]

ROOT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"
EMBEDDED_NODE = ROOT / "topology" / "data" / "eks-node.json"


@pytest.fixture
def eks_node() -> dict[str, Any]:
    """The real EKS node object (the shared fixture when present, else the embedded copy)."""
    path = SHARED_FIXTURES / "eks-node.json"
    if not path.exists():
        path = EMBEDDED_NODE
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.slow`` tests (long soaks, full fuzz runs) unless ``KBL_SLOW=1``."""
    if os.environ.get("KBL_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: opt in with KBL_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """kmock's Kubernetes API emulator on a real loopback socket (the HTTP API tests' cluster)."""
    emu = Emulator().start()
    yield emu
    emu.close()
