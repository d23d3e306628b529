"""Allocatable estimates of common EC2 instance types, for where the cloud is not asked.

The EKS and Auto Scaling providers ask EC2 (``DescribeInstanceTypes``); this table serves the
others: the stateful fake, offline planning from a snapshot, queue mode before the worker has
reported its catalog, and Karpenter's NodePools when no instance types are configured. vCPU minus
kube/system reserved, memory minus the EKS reservation, max pods of the VPC CNI.
"""

from __future__ import annotations

from placement.capacity import InstanceShape

_GI = 2**30

KNOWN_INSTANCE_TYPES: tuple[InstanceShape, ...] = (
    InstanceShape("m6i.large", 1930, int(6.9 * _GI), 29),
    InstanceShape("m6i.xlarge", 3920, int(14.2 * _GI), 58),
    InstanceShape("m6i.2xlarge", 7910, int(29.0 * _GI), 58),
    InstanceShape("m6i.4xlarge", 15890, int(58.5 * _GI), 234),
    InstanceShape("m6i.8xlarge", 31850, int(118 * _GI), 234),
    InstanceShape("m6i.16xlarge", 63770, int(241 * _GI), 737),
    InstanceShape("c6i.xlarge", 3920, int(6.3 * _GI), 58),
    InstanceShape("c6i.4xlarge", 15890, int(27.0 * _GI), 234),
    InstanceShape("r6i.xlarge", 3920, int(29.0 * _GI), 58),
    InstanceShape("r6i.4xlarge", 15890, int(120 * _GI), 234),
    InstanceShape("i4i.4xlarge", 15890, int(120 * _GI), 234),
)
#: The same, by name.
KNOWN_SHAPES: dict[str, InstanceShape] = {s.name: s for s in KNOWN_INSTANCE_TYPES}
