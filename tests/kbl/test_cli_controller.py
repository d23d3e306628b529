"""``kbl controller --once --dry-run --snapshot FILE`` plans offline and prints JSON lines."""

from __future__ import annotations

import argparse
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from controller import Controller, ControllerSettings
from controller.providers.fake import FakeProvider
from kbl.cli import main
from kbl.commands.controller import configure, election, run_elected, subnets
from kube.api import KBLS, LEASES, NODES, PODS
from kube.leading import LeaderElectionSettings, LeaderElector
from kube.memory import MemoryApi
from tests.kube.emulators import Emulator
from tests.placement.scenarios import base_nodes, kbl_object, placed_dataset, pod_object
from topology.errors import KblError
from topology.examples import as_list


def write_snapshot(tmp_path: Path) -> Path:
    objects = [*base_nodes(), kbl_object("genomics"), placed_dataset("reads", [["gen-b0", "gen-b1"]])]
    objects += [pod_object(f"p{i}", kbl="genomics", dataset="reads", cpu="3") for i in range(2)]
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(as_list(objects)))
    return path


def test_dry_run_on_a_snapshot_prints_one_json_action_per_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["controller", "--once", "--dry-run", "--snapshot", str(write_snapshot(tmp_path))])
    out = capsys.readouterr().out
    assert code == 0
    actions = [json.loads(line) for line in out.splitlines()]
    assert [a["action"] for a in actions] == ["CreateNodeGroup"]
    assert (actions[0]["zone"], actions[0]["desired"], actions[0]["kbl"]) == ("us-east-1b", 2, "default/genomics")


def test_dry_run_says_which_types_were_chosen_and_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    objects = [*base_nodes(), kbl_object("genomics", instance_types=("m6i.2xlarge", "c6i.xlarge", "m6i.xlarge", "m6i.large"))]
    objects += [placed_dataset("reads", [["gen-b0", "gen-b1"]]), pod_object("p0", kbl="genomics", dataset="reads", cpu="3")]
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(as_list(objects)))
    assert main(["controller", "--once", "--dry-run", "--snapshot", str(path)]) == 0
    (create,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # m6i.large (1930m) cannot take the 3-CPU pod; the rest by price, cheapest first.
    assert create["instance_types"] == ["c6i.xlarge", "m6i.xlarge", "m6i.2xlarge"]
    assert create["instance_type"] == "c6i.xlarge"
    assert create["price_per_hour"] == 0.17
    assert "cheapest for the pods first" in create["reason"]
    assert "c6i.xlarge $0.1700/h, 1 for the pods $0.17/h" in create["reason"]
    assert "shipped table of 2024-06-01" in create["reason"]


def test_snapshot_without_dry_run_is_refused_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["controller", "--once", "--snapshot", str(write_snapshot(tmp_path))]) == 1
    assert "add --dry-run" in capsys.readouterr().err


@pytest.mark.parametrize(("content", "reason"), [(None, "cannot read snapshot"), ("{not json", "not valid JSON")])
def test_unusable_snapshot_is_a_clear_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, reason: str
) -> None:
    path = tmp_path / "snap.json"
    if content is not None:
        path.write_text(content)
    assert main(["controller", "--once", "--dry-run", "--snapshot", str(path)]) == 1
    assert reason in capsys.readouterr().err


def test_subnet_arguments_are_checked() -> None:
    assert subnets(["us-east-1a=subnet-1", "us-east-1a=subnet-2"]) == {"us-east-1a": ["subnet-1", "subnet-2"]}
    with pytest.raises(KblError, match="expected ZONE=SUBNET"):
        subnets(["subnet-1"])


# ------------------------------------------------------------------------------ leader election
def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(argv)


def test_leader_election_is_on_for_the_loop_and_off_for_one_shot_and_offline_runs() -> None:
    settings = election(parse(["--leader-elect-namespace", "ops", "--leader-elect-lease", "ctl"]))
    assert settings is not None
    assert (settings.namespace, settings.lease_name, settings.lease_duration_s, settings.renew_deadline_s) == ("ops", "ctl", 15.0, 10.0)
    assert election(parse(["--once"])) is None
    assert election(parse(["--once", "--dry-run", "--snapshot", "x.json"])) is None
    assert election(parse(["--no-leader-elect"])) is None
    assert election(parse(["--once", "--leader-elect"])) is not None
    with pytest.raises(KblError, match="cannot be combined with --dry-run"):
        election(parse(["--dry-run", "--leader-elect"]))


def test_inconsistent_lease_durations_are_refused_by_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["controller", "--provider", "eks", "--leader-elect-lease-duration-s", "5", "--kubeconfig", "/nonexistent"])
    assert code == 1
    assert "must exceed the renew deadline" in capsys.readouterr().err


def cluster() -> MemoryApi:
    api = MemoryApi()
    for node in base_nodes():
        api.put(NODES, node)
    api.put(KBLS, kbl_object("genomics"))
    api.put(PODS, pod_object("p0", kbl="genomics", cpu="3"))
    return api


FAST = LeaderElectionSettings(namespace="kbl-system", lease_duration_s=1.5, renew_deadline_s=1.0, retry_period_s=0.1)


def test_the_elected_loop_acts_then_releases_the_lease_on_a_clean_stop() -> None:
    api, cloud = cluster(), FakeProvider(time.time)
    elector = LeaderElector(api, dataclasses.replace(FAST, identity="a"))
    controller = Controller(api, cloud, ControllerSettings(cluster_name="cli", resync_s=0.1), guard=elector.check)
    stop = threading.Event()
    threading.Thread(target=stop_when, args=(lambda: bool(cloud.calls_of("create_group")), stop), daemon=True).start()
    assert run_elected(controller, elector, stop) == 0
    assert len(cloud.calls_of("create_group")) == 1
    lease = api.get(LEASES, "kbl-controller", namespace="kbl-system")
    assert lease is not None
    assert lease["spec"].get("holderIdentity", "") == ""


def test_a_standby_does_nothing_while_another_holds_the_lease_and_a_lost_lease_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    api, cloud = cluster(), FakeProvider(time.time)
    holder = LeaderElector(api, dataclasses.replace(FAST, identity="holder"))
    assert holder.try_acquire_or_renew()
    standby = LeaderElector(api, dataclasses.replace(FAST, identity="standby"))
    controller = Controller(api, cloud, ControllerSettings(cluster_name="cli", resync_s=0.1), guard=standby.check)
    stop = threading.Event()
    started = time.monotonic()
    threading.Thread(target=stop_when, args=(lambda: time.monotonic() - started > 1.0, stop), daemon=True).start()
    assert run_elected(controller, standby, stop) == 0  # stopped while still a standby
    assert cloud.calls_of("create_group") == []
    # Leading, then someone else writes the Lease (an operator, a split brain): it stops and exits 1.
    assert holder.release()
    elector = LeaderElector(api, dataclasses.replace(FAST, identity="a"))

    def usurp() -> None:
        wait_for(elector.is_leader)
        api.patch(LEASES, "kbl-controller", {"spec": {"holderIdentity": "usurper"}}, namespace="kbl-system")

    threading.Thread(target=usurp, daemon=True).start()
    leader = Controller(api, cloud, ControllerSettings(cluster_name="cli", resync_s=0.1), guard=elector.check)
    assert run_elected(leader, elector, threading.Event()) == 1
    assert "lost Lease kbl-system/kbl-controller" in capsys.readouterr().err
    assert not elector.is_leader()


def stop_when(predicate: Callable[[], bool], stop: threading.Event) -> None:
    wait_for(predicate)
    stop.set()


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    pause = threading.Event()
    for _ in range(int(timeout_s / 0.01)):
        if predicate():
            return
        pause.wait(0.01)
    raise AssertionError("condition not reached")


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator().start()
    yield emu
    emu.close()


def test_the_production_cli_offers_no_simulated_cloud(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    configure(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--provider", "fake"])
    assert "invalid choice: 'fake'" in capsys.readouterr().err


def test_once_with_leader_election_over_http_acts_only_when_it_gets_the_lease(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The simulated cloud is built here, as the benchmarks do: the CLI offers no --provider fake.
    from kbl.commands import controller as controller_command

    monkeypatch.setattr(controller_command, "cloud", lambda _args, **_kw: FakeProvider(time.time))
    emulator.serve_replace("coordination.k8s.io", "v1", "leases")
    config = tmp_path / "kubeconfig"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emu",
        "clusters": [{"name": "emu", "cluster": {"server": emulator.url}}],
        "users": [{"name": "emu", "user": {"token": "t"}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "emu"}}],
    }))
    emulator.post("/apis/coordination.k8s.io/v1/namespaces/kbl-system/leases", {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "kbl-controller", "namespace": "kbl-system"},
        "spec": {"holderIdentity": "other", "leaseDurationSeconds": 15},
    })
    argv = ["controller", "--once", "--leader-elect", "--leader-elect-namespace", "kbl-system", "--provider", "eks"]
    argv += ["--kubeconfig", str(config)]
    assert main(argv) == 1
    assert "'other' holds Lease kbl-system/kbl-controller" in capsys.readouterr().err
    emulator.delete("/apis/coordination.k8s.io/v1/namespaces/kbl-system/leases/kbl-controller")
    assert main(argv) == 0
    puts = [r.data["spec"] for r in emulator.requests("put")]
    assert [p.get("holderIdentity", "") for p in puts] == [""]  # released after its one reconcile
