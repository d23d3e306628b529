"""``kbl worker``: run node-group requests from the SQS queue with a real provider (out of cluster).

The in-cluster controller in queue mode sends requests; the worker, holding the cloud
credentials, executes them (idempotently: at-least-once delivery), reports the inventory of kbl
groups on the reply queue and enforces the global node budget. Failing messages are left for
SQS to redeliver and, after the queue's ``maxReceiveCount``, to move to its dead-letter queue;
their errors go back on the reply queue. An error of the queues themselves is printed and the
loop goes on after 5 s.
"""

from __future__ import annotations

import argparse
import sys
import time

from controller.providers import ProviderError
from kbl.commands import controller as controller_command
from kbl.commands.bake import add_launch_arguments
from topology.errors import KblError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue-url", required=True, help="SQS request queue")
    parser.add_argument("--reply-queue-url", required=True, help="SQS queue to report the inventory on")
    parser.add_argument("--provider", choices=("eks", "asg"), default="eks", help="cloud side (default %(default)s)")
    parser.add_argument("--cluster-name", default="kbl", help="EKS cluster name")
    parser.add_argument("--region", default=None, help="AWS region")
    parser.add_argument("--node-role-arn", default="", help="IAM role of new EKS managed nodes (eks)")
    parser.add_argument("--image-id", default="", help="asg: image of new groups; eks: custom AMI of new groups (needed to roll to a bake)")
    parser.add_argument("--subnet", action="append", default=[], metavar="ZONE=SUBNET", help="subnet per zone")
    parser.add_argument("--max-nodes", type=int, default=200, help="global node budget (default %(default)s)")
    parser.add_argument("--visibility-timeout-s", type=int, default=60, help="seconds a received request stays hidden")
    parser.add_argument("--once", action="store_true", help="poll once and exit")
    add_launch_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import boto3

    from controller.providers.queueing import Worker

    if args.max_nodes < 0:
        raise KblError("--max-nodes must be >= 0")
    provider = controller_command.cloud(args, for_worker=True)
    session = boto3.session.Session(region_name=args.region)
    worker = Worker(
        session.client("sqs"), args.queue_url, args.reply_queue_url, provider,
        max_nodes_total=args.max_nodes, visibility_timeout_s=args.visibility_timeout_s,
    )
    if args.once:
        worker.poll_once(wait_s=0)
        return 0
    while True:
        try:
            if not worker.poll_once(wait_s=20):
                worker.report()
                time.sleep(1.0)
        except ProviderError as exc:  # the queues themselves failed (throttled, denied): try again
            print(f"kbl worker: {exc.code}: {exc}", file=sys.stderr)
            time.sleep(5.0)
