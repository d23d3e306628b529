"""Instance shapes and bin-packing: which instance type fits, how many nodes a batch needs.

The catalog of shapes is an input (the provider's ``instance_types()``, as karpenter's
``GetInstanceTypes``); observed nodes of a type override the catalog's estimate.
"""

from __future__ import annotations

from collections.abc import Sequence

from placement.capacity.states import CapacityError, InstanceShape
from topology.nodes import Node, Resources

_MI = 2**20


def estimate_allocatable(name: str, vcpus: int, memory_mib: int, max_pods: int) -> InstanceShape:
    """Allocatable of an instance type as the EKS node bootstrap reserves it.

    CPU: 6 % of the first core, 1 % of the second, 0.5 % of the next two, 0.25 % of the rest;
    memory: ``255 MiB + 11 MiB x max pods`` for the kubelet and ``100 MiB`` eviction threshold.
    """
    reserved_m = 0.0
    for core in range(vcpus):
        reserved_m += 1000 * (0.06 if core == 0 else 0.01 if core == 1 else 0.005 if core < 4 else 0.0025)
    memory_mib_left = memory_mib - (255 + 11 * max_pods) - 100
    return InstanceShape(name, vcpus * 1000 - round(reserved_m), max(memory_mib_left, 0) * _MI, max_pods)


def eni_max_pods(interfaces: int, ipv4_per_interface: int) -> int:
    """The VPC CNI's pod limit: ``ENIs x (IPv4 per ENI - 1) + 2``."""
    return interfaces * (ipv4_per_interface - 1) + 2


def instance_shape(instance_type: str, nodes: Sequence[Node] = (), catalog: Sequence[InstanceShape] = ()) -> InstanceShape:
    """The allocatable shape of an instance type: the smallest observed node of that type, else
    the catalog's estimate.

    Raises
    ------
    CapacityError
        If the type is neither observed nor in ``catalog``.
    """
    seen = [n.allocatable for n in nodes if n.instance_type == instance_type]
    if seen:
        return InstanceShape(
            instance_type, min(r.cpu_m for r in seen), min(r.memory_b for r in seen), min(r.pods for r in seen) or 58
        )
    for shape in catalog:
        if shape.name == instance_type:
            return shape
    raise CapacityError(f"unknown instance type {instance_type!r}: no node of that type observed and not in the provider's catalog")


def bin_pack(requests: Sequence[Resources], shape: InstanceShape, open_bins: int = 0, free: Sequence[Resources] = ()) -> int:
    """New nodes of ``shape`` needed for ``requests`` (first fit decreasing).

    The free room of joined nodes (``free``) and ``open_bins`` empty nodes already on the way are
    filled first. A request larger than the shape is skipped (the caller checks fit before).
    """
    cap = shape.resources()
    bins: list[Resources] = [*free, *(cap for _ in range(open_bins))]
    open_bins += len(free)
    order = sorted(requests, key=lambda r: (r.cpu_m / max(cap.cpu_m, 1) + r.memory_b / max(cap.memory_b, 1)), reverse=True)
    for req in order:
        one = Resources(req.cpu_m, req.memory_b, 0, 1, {})
        if not cap.fits(one):
            continue
        for i, room in enumerate(bins):
            if room.fits(one):
                bins[i] = room - one
                break
        else:
            bins.append(cap - one)
    return len(bins) - open_bins if len(bins) > open_bins else 0
