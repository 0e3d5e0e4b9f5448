# SPDX-License-Identifier: GPL-2.0-only
"""Running many independent jobs: the rows of a comparison, the seeds of a search.

A comparison checks one scenario on seven generations, or runs one workload on four
generations times three sysctl values; a random search wants as many seeds as there
are cores. The jobs share nothing, so they can run anywhere: in this process, in a pool
of local processes, or on a Dask cluster. A :class:`Pool` hides which; the front ends
build one with :func:`make_pool` from ``--jobs`` and ``--scheduler`` (or the
environment's ``PAGESIM_JOBS`` and ``PAGESIM_SCHEDULER``) and map a job function over
their inputs. Results come back in input order whatever finished first, so a table made
with a pool is the table made without one.

The local pool needs nothing beyond the package (``concurrent.futures``). The
distributed one needs ``dask.distributed`` (``pip install 'pagesim[dask]'``) and the
address of a running scheduler (``dask scheduler`` on one machine, ``dask worker
ADDRESS`` on each of the others, with pagesim installed on every one); a job is a
top-level function of :mod:`pagesim.scale.jobs` and plain data, so it pickles.
"""

from __future__ import annotations

from pagesim.scale.pools import (
    DaskPool,
    Pool,
    PoolError,
    ProcessPool,
    SerialPool,
    make_pool,
)

__all__ = ["DaskPool", "Pool", "PoolError", "ProcessPool", "SerialPool", "make_pool"]
