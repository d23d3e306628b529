"""``kbl csi``: the CSI driver ``data.kbl.io`` of one node (a container of the agent's DaemonSet)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from dataplane.agent.settings import DEFAULT_TOKEN_PATH
from dataplane.csi.publishing import Publisher
from dataplane.csi.serving import Driver
from dataplane.csi.settings import DEFAULT_SOCKET, CsiSettings
from kube.client import KubeClient
from topology.errors import KblError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", default=os.environ.get("NODE_NAME", ""), help="this node's name (default $NODE_NAME)")
    parser.add_argument("--root", default="/var/lib/kbl", help="the agent's data root, mounted at the same path (default /var/lib/kbl)")
    parser.add_argument("--agent-url", default="http://127.0.0.1:8090", help="the agent's read API on this node")
    parser.add_argument("--token-file", default=DEFAULT_TOKEN_PATH, help=f"bearer token for the agent (default {DEFAULT_TOKEN_PATH})")
    parser.add_argument("--socket", default=DEFAULT_SOCKET, help=f"the gRPC unix socket (default {DEFAULT_SOCKET})")
    parser.add_argument("--state-dir", default="/var/lib/kbl-csi", help="published volumes' state (default /var/lib/kbl-csi)")
    parser.add_argument("--readahead-mib", type=int, default=8, help="FUSE streaming readahead per open file, MiB (default 8)")
    parser.add_argument("--read-timeout-s", type=float, default=30.0, help="a FUSE read with no byte from the agent this long fails EIO")
    parser.add_argument("--ca-file", default="", metavar="F", help="CA of the agent's HTTPS certificate (with an https --agent-url)")
    parser.add_argument("--cert-file", default="", metavar="F", help="client certificate for an agent demanding mutual TLS")
    parser.add_argument("--key-file", default="", metavar="F", help="its key")
    parser.add_argument("--tls-name", default="", help="the name the agent's certificate carries (checked on 127.0.0.1)")
    parser.add_argument("--kubeconfig", metavar="F", help="kubeconfig to use outside a cluster")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def run(args: argparse.Namespace) -> int:
    if not args.node:
        raise KblError("--node (or $NODE_NAME) is required")
    logging.basicConfig(level=args.log_level.upper(), format=f"%(asctime)s %(levelname)s {args.node} %(name)s: %(message)s")
    settings = CsiSettings(
        node=args.node,
        root=args.root,
        agent_url=args.agent_url,
        token_file=args.token_file,
        socket=args.socket,
        state_dir=args.state_dir,
        readahead_bytes=args.readahead_mib << 20,
        read_timeout_s=args.read_timeout_s,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        tls_name=args.tls_name,
    )
    api = KubeClient.from_config(args.kubeconfig)
    driver = Driver(Publisher(api, settings), settings.node, settings.socket).start()
    logging.getLogger(__name__).info("kbl csi %s: listening on %s", settings.node, settings.socket)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    driver.stop()
    return 0
