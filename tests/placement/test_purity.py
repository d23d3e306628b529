"""The pure planners stay pure: the whole ``placement`` package is under the import-linter contract."""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = "placement planners are pure"
HIGHER_LAYERS = {"kube", "controller", "extender", "dataplane"}
LAYERS = "Layers point one way: cli > benchmarks > extender | controller | dataplane > kube > placement > topology"
IO_LIBRARIES = {"fastapi", "starlette", "uvicorn", "httpx", "kubernetes", "boto3", "botocore", "kmock", "moto", "requests", "urllib3"}


def _contract(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    for section in parser.sections():
        if parser[section].get("name", "").strip() == name:
            return parser[section]
    raise AssertionError(f"no import-linter contract named {name!r}")


def _lines(value: str) -> set[str]:
    return {line.strip() for line in value.splitlines() if line.strip()}


def test_the_contract_covers_the_whole_placement_package() -> None:
    assert _lines(_contract(CONTRACT)["source_modules"]) == {"placement"}


def test_the_contract_forbids_every_io_library_and_the_kubernetes_floor() -> None:
    forbidden = _lines(_contract(CONTRACT)["forbidden_modules"])
    assert IO_LIBRARIES | {"kube"} <= forbidden


def test_no_placement_module_imports_an_io_library_even_lazily() -> None:
    offenders = []
    for path in sorted((ROOT / "placement").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in IO_LIBRARIES | HIGHER_LAYERS]
    assert not offenders, offenders


def test_the_extender_controller_and_data_plane_are_independent_siblings() -> None:
    layers = [line.strip() for line in _contract(LAYERS)["layers"].splitlines() if line.strip()]
    assert "extender | controller | dataplane" in layers
    assert layers.index("kube") > layers.index("extender | controller | dataplane")
    assert layers.index("placement") > layers.index("kube")
