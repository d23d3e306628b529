"""Leader election through the real KubeClient over HTTP: create, replace, conflicts (kmock's emulator)."""

from __future__ import annotations

import dataclasses

import pytest

from kube.api import LEASES, ConflictError
from kube.client import KubeClient
from kube.leading import LeaderElectionSettings, LeaderElector
from tests.kube.emulators import Emulator

PATH = "/apis/coordination.k8s.io/v1/namespaces/kbl-system/leases"


@pytest.fixture
def leases(emulator: Emulator) -> Emulator:
    emulator.serve_replace("coordination.k8s.io", "v1", "leases")
    return emulator


def test_kubeclient_creates_replaces_and_reports_conflicts_as_409(leases: Emulator) -> None:
    client = KubeClient.from_url(leases.url)
    try:
        made = client.create(LEASES, {"metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}}, namespace="kbl-system")
        assert made["kind"] == "Lease"
        assert made["apiVersion"] == "coordination.k8s.io/v1"
        with pytest.raises(ConflictError):
            client.create(LEASES, {"metadata": {"name": "l"}, "spec": {}}, namespace="kbl-system")
        version = made["metadata"]["resourceVersion"]
        body = {"metadata": {"name": "l", "resourceVersion": version}, "spec": {"holderIdentity": "b"}}
        replaced = client.replace(LEASES, "l", body, namespace="kbl-system")
        assert replaced["spec"]["holderIdentity"] == "b"
        with pytest.raises(ConflictError) as stale:
            client.replace(LEASES, "l", body, namespace="kbl-system")
        assert stale.value.status == 409
        got = client.get(LEASES, "l", namespace="kbl-system")
        assert got is not None
        assert got["spec"]["holderIdentity"] == "b"
    finally:
        client.close()
    puts = [r for r in leases.requests("put") if r.url.path == f"{PATH}/l"]
    assert len(puts) == 2
    assert all(p.data["kind"] == "Lease" for p in puts)


def test_two_controllers_over_http_elect_one_and_the_other_takes_over_after_release(leases: Emulator) -> None:
    clients = [KubeClient.from_url(leases.url) for _ in range(2)]
    try:
        settings = LeaderElectionSettings(lease_name="kbl-controller", namespace="kbl-system")
        a = LeaderElector(clients[0], dataclasses.replace(settings, identity="a"))
        b = LeaderElector(clients[1], dataclasses.replace(settings, identity="b"))
        assert a.try_acquire_or_renew() is True  # POST
        assert b.try_acquire_or_renew() is False
        assert a.try_acquire_or_renew() is True  # PUT with the version it read
        assert (a.is_leader(), b.is_leader()) == (True, False)
        assert a.release()
        assert b.try_acquire_or_renew() is True
        assert (a.is_leader(), b.is_leader()) == (False, True)
        spec = clients[0].get(LEASES, "kbl-controller", namespace="kbl-system")
        assert spec is not None
        assert (spec["spec"]["holderIdentity"], spec["spec"]["leaseTransitions"]) == ("b", 1)
    finally:
        for client in clients:
            client.close()

