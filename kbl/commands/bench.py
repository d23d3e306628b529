"""``kbl bench NAME``: run one benchmark of :data:`benchmarks.registry.BENCHMARKS`."""

from __future__ import annotations

import argparse
import importlib

from benchmarks.registry import BENCHMARKS


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    sub.required = True
    for name, (module_name, help_text) in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        module.configure(sub.add_parser(name, help=help_text, description=help_text))


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(BENCHMARKS[args.benchmark][0])
    code: int = module.run(args)
    return code
