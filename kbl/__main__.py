"""``python -m kbl``: the same as the ``kbl`` console script."""

import sys

from kbl.cli import main

sys.exit(main())
