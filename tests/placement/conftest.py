"""Fixtures of the placement I/O tests: kmock's Kubernetes emulator on a real socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.placement.emulators import Emulator


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator().start()
    yield emu
    emu.close()
