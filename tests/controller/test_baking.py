"""Prototype images: when a group is due, which node, how it is cleaned, imaged once, and the group rolled."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.baking import (
    DRAIN_REASON,
    PROTOTYPE_ANNOTATION,
    WAITING,
    due_for_rebake,
    pick_prototype,
    prototype_image,
    versions_record,
)
from controller.providers import NodeGroupSpec, ProviderError
from controller.providers.asg import AsgProvider
from controller.providers.imaging import clean_script
from controller.providers.launching import LaunchSettings
from controller.providers.retrying import Backoff
from kbl import cli
from kbl.commands.bake import bake, launch_settings
from kube.api import KBLS, NODE_HOLDINGS, NODES, PODS
from placement import capacity as cap
from tests.aws import Aws, base_image, make_cluster
from tests.conftest import ROOT
from tests.controller.test_reconciling import World
from tests.kube.fakekube import FakeKube
from tests.placement.scenarios import T0, kbl_object, pod_object
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
        "home/ec2-user/.bash_history",
        # kbl's data: a DataSet's replica and erasure pieces
        "var/lib/kbl/genomics/reads/part-00001.parquet",
        "var/lib/kbl/genomics/reads/.pieces/3/0",
        # credentials outside /var/lib/kubelet
        "var/lib/kubelet/bootstrap-kubeconfig",
        "etc/kubernetes/bootstrap-kubelet.conf",
        "etc/kubernetes/kubelet.conf",
        "root/.ssh/id_ed25519",
        "home/ec2-user/.ssh/id_rsa",
        "root/.aws/credentials",
        "home/ec2-user/.kube/config",
        "root/.docker/config.json",
        "run/cloud-init/instance-data.json",
        "run/cloud-init/instance-data-sensitive.json",
        "var/lib/cloud/data/result.json",
        "var/lib/dhclient/dhclient--eth0.lease",
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
    assert list((root / "var/lib/kbl").iterdir()) == []  # no DataSet byte is imaged
    for rel in kept:
        assert (root / rel).read_text() == "keep", rel
    assert "clean-node: done" in done.stdout
    again = subprocess.run(["sh", str(SCRIPT), str(root)], capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr  # idempotent: a retried command succeeds


def test_cleaning_refuses_a_missing_root(tmp_path: Path) -> None:
    done = subprocess.run(["sh", str(SCRIPT), str(tmp_path / "absent")], capture_output=True, text=True, check=False)
    assert done.returncode == 2


# ---------------------------------------------------------------- kbl bake, against moto over HTTP


def test_kbl_bake_cleans_images_and_rolls_the_next_nodes_of_an_auto_scaling_group(aws: Aws, no_sleep: Backoff) -> None:
    subnets = make_cluster(aws)
    provider = AsgProvider(
        aws.client("autoscaling"), aws.client("ec2"), cluster_name=aws.cluster, image_id=base_image(aws), subnets_by_zone=subnets,
        launch=LaunchSettings(aws.cluster), eks=aws.client("eks"), ssm=aws.client("ssm"), backoff=no_sleep,
    )  # fmt: skip
    group = f"kbl-bake-{aws.cluster}"
    provider.create_group(NodeGroupSpec(group, "default/k", "us-east-1b", "m6i.xlarge", 2, 4, labels={labels.KBL_LABEL: "k"}), "tok")
    kube = FakeKube()
    kube.put(KBLS, kbl_object("k"))
    scaling = aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
    instances = sorted(i["InstanceId"] for i in scaling["Instances"])
    for i, instance in enumerate(instances):
        node = member(f"ip-10-0-1-{i}", ready_for_s=(i + 2) * HOUR)
        node["metadata"]["labels"][labels.NODE_GROUP_LABEL] = group
        node["spec"]["providerID"] = f"aws:///us-east-1b/{instance}"
        kube.put(NODES, node)

    result = bake(kube, provider, node="ip-10-0-1-0", clock=lambda: T0)

    assert (result.node, result.version) == ("ip-10-0-1-0", "2")
    (command,) = aws.client("ssm").list_commands(InstanceId=instances[0])["Commands"]  # cleaned on that node first
    assert command["Parameters"]["commands"] == [clean_script()]
    (image,) = aws.client("ec2").describe_images(ImageIds=[result.image])["Images"]
    assert {"Key": "kbl.io/source-node", "Value": "ip-10-0-1-0"} in image["Tags"]
    scaling = aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
    assert scaling["LaunchTemplate"]["Version"] == "2"  # next nodes only: no instance refresh
    kbl = kube.get(KBLS, "k", namespace="default")
    assert kbl is not None
    (entry,) = kbl["status"]["nodeGroups"]
    assert (entry["lastImage"], entry["lastImageVersions"]["kernelVersion"]) == (result.image, "6.1.119-129.201.amzn2023.x86_64")
    imaged = kube.get(NODES, "ip-10-0-1-0")
    assert imaged is not None
    assert PROTOTYPE_ANNOTATION not in (imaged["metadata"].get("annotations") or {})

    later = T0 + 2 * 86400
    members = kube.list(NODES, label_selector=f"{labels.NODE_GROUP_LABEL}={group}")[0]
    assert due_for_rebake(members, entry, later) is None  # nothing patched since
    patched = kube.get(NODES, "ip-10-0-1-1")
    assert patched is not None
    patched["status"]["nodeInfo"]["kernelVersion"] = "6.1.130-140.amzn2023.x86_64"
    kube.put(NODES, patched)
    members = kube.list(NODES, label_selector=f"{labels.NODE_GROUP_LABEL}={group}")[0]
    assert due_for_rebake(members, entry, later) == "ip-10-0-1-1"


def test_kbl_bake_names_what_it_cannot_find() -> None:
    world = World(ready_delay_s=60)
    world.kube.put(KBLS, kbl_object("k"))
    with pytest.raises(KblError, match="no node ghost"):
        bake(world.kube, world.cloud, node="ghost", clock=lambda: world.now)
    with pytest.raises(KblError, match="not a kbl node group"):
        bake(world.kube, world.cloud, node="gen-a0", group="nope", clock=lambda: world.now)
    bare = world.kube.get(NODES, "gen-a0")
    assert bare is not None
    for key in (labels.NODE_GROUP_LABEL, "eks.amazonaws.com/nodegroup"):
        bare["metadata"]["labels"].pop(key, None)
    world.kube.put(NODES, bare)
    with pytest.raises(KblError, match=r"no kbl\.io/node-group label"):
        bake(world.kube, world.cloud, node="gen-a0", clock=lambda: world.now)


def test_kbl_bake_parses_its_flags_and_the_shared_launch_flags() -> None:
    args = cli.build_parser().parse_args(
        ["bake", "--node", "n1", "--provider", "eks", "--launch-template", "lt-0abc", "--image-id", "ami-1", "--security-group", "sg-1"]
    )
    assert (args.node, args.launch_template, args.image_id, args.strategy) == ("n1", "lt-0abc", "ami-1", None)
    assert launch_settings(args).security_groups == ("sg-1",)


def test_a_bake_that_failed_half_way_resumes_on_its_node_even_though_the_reboot_reset_its_ready_time() -> None:
    resumed = member("rebooted", ready_for_s=60)
    resumed["metadata"].setdefault("annotations", {})[PROTOTYPE_ANNOTATION] = "imaging"
    assert pick_prototype([member("steady"), resumed], T0, HOUR)["metadata"]["name"] == "rebooted"
    resumed["metadata"]["annotations"][labels.DRAIN] = "spot-interruption"  # unless it is leaving
    assert pick_prototype([member("steady"), resumed], T0, HOUR)["metadata"]["name"] == "steady"


# ---------------------------------------------------------------- the safe path: drain before the image (on the fake cloud)


def _holdings(world: World, node: str) -> None:
    world.kube.put(NODE_HOLDINGS, {"apiVersion": "kbl.io/v1alpha1", "kind": "NodeHoldings", "metadata": {"name": node}})


def _node(world: World, name: str) -> dict[str, Any]:
    obj = world.kube.get(NODES, name)
    assert obj is not None
    return obj


def test_a_bake_of_a_data_holding_node_images_nothing_until_the_reconciler_moved_its_data_then_returns_the_node() -> None:
    """Leaves out the reconciler itself: the test writes its ``kbl.io/data-drained`` answer."""
    world = World(ready_delay_s=60)
    group = grown(world)
    members, _ = world.kube.list(NODES, label_selector=f"{labels.NODE_GROUP_LABEL}={group}")
    chosen = pick_prototype(members, world.now, 3600.0)["metadata"]["name"]
    _holdings(world, chosen)
    stale = _node(world, chosen)
    stale["metadata"].setdefault("annotations", {})[labels.DATA_DRAINED] = format_time(world.now - 600)  # an earlier drain's answer
    world.kube.put(NODES, stale)

    for _ in range(3):
        waiting = prototype_image(world.kube, world.cloud, kbl_key="default/k", group=group, clock=lambda: world.now)
        assert waiting.skipped.startswith(WAITING)
        assert world.cloud.calls_of("create_image") == []  # the data is still there: no image
        draining = _node(world, chosen)
        assert draining["spec"]["unschedulable"] is True
        marks = draining["metadata"]["annotations"]
        assert (marks[labels.DRAIN], marks[labels.DO_NOT_DISRUPT]) == (DRAIN_REASON, "true")  # the reconciler's signal, and no scale-down
        world.now += 30

    moved = _node(world, chosen)
    moved["metadata"]["annotations"][labels.DATA_DRAINED] = format_time(world.now)  # the reconciler: nothing left here
    world.kube.put(NODES, moved)
    done = prototype_image(world.kube, world.cloud, kbl_key="default/k", group=group, clock=lambda: world.now)
    assert done.node == chosen
    assert done.image
    assert len(world.cloud.calls_of("create_image")) == 1
    back = _node(world, chosen)
    assert back["spec"]["unschedulable"] is False
    for mark in (labels.DRAIN, labels.DO_NOT_DISRUPT, PROTOTYPE_ANNOTATION):
        assert mark not in back["metadata"]["annotations"], mark


def test_the_prototypes_pods_are_evicted_before_the_image_and_a_disruption_budget_refusal_waits() -> None:
    world = World(ready_delay_s=60)
    group = grown(world)
    members, _ = world.kube.list(NODES, label_selector=f"{labels.NODE_GROUP_LABEL}={group}")
    chosen = pick_prototype(members, world.now, 3600.0)["metadata"]["name"]
    guarded = pod_object("guarded", kbl="k")
    guarded["metadata"]["labels"] = {"app": "guarded"}
    guarded["spec"]["nodeName"] = chosen
    plain = pod_object("plain", kbl="k")
    plain["spec"]["nodeName"] = chosen
    daemon = pod_object("agent", kbl="k")
    daemon["spec"]["nodeName"] = chosen
    daemon["metadata"]["ownerReferences"] = [{"kind": "DaemonSet", "name": "kbl-agent", "apiVersion": "apps/v1", "uid": "u"}]
    for pod in (guarded, plain, daemon):
        world.kube.put(PODS, pod)
    world.kube.pdbs.append(({"app": "guarded"}, 1))

    refused = prototype_image(world.kube, world.cloud, kbl_key="default/k", group=group, clock=lambda: world.now)
    assert refused.skipped.startswith(WAITING)
    assert "default/guarded" in refused.skipped
    assert world.cloud.calls_of("create_image") == []
    assert world.kube.get(PODS, "plain", namespace="default") is None  # evicted

    world.kube.pdbs.clear()
    evicting = prototype_image(world.kube, world.cloud, kbl_key="default/k", group=group, clock=lambda: world.now)
    assert evicting.skipped == f"{WAITING}: 1 evicted pods are still on {chosen}"  # as kubectl drain, it waits for them to go
    assert world.cloud.calls_of("create_image") == []
    done = prototype_image(world.kube, world.cloud, kbl_key="default/k", group=group, clock=lambda: world.now)
    assert done.image
    left = {p["metadata"]["name"] for p in world.kube.list(PODS)[0] if p["spec"].get("nodeName") == chosen}
    assert left == {"agent"}  # DaemonSet pods stay, as with kubectl drain


def test_the_controller_loop_rebakes_a_group_whose_image_is_older_than_n_days_once_a_node_is_patched() -> None:
    world = World(ready_delay_s=60)
    group = grown(world)
    world.kube.put(KBLS, kbl_object("k", min_size=3))  # the group is kept: no scale-down in the way
    members, _ = world.kube.list(NODES, label_selector=f"{labels.NODE_GROUP_LABEL}={group}")
    world.kube.patch_status(KBLS, "k", {"status": {"nodeGroups": [last_image(members[0], age_s=10 * 86400.0) | {"name": group}]}},
                            namespace="default")  # fmt: skip
    off = world.controller()
    off.reconcile_once()
    assert off.rebaker is None
    on = world.controller(rebake_after_s=7 * 86400.0)
    on.reconcile_once()
    assert world.cloud.calls_of("create_image") == []  # nothing patched since the last image
    patched = _node(world, members[1]["metadata"]["name"])
    patched["status"]["nodeInfo"]["kernelVersion"] = "6.1.200-300.amzn2023.x86_64"
    world.kube.put(NODES, patched)
    for _ in range(3):  # drain (no data here), evict, image: one step per reconcile at most
        on.reconcile_once()
    (call,) = world.cloud.calls_of("create_image")
    kbl = world.kube.get(KBLS, "k", namespace="default")
    assert kbl is not None
    (entry,) = [e for e in kbl["status"]["nodeGroups"] if e["name"] == group]
    assert entry["lastImageVersions"]["kernelVersion"] == "6.1.200-300.amzn2023.x86_64"
    on.reconcile_once()
    assert len(world.cloud.calls_of("create_image")) == 1  # current again: not re-baked
    fresh = world.controller(rebake_after_s=30 * 86400.0)
    fresh.reconcile_once()
    assert len(world.cloud.calls_of("create_image")) == 1
    del call


def test_an_eks_style_bake_of_a_group_whose_nodes_hold_data_goes_blue_green_unless_told_to_let_the_cloud_replace_them() -> None:
    """EKS replaces a managed group's nodes itself on a version update (its own order, PodDisruptionBudgets
    only, never ``kbl.io/data-drained``): the fake plays that provider by its flag. The bake hands the
    group to a blue/green roll instead (``tests/controller/test_rolling_bluegreen.py`` runs it);
    ``allow_replacing_data`` chooses EKS's own roll. Leaves out EKS itself."""
    from controller.bluegreen import BLUE_GREEN, green_name
    from controller.locking import GroupLocks
    from controller.providers.eks import EksProvider
    from kube.api import DATASETS
    from tests.placement.scenarios import placed_dataset

    assert EksProvider.replaces_nodes_on_roll is True
    for allow in (False, True):
        world = World(ready_delay_s=60)
        group = grown(world)
        members, _ = world.kube.list(NODES, label_selector=f"{labels.NODE_GROUP_LABEL}={group}")
        names = sorted(m["metadata"]["name"] for m in members)
        world.kube.put(DATASETS, placed_dataset("d", [[names[0], names[1]], [names[1], names[2]]]))
        world.cloud.replaces_nodes_on_roll = True
        result = prototype_image(
            world.kube, world.cloud, kbl_key="default/k", group=group, strategy="rolling", clock=functools.partial(float, world.now),
            allow_replacing_data=allow,
        )  # fmt: skip
        assert result.image, result
        held = GroupLocks(world.kube).holder("default/k", group)
        assert all(not _node(world, n)["spec"].get("unschedulable") for n in names), "the prototype is returned"
        if allow:
            assert world.cloud.calls_of("roll_group"), "EKS's own roll, as told"
            assert held is None
        else:
            assert world.cloud.calls_of("roll_group") == [], "EKS would replace the nodes without their data"
            assert held is not None
            assert held["mode"] == BLUE_GREEN
            assert held["green"] == green_name(group)
            assert held["image"] == result.image
