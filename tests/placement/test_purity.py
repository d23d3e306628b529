"""The pure planners stay pure: every planner module is in the import-linter contract."""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Modules of placement/ that may do I/O (the Kubernetes side); everything else must be pure.
IO_MODULES = {"__init__", "kubeapi", "kubeclient", "watching"}
CONTRACT = "placement planners are pure"


def pure_contract_modules() -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    for section in parser.sections():
        if parser[section].get("name", "").strip() == CONTRACT:
            return {line.strip() for line in parser[section]["source_modules"].splitlines() if line.strip()}
    raise AssertionError(f"no import-linter contract named {CONTRACT!r}")


def test_every_pure_placement_module_is_in_the_pure_contract() -> None:
    modules = {p.stem for p in (ROOT / "placement").glob("*.py")} - IO_MODULES
    listed = pure_contract_modules()
    missing = sorted(f"placement.{m}" for m in modules if f"placement.{m}" not in listed)
    assert not missing, f"add these to the {CONTRACT!r} contract in .importlinter: {missing}"
    stale = sorted(m for m in listed if not (ROOT / "placement" / f"{m.split('.', 1)[1]}.py").exists())
    assert not stale, f"contract lists modules that do not exist: {stale}"


def test_the_contract_forbids_every_io_library() -> None:
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    section = next(s for s in parser.sections() if parser[s].get("name", "").strip() == CONTRACT)
    forbidden = {line.strip() for line in parser[section]["forbidden_modules"].splitlines() if line.strip()}
    io_libraries = {"fastapi", "starlette", "uvicorn", "httpx", "kubernetes", "boto3", "botocore", "kmock", "moto", "requests", "urllib3"}
    assert io_libraries <= forbidden


def test_the_package_init_reexports_only_pure_modules() -> None:
    tree = ast.parse((ROOT / "placement" / "__init__.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= pure_contract_modules() | {"__future__"}, imported
