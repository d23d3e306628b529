"""``kbl``: argument parsing and dispatch to one module per subcommand.

Subcommand modules are imported lazily, so ``kbl topology`` never pays for importing FastAPI or
boto3. Each module in :mod:`kbl.commands` exposes ``configure(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from topology.errors import KblError

#: (name, module, one-line help). Add a subcommand by adding a module and a row here.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("topology", "kbl.commands.topology", "summarise a snapshot: domains, capacity, datasets, violations"),
    ("serve", "kbl.commands.serve", "run the scheduler extender (filter, prioritize, bind, preempt) over HTTP(S)"),
    ("bench", "kbl.commands.bench", "run a benchmark of the harness (figures for BENCHMARKS.md)"),
    ("demo", "kbl.commands.demo", "the main job on an embedded cluster: kbl against kube-scheduler, Stork-like and the optimum"),
    ("place", "kbl.commands.place", "place a DataSet's shards over failure domains (or rebalance with --previous)"),
    ("controller", "kbl.commands.controller", "the companion controller: node groups per KBL, pre-warmed, safely shrunk"),
    ("bake", "kbl.commands.bake", "image a healthy node (cleaned of its identity) and roll its kbl group to the image"),
    ("reconciler", "kbl.commands.reconciler", "the placement reconciler alone: place, rebalance, repair, drain every DataSet"),
    ("agent", "kbl.commands.agent", "the node agent: make this node's disk match the DataSet placements, verify, scrub, serve reads"),
    ("csi", "kbl.commands.csi", "the CSI driver data.kbl.io: pods mount their DataSet as a volume, local replicas first"),
    ("worker", "kbl.commands.worker", "execute queued node-group requests from SQS with cloud credentials (out of cluster)"),
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``only`` (a subcommand's name), only that subcommand's module is
    imported and its options added (the others are listed with their help line), so
    ``kbl controller`` never imports FastAPI and ``kbl serve`` never imports boto3: about 2 s of
    imports at every start."""
    parser = argparse.ArgumentParser(prog="kbl", description="Data-locality-aware scheduling for Kubernetes.")
    parser.add_argument("--version", action="version", version="kbl 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name, help_text in COMMANDS:
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            importlib.import_module(module_name).configure(sub_parser)
        sub_parser.set_defaults(_module=module_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kbl``; returns the process exit code (0 ok, 1 failure, 2 usage)."""
    words = list(sys.argv[1:] if argv is None else argv)
    names = {name for name, _, _ in COMMANDS}
    args = build_parser(words[0] if words and words[0] in names else None).parse_args(words)
    module = importlib.import_module(args._module)
    try:
        code: int = module.run(args)
    except KblError as exc:
        print(f"kbl {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
