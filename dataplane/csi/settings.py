"""The CSI driver's knobs: one settings object with defaults, units in the names."""

from __future__ import annotations

from dataclasses import dataclass

from topology import labels

#: The driver's name: the ``CSIDriver`` object, pods' ``csi.driver`` and the registrar all use it.
DRIVER_NAME = labels.CSI_DRIVER
#: Where the DaemonSet puts the driver's socket (the node-driver-registrar sees the same folder).
DEFAULT_SOCKET = "/csi/csi.sock"


@dataclass(frozen=True, slots=True)
class CsiSettings:
    """Settings of one node's CSI driver (``kbl csi``).

    Attributes
    ----------
    node:
        This node's name (``NodeGetInfo``'s ``node_id``; the agent beside it holds this node's pieces).
    root:
        The agent's data root, mounted into the driver's container at the same path
        (``/var/lib/kbl``): local replicas are bind-mounted from ``<root>/<ns>/<name>/<shardKey(i)>``.
    agent_url:
        The agent's read API on this node (``http://127.0.0.1:8090`` in the DaemonSet: same pod).
    token_file:
        The bearer token the FUSE daemons present to the agent (the pod's projected token for the
        ``kbl-agent`` audience; re-read at every connection, so rotation works).
    socket:
        The unix socket the gRPC server listens on.
    state_dir:
        One small JSON file per published volume (volume id, target, DataSet): what survives a
        restart of the driver, so unpublish and idempotent publish still work.
    readahead_bytes:
        How far a FUSE read streams ahead of the reader (per open file).
    kernel_readahead_bytes:
        The kernel's readahead window on each FUSE mount (its bdi's ``read_ahead_kb``), which is
        also the size of the reads the daemon gets: 128 KiB by default on FUSE; 512 KiB measured
        best here (``kbl bench volume``): 1 MiB made the kernel fall back to 4 KiB reads when its
        background FUSE queue filled.
    read_timeout_s:
        A FUSE read that gets no byte from the agent for this long fails with ``EIO`` (a hung agent
        never hangs the pod's read for ever).
    mount_timeout_s:
        How long publish waits for a FUSE daemon's mount to appear before it fails.
    ca_file, cert_file, key_file, tls_name:
        HTTPS to the agent (chart value ``agent.tls.enabled``): the CA that signs its certificate,
        the client certificate and key when it demands mutual TLS, and the name its certificate
        carries (``kbl-agent.kbl-system.svc``), checked although the driver connects to 127.0.0.1.
    authorize:
        Ask a SubjectAccessReview whether the pod's service account may ``get`` the DataSet before
        publishing (off only in tests that exercise the mounts alone).
    """

    node: str
    root: str
    agent_url: str
    token_file: str
    socket: str = DEFAULT_SOCKET
    state_dir: str = "/var/lib/kbl-csi"
    readahead_bytes: int = 8 << 20
    kernel_readahead_bytes: int = 512 << 10
    read_timeout_s: float = 30.0
    mount_timeout_s: float = 20.0
    authorize: bool = True
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_name: str = ""
