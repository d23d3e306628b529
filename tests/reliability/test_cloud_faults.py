"""AWS throttling, 5xx answers and dropped connections: retried with capped, jittered backoff.

Real boto3 clients with botocore's ``Stubber`` (the real call shapes and error parsing, no
network) answer with throttling and server errors; :func:`controller.providers.awscalls.aws_call`
must retry exactly the transient ones, wait at most ``min(cap_s, base_s * 2**n)`` before retry
``n``, give up after ``attempts`` with the AWS code, and fail at once on anything else.
"""

from __future__ import annotations

import random
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from controller.providers import ProviderError
from controller.providers.awscalls import aws_call
from controller.providers.retrying import Backoff

GROUP = {"nodegroup": {"nodegroupName": "g", "clusterName": "c", "status": "ACTIVE"}}


def _eks() -> Any:
    return boto3.client("eks", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="not-a-secret")


def _backoff(sleeps: list[float], attempts: int = 6) -> Backoff:
    return Backoff(attempts=attempts, base_s=0.2, cap_s=1.0, rng=random.Random(0), sleep=sleeps.append)


def test_throttling_and_server_errors_are_retried_with_capped_backoff_then_succeed() -> None:
    client, sleeps = _eks(), list[float]()
    with Stubber(client) as stub:
        stub.add_client_error("describe_nodegroup", "ThrottlingException", "Rate exceeded", 400)
        stub.add_client_error("describe_nodegroup", "ServiceUnavailableException", "try later", 503)
        stub.add_client_error("describe_nodegroup", "ServerException", "boom", 500)
        stub.add_client_error("describe_nodegroup", "SomethingNew", "a new 5xx code", 502)
        stub.add_response("describe_nodegroup", GROUP, {"clusterName": "c", "nodegroupName": "g"})
        answer = aws_call(_backoff(sleeps), client.describe_nodegroup, clusterName="c", nodegroupName="g")
        stub.assert_no_pending_responses()
    assert answer["nodegroup"]["status"] == "ACTIVE"
    assert len(sleeps) == 4
    assert all(0.0 <= s <= min(1.0, 0.2 * 2**n) for n, s in enumerate(sleeps))


def test_a_client_error_is_not_retried_and_names_its_code() -> None:
    client, sleeps = _eks(), list[float]()
    with Stubber(client) as stub:
        stub.add_client_error("create_nodegroup", "AccessDeniedException", "not allowed", 403)
        with pytest.raises(ProviderError) as caught:
            aws_call(_backoff(sleeps), client.create_nodegroup, clusterName="c", nodegroupName="g", subnets=["s"], nodeRole="r")
    assert caught.value.code == "AccessDeniedException"
    assert not caught.value.retryable
    assert sleeps == []


def test_endless_throttling_gives_up_after_the_attempts_with_the_code() -> None:
    client, sleeps = _eks(), list[float]()
    with Stubber(client) as stub:
        for _ in range(4):
            stub.add_client_error("update_nodegroup_config", "ThrottlingException", "Rate exceeded", 400)
        with pytest.raises(ProviderError) as caught:
            aws_call(_backoff(sleeps, attempts=4), client.update_nodegroup_config, clusterName="c", nodegroupName="g")
        stub.assert_no_pending_responses()
    assert caught.value.code == "ThrottlingException"
    assert caught.value.retryable
    assert len(sleeps) == 3


def test_a_dropped_connection_is_transient() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky(**_: Any) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise EndpointConnectionError(endpoint_url="https://eks.us-east-1.amazonaws.com")
        return "ok"

    assert aws_call(_backoff(sleeps), flaky) == "ok"
    assert len(sleeps) == 2
