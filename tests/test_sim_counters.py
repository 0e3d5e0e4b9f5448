# SPDX-License-Identifier: GPL-2.0-only
"""The counters the simulator's summary reports come from the model: pages migrated
(``pgmigrate_success``, counted in do_migrate_range where each block is moved) and
offline retries (counted where offline_pages() retries), and they stay outside the
state the stateful checker fingerprints."""

from __future__ import annotations

from pagesim.model.memory_hotplug import hotplug_state, offline_pages
from pagesim.model.migrate import hold, vm_events
from pagesim.model.mmzone import MIGRATE_MOVABLE, Machine
from pagesim.model.page_alloc import alloc_pages
from pagesim.model.presets import preset_machine
from pagesim.runtime.executor import Execution
from pagesim.runtime.fingerprint import Fingerprinter
from pagesim.runtime.sequential import call
from pagesim.scenarios import program as scenario_program
from pagesim.scenarios.spec import MachineSpec
from pagesim.sim.runner import Simulation
from pagesim.sim.workload import Event, Mix, Workload


def _machine(kern: str = "v5.11") -> Machine:
    """32 pages, pageblocks of 4, memory blocks of 8, no watermarks."""
    return MachineSpec(zone_pages=32, pageblock_order=2, nr_orders=3,
                       section_order=3).build(kern, 2)


def test_offline_counts_each_page_it_migrates() -> None:
    """Held pages in the block being offlined are each moved once; the counter says
    how many pages, and their holders follow them out of the block."""
    m = _machine()
    pfns = [call(1, alloc_pages, m, order, MIGRATE_MOVABLE, 2, 0) for order in (0, 1, 0)]
    helds = [hold(m, "t", p) for p in pfns if p >= 0]
    assert len(helds) == 3
    block_start = helds[0].pfn & ~7
    inside = [h for h in helds if block_start <= h.pfn < block_start + 8]
    pages = sum(1 << h.order for h in inside)
    assert pages > 0
    before = vm_events(m).pgmigrate_success
    assert call(0, offline_pages, m, block_start, 8) == 0
    assert vm_events(m).pgmigrate_success - before == pages
    assert vm_events(m).pgmigrate_fail == 0
    assert all(not block_start <= h.pfn < block_start + 8 for h in inside)


def test_offline_retry_counter_agrees_with_the_hotplug_log() -> None:
    """An unmovable page the offline cannot migrate: every failed round is counted,
    as many as the log's retries, until the bound."""
    m = _machine("v5.10")
    pfn = call(1, alloc_pages, m, 0, MIGRATE_MOVABLE, 2, 0)
    h = hold(m, "t", pfn)
    m.refcount[pfn] += 1  # a second reference: unmap_and_move gives -EAGAIN
    start = h.pfn & ~7
    assert call(0, offline_pages, m, start, 8, 4) < 0
    log = hotplug_state(m).log[-1]
    assert log.retries == 4
    assert vm_events(m).offline_retries == log.retries
    assert vm_events(m).pgmigrate_fail >= log.retries


def test_counters_are_not_part_of_the_fingerprinted_state() -> None:
    """Two states that differ only in the counters are one state to the stateful
    checker (or it would tell apart states that differ only in their history)."""
    program = scenario_program("offline-termination", "v5.11", 2)
    ex = Execution(program)
    for _ in range(6):
        ex.step(ex.enabled()[0])
    fpr = Fingerprinter()
    a = fpr.fingerprint(ex)
    ev = vm_events(ex.state.m)
    ev.pgmigrate_success += 5
    ev.offline_retries += 1
    assert a is not None and fpr.fingerprint(ex) == a


def test_simulation_reports_the_models_counters() -> None:
    """The summary's migrations and retries are the model's counters over the run,
    whatever the machine counted before it."""
    m = preset_machine("4g-4cpu", "v5.10")
    vm_events(m).pgmigrate_success = 1000  # counted before the run: not the run's
    w = Workload(name="c", duration=4000, sample_every=500, load=8,
                 mixes=[Mix(cpus=(1, 2, 3), alloc=0.7, max_held=300, prefill=200)],
                 events=[Event(at=500, cpu=0, op="offline", block="busiest",
                               max_retries=20)])
    sim = Simulation(m, w, 2)
    r = sim.run()
    assert r.violation is None
    (ev,) = r.events
    assert ev.ret == 0 or ev.gave_up
    assert r.counters.migrations == vm_events(m).pgmigrate_success - 1000 > 0
    assert r.counters.offline_retries == ev.retries
    assert r.samples["migrations"][-1] == r.counters.migrations
    assert r.samples["offline_retries"][-1] == r.counters.offline_retries
    assert r.samples["migrations"] == sorted(r.samples["migrations"])
