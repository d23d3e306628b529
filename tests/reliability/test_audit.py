"""The CI dependency audit (``.ci/audit.py``): fails on a found vulnerability, never on "no network"."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _audit() -> Any:
    spec = importlib.util.spec_from_file_location("kbl_ci_audit", ROOT / ".ci" / "audit.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _report(*deps: dict[str, Any]) -> str:
    return json.dumps({"dependencies": list(deps), "fixes": []})


VULNERABLE = {"name": "jinja2", "version": "2.10", "vulns": [{"id": "PYSEC-2019-217", "fix_versions": ["2.10.1"], "aliases": []}]}
CLEAN = {"name": "orjson", "version": "3.11.4", "vulns": []}
SKIPPED = {"name": "kbl", "skip_reason": "Dependency not found on PyPI and could not be audited: kbl (0.1.0)"}


def test_a_found_vulnerability_fails_the_audit_and_names_the_fix() -> None:
    audit = _audit()
    status, lines = audit.summarize([audit.judge("pypi", 1, _report(VULNERABLE, CLEAN, SKIPPED), "")], strict=False)
    assert status == 1
    assert any("VULNERABLE jinja2 2.10: PYSEC-2019-217 (fix: 2.10.1)" in line for line in lines)


def test_no_reachable_service_is_reported_but_does_not_fail_unless_strict() -> None:
    audit = _audit()
    unreachable = audit.judge("osv", 1, "", "Traceback ...\nrequests.exceptions.ConnectionError: Failed to resolve 'api.osv.dev'")
    everything_skipped = audit.judge("pypi", 0, _report(SKIPPED, {**SKIPPED, "name": "numpy"}), "")
    status, lines = audit.summarize([everything_skipped, unreachable], strict=False)
    assert status == 0
    assert any("NOT audited" in line for line in lines)
    assert any("could not audit: pip-audit produced no report" in line for line in lines)
    assert audit.summarize([everything_skipped, unreachable], strict=True)[0] == 2


def test_a_clean_audit_passes_and_counts_what_it_audited() -> None:
    audit = _audit()
    status, lines = audit.summarize([audit.judge("pypi", 0, _report(CLEAN, SKIPPED), "")], strict=True)
    assert status == 0
    assert lines[0] == "[pypi] audited 1, could not audit 1, vulnerable 0"
