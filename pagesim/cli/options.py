# SPDX-License-Identifier: GPL-2.0-only
"""Options that several commands share, spelled once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from pagesim.scale.pools import DASK_HINT, JOBS_ENV, SCHEDULER_ENV

F = TypeVar("F", bound=Callable[..., Any])


def pool_options(what: str) -> Callable[[F], F]:
    """``--jobs`` and ``--scheduler``: where ``what`` (the rows, the generations, the
    parts of a search) run (:func:`pagesim.scale.make_pool`)."""
    def decorate(fn: F) -> F:
        fn = click.option(
            "--scheduler", default=None,
            help=f"run {what} on a Dask cluster: its scheduler's address, e.g. "
                 f"tcp://host:8786 (or {SCHEDULER_ENV}; needs {DASK_HINT})")(fn)
        fn = click.option(
            "--jobs", type=int, default=None,
            help=f"run {what} in N local processes (0: one per core; default 1, or "
                 f"{JOBS_ENV})")(fn)
        return fn
    return decorate
