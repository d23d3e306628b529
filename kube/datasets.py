"""DataSets read once from the API with their targets, sliced or not.

For readers that list rather than watch (the demo, benchmarks, one-shot commands): a DataSet
whose target is written as PlacementSlices (:mod:`topology.slices`) is returned with the target
assembled from the slices listed with it. Readers that watch keep a
:class:`~topology.slices.SliceStore` fed by a PlacementSlice informer instead.
"""

from __future__ import annotations

from kube.api import DATASETS, PLACEMENT_SLICES, KubeApi
from topology.datasets import DataSet
from topology.errors import ObjectError
from topology.slices import DATASET_LABEL, SliceStore


def list_datasets(api: KubeApi, *, namespace: str | None = None) -> list[DataSet]:
    """Every DataSet (of ``namespace``) with its target. A sliced DataSet whose slices are not
    all there yet (listed between the reconciler's writes) is returned without a target
    (``placement`` ``None``, ``slices`` set): ask again. Raises :class:`ObjectError` for a
    malformed DataSet, as :meth:`DataSet.from_object`."""
    datasets = [DataSet.from_object(o) for o in api.list(DATASETS, namespace=namespace)[0]]
    if not any(d.slices is not None for d in datasets):
        return datasets
    store = SliceStore()
    store.replace(api.list(PLACEMENT_SLICES, namespace=namespace)[0])
    return [store.resolve(d) or d for d in datasets]


def get_dataset(api: KubeApi, name: str, *, namespace: str) -> DataSet:
    """One DataSet with its target (as :func:`list_datasets`); :class:`ObjectError` when it does not exist."""
    obj = api.get(DATASETS, name, namespace=namespace)
    if obj is None:
        raise ObjectError("DataSet", f"{namespace}/{name}", "metadata.name", "not found")
    dataset = DataSet.from_object(obj)
    if dataset.slices is None:
        return dataset
    store = SliceStore()
    # Its own slices only (the reconciler labels them when the name fits a label value).
    selector = f"{DATASET_LABEL}={name}" if len(name) <= 63 else None
    store.replace(api.list(PLACEMENT_SLICES, namespace=namespace, label_selector=selector)[0])
    return store.resolve(dataset) or dataset
