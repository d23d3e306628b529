"""Dependency audit for CI: pip-audit over the installed environment, judged honestly.

Runs ``pip-audit -f json`` against the PyPI vulnerability service and, when that audits
nothing, against OSV (``-s osv``). The verdict:

* a dependency with a known vulnerability fails the run (exit 1), whichever service found it;
* dependencies that could not be audited (no vulnerability service reachable, package not on
  PyPI, the local ``kbl`` package itself) are reported with the reason and do NOT fail the run,
  unless ``KBL_AUDIT_STRICT=1`` asks for a complete audit;
* the summary says how many dependencies were audited, skipped and vulnerable per service, so a
  green run that audited nothing says so instead of looking like "no known vulnerabilities".

Usage: ``python .ci/audit.py [--python PATH]`` (default: the interpreter running this script).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Verdict:
    """What one pip-audit run said: vulnerable, audited and skipped dependencies, or why it failed."""

    service: str
    vulnerable: list[dict[str, Any]] = field(default_factory=list)
    audited: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    error: str = ""


def judge(service: str, returncode: int, stdout: str, stderr: str) -> Verdict:
    """Turn pip-audit's JSON output (``-f json``) and exit status into a :class:`Verdict`."""
    verdict = Verdict(service)
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError:
        last = (stderr.strip().splitlines() or [f"exit status {returncode}"])[-1]
        verdict.error = f"pip-audit produced no report: {last[:300]}"
        return verdict
    for dep in report.get("dependencies", []):
        name = f"{dep.get('name')} {dep.get('version', '')}".strip()
        if dep.get("skip_reason"):
            verdict.skipped.append((name, str(dep["skip_reason"])))
        elif dep.get("vulns"):
            verdict.vulnerable.append(dep)
        else:
            verdict.audited.append(name)
    return verdict


def run_audit(python: str, service: str) -> Verdict:
    command = [python, "-m", "pip_audit", "-f", "json", "--progress-spinner", "off", "--timeout", "15"]
    if service == "osv":
        command += ["-s", "osv"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        return Verdict(service, error="pip-audit timed out after 600 s")
    return judge(service, done.returncode, done.stdout, done.stderr)


def summarize(verdicts: list[Verdict], *, strict: bool) -> tuple[int, list[str]]:
    """The exit status and the lines to print for a list of verdicts."""
    lines: list[str] = []
    status = 0
    for v in verdicts:
        if v.error:
            lines.append(f"[{v.service}] could not audit: {v.error}")
            continue
        lines.append(f"[{v.service}] audited {len(v.audited)}, could not audit {len(v.skipped)}, vulnerable {len(v.vulnerable)}")
        for dep in v.vulnerable:
            ids = ", ".join(f"{x.get('id')} (fix: {', '.join(x.get('fix_versions') or []) or 'none'})" for x in dep["vulns"])
            lines.append(f"  VULNERABLE {dep.get('name')} {dep.get('version')}: {ids}")
            status = 1
        reasons: dict[str, int] = {}
        for _, reason in v.skipped:
            key = reason.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        for reason, count in sorted(reasons.items()):
            lines.append(f"  not audited ({count}): {reason}")
    audited_any = any(v.audited for v in verdicts)
    if not audited_any:
        lines.append("no vulnerability service could be reached: the dependencies were NOT audited (only package registries are reachable)")
        if strict:
            status = max(status, 2)
    return status, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter of the environment to audit")
    args = parser.parse_args(argv)
    verdicts = [run_audit(args.python, "pypi")]
    if not verdicts[0].audited or verdicts[0].error:
        verdicts.append(run_audit(args.python, "osv"))
    status, lines = summarize(verdicts, strict=os.environ.get("KBL_AUDIT_STRICT") == "1")
    print("\n".join(["pip-audit:", *lines]), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
