"""The placement reconciler: owns every DataSet's ``status.placement`` in a live cluster.

It places new DataSets, rebalances them with minimal movement when nodes join, leave, are
cordoned, drained or lost, moves pieces make before break through ``status.transfers``, reports
lost shards, and tells the companion controller when a draining node's data is safe elsewhere
(``kbl.io/data-drained``). Pure decisions in :mod:`~dataplane.reconciler.planning`; the loop on
informers in :mod:`~dataplane.reconciler.reconciling`; knobs in
:mod:`~dataplane.reconciler.settings`; Prometheus series in :mod:`~dataplane.reconciler.metrics`.
"""

from dataplane.reconciler.metrics import ReconcilerMetrics
from dataplane.reconciler.planning import ClusterView, Decision, decide
from dataplane.reconciler.reconciling import PassReport, Reconciler
from dataplane.reconciler.settings import ReconcilerSettings

__all__ = ["ClusterView", "Decision", "PassReport", "Reconciler", "ReconcilerMetrics", "ReconcilerSettings", "decide"]
