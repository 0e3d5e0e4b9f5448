# SPDX-License-Identifier: GPL-2.0-only
"""The ``auto`` strategy: a short randomised probe, then the stateful exhaustive search.

The two kinds of search are good at different halves of the job. An exhaustive search
walks the interleavings in one fixed depth-first order, so a race that needs the second
worker to move early sits behind every ordering in which it moves late: on the
three-CPU offline scenario the stateful search does not reach the 5.8/5.10
counterexamples within a minute, while random scheduling hits them within ten
executions (a few milliseconds). Random and PCT scheduling cannot verify anything.

So ``auto`` runs, within ``Bounds.probe_seconds`` (default 1 s, at most a quarter of the
time limit), random scheduling for half of the probe and PCT for the other half; if
neither finds a violation, the stateful search (:mod:`pagesim.explore.stateful`) runs
from scratch for the rest of the time and its verdict is the verdict. A violation found
by the probe is reported like any other (minimised, replayable); the probe's executions
are counted with the search's. The probe uses ``Bounds.seed``, so a run is repeatable.
"""

from __future__ import annotations

import time

from pagesim.explore.common import Bounds, Outcome
from pagesim.explore.random_walk import explore_pct, explore_random
from pagesim.explore.stateful import explore_stateful
from pagesim.runtime.executor import Program


def explore_auto(program: Program, bounds: Bounds) -> Outcome:
    """Probe with random and PCT scheduling, then search exhaustively."""
    t0 = time.perf_counter()
    probe = bounds.probe_seconds
    if bounds.time_limit is not None:
        probe = min(probe, bounds.time_limit / 4)
    total = Outcome()
    if probe > 0:
        for explorer in (explore_random, explore_pct):
            # max_executions bounds the whole search, so each probe may use all of it
            out = explorer(program, bounds.but(time_limit=probe / 2))
            _add(total, out)
            if out.first is not None and bounds.stop_on_violation:
                return total
    rest = None
    if bounds.time_limit is not None:
        rest = max(bounds.time_limit - (time.perf_counter() - t0), 0.001)
    out = explore_stateful(program, bounds.but(time_limit=rest))
    _add(total, out)
    total.complete = out.complete
    total.distinct_states = out.distinct_states
    return total


def _add(total: Outcome, out: Outcome) -> None:
    total.executions += out.executions
    total.pruned += out.pruned
    total.steps += out.steps
    total.violations += out.violations
    if total.first is None:
        total.first = out.first
