"""The extender's own OpenAPI document, narrowed to the objects the fuzzed test cluster holds.

The document is :func:`extender.openapi.document`, the one the extender serves at
``{prefix}/openapi.json``; only its free-form strings and collection sizes are narrowed here
(dataset, KBL, namespace and node names of :mod:`tests.extender.scenarios`, small quantities so
sums stay far from overflow, a few items per list), so schemathesis spends its cases on requests
that reach the scoring and filtering code rather than on unknown names.
"""

from __future__ import annotations

from typing import Any

from extender.openapi import Vocabulary, document

#: A Kubernetes quantity, small (so sums stay far from overflow).
QUANTITY = r"^[0-9]{1,4}(\.[0-9]{1,2})?(m|k|M|G|Ki|Mi|Gi)?$"
#: ``kbl.io/shards``: a few indexes and ranges within the test datasets.
SHARDS = r"^[0-9]{1,3}(-[0-9]{1,3})?(,[0-9]{1,3}(-[0-9]{1,3})?){0,3}$"

FUZZ_VOCABULARY = Vocabulary(
    datasets=("genome", "missing"),
    kbls=("genomics", "other"),
    namespaces=("lab", "default", "other"),
    node_names=(*(f"node-{z}-{r}-{h}" for z in range(2) for r in range(2) for h in range(3)), "unknown-node", "nowhere"),
    localities=("preferred", "required", "Required", " preferred "),
    quantity=QUANTITY,
    shards=SHARDS,
    max_string=64,
    max_nodes=13,
    max_containers=3,
    max_map=4,
    max_victims=3,
)


def openapi_document() -> dict[str, Any]:
    """The served document with :data:`FUZZ_VOCABULARY` (a fresh copy each call)."""
    return document(vocabulary=FUZZ_VOCABULARY)
