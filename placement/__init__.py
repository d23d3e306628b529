"""Decisions about where things go, and the side that carries them out.

Pure planners (no I/O imports, enforced by ``.importlinter``): replica and erasure placement over
failure domains, rebalancing with minimal movement, repair plans, durability checks and capacity
plans. The I/O side executes them: the Kubernetes API behind :mod:`placement.kubeapi`, the
companion controller and the cloud providers.
"""
