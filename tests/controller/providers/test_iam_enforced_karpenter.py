"""Karpenter mode in an account that enforces IAM: the controller built as ``kbl controller
--provider karpenter`` builds it (the CLI's own wiring, endpoint and credentials from the
environment as IRSA gives them), as a role holding exactly ``controller-karpenter-policy.json``.

What it leaves out: moto judges actions, not resources or conditions (``tests/motoiam.py``);
Karpenter itself is not running (its objects are written to an in-memory API).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import pytest

from controller.providers import NodeGroupSpec, ProviderError
from controller.providers.iam import CONTROLLER_KARPENTER_ACTIONS
from kbl.commands.controller import karpenter
from kube.memory import MemoryApi
from tests.motoiam import REGION, EnforcedAws, enforced_aws


@pytest.fixture(scope="module")
def iam_aws() -> Iterator[EnforcedAws]:
    yield from enforced_aws()


def cli_args() -> argparse.Namespace:
    return argparse.Namespace(
        cluster_name="kbl", node_class="default", node_class_kind="EC2NodeClass", placeholder_namespace="kbl-system",
        region=REGION, snapshot=None,
    )


def as_pod(monkeypatch: pytest.MonkeyPatch, aws: EnforcedAws, creds: dict[str, str]) -> None:
    """The pod's environment as IRSA + the chart give it (the endpoint points at moto)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["aws_secret_access_key"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", creds["aws_session_token"])
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)


def test_karpenter_mode_reads_the_real_instance_catalog_holding_only_its_shipped_policy(
    iam_aws: EnforcedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.client import BaseClient

    as_pod(monkeypatch, iam_aws, iam_aws.role_with("controller-karpenter-policy.json", {}))
    made: set[str] = set()
    original = BaseClient.__dict__["_make_api_call"]

    def recording(self: Any, operation: str, params: Any) -> Any:
        made.add(f"{self.meta.service_model.endpoint_prefix}:{operation}")
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    kube = MemoryApi()
    provider = karpenter(cli_args(), kube)
    shapes = {s.name: s for s in provider.instance_types()}
    assert len(shapes) > 100, "the region's catalog, not the built-in table"
    assert 3000 < shapes["m6i.xlarge"].cpu_m <= 4000, "4 vCPUs, less what kubelet reserves"
    spec = NodeGroupSpec("kbl-default-k-us-east-1a", "default/k", "us-east-1a", "m6i.xlarge", 1, 4)
    provider.create_group(spec, "tok")
    provider.set_size(spec.name, 2)
    provider.delete_group(spec.name)
    assert made == CONTROLLER_KARPENTER_ACTIONS, "every AWS call of the mode is in its shipped policy, and only those"


def test_karpenter_mode_without_its_policy_says_access_denied_instead_of_an_empty_catalog(
    iam_aws: EnforcedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_pod(monkeypatch, iam_aws, iam_aws.role_with("controller-interruption-policy.json", {"INTERRUPTION_QUEUE_NAME": "q"}))
    provider = karpenter(cli_args(), MemoryApi())
    with pytest.raises(ProviderError) as denied:
        provider.instance_types()
    assert "AccessDenied" in denied.value.code or "UnauthorizedOperation" in denied.value.code, denied.value
