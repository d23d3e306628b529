"""The harness that proves kbl with figures: model build, placement, extender latency,
locality against the optimum, controller reaction and pre-warm, reliability.

Each benchmark is a module with ``configure(parser)`` and ``run(args) -> int`` registered in
:data:`benchmarks.registry.BENCHMARKS`, run as ``kbl bench NAME``; figures land in BENCHMARKS.md
with the command that produced them.
"""
