"""The ``kbl`` command line: one entry point that wires the layers together.

This package holds no logic of its own beyond argument parsing and output; every subcommand
calls into :mod:`topology`, :mod:`placement`, :mod:`extender` or :mod:`benchmarks`. It is the top
of the import-layer contract, the only place allowed to import all of them.
"""
