"""The data plane: DataSet placements made real.

Two parts stand on the Kubernetes floor (:mod:`kube`) and the pure planners (:mod:`placement`),
never on the extender or the companion controller:

- the placement reconciler (:mod:`dataplane.reconciler`), which owns every DataSet's
  ``status.placement`` in a live cluster: place, rebalance, repair, drain, make before break;
- the node agent (:mod:`dataplane.agent`), one per node, which makes its disk match the
  placement: hydrate from peers or the DataSet's source, erasure-encode, verify, scrub, serve.

They meet through Kubernetes objects only (the DataSet's status and each node's holdings, see
:mod:`topology.holdings`), never through imports of each other's internals.
"""
