# SPDX-License-Identifier: GPL-2.0-only
"""The simulator: a real-size machine under a workload, on the checker's runtime.

:mod:`~pagesim.sim.workload` says what the CPUs do (mixes of allocations and frees,
churn, bursts, and hotplug or contiguous-allocation events at given times), in Python or
TOML; :mod:`~pagesim.sim.runner` runs it with a seeded scheduler over the model's own
kernel functions; :mod:`~pagesim.sim.results` writes and reads the results file;
:mod:`~pagesim.sim.demo` is what ``pagesim simulate`` runs without arguments.

The model and the runtime never import this package.
"""
