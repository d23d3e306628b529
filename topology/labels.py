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
#: Pod annotation: where the admission webhook mounts the pod's ``kbl.io/dataset`` as a CSI volume.
POD_MOUNT = "kbl.io/mount"
#: The CSI driver that shows a DataSet as a volume (``dataplane/csi``), and the volume the webhook adds.
CSI_DRIVER = "data.kbl.io"
CSI_VOLUME = "kbl-dataset"

API_GROUP = "kbl.io"
API_VERSION = "kbl.io/v1alpha1"

#: Node label naming the kbl node group a node belongs to (set by the group's launch template).
NODE_GROUP_LABEL = "kbl.io/node-group"
#: Label of the controller's placeholder pods (Karpenter mode): they keep a node of the pool; scale-down never evicts them.
PLACEHOLDER = "kbl.io/placeholder"

# ---------------------------------------------------------------- the data plane (DESIGN.md)
#: Node annotation set by whoever wants a node's data moved off (the companion controller before a
#: scale-down, the interruption handler on a spot warning, an operator): the value is the reason.
#: The placement reconciler treats the node as leaving: never a target, its pieces copied off make
#: before break. Cordoning alone only stops new pieces from landing there.
DRAIN = "kbl.io/drain"
#: Node annotation: the latest moment (RFC 3339) the node's data can still be read (spot notice).
DRAIN_DEADLINE = "kbl.io/drain-deadline"
#: Node annotation written by the placement reconciler when no DataSet's target or in-flight
#: transfer references a draining node any more (RFC 3339 time): its data is safe elsewhere.
DATA_DRAINED = "kbl.io/data-drained"
#: Node annotation written by the placement reconciler: pieces the node still holds that no other
#: node has ready (a count); a scale-down must wait while it is non-zero.
LAST_PIECES = "kbl.io/last-pieces"

# ---------------------------------------------------------------- the companion controller
#: EKS's node label naming the managed node group a node belongs to.
EKS_NODE_GROUP_LABEL = "eks.amazonaws.com/nodegroup"
#: Node annotation written when the controller cordons a node to remove it (value: epoch seconds).
SCALE_DOWN_SINCE = "kbl.io/scale-down-since"
#: Cluster Autoscaler's node annotation that keeps it from removing a node.
CA_SCALE_DOWN_DISABLED = "cluster-autoscaler.kubernetes.io/scale-down-disabled"
#: Node annotation: the controller set scale-in protection on this node's instance (ASG, EKS).
SCALE_IN_PROTECTED = "kbl.io/scale-in-protected"
#: KBL annotations that configure utilization feedback.
SCALE_ON = "kbl.io/scale-on"  # cpu | memory | prometheus
SCALE_UP_ABOVE = "kbl.io/scale-up-above"  # fraction (cpu/memory) or query value
SCALE_DOWN_BELOW = "kbl.io/scale-down-below"
PROMETHEUS_QUERY = "kbl.io/prometheus-query"
#: KBL annotation naming a DataSet (same namespace) whose zone a pod-less KBL should grow in.
KBL_DATASET = "kbl.io/dataset"
#: Node annotation the controller sets on the node it images a group's new AMI from.
PROTOTYPE = "kbl.io/prototype"
#: Node label the node agent sets to ``"true"`` while the node needs a reboot to finish patching
#: (``/var/run/reboot-required`` exists on the host), and removes after it; the controller
#: reboots such nodes one at a time per group through the safe path (controller/patching.py).
REBOOT_REQUIRED = "kbl.io/reboot-required"
#: Node annotation of a reboot in progress: ``draining:<epoch s>`` then ``rebooting:<epoch s>``.
REBOOTING = "kbl.io/rebooting"

# ---------------------------------------------------------------- cloud tags on kbl-managed groups
#: Tag (and Karpenter NodePool label) every kbl-managed group carries; value ``kbl``.
MANAGED_BY_TAG = "kbl.io/managed-by"
#: Tag naming the KBL a group serves (``namespace/name``).
KBL_TAG = "kbl.io/kbl"
#: Tag naming the zone a group launches in.
ZONE_TAG = "kbl.io/zone"
#: Tag naming the cluster a group belongs to.
CLUSTER_TAG = "kbl.io/cluster"
#: Auto Scaling group tag recording the group's instance types (space-separated, in order).
INSTANCE_TYPE_TAG = "kbl.io/instance-type"
#: Taints the node lifecycle controller puts on a node whose kubelet stopped reporting
#: (``unreachable``) or reports NotReady (``not-ready``): such a node is no room for pods.
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
#: Auto Scaling group tag recording the group's capacity type (ON_DEMAND or SPOT).
CAPACITY_TYPE_TAG = "kbl.io/capacity-type"
#: Image tag naming the node an image was made from.
SOURCE_NODE_TAG = "kbl.io/source-node"

#: Pod annotation the gate controller writes when it narrows a pod by name (the number of
#: candidates): such a pod is scored on its own among its candidates, and other pods' pending
#: batches leave it out (the controller already reserved its room).
NARROWED = "kbl.io/narrowed"
