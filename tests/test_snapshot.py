# SPDX-License-Identifier: GPL-2.0-only
"""State snapshots and the per-step changes that replays record and `pagesim replay`
prints: the changes of a step are exactly the facts that differ between the snapshots
before and after it, on a toy's counterexample and on an allocator one."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from pagesim.cli.main import cli
from pagesim.explore import check
from pagesim.explore.toys import lost_update
from pagesim.model.mmzone import MIGRATE_MOVABLE
from pagesim.model.page_alloc import __free_pages, alloc_pages
from pagesim.model.snapshot import machine_snapshot
from pagesim.runtime.executor import (
    Execution,
    Program,
    Schedule,
    StepRecord,
    replay,
    snapshot_diff,
)
from pagesim.runtime.sequential import call
from pagesim.scenarios.allocator import AllocState, pcp_alloc_free, quiet, tiny_machine


def _differences(before: dict[str, object], after: dict[str, object]) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def _check_changes(program: Program, schedule: Schedule,
                   snap: Any) -> list[tuple[StepRecord, dict[str, object],
                                            dict[str, object]]]:
    """Replay, taking our own snapshot after every step; each record's changes must be
    exactly the facts that differ, with their two values. Returns (record, before,
    after) per step."""
    before = dict(snap(program.setup()[0]))
    out: list[tuple[StepRecord, dict[str, object], dict[str, object]]] = []
    states: list[dict[str, object]] = []
    result = replay(program, schedule,
                    on_step=lambda r, state: states.append(dict(snap(state))))
    assert result.initial == before
    for record, after in zip(result.records, states, strict=True):
        names = [name for name, _, _ in record.changes]
        assert len(names) == len(set(names))
        assert set(names) == _differences(before, after), record
        for name, old, new in record.changes:
            assert (old, new) == (before.get(name), after.get(name))
        out.append((record, before, after))
        before = after
    return out


# =======================================================================================
# Snapshots of the machine


def test_a_snapshot_names_every_list_and_counter() -> None:
    s = tiny_machine("v5.11", 2)
    facts = machine_snapshot(s.m)
    assert facts["Normal nr_free"] == 32
    assert facts["Normal free_area[3] MOVABLE"] == (0, 8, 16, 24)
    assert facts["Normal free_area[0] MOVABLE"] == ()
    assert facts["Normal cpu1 pcp count"] == 0
    assert (facts["Normal cpu1 pcp high"], facts["Normal cpu1 pcp batch"]) == (3, 2)
    assert facts["pageblock 4 (pfn 16-19)"] == "MOVABLE"
    assert facts["Normal lock"] is None and facts["lock pcpu_drain_mutex"] is None
    assert "Normal cpu1 pcp lock" not in facts  # 5.x pcplists have no lock
    assert "Normal cpu0 pcp lock" in machine_snapshot(tiny_machine("v6.19", 2).m)
    json.dumps(facts)  # plain values only


def test_a_pcplist_refill_and_free_show_as_their_cpus_list_and_count() -> None:
    s = tiny_machine("v6.19", 2)
    before = machine_snapshot(s.m)
    pfn = call(1, alloc_pages, s.m, 0, MIGRATE_MOVABLE, 2, 0)
    after = machine_snapshot(s.m)
    changed = {name for name, _, _ in snapshot_diff(before, after)}
    # the refill takes a batch from the buddy, hands one page out, keeps the rest
    assert {"Normal cpu1 pcp count", "Normal cpu1 pcp list[MOVABLE]", "Normal nr_free"} \
        <= changed
    assert not any(name.startswith("Normal cpu0") for name in changed)
    kept = after["Normal cpu1 pcp list[MOVABLE]"]
    assert isinstance(kept, tuple) and pfn not in kept
    assert after["Normal cpu1 pcp count"] == len(kept)
    call(1, __free_pages, s.m, pfn, 0)
    freed = machine_snapshot(s.m)
    assert freed["Normal cpu1 pcp list[MOVABLE]"] == (pfn, *kept)
    assert freed["Normal cpu1 pcp count"] == len(kept) + 1


def test_isolation_shows_in_the_pageblock_fact() -> None:
    from pagesim.model.mmzone import MIGRATE_ISOLATE
    from pagesim.model.page_alloc import set_pageblock_migratetype

    for kern, shown in (("v6.6", "ISOLATE"), ("v6.19", "ISOLATE over MOVABLE")):
        s = tiny_machine(kern, 2)
        call(0, set_pageblock_migratetype, s.m, 16, MIGRATE_ISOLATE)
        assert machine_snapshot(s.m)["pageblock 4 (pfn 16-19)"] == shown


# =======================================================================================
# Changes recorded per step, on real counterexamples


def test_a_toy_counterexample_records_exactly_what_each_step_changed() -> None:
    program = dataclasses.replace(lost_update(), snapshot=lambda c: {"count": c.count})
    r = check(program)
    assert r.verdict == "violation" and r.schedule is not None
    steps = _check_changes(program, r.schedule, program.snapshot)
    writes = [rec for rec, _, _ in steps if rec.changes]
    assert [rec.changes for rec in writes] == [(("count", 0, 1),)]  # one update lost
    assert all(rec.op.startswith("WRITE_ONCE") for rec in writes)
    assert r.trace[-1].changes == steps[-1][0].changes  # check() traces carry them too


def _pcplists_stay_short(s: AllocState) -> str | None:
    """Deliberately false: an allocation leaves the rest of its refill batch on the
    pcplist, and the free that follows puts the page back beside it."""
    if quiet(s) and any(p.count >= 2 for p in s.zone.per_cpu_pageset):
        return "a pcplist holds two pages"
    return None


def test_an_allocator_counterexample_records_its_pcplist_changes() -> None:
    base = pcp_alloc_free("v6.19", 2)
    program = dataclasses.replace(base, checks=[*base.checks, _pcplists_stay_short])
    r = check(program, "random", seed=3, max_executions=50)
    assert (r.verdict, r.property) == ("violation", "invariant")
    assert r.schedule is not None and base.snapshot is not None
    steps = _check_changes(program, r.schedule, base.snapshot)
    # A free's commit adds the page at the head of this CPU's list in the step that
    # enters the pcp section (plain code after the op), then raises the count in a
    # WRITE_ONCE of its own.
    adds = 0
    for i, (rec, before, after) in enumerate(steps):
        for name, old, new in rec.changes:
            m = re.fullmatch(r"Normal cpu(\d) pcp list\[MOVABLE\]", name)
            if not (m and isinstance(old, tuple) and isinstance(new, tuple)
                    and new[1:] == old and len(new) == len(old) + 1):
                continue
            adds += 1
            pfn = new[0]
            assert pfn in before["Normal in transit"]  # type: ignore[operator]
            assert pfn not in after["Normal in transit"]  # type: ignore[operator]
            nxt = next(s for s in steps[i + 1:] if s[0].tid == rec.tid)[0]
            assert nxt.op.startswith(f"WRITE_ONCE(pcp[cpu{m.group(1)}][Normal].count")
            count = f"Normal cpu{m.group(1)} pcp count"
            change = next(c for c in nxt.changes if c[0] == count)
            assert change[2] == change[1] + 1  # type: ignore[operator]
            assert not any(c[0].startswith("Normal cpu") and f"cpu{m.group(1)}" not in c[0]
                           for c in (*rec.changes, *nxt.changes))
    assert adds >= 1


def test_pagesim_replay_prints_each_steps_changes(tmp_path: Path) -> None:
    # a whole execution of the scenario (CPU1 first), replayed through the command line
    ex = Execution(pcp_alloc_free("v6.19", 2))
    while not ex.over:
        tid = ex.enabled()[-1]
        ex.step(tid, 0 if ex.pending_choices(tid) is not None else None)
    schedule = [[t, c] for t, c in ex.schedule().steps]
    f = tmp_path / "run.json"
    f.write_text(json.dumps({"format": "pagesim-counterexample", "version": 1,
                             "scenario": "pcp-alloc-free", "kernel": "v6.19", "cpus": 2,
                             "schedule": schedule}))
    runner = CliRunner()
    text = runner.invoke(cli, ["replay", str(f)])
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert "       Normal cpu1 pcp count: 0 -> 2" in lines
    assert any(re.fullmatch(r"       Normal cpu1 pcp list\[MOVABLE\]: \[\] -> \[\d+, \d+\]",
                            line) for line in lines)
    data = runner.invoke(cli, ["replay", "--json", str(f)])
    assert data.exit_code == 0
    out = json.loads(data.output)
    assert out["initial"]["Normal nr_free"] == 32 and out["violation"] is None
    assert len(out["steps"]) == len(schedule)
    changes = {c[0]: c[1:] for step in out["steps"] for c in step["changes"]}
    assert "Normal cpu1 pcp list[MOVABLE]" in changes
    assert sum(len(step["changes"]) for step in out["steps"]) == sum(
        1 for line in lines if line.startswith("       ") and " -> " in line
        and not line.lstrip().startswith("state:"))
