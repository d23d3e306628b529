"""Karpenter's vendored CRDs (tests/fixtures/karpenter, see its README) as admission validators."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT
from tests.manifests.crdschemas import CrdValidator, _Rule

FIXTURES = ROOT / "tests" / "fixtures" / "karpenter"
EVENTS = FIXTURES / "events"
FILES = {
    "NodePool": "karpenter.sh_nodepools.yaml",
    "NodeClaim": "karpenter.sh_nodeclaims.yaml",
    "EC2NodeClass": "karpenter.k8s.aws_ec2nodeclasses.yaml",
}


def crd(kind: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((FIXTURES / FILES[kind]).read_text())
    return loaded


@cache
def validator(kind: str) -> CrdValidator:
    """The admission check of ``kind`` at its served version ``v1``."""
    return KarpenterCrdValidator(crd(kind), "v1")


def event(name: str) -> str:
    """The body of a sample EventBridge event (``events/<name>.json``)."""
    return Path(EVENTS / f"{name}.json").read_text()


def _find(text: Any, pattern: Any) -> Any:
    """Kubernetes' CEL regex library ``string.find(regex)``: the first match, or ``""``."""
    from celpy.celtypes import StringType

    found = re.search(str(pattern), str(text))
    return StringType(found.group(0) if found else "")


def _split(text: Any, separator: Any) -> Any:
    """CEL's strings extension ``string.split(separator)``."""
    from celpy.celtypes import ListType, StringType

    return ListType([StringType(part) for part in str(text).split(str(separator))])


class KarpenterCrdValidator(CrdValidator):
    """:class:`CrdValidator` with what Karpenter's rules need beyond cel-python's standard library:
    Kubernetes' ``find`` (regex library) and ``split`` (strings extension). Transition rules (those naming ``oldSelf``) are not
    evaluated: the API server runs them only on updates, and these checks are of new objects."""

    def _rule(self, raw: dict[str, Any]) -> Any:
        text = raw["rule"]
        if text not in self._programs:
            source = "true" if "oldSelf" in text else text
            program = self._env.program(self._env.compile(source), functions={"find": _find, "split": _split})
            self._programs[text] = _Rule(text, str(raw.get("message", text)), program)
        return self._programs[text]
