"""The command line of the node agent: ``kbl agent`` (and ``python -m dataplane.agent``, the same
parser and run without importing the other ``kbl`` subcommands: a lighter start for tests)."""

from __future__ import annotations

import argparse
import logging
import os

from dataplane.agent.authenticating import TokenFile
from dataplane.agent.running import Agent, Security
from dataplane.agent.settings import DEFAULT_TOKEN_PATH, AgentSettings
from kube.client import KubeClient
from topology.errors import KblError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", default=os.environ.get("NODE_NAME"), help="this node's name (default $NODE_NAME)")
    parser.add_argument("--root", default="/var/lib/kbl", help="data root on the node (default /var/lib/kbl)")
    parser.add_argument("--host", default="0.0.0.0", help="address of the read API (default 0.0.0.0)")  # noqa: S104
    parser.add_argument("--port", type=int, default=8090, help="port of the read API (0: any free port; default 8090)")
    parser.add_argument(
        "--advertise-host", default=os.environ.get("POD_IP", ""), help="host in the endpoint peers use (default $POD_IP, else --host)"
    )
    parser.add_argument("--tls-cert", metavar="C", help="PEM certificate (with --tls-key: serve HTTPS)")
    parser.add_argument("--tls-key", metavar="K", help="PEM private key")
    parser.add_argument("--tls-client-ca", metavar="CA", help="require client certificates signed by this CA (mutual TLS)")
    parser.add_argument("--peer-ca", metavar="CA", help="CA bundle that signs the peers' certificates")
    parser.add_argument("--kubeconfig", metavar="F", help="kubeconfig to use outside a cluster")
    parser.add_argument("--api-url", metavar="URL", help="API server URL (with --token-file), instead of in-cluster config")
    parser.add_argument(
        "--token-file",
        metavar="F",
        default=None,
        help=f"this agent's bearer token, sent to peers (and to --api-url); default the projected token {DEFAULT_TOKEN_PATH}",
    )
    parser.add_argument(
        "--static-tokens-file",
        metavar="F",
        help='tokens accepted without a TokenReview (tests): token[,user,uid,"group1,group2"] per line',
    )
    parser.add_argument("--no-token-review", action="store_true", help="do not ask the API server to review readers' tokens")
    parser.add_argument(
        "--no-access-review",
        action="store_true",
        help="do not ask a SubjectAccessReview whether a caller may read: every authenticated caller may (tests only)",
    )
    parser.add_argument("--audience", default="kbl-agent", help="audience of the readers' projected tokens (default kbl-agent)")
    parser.add_argument("--bandwidth-mbps", type=float, default=0.0, help="hydration bandwidth in megabits per second (0: unbounded)")
    parser.add_argument("--scrub-interval-s", type=float, default=3600.0, help="seconds between two scrubs (0: never; default 3600)")
    parser.add_argument("--capacity-bytes", type=int, default=0, help="quota of this agent's data in bytes (0: the filesystem's size)")
    parser.add_argument("--parallel-copies", type=int, default=4, help="pieces hydrated at once (default 4)")
    parser.add_argument(
        "--heartbeat-s",
        type=float,
        default=30.0,
        help="seconds between two holdings writes when nothing changed (keep well under the reconciler's --agent-ttl-s; default 30)",
    )
    parser.add_argument(
        "--reboot-required-file",
        default="",
        help="label this Node kbl.io/reboot-required=true while this file exists (the host's /var/run/reboot-required; default: off)",
    )
    parser.add_argument(
        "--checkpoint-mib", type=float, default=64.0, help="a resumable copy is checkpointed every this many MiB (default 64)"
    )
    parser.add_argument(
        "--stream-window-segments",
        type=int,
        default=16,
        help="encoded segments held per zone peer while its fragment is streamed to it as it is encoded "
        "(0: stage every zone peer's fragment on disk first; default 16)",
    )
    parser.add_argument(
        "--stream-stall-s", type=float, default=10.0, help="a zone peer silent this long stops being streamed its fragment (default 10)"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def run(args: argparse.Namespace) -> int:
    if not args.node:
        raise KblError("--node (or $NODE_NAME) is required")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise KblError("--tls-cert and --tls-key go together")
    logging.basicConfig(level=args.log_level.upper(), format=f"%(asctime)s %(levelname)s {args.node} %(name)s: %(message)s")
    token = TokenFile(args.token_file or DEFAULT_TOKEN_PATH)
    api = KubeClient.from_url(args.api_url, token=token() or None) if args.api_url else KubeClient.from_config(args.kubeconfig)
    settings = AgentSettings(
        node=args.node,
        root=args.root,
        host=args.host,
        port=args.port,
        advertise_host=args.advertise_host,
        bandwidth_bytes_per_s=args.bandwidth_mbps * 1e6 / 8,
        scrub_interval_s=args.scrub_interval_s,
        capacity_bytes=args.capacity_bytes,
        parallel_copies=args.parallel_copies,
        checkpoint_bytes=max(1, int(args.checkpoint_mib * (1 << 20))),
        heartbeat_s=args.heartbeat_s,
        reboot_required_file=args.reboot_required_file,
        audience=args.audience,
        stream_window_segments=args.stream_window_segments,
        stream_stall_s=args.stream_stall_s,
    )
    security = Security(
        token=token,
        static_tokens_file=args.static_tokens_file,
        token_review=not args.no_token_review,
        access_review=not args.no_access_review,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        peer_ca=args.peer_ca or True,
    )
    agent = Agent(api, settings, security)
    logging.getLogger(__name__).info("kbl agent %s: root %s, read API %s", args.node, args.root, agent.endpoint)
    agent.serve_forever()
    return 0
