"""Every S3 call the agent makes is granted by its IAM policy, and every action granted is used.

The agent's S3 reader runs against moto over HTTP with a client whose every call is recorded (a
``before-parameter-build`` hook, as the controller's providers are checked); each call is mapped
to the IAM action that authorises it (:func:`dataplane.agent.iam.s3_action`).
``tests/manifests/test_iam.py`` checks that ``manifests/iam/agent-policy.json`` grants exactly
:data:`~dataplane.agent.iam.AGENT_SOURCE_ACTIONS`. A scan of ``sources.py`` catches a call the
run below does not make (a new operation fails here until the policy has it).
"""

from __future__ import annotations

import ast
import contextlib
import os
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from dataplane.agent.iam import AGENT_SOURCE_ACTIONS, AHEAD_OF_THE_CODE, S3_OPERATIONS, s3_action
from dataplane.agent.sources import S3Reader
from tests.conftest import ROOT
from topology.datasets import S3Source

BUCKET = "kbl-agent-iam"


def test_every_s3_call_of_the_agent_is_in_its_policy_and_every_action_is_used(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    setup = boto3.session.Session().client("s3", endpoint_url=moto_server, region_name="us-east-1")
    with contextlib.suppress(setup.exceptions.BucketAlreadyOwnedByYou):
        setup.create_bucket(Bucket=BUCKET)
    single, multi = os.urandom(70_000), os.urandom(5 * 1024 * 1024 + 7)
    setup.put_object(Bucket=BUCKET, Key="p/one.bin", Body=single, ChecksumAlgorithm="SHA256")
    upload = setup.create_multipart_upload(Bucket=BUCKET, Key="p/multi.bin")["UploadId"]
    etag = setup.upload_part(Bucket=BUCKET, Key="p/multi.bin", UploadId=upload, PartNumber=1, Body=multi)["ETag"]
    setup.complete_multipart_upload(
        Bucket=BUCKET, Key="p/multi.bin", UploadId=upload, MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]}
    )

    seen: set[str] = set()
    operations: set[str] = set()

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        operations.add(model.name)
        seen.add(s3_action(model.name, params))

    client = boto3.session.Session().client("s3", endpoint_url=moto_server, region_name="us-east-1")
    client.meta.events.register("before-parameter-build.s3", record)
    reader = S3Reader(S3Source(BUCKET, "p/", "us-east-1", moto_server), part_bytes=1 << 20, client=client)
    for name, data in (("one.bin", single), ("multi.bin", multi)):
        assert reader.stat(name).size == len(data)
        assert b"".join(reader.read(name)) == data
        assert b"".join(reader.read(name, 10, 20)) == data[10:20]
    assert operations == {"HeadObject", "GetObject"}
    assert seen <= AGENT_SOURCE_ACTIONS, seen - AGENT_SOURCE_ACTIONS
    assert AGENT_SOURCE_ACTIONS - seen <= AHEAD_OF_THE_CODE, "granted, never called, and not announced as coming"


def test_the_reader_calls_no_s3_operation_the_policy_does_not_know() -> None:
    """Every ``client.<operation>(...)`` in sources.py is one :data:`S3_OPERATIONS` maps to an action."""
    tree = ast.parse((ROOT / "dataplane" / "agent" / "sources.py").read_text())
    mapping = boto3.session.Session().client("s3", region_name="us-east-1").meta.method_to_api_mapping
    called = {
        mapping[node.func.attr]
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and ast.unparse(node.func.value).endswith("client")
        and node.func.attr in mapping
    }
    assert called, "the scan found the reader's calls"
    assert called <= S3_OPERATIONS.keys(), called - S3_OPERATIONS.keys()
    assert {a for op in called for a in S3_OPERATIONS[op]} <= AGENT_SOURCE_ACTIONS


def test_the_shipped_policy_enforced_by_moto_lets_the_reader_read_its_prefix_and_nothing_else(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto enforcing IAM (its ``INITIAL_NO_AUTH_ACTION_COUNT`` at 0) for a user holding exactly
    ``manifests/iam/agent-policy.json`` (placeholders replaced): the reader stats and reads
    objects under the prefix, a version-pinned GET passes (``s3:GetObjectVersion``); another
    prefix, a listing, a write and a delete are ``AccessDenied``.

    moto names the action after the operation (``s3:HeadObject``, which IAM does not have, and
    ``s3:GetObject`` for a versioned GET); the policy is evaluated with the action AWS documents
    instead (Amazon S3 API reference: HeadObject needs ``s3:GetObject``, a GET or HEAD with
    ``versionId`` needs ``s3:GetObjectVersion``), written out here apart from
    :func:`~dataplane.agent.iam.s3_action`."""
    from botocore.exceptions import ClientError
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam.access_control import S3IAMRequest

    from dataplane.agent.sources import SourceError

    permitted = S3IAMRequest.check_action_permitted
    documented = {"s3:HeadObject": "s3:GetObject"}

    def as_aws_documents(self: Any, resource: str) -> None:
        action = documented.get(self._action, self._action)
        if action == "s3:GetObject" and "versionId=" in self._path:
            action = "s3:GetObjectVersion"
        self._action = action
        permitted(self, resource)

    monkeypatch.setattr(S3IAMRequest, "check_action_permitted", as_aws_documents)

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    bucket = "kbl-agent-enforced"
    setup = boto3.session.Session().client("s3", endpoint_url=moto_server, region_name="us-east-1")
    with contextlib.suppress(setup.exceptions.BucketAlreadyOwnedByYou):
        setup.create_bucket(Bucket=bucket)
    setup.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    data = os.urandom(40_000)
    version = setup.put_object(Bucket=bucket, Key="datasets/one.bin", Body=data, ChecksumAlgorithm="SHA256")["VersionId"]
    setup.put_object(Bucket=bucket, Key="private/one.bin", Body=data)
    policy = (ROOT / "manifests" / "iam" / "agent-policy.json").read_text()
    policy = policy.replace("${SOURCE_BUCKET}", bucket).replace("${SOURCE_PREFIX}", "datasets/")
    iam = boto3.session.Session().client("iam", endpoint_url=moto_server, region_name="us-east-1")
    user = f"kbl-agent-{os.getpid()}-{os.urandom(3).hex()}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="kbl-agent-sources", PolicyDocument=policy)
    key = iam.create_access_key(UserName=user)["AccessKey"]

    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
    agent = boto3.session.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"]).client(
        "s3", endpoint_url=moto_server, region_name="us-east-1"
    )
    reader = S3Reader(S3Source(bucket, "datasets/", "us-east-1", moto_server), part_bytes=16_384, client=agent)
    assert reader.stat("one.bin").size == len(data)
    assert b"".join(reader.read("one.bin")) == data
    pinned = agent.get_object(Bucket=bucket, Key="datasets/one.bin", VersionId=version, Range="bytes=0-9")
    assert pinned["Body"].read() == data[:10]
    outside = S3Reader(S3Source(bucket, "private/", "us-east-1", moto_server), client=agent)
    with pytest.raises(SourceError, match=r"403|AccessDenied|Forbidden"):
        outside.stat("one.bin")
    denied: list[Callable[[], object]] = [
        lambda: agent.list_objects_v2(Bucket=bucket, Prefix="datasets/"),
        lambda: agent.put_object(Bucket=bucket, Key="datasets/new.bin", Body=b"x"),
        lambda: agent.delete_object(Bucket=bucket, Key="datasets/one.bin"),
    ]
    for call in denied:
        with pytest.raises(ClientError, match="AccessDenied"):
            call()
