"""The IAM actions the node agent needs to read DataSet sources in S3, and no more.

The agent reads a source with two S3 calls (:class:`~dataplane.agent.sources.S3Reader`):
``HeadObject`` (size and checksums, ``ChecksumMode=ENABLED``) and ranged ``GetObject``. IAM has no
action of its own for either: both are authorised by ``s3:GetObject``, and by
``s3:GetObjectVersion`` when the call names a ``VersionId`` (reads pinned to one version of the
object). ``ChecksumMode`` and ``IfMatch`` need nothing more. ``manifests/iam/agent-policy.json``
grants exactly :data:`AGENT_SOURCE_ACTIONS`; a test records every boto3 call the reader makes
against moto and maps it with :func:`s3_action`, so policy and code cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: What the agent's role may do on the DataSets' buckets and prefixes.
AGENT_SOURCE_ACTIONS: frozenset[str] = frozenset({"s3:GetObject", "s3:GetObjectVersion"})
#: Granted ahead of the code: version-pinned ranged reads (``VersionId``) are being added to the
#: reader; until a call carries a ``VersionId`` this action is in the policy but unused.
AHEAD_OF_THE_CODE: frozenset[str] = frozenset({"s3:GetObjectVersion"})
#: botocore operation -> the IAM action that authorises it (without and with a ``VersionId``).
S3_OPERATIONS: Mapping[str, tuple[str, str]] = {
    "HeadObject": ("s3:GetObject", "s3:GetObjectVersion"),
    "GetObject": ("s3:GetObject", "s3:GetObjectVersion"),
}


def s3_action(operation: str, params: Mapping[str, Any]) -> str:
    """The IAM action of one S3 call (``KeyError`` for an operation the agent is not known to make)."""
    plain, versioned = S3_OPERATIONS[operation]
    return versioned if params.get("VersionId") else plain
