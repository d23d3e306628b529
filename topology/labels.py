"""The well-known label, annotation and taint names kbl reads and writes.

One place for the contract strings of DESIGN.md so that no module spells them twice.
"""

from __future__ import annotations

REGION = "topology.kubernetes.io/region"
ZONE = "topology.kubernetes.io/zone"
LEGACY_REGION = "failure-domain.beta.kubernetes.io/region"
LEGACY_ZONE = "failure-domain.beta.kubernetes.io/zone"
DEFAULT_RACK = "topology.kbl.io/rack"
HOSTNAME = "kubernetes.io/hostname"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
LEGACY_INSTANCE_TYPE = "beta.kubernetes.io/instance-type"

#: Node label naming the KBL whose dedicated node group the node belongs to.
KBL_LABEL = "kbl.io/kbl"
#: Taint key on a KBL's dedicated nodes (``kbl.io/dedicated=<name>:NoSchedule``).
DEDICATED_TAINT = "kbl.io/dedicated"
#: Node/pod annotation: never disrupt this object during scale-down.
DO_NOT_DISRUPT = "kbl.io/do-not-disrupt"

#: Pod annotations (DESIGN.md, per-KBL placement annotations).
POD_KBL = "kbl.io/kbl"
POD_DATASET = "kbl.io/dataset"
POD_SHARDS = "kbl.io/shards"
POD_LOCALITY = "kbl.io/locality"

API_GROUP = "kbl.io"
API_VERSION = "kbl.io/v1alpha1"
