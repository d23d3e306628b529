"""End to end over real HTTP: ``python -m kbl controller`` as its own process, against moto server
(the Auto Scaling group provider, and the same through SQS with ``kbl worker`` as its own
process) and kmock's Kubernetes API emulator.

Pending KBL pods -> a group created in the zone holding their data -> nodes join -> pods fit ->
the workload ends -> the group goes to zero through the safe path (cordon and drain, then one
instance removed at a time). The test plays the cloud's node join and the node lifecycle: it
creates a Node object for every instance moto reports in the group (and deletes the Node of an
instance moto terminated), and it plays kube-scheduler by binding the pods to the new nodes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from benchmarks.serving import free_port
from controller.providers.fake import FAKE_INSTANCE_TYPES
from kube.api import NODES, PODS
from kube.client import KubeClient
from placement import capacity as cap
from tests.aws import REGION, Aws, base_image, make_cluster
from tests.conftest import ROOT
from tests.kube.emulators import Emulator
from tests.placement.scenarios import base_nodes, kbl_object, placed_dataset, pod_object
from topology import labels
from topology.examples import make_node
from topology.times import format_time


def _kbl(aws: Aws) -> str:
    """The KBL of this test: named after its cluster, so its group is new on the shared moto server."""
    return f"genomics-{aws.cluster}"


def _group_name(aws: Aws) -> str:
    return cap.group_name(f"default/{_kbl(aws)}", "us-east-1b")
SHAPES = {s.name: s for s in FAKE_INSTANCE_TYPES}


def _kubeconfig(tmp_path: Path, emulator: Emulator) -> Path:
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emu",
        "clusters": [{"name": "emu", "cluster": {"server": emulator.url}}],
        "users": [{"name": "emu", "user": {"token": "t"}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "emu"}}],
    }))  # fmt: skip
    return config


def _env(aws: Aws) -> dict[str, str]:
    return {
        **os.environ, "AWS_ENDPOINT_URL": aws.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION, "PYTHONPATH": str(ROOT),
    }  # fmt: skip


def _seed(emulator: Emulator, kbl: str) -> None:
    for node in base_nodes():
        emulator.post("/api/v1/nodes", node)
    reads = placed_dataset("reads", [["gen-b0", "gen-b1"], ["gen-b0", "gen-b1"]])  # the data lives in us-east-1b
    emulator.post("/apis/kbl.io/v1alpha1/namespaces/default/datasets", reads)
    emulator.post("/apis/kbl.io/v1alpha1/namespaces/default/kbls", kbl_object(kbl))
    for i in range(2):
        emulator.post("/api/v1/namespaces/default/pods", pod_object(f"p{i}", kbl=kbl, cpu="3", dataset="reads"))


def _wait(what: str, check: Callable[[], Any], proc: subprocess.Popen[bytes], timeout_s: float = 120.0, fail: bool = True) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    if not fail:
        return None
    proc.terminate()
    proc.wait(10)
    log = _LOGS.get(proc.pid)
    err = log.read_text(errors="replace") if log is not None else ""
    pytest.fail(f"{what}: not reached; process exited {proc.returncode}; output:\n{err[-4000:]}")


_LOGS: dict[int, Path] = {}


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A process whose output goes to ``log`` (a file: a full pipe would block it)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    _LOGS[proc.pid] = log
    return proc


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _group(aws: Aws) -> dict[str, Any] | None:
    groups = aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[_group_name(aws)])["AutoScalingGroups"]
    return groups[0] if groups else None


def _join(aws: Aws, emulator: Emulator, client: KubeClient, joined: set[str]) -> int:
    """Play the cloud: a Node for every in-service instance of the group, none for terminated ones;
    returns how many have joined."""
    group = _group(aws)
    instances = {i["InstanceId"]: i for i in (group or {}).get("Instances", []) if i.get("LifecycleState") == "InService"}
    shape = SHAPES["m6i.xlarge"]
    for iid, inst in instances.items():
        name = f"ip-{iid}"
        if name in joined:
            continue
        extra = {labels.NODE_GROUP_LABEL: _group_name(aws), labels.KBL_LABEL: _kbl(aws), labels.INSTANCE_TYPE: "m6i.xlarge"}
        taints = [{"key": labels.DEDICATED_TAINT, "value": _kbl(aws), "effect": "NoSchedule"}]
        node = make_node(name, region=REGION, zone=inst["AvailabilityZone"], extra_labels=extra, taints=taints,
                         cpu_m=shape.cpu_m, memory_b=shape.memory_b)  # fmt: skip
        node["spec"]["providerID"] = f"aws:///{inst['AvailabilityZone']}/{iid}"
        for key in [k for k in node["metadata"]["labels"] if k.startswith("eks.amazonaws.com/")]:
            del node["metadata"]["labels"][key]  # the template is a managed node; a self-managed one has none of these
        node["metadata"]["creationTimestamp"] = format_time(time.time() - 7200)
        client.create(NODES, node)
        joined.add(name)
    for name in sorted(joined):
        if name.removeprefix("ip-") not in instances:
            emulator.delete(f"/api/v1/nodes/{name}")
            joined.discard(name)
    return len(joined)


def _bind(client: KubeClient, nodes: list[str]) -> None:
    """Play kube-scheduler: one pending pod per new node."""
    for i, node in enumerate(nodes):
        client.patch(PODS, f"p{i}", {"spec": {"nodeName": node}}, namespace="default")
        status = {"status": {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}]}}
        client.patch_status(PODS, f"p{i}", status, namespace="default")


def _scenario(aws: Aws, emulator: Emulator, controller: subprocess.Popen[bytes], metrics_port: int) -> None:
    client = KubeClient.from_url(emulator.url)
    try:
        group = _wait("a group in the data's zone", lambda: (g := _group(aws)) and g["DesiredCapacity"] and g, controller)
        assert group["DesiredCapacity"] == 2  # two 3-CPU pods, one m6i.xlarge each
        assert set(group["AvailabilityZones"]) == {"us-east-1b"}
        joined: set[str] = set()
        _wait("two instances in service", lambda: _join(aws, emulator, client, joined) == 2, controller)
        _bind(client, sorted(joined))
        wanted = (
            'kbl_controller_actions_total{kind="CreateNodeGroup",outcome="done"} 1.0',
            "kbl_controller_unschedulable_to_request_seconds_count 2.0",
            f'kbl_controller_node_group_desired{{group="{_group_name(aws)}",kbl="default/{_kbl(aws)}"}} 2.0',
            "kbl_controller_reconcile_seconds_count",
        )
        _wait("metrics served", lambda: all(w in _scrape(metrics_port) for w in wanted), controller, timeout_s=60)
        # The workload ends: the group goes to zero through cordon + drain, then removal.
        for i in range(2):
            emulator.delete(f"/api/v1/namespaces/default/pods/p{i}")

        def cordoned() -> bool:
            objs = [client.get(NODES, n) for n in joined]
            return all(o is not None and o["spec"].get("unschedulable") and labels.DRAIN in o["metadata"]["annotations"] for o in objs)

        _wait("nodes cordoned and drained before removal", cordoned, controller)

        def emptied() -> bool:
            _join(aws, emulator, client, joined)
            current = _group(aws)
            return current is None or (current["DesiredCapacity"] == 0 and not joined)

        _wait("the group at zero", emptied, controller, timeout_s=150)
        actions = [line for line in _scrape(metrics_port).splitlines() if line.startswith("kbl_controller_actions_total")]
        removed = [float(line.rsplit(" ", 1)[1]) for line in actions if 'kind="RemoveNode",outcome="done"' in line]
        assert removed, actions
        assert removed[0] >= 2, actions  # one named instance at a time (a retry before the Node left is harmless)
        # Each node was cordoned; under load a pass may read a Node from its informer before its own
        # cordon's watch event arrives and cordon it again (an idempotent patch that only restarts
        # the drain's clock, so kbl.io/data-drained must be written again: stricter, never looser).
        cordons = [float(line.rsplit(" ", 1)[1]) for line in actions if 'kind="CordonNode",outcome="done"' in line]
        assert cordons, actions
        assert cordons[0] >= 2, actions
    finally:
        client.close()


def _scrape(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return ""


def _controller_argv(config: Path, aws: Aws, metrics_port: int) -> list[str]:
    return [
        sys.executable, "-m", "kbl", "controller", "--kubeconfig", str(config), "--cluster-name", aws.cluster, "--no-leader-elect",
        "--resync-s", "0.5", "--scale-down-delay-s", "0", "--metrics-port", str(metrics_port), "--metrics-address", "127.0.0.1",
    ]  # fmt: skip


def test_controller_process_grows_in_the_data_zone_and_shrinks_safely_with_asg_on_moto(
    aws: Aws, emulator: Emulator, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    subnets = make_cluster(aws)
    image = base_image(aws)
    _seed(emulator, _kbl(aws))
    port = free_port()
    argv = _controller_argv(_kubeconfig(tmp_path, emulator), aws, port)
    argv += ["--provider", "asg", "--image-id", image, *(f"--subnet={z}={s[0]}" for z, s in subnets.items())]
    controller = _start(argv, _env(aws), tmp_path / "controller.log")
    processes.append(controller)
    _scenario(aws, emulator, controller, port)


def test_the_same_through_sqs_with_kbl_worker_as_its_own_process(
    aws: Aws, emulator: Emulator, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    subnets = make_cluster(aws)
    image = base_image(aws)
    sqs = aws.client("sqs")
    queue = sqs.create_queue(QueueName=f"{aws.cluster}-requests")["QueueUrl"]
    reply = sqs.create_queue(QueueName=f"{aws.cluster}-inventory")["QueueUrl"]
    _seed(emulator, _kbl(aws))
    worker_argv = [
        sys.executable, "-m", "kbl", "worker", "--queue-url", queue, "--reply-queue-url", reply, "--provider", "asg",
        "--cluster-name", aws.cluster, "--image-id", image, *(f"--subnet={z}={s[0]}" for z, s in subnets.items()),
    ]  # fmt: skip
    worker = _start(worker_argv, _env(aws), tmp_path / "worker.log")
    processes.append(worker)
    port = free_port()
    argv = _controller_argv(_kubeconfig(tmp_path, emulator), aws, port)
    argv += ["--provider", "queue", "--queue-url", queue, "--reply-queue-url", reply]
    controller = _start(argv, _env(aws), tmp_path / "controller.log")
    processes.append(controller)
    _scenario(aws, emulator, controller, port)
    assert worker.poll() is None  # the worker served every request and still runs
