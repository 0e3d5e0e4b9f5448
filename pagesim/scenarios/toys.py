# SPDX-License-Identifier: GPL-2.0-only
"""The checker's toys (:mod:`pagesim.explore.toys`) as scenarios.

They do not model the allocator, so the kernel generation is ignored; they are here
because their answers are known, some of them violations and deadlocks, which lets the
command line show a counterexample, a saved schedule and a reproducer on demand.
"""

from __future__ import annotations

from pagesim.explore import toys
from pagesim.scenarios import Scenario, register

register(Scenario("toy-lost-update", "CPUs increment a counter with READ_ONCE then "
                  "WRITE_ONCE: an update gets lost", lambda k, n: toys.lost_update(n),
                  "violation", uses_kernel=False, max_cpus=4))
register(Scenario("toy-locked-counter", "the same increment under a spinlock",
                  lambda k, n: toys.locked_counter(n), "verified", uses_kernel=False,
                  max_cpus=4))
register(Scenario("toy-peterson", "Peterson's mutual exclusion on two CPUs",
                  lambda k, n: toys.peterson(), "verified", uses_kernel=False))
register(Scenario("toy-peterson-no-turn", "Peterson's algorithm without the write of "
                  "turn: both CPUs enter", lambda k, n: toys.peterson(write_turn=False),
                  "violation", uses_kernel=False))
register(Scenario("toy-abba", "two locks taken in opposite orders",
                  lambda k, n: toys.abba(), "deadlock", uses_kernel=False))
register(Scenario("toy-flushed-work", "a work item queued on another CPU and flushed",
                  lambda k, n: toys.flushed_work(), "verified", uses_kernel=False))
register(Scenario("toy-percpu-preemptible", "a task and a work item increment a per-CPU "
                  "counter, the task outside an interrupts-off section",
                  lambda k, n: toys.percpu_counter(task_irqs_off=False), "violation",
                  uses_kernel=False))
register(Scenario("toy-stale-cpu", "a task reads this_cpu() preemptibly, migrates, and "
                  "updates the first CPU's counter in a section on another CPU, racing "
                  "with a work item there", lambda k, n: toys.stale_cpu(), "violation",
                  uses_kernel=False))
register(Scenario("toy-spin-forever", "a CPU waits for a flag nobody sets",
                  lambda k, n: toys.spin_forever(), "liveness", uses_kernel=False))
