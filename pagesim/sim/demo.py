# SPDX-License-Identifier: GPL-2.0-only
"""What ``pagesim simulate`` runs without arguments: the 2020 story on a real-size
machine.

A 16 GiB, 8-CPU x86-64 machine (the ``16g-8cpu`` preset) whose CPUs 1-6 allocate and
free movable memory all the time (mostly single pages, some order-3 blocks, some frees
in batches, as exiting tasks and shrinking caches release them), and whose CPU 7 only
frees, slowly, pages it allocated earlier; now and then one of those frees is preempted
between reading its pageblock's type and committing the page to the CPU's pcplist
(spec §6.1). Meanwhile CPU 0 offlines the 128 MiB memory block of ZONE_NORMAL that holds
the most pages in use. The same run, seed for seed, on each generation:

* v5.8: isolation drains the pcplists once per pageblock, with work queued on the other
  CPUs; until each drain has run there, and for pages committed after it, allocations
  on those CPUs hand out free pages of isolated pageblocks, and a page parked on an
  idle CPU's pcplist can keep test_pages_isolated() failing (the model's retry bound
  ends it: "gave up after N retries");
* v5.10: the same window, but a drain after every failed test (9683182612214aa5);
* v5.11: zone_pcp_disable() before isolating (ec6e8c7e0314): one forced drain, then every
  commit flushes; no page of an isolated block is handed out;
* 6.x: the same guarantee with pcp->lock and remote drains.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pagesim.sim.workload import Event, Mix, Workload, WorkloadError, load_workload

DEMO_PRESET = "16g-8cpu"
DEMO_KERNELS = ("v5.8", "v5.10", "v5.11", "v6.19")
DEMO_SEED = 1


def demo_workload() -> Workload:
    """The demo's workload (see the module docstring)."""
    return Workload(
        name="offline-under-load",
        description="offline of the busiest 128 MiB block of ZONE_NORMAL on CPU 0 while "
                    "CPUs 1-6 allocate and free movable memory and CPU 7 frees slowly",
        duration=60_000, sample_every=2_000, load=24,
        mixes=[
            Mix(cpus=(1, 2, 3, 4, 5, 6), alloc=0.85, orders={0: 97, 3: 3},
                migratetypes={"movable": 1}, batch_free=0.1, batch=31, max_held=600,
                prefill=300, preempt=0.002, preempt_delay=200),
            Mix(cpus=(7,), alloc=0.0, prefill=1000, weight=0.1, preempt=0.3,
                preempt_delay=20_000),
        ],
        events=[Event(at=10_000, cpu=0, op="offline", block="busiest", max_retries=50)],
    )


#: the built-in workloads, by the name ``--workload`` accepts
WORKLOADS: dict[str, Callable[[], Workload]] = {"offline-under-load": demo_workload}


def resolve_workload(text: str) -> Workload:
    """``--workload``: a TOML file, or the name of a built-in workload."""
    if text in WORKLOADS and not Path(text).exists():
        return WORKLOADS[text]()
    if text.endswith(".toml") or Path(text).exists():
        return load_workload(text)
    raise WorkloadError(f"--workload: {text!r} is neither a file nor a built-in workload "
                        f"({', '.join(WORKLOADS)})")
