"""Prototype images: when a group is due, which node, how it is cleaned, imaged once, and the group rolled."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.baking import PROTOTYPE_ANNOTATION, due_for_rebake, pick_prototype, prototype_image, versions_record
from controller.providers import NodeGroupSpec, ProviderError
from controller.providers.imaging import clean_script
from kube.api import KBLS, NODES
from placement import capacity as cap
from tests.conftest import ROOT
from tests.controller.test_reconciling import World
from tests.placement.scenarios import T0, kbl_object
from topology import labels
from topology.errors import KblError
from topology.examples import make_node
from topology.times import format_time


def grown(world: World, n: int = 3) -> str:
    world.kube.put(KBLS, kbl_object("k"))
    name = cap.group_name("default/k", "us-east-1a")
    world.cloud.create_group(NodeGroupSpec(name, "default/k", "us-east-1a", "m6i.xlarge", n, 5, labels={"kbl.io/kbl": "k"}), "t")
    world.advance(7200)
    return name


def test_the_newest_kubelet_among_long_ready_nodes_is_imaged_and_the_group_rolled() -> None:
    world = World(ready_delay_s=60)
    group = grown(world)
    nodes, _ = world.kube.list(NODES, label_selector=f"kbl.io/node-group={group}")
    patched = nodes[1]["metadata"]["name"]
    obj = world.kube.get(NODES, patched)
    assert obj is not None
    obj["status"]["nodeInfo"]["kubeletVersion"] = "v1.99.0-eks"
    world.kube.put(NODES, obj)
    result = prototype_image(world.kube, world.cloud, kbl_key="default/k", group=group, clock=lambda: world.now)
    assert result.node == patched
    assert result.version == "2"
    assert world.cloud.groups[group].image == result.image
    after = world.kube.get(NODES, patched)
    assert after is not None
    assert PROTOTYPE_ANNOTATION not in after["metadata"]["annotations"]  # protection lifted when done
    again = prototype_image(world.kube, world.cloud, kbl_key="default/k", group=group, clock=lambda: world.now)
    assert again.skipped.startswith("rate limited")
    assert len(world.cloud.calls_of("create_image")) == 1


def test_a_failed_roll_is_retried_with_the_same_image_and_the_node_stays_protected_meanwhile() -> None:
    world = World(ready_delay_s=60)
    group = grown(world)
    world.cloud.inject("roll_group", ProviderError("ThrottlingException", "slow down", retryable=True))
    with pytest.raises(ProviderError):
        prototype_image(world.kube, world.cloud, kbl_key="default/k", group=group, clock=lambda: world.now)
    protected = [n for n in world.kube.list(NODES)[0] if n["metadata"]["annotations"].get("kbl.io/do-not-disrupt") == "true"]
    assert len(protected) == 1
    result = prototype_image(world.kube, world.cloud, kbl_key="default/k", group=group, clock=lambda: world.now)
    assert result.node == protected[0]["metadata"]["name"]
    assert len(set(world.cloud.images.values())) == 1


def test_no_node_ready_long_enough_is_a_clear_error() -> None:
    world = World(ready_delay_s=60)
    group = grown(world)
    with pytest.raises(KblError, match="not Ready for"):
        prototype_image(world.kube, world.cloud, kbl_key="default/k", group=group, clock=lambda: world.now, min_ready_s=10**6)


# ---------------------------------------------------------------- the re-bake policy (pure)

HOUR = 3600.0


def member(
    name: str,
    *,
    kubelet: str = "v1.33.1-eks-1",
    kernel: str = "6.1.119-129.201.amzn2023.x86_64",
    os_image: str = "Amazon Linux 2023.6.20241212",
    ready_for_s: float = 2 * HOUR,
    ready: bool = True,
    cordoned: bool = False,
    draining: bool = False,
) -> dict[str, Any]:
    obj = make_node(name, extra_labels={labels.NODE_GROUP_LABEL: "g"})
    obj["status"]["nodeInfo"].update({"kubeletVersion": kubelet, "kernelVersion": kernel, "osImage": os_image})
    since = format_time(T0 - ready_for_s)
    obj["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": since}]
    if cordoned:
        obj["spec"]["unschedulable"] = True
    if draining:
        obj["metadata"].setdefault("annotations", {})[labels.DRAIN] = "scale-down"
    return obj


def last_image(node: dict[str, Any], *, age_s: float = 2 * 86400.0) -> dict[str, Any]:
    return {"name": "g", "lastImage": "ami-old", "lastImageTime": T0 - age_s, "lastImageVersions": versions_record(node)}


def test_a_group_never_imaged_is_due_with_its_longest_ready_up_to_date_node() -> None:
    nodes = [member("a", ready_for_s=2 * HOUR), member("b", ready_for_s=5 * HOUR), member("c", ready_for_s=9 * HOUR, kernel="6.1.100")]
    assert due_for_rebake(nodes, None, T0) == "b"  # c has been up longest but runs an older kernel


def test_nothing_is_due_while_no_node_is_newer_than_the_last_images_source() -> None:
    nodes = [member("a"), member("b")]
    assert due_for_rebake(nodes, last_image(nodes[0]), T0) is None


def test_a_patched_kernel_kubelet_or_os_image_makes_the_group_due_again() -> None:
    base = member("old")
    for patch in ({"kernel": "6.1.120-130.amzn2023.x86_64"}, {"kubelet": "v1.33.2-eks-1"}, {"os_image": "Amazon Linux 2023.6.20250101"}):
        patched = member("new", **patch)  # type: ignore[arg-type]
        assert due_for_rebake([base, patched], last_image(base), T0) == "new", patch


def test_a_patched_node_that_is_draining_cordoned_or_not_ready_long_enough_is_waited_for() -> None:
    base = member("old")
    for unfit in (member("new", kernel="6.2.0", draining=True), member("new", kernel="6.2.0", cordoned=True),
                  member("new", kernel="6.2.0", ready_for_s=600), member("new", kernel="6.2.0", ready=False)):  # fmt: skip
        chosen = due_for_rebake([base, unfit], last_image(base), T0)
        # the up-to-date node cannot be imaged; the old one is not newer than the last image
        assert chosen is None


def test_rebakes_are_rate_limited_per_group() -> None:
    base = member("old")
    patched = member("new", kernel="6.2.0")
    assert due_for_rebake([base, patched], last_image(base, age_s=HOUR), T0) is None
    assert due_for_rebake([base, patched], last_image(base, age_s=HOUR), T0, min_interval_s=600) == "new"


def test_a_named_prototype_must_be_ready_and_neither_cordoned_nor_draining() -> None:
    with pytest.raises(KblError, match="is draining"):
        pick_prototype([member("a", draining=True)], T0, HOUR, named="a")
    with pytest.raises(KblError, match="is cordoned"):
        pick_prototype([member("a", cordoned=True)], T0, HOUR, named="a")
    assert pick_prototype([member("a", ready_for_s=60)], T0, HOUR, named="a")["metadata"]["name"] == "a"


# ---------------------------------------------------------------- the cleaning script, on a fake root

SCRIPT = ROOT / "controller" / "providers" / "data" / "clean-node.sh"


def _write(root: Path, rel: str, text: str = "x") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_shipped_cleaning_script_is_the_one_kbl_runs() -> None:
    assert (ROOT / "manifests" / "bake" / "clean-node.sh").read_bytes() == SCRIPT.read_bytes() == clean_script().encode()


def test_cleaning_removes_the_nodes_identity_and_secrets_and_keeps_the_image_cache(tmp_path: Path) -> None:
    root = tmp_path / "node"
    secrets = [
        "var/lib/kubelet/pki/kubelet-client-current.pem",
        "var/lib/kubelet/pki/kubelet-server-current.pem",
        "var/lib/kubelet/kubeconfig",
        "var/lib/kubelet/cpu_manager_state",
        "var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~secret/token/token",
        "etc/kubernetes/pki/ca.crt",
        "etc/kubernetes/kubelet/config.json",
        "var/lib/dbus/machine-id",
        "var/lib/cloud/instances/i-0abc/user-data.txt",
        "var/lib/cloud/data/instance-id",
        "etc/ssh/ssh_host_ed25519_key",
        "etc/ssh/ssh_host_ed25519_key.pub",
        "root/.ssh/authorized_keys",
        "home/ec2-user/.ssh/authorized_keys",
        "var/log/journal/abc/system.journal",
        "var/log/pods/default_p_uid/c/0.log",
        "var/log/containers/p_default_c-123.log",
        "var/log/messages",
        "var/log/cloud-init.log",
        "var/log/cloud-init-output.log",
        "root/.bash_history",
    ]
    for rel in secrets:
        _write(root, rel, "secret")
    (root / "var/lib/cloud/instance").symlink_to(root / "var/lib/cloud/instances/i-0abc")
    machine_id = _write(root, "etc/machine-id", "0123456789abcdef0123456789abcdef\n")
    kept = [
        "var/lib/containerd/io.containerd.content.v1.content/blobs/sha256/aa",
        "etc/ssh/sshd_config",
        "etc/eks/image-credential-provider/config.json",
        "usr/bin/nodeadm",
        "var/lib/cloud/scripts/per-boot/keep.sh",
    ]
    for rel in kept:
        _write(root, rel, "keep")
    done = subprocess.run(["sh", str(SCRIPT), str(root)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    for rel in secrets:
        assert not (root / rel).exists(), rel
    assert not (root / "var/lib/cloud/instance").is_symlink()
    assert machine_id.read_text() == ""  # systemd makes a new one at boot
    assert (root / "var/lib/kubelet").is_dir()
    assert list((root / "var/lib/kubelet").iterdir()) == []
    for rel in kept:
        assert (root / rel).read_text() == "keep", rel
    assert "clean-node: done" in done.stdout
    again = subprocess.run(["sh", str(SCRIPT), str(root)], capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr  # idempotent: a retried command succeeds


def test_cleaning_refuses_a_missing_root(tmp_path: Path) -> None:
    done = subprocess.run(["sh", str(SCRIPT), str(tmp_path / "absent")], capture_output=True, text=True, check=False)
    assert done.returncode == 2
