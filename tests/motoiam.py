"""AWS with IAM enforced, for tests: moto in server mode in its own process, and roles holding the shipped policies.

moto checks every request against the caller's IAM policies once ``INITIAL_NO_AUTH_ACTION_COUNT``
unauthenticated requests have been served. That setting is process-wide (``moto.settings``), so
this server runs in a process of its own (``python -m tests.motoiam``), never in the test
process whose shared moto server (:mod:`tests.aws`) the other tests use without IAM. The first
three requests (create an administrator, give it ``*``, make its key) are the unauthenticated
ones; from then on every request is signed and authorized: the tests' own setup as that
administrator, the code under test as a role holding exactly one shipped policy, assumed through
STS (temporary credentials with a session token, as IRSA and EKS Pod Identity give a pod).

What moto 5 evaluates, and so what these tests prove (``moto/iam/access_control.py``):

* the **Action** of every statement, for every service kbl calls (EKS, Auto Scaling, EC2, SSM,
  SQS, STS): a call the policy does not name is ``AccessDenied``;
* the **Resource** of SQS calls (moto resolves the queue's ARN): a queue the policy does not
  name is denied;
* not the Resource of the other services' calls: moto does not work out which resource an EKS,
  Auto Scaling, EC2 or SSM request touches (it passes ``*``), and a statement naming ARNs would
  then never match. :func:`_judge_unknown_resources_by_action` makes such statements match,
  so those calls are judged by their Action alone;
* not **Condition** keys (moto evaluates conditions only for trust policies): the tag conditions
  are checked on the created resources by ``tests/controller/providers/test_eks_asg.py`` and
  the policy's shape by ``tests/manifests/test_iam.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
ROOT = Path(__file__).resolve().parent.parent
IAM_DIR = ROOT / "manifests" / "iam"
ALLOW_ALL = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
#: Requests served before enforcement begins: create_user, put_user_policy, create_access_key.
UNAUTHENTICATED = 3


def _judge_unknown_resources_by_action() -> None:
    from moto.iam.access_control import IAMPolicyStatement

    original = IAMPolicyStatement._check_element_matches

    def matches(self: Any, element: str, value: str) -> bool:
        if element == "Resource" and value == "*":
            return True  # moto did not resolve the request's resource (see the module docstring)
        return bool(original(self, element, value))

    IAMPolicyStatement._check_element_matches = matches  # type: ignore[assignment]


def _sign_bodiless_requests_as_aws_does() -> None:
    """moto 5.2 checks the signature of a REST request without a body (EKS ``GET``, ``DELETE``)
    against its parsed request data as payload (the headers, for EKS), so every such request
    fails with ``SignatureDoesNotMatch``; AWS signs the empty payload. Authentication only: the
    authorization that follows is moto's own."""
    from moto.iam.access_control import IAMRequestBase

    original = IAMRequestBase._create_aws_request

    def create(self: Any) -> Any:
        if not self._body and self._method in ("GET", "DELETE", "HEAD"):
            self._data = b""
        return original(self)

    IAMRequestBase._create_aws_request = create  # type: ignore[method-assign]


#: Instance families the server keeps (moto knows 1,395 types; answering DescribeInstanceTypes
#: with all of them takes seconds per call on a shared machine): the families the tests use.
FAMILIES = ("m6i.", "r6i.", "c6i.", "t3.")


def _fewer_instance_types() -> None:
    from moto.ec2.models import instance_types

    kept = {k: v for k, v in instance_types.INSTANCE_TYPES.items() if k.startswith(FAMILIES)}
    instance_types.INSTANCE_TYPES.clear()
    instance_types.INSTANCE_TYPES.update(kept)


def serve() -> None:
    """The server process: start moto on a free loopback port, print its URL, serve until stdin closes."""
    from moto.ec2.models.amis import AmiBackend
    from moto.server import ThreadedMotoServer

    from tests.aws import _create_image_tagging_snapshots

    AmiBackend.create_image = _create_image_tagging_snapshots(AmiBackend.create_image)  # type: ignore[method-assign]
    _judge_unknown_resources_by_action()
    _sign_bodiless_requests_as_aws_does()
    _fewer_instance_types()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"http://{host}:{port}", flush=True)
    sys.stdin.read()
    server.stop()


@dataclass
class EnforcedAws:
    """The IAM-enforcing moto server: clients as the administrator (setup) or as a policy's role."""

    endpoint: str
    admin: Mapping[str, str]
    seen: dict[str, set[str]] = field(default_factory=dict)
    _roles: int = 0
    #: One session for every client: it loads each service model once.
    _session: Any = field(default_factory=lambda: boto3.session.Session(region_name=REGION))

    def client(self, service: str, credentials: Mapping[str, str] | None = None, *, label: str = "") -> Any:
        """A boto3 client with ``credentials`` (default: the administrator's); with ``label``
        every operation it makes is recorded in :attr:`seen` under that label (as IAM actions)."""
        from controller.providers.iam import iam_action

        client = self._session.client(service, endpoint_url=self.endpoint, **dict(credentials or self.admin))
        if label:

            def record(model: Any, **_: Any) -> None:
                self.seen.setdefault(label, set()).add(iam_action(model.service_model.endpoint_prefix, model.name))

            client.meta.events.register("before-parameter-build.*.*", record)
        return client

    def role_with(self, policy_file: str, substitutions: Mapping[str, str]) -> dict[str, str]:
        """A new role holding exactly ``manifests/iam/<policy_file>`` (placeholders substituted,
        as ``envsubst`` does) as its inline policy, assumed through STS: its temporary credentials."""
        text = (IAM_DIR / policy_file).read_text()
        for key, value in {"AWS_ACCOUNT_ID": ACCOUNT, "AWS_REGION": REGION, **substitutions}.items():
            text = text.replace("${" + key + "}", value)
        assert "${" not in text, f"{policy_file}: a placeholder is left: {text}"
        self._roles += 1
        name = f"kbl-{policy_file.removesuffix('.json')}-{self._roles}"
        iam = self.client("iam")
        admin_arn = f"arn:aws:iam::{ACCOUNT}:user/admin"
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": admin_arn}, "Action": "sts:AssumeRole"}]}
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        iam.put_role_policy(RoleName=name, PolicyName="kbl", PolicyDocument=text)
        creds = self.client("sts").assume_role(RoleArn=arn, RoleSessionName=name)["Credentials"]
        return {
            "aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"],
        }


def start() -> tuple[EnforcedAws, Callable[[], None]]:
    """Start the server process and make its administrator; returns it and a stop function."""
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(UNAUTHENTICATED), "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.motoiam"], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    endpoint = proc.stdout.readline().strip()

    def stop() -> None:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    if not endpoint.startswith("http://127.0.0.1:"):
        stop()
        raise RuntimeError(f"the IAM-enforcing moto server did not start: {endpoint!r}")
    bootstrap = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    iam = bootstrap.client("iam", endpoint_url=endpoint)
    iam.create_user(UserName="admin")
    iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=ALLOW_ALL)
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    admin = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
    return EnforcedAws(endpoint, admin), stop


def enforced_aws() -> Iterator[EnforcedAws]:
    """Body of a module-scoped fixture: one server per test module (it takes about a second)."""
    aws, stop = start()
    try:
        yield aws
    finally:
        stop()


if __name__ == "__main__":
    serve()
