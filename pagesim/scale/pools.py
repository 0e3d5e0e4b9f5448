# SPDX-License-Identifier: GPL-2.0-only
"""Where jobs run: this process, local processes, or a Dask cluster (see the package)."""

from __future__ import annotations

import importlib
import importlib.util
import multiprocessing
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: environment overrides of ``--jobs`` and ``--scheduler``
JOBS_ENV = "PAGESIM_JOBS"
SCHEDULER_ENV = "PAGESIM_SCHEDULER"
#: what ``--scheduler`` needs that the package does not bring
DASK_HINT = "pip install 'pagesim[dask]'"


class PoolError(ValueError):
    """A pool that cannot be made: a bad job count, an unreachable scheduler, dask
    missing. One line naming the option and the problem."""


class Pool(ABC):
    """Runs a function over inputs; results in input order."""

    #: how many jobs run at once (for messages and for splitting a budget)
    width: int = 1

    @abstractmethod
    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(x) for x in items]``, run wherever the pool runs things. ``fn`` must be
        a module-level function and the items plain data when the pool is not serial."""

    @abstractmethod
    def close(self) -> None:
        """Release workers and connections."""

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return type(self).__name__


class SerialPool(Pool):
    """In this process, one after the other: the default, and what ``--jobs 1`` means.
    Nothing is pickled, so anything may be mapped."""

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        return [fn(x) for x in items]

    def close(self) -> None:
        return None  # nothing to release

    def describe(self) -> str:
        return "this process"


class ProcessPool(Pool):
    """``jobs`` local processes. They are spawned, not forked: a fork would copy the
    parent's machines and threads (a progress bar's), and a spawned worker imports only
    what its jobs need."""

    def __init__(self, jobs: int) -> None:
        self.width = jobs
        self._executor: ProcessPoolExecutor | None = None

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if len(items) <= 1:
            return [fn(x) for x in items]
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=min(self.width, len(items)),
                mp_context=multiprocessing.get_context("spawn"))
        return list(self._executor.map(fn, items))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)
            self._executor = None

    def describe(self) -> str:
        return f"{self.width} local processes"


class DaskPool(Pool):
    """The workers of a running Dask scheduler (``tcp://host:8786``). Each job is one
    task, submitted impure (two equal inputs are still two runs: a check's time limit
    makes its result depend on the machine it ran on)."""

    def __init__(self, address: str, *, timeout: float = 10.0) -> None:
        try:
            # imported by name: an optional dependency, untyped, and absent from the
            # default install
            distributed: Any = importlib.import_module("distributed")
        except ImportError:
            raise PoolError(f"--scheduler {address}: Dask is not installed "
                            f"({DASK_HINT})") from None
        self.address = address
        try:
            self._client = distributed.Client(address, timeout=timeout)
        except (OSError, ValueError) as e:  # refused, timed out, not an address
            raise PoolError(f"--scheduler {address}: cannot reach the scheduler "
                            f"({e})") from None
        self._killed: type[Exception] = distributed.KilledWorker
        self._importable: set[str] = set()
        workers = self._client.scheduler_info().get("workers", {})
        self.width = max(1, sum(w.get("nthreads", 1) for w in workers.values()))

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        self._check_workers_import(fn.__module__)
        futures = self._client.map(fn, list(items), pure=False)
        try:
            result: list[R] = self._client.gather(futures)
        except self._killed as e:  # a worker died under the job, more than once
            raise PoolError(f"--scheduler {self.address}: workers died running a job "
                            f"({e})") from None
        return result

    def _check_workers_import(self, module: str) -> None:
        """Every worker can import the job's module. Without this, a worker that
        cannot (pagesim not installed there) fails to read the task at all, and the
        map waits forever. The probe is a stdlib function, so any worker can run it."""
        if module in self._importable:
            return
        try:
            found = self._client.run(importlib.util.find_spec, module)
        except ModuleNotFoundError:
            found = {"a worker": None}
        missing = sorted(str(w) for w, spec in found.items() if spec is None)
        if missing:
            raise PoolError(f"--scheduler {self.address}: {missing[0]} cannot import "
                            f"{module}: install pagesim on every worker")
        self._importable.add(module)

    def close(self) -> None:
        self._client.close()

    def describe(self) -> str:
        return f"Dask at {self.address} ({self.width} worker threads)"


def make_pool(jobs: int | None = None, scheduler: str | None = None) -> Pool:
    """The pool ``--jobs``/``--scheduler`` ask for: a scheduler address means Dask,
    ``jobs`` > 1 that many local processes (0: one per core), anything else this
    process. When neither option is given, ``PAGESIM_SCHEDULER`` or ``PAGESIM_JOBS``
    decide."""
    if jobs is not None and scheduler is not None:
        raise PoolError("--jobs and --scheduler are alternatives: a cluster's workers "
                        "decide how many jobs run at once")
    if jobs is None and scheduler is None:
        scheduler = os.environ.get(SCHEDULER_ENV) or None
        text = os.environ.get(JOBS_ENV, "")
        if scheduler is None and text:
            try:
                jobs = int(text)
            except ValueError:
                raise PoolError(f"{JOBS_ENV}={text!r}: not a number of jobs") from None
    if scheduler is not None:
        return DaskPool(scheduler)
    if jobs is not None and jobs < 0:
        raise PoolError(f"--jobs {jobs}: must be 0 (one per core) or more")
    if jobs == 0:
        jobs = os.cpu_count() or 1
    if jobs is None or jobs == 1:
        return SerialPool()
    return ProcessPool(jobs)
