"""The kube-scheduler HTTP extender: filter, prioritize, bind, preempt by data locality.

Public surface: :class:`ClusterState` (the cache), :func:`create_app` (the FastAPI app) and
:class:`ExtenderSettings` (the knobs). ``kbl serve`` runs it under uvicorn.
"""

from extender.app import create_app
from extender.settings import ExtenderSettings
from extender.state import ClusterState

__all__ = ["ClusterState", "ExtenderSettings", "create_app"]
