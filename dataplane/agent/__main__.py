"""``python -m dataplane.agent ARGS``: the same as ``kbl agent ARGS``."""

from __future__ import annotations

import argparse
import sys

from dataplane.agent.commanding import configure, run
from topology.errors import KblError


def main() -> int:
    parser = argparse.ArgumentParser(prog="kbl agent", description="the kbl node agent")
    configure(parser)
    args = parser.parse_args()
    try:
        return run(args)
    except KblError as exc:
        print(f"kbl agent: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
