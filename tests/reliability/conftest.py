"""Fixtures shared with the placement I/O tests: kmock's emulator and moto in server mode."""

from __future__ import annotations

from tests.placement.conftest import emulator
from tests.placement.providers.conftest import moto_server

__all__ = ["emulator", "moto_server"]
