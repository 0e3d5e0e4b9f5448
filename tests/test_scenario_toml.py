# SPDX-License-Identifier: GPL-2.0-only
"""Scenario files: the shipped example is the built-in offline-termination (same
machine, same executions, same verdicts), every feature of the format does what the
README says, every mistake is one line naming the file and the key, and the command
line takes a file wherever it takes a scenario name."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pagesim.cli.main import cli
from pagesim.explore import check
from pagesim.model.mmzone import MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, PG_pcp
from pagesim.model.page_alloc import alloc_pages
from pagesim.model.snapshot import machine_snapshot
from pagesim.runtime.sequential import call, step_through
from pagesim.scenarios import resolve
from pagesim.scenarios.allocator import tiny_machine
from pagesim.scenarios.offline import offline_machine, offline_program
from pagesim.scenarios.spec import (
    EXAMPLES,
    ScenarioFileError,
    build_state,
    load_scenario,
    run_cpu,
    scenario_from_dict,
)

EXAMPLE = EXAMPLES / "offline.toml"

TINY = """
[machine]
zone_pages = 8
pageblock_order = 2
nr_orders = 3
section_order = 2
pcp_high = 3
pcp_batch = 2
"""

#: CPU1 holds a page of the block CPU0 offlines and frees it: the §6.1 race in its
#: smallest form (a free that commits to a pcplist after isolation's drain)
HELD_FREE = """
name = "held-free"
description = "CPU1 frees a page of the block CPU0 offlines"
cpus = 2
""" + TINY + """
[[cpu]]
id = 0
program = [{ offline = { block = 1 } }]

[[cpu]]
id = 1
held = { pageblock = 1, count = 1 }
program = ["free"]

[properties]
offline_terminates = true
"""


def spec_of(text: str, tmp_path: Path, name: str = "s.toml") -> Any:
    f = tmp_path / name
    f.write_text(text)
    return load_scenario(f)


def run_alone(text: str, tmp_path: Path, kernel: str = "v5.10") -> Any:
    """Run CPU0's program of a one-CPU scenario to the end, sequentially."""
    spec = spec_of(text, tmp_path)
    s = build_state(spec, kernel, spec.cpus)
    step_through(0, run_cpu, s, 0, spec.programs(spec.cpus)[0])
    return s


# =======================================================================================
# The shipped example


def test_the_example_ships_with_the_package_and_loads() -> None:
    spec = load_scenario(EXAMPLE)
    sc = spec.scenario()
    assert sc.source == str(EXAMPLE.resolve())
    assert (sc.default_kernel, sc.default_cpus, sc.min_cpus) == ("v5.10", 2, 1)
    assert resolve(str(EXAMPLE)).name == sc.name == "offline-termination-file"
    # "others" makes every CPU that --cpus adds a worker
    assert sorted(spec.programs(3)) == [0, 1, 2]
    assert spec.programs(3)[2] is spec.programs(3)[1]
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "scenarios/examples/*.toml" in pyproject["tool"]["setuptools"]["package-data"][
        "pagesim"]


@pytest.mark.parametrize("kern", ["v5.8", "v5.10"])
def test_the_example_boots_the_builtin_machine(kern: str) -> None:
    """free_first = [1] lays the zone out as offline_machine does: the same free lists
    in the same order, the same pcp state."""
    s = build_state(load_scenario(EXAMPLE), kern, 2)
    assert machine_snapshot(s.m) == machine_snapshot(offline_machine(kern, 2).m)


@pytest.mark.parametrize(("kern", "verdict"), [("v5.8", "violation"), ("v5.10", "verified")])
def test_the_example_explores_exactly_what_the_builtin_explores(kern: str,
                                                                verdict: str) -> None:
    """The file is offline-termination with one move: the same interleavings, so the
    same executions and verdict (v5.8 hangs on a parked page; 5.10's drain on every
    retry fixes it, spec §6.1)."""
    mine = check(load_scenario(EXAMPLE).program(kern, 2), minimize=False)
    builtin = check(offline_program(kern, 2, ops=1, check_safety=False), minimize=False)
    assert mine.verdict == builtin.verdict == verdict, mine.message
    assert mine.executions == builtin.executions
    assert mine.message == builtin.message
    if verdict == "violation":
        assert "parked on pcp[cpu1][Normal]'s pcplist" in (mine.message or "")
    else:
        assert mine.complete


# =======================================================================================
# One scenario per feature


@pytest.mark.parametrize(("kern", "verdict"), [("v5.8", "violation"), ("v5.10", "verified")])
def test_held_page_freed_during_offline(tmp_path: Path, kern: str, verdict: str) -> None:
    r = check(spec_of(HELD_FREE, tmp_path).program(kern), minimize=False)
    assert r.verdict == verdict, r.message
    if verdict == "violation":
        assert "pfn 4 parked on pcp[cpu1][Normal]'s pcplist" in (r.message or "")


def test_held_pages_by_pfn_and_pageblock_are_held_and_migratable(tmp_path: Path) -> None:
    text = HELD_FREE.replace("held = { pageblock = 1, count = 1 }", "held = [6, 2]")
    s = build_state(spec_of(text, tmp_path), "v5.10", 2)
    assert [h.pfn for h in s.held[1]] == [6, 2]
    assert all(s.m.refcount[p] == 1 and s.m.owners[p].name == "cpu1" for p in (6, 2))
    assert s.zone.nr_free_pages == 6


def test_an_unmovable_held_page_makes_offline_fail(tmp_path: Path) -> None:
    text = HELD_FREE.replace("count = 1 }", 'count = 1, migratetype = "unmovable" }')
    r = check(spec_of(text, tmp_path).program("v5.11"), minimize=False)
    # in some order CPU0 isolates while the page is still in use: -EBUSY
    assert r.verdict == "violation"
    assert "offline_pages returned -16 (failure to isolate range)" in (r.message or "")


def test_held_count_allocates_through_the_pcplist(tmp_path: Path) -> None:
    """``held = 2`` is the allocator scenarios' setup (pcp-drain-vs-free): two
    allocations, whose refill leaves the rest of the batch on the pcplist."""
    text = """
name = "drain-vs-free"
cpus = 2
[machine]
zone_pages = 32
pageblock_order = 2
nr_orders = 4
section_order = 4
pcp_high = 3
pcp_batch = 2
[[cpu]]
id = 0
program = ["drain"]
[[cpu]]
id = 1
held = 2
program = ["free_all"]
[properties]
invariants_when_quiet = true
"""
    spec = spec_of(text, tmp_path)
    for kern in ("v5.10", "v6.19"):
        s = build_state(spec, kern, 2)
        ref = tiny_machine(kern, 2)
        pfns = [call(1, alloc_pages, ref.m, 0, MIGRATE_MOVABLE, 2, 0) for _ in range(2)]
        assert [h.pfn for h in s.held[1]] == pfns
        # the same machine, but for the pages' holder and the hotplug state
        mine = {k: v for k, v in machine_snapshot(s.m).items()
                if not k.startswith(("held ", "lock mem_hotplug_lock"))}
        assert mine == machine_snapshot(ref.m)
        prog = spec.program(kern)
        assert prog.observes is not None and prog.checks
        r = check(prog)
        assert r.verdict == "verified", r.message
        assert r.executions > 1


def test_parked_pages_are_on_the_pcplist_and_the_drain_takes_them(tmp_path: Path) -> None:
    text = HELD_FREE.replace('held = { pageblock = 1, count = 1 }\nprogram = ["free"]',
                             "parked = [4, 5]\nprogram = []")
    spec = spec_of(text, tmp_path)
    s = build_state(spec, "v5.8", 2)
    pcp = s.zone.per_cpu_pageset[1]
    assert pcp.count == 2 and all(s.m.flags[p] & PG_pcp for p in (4, 5))
    # CPU1 is idle: isolation's drain (even v5.8's single one) empties its pcplist
    r = check(spec.program("v5.8"))
    assert r.verdict == "verified", r.message


def test_parked_pages_a_pcplist_would_not_keep_are_an_error(tmp_path: Path) -> None:
    text = HELD_FREE.replace('held = { pageblock = 1, count = 1 }\nprogram = ["free"]',
                             "parked = 3\nprogram = []")
    spec = spec_of(text, tmp_path)
    with pytest.raises(ScenarioFileError, match=r"s\.toml: cpu\[1\]\.parked: CPU 1's "
                       r"pcplist keeps \d of 3 pages on v5\.10 \(high 3, batch 2\)"):
        spec.program("v5.10")


def test_reserved_pages_are_not_managed_and_block_offline(tmp_path: Path) -> None:
    text = HELD_FREE.replace('held = { pageblock = 1, count = 1 }\nprogram = ["free"]',
                             "program = []").replace("\n[[cpu]]\nid = 0",
                                                     "\n[initial]\nreserved = [5]\n"
                                                     "\n[[cpu]]\nid = 0")
    spec = spec_of(text, tmp_path)
    s = build_state(spec, "v5.10", 2)
    assert s.zone.managed_pages == 7 and s.zone.nr_free_pages == 7
    r = check(spec.program("v5.10"))
    assert r.verdict == "violation"
    assert "returned -16 (failure to isolate range)" in (r.message or "")


def test_pageblock_types_steer_allocations(tmp_path: Path) -> None:
    text = """
name = "types"
cpus = 1
""" + TINY + """
[initial]
pageblock_types = { 1 = "unmovable" }
[[cpu]]
id = 0
program = [{ alloc = { migratetype = "unmovable", name = "u" } }, "alloc"]
"""
    s = run_alone(text, tmp_path)
    assert s.m.pb_type[s.m.pageblock_flags[1]] == MIGRATE_UNMOVABLE
    unmovable, movable = (h.pfn for h in s.held[0])
    assert 4 <= unmovable < 8 and movable < 4
    assert s.names[0]["u"].pfn == unmovable


def test_named_free_frees_that_page(tmp_path: Path) -> None:
    text = """
name = "names"
cpus = 1
""" + TINY + """
[[cpu]]
id = 0
program = [{ alloc = { name = "a" } }, { alloc = { order = 1, name = "b" } }, { free = "a" }]
"""
    s = run_alone(text, tmp_path)
    assert [(h.order, h.name) for h in s.held[0]] == [(1, "cpu0")]
    assert list(s.names[0]) == ["b"]


@pytest.mark.parametrize(("max_held", "executions"), [(None, 2), (1, 1)])
def test_choose_offers_only_the_steps_that_can_run(tmp_path: Path, max_held: int | None,
                                                  executions: int) -> None:
    """First move: nothing held, so only alloc; second: alloc or free, unless the CPU
    already holds max_held pages."""
    text = f"""
name = "choice"
cpus = 1
{TINY}
[[cpu]]
id = 0
{"" if max_held is None else f"max_held = {max_held}"}
program = [{{ choose = ["alloc", "free"], repeat = 2 }}]
"""
    r = check(spec_of(text, tmp_path).program("v6.19"))
    assert r.verdict == "verified" and r.executions == executions


def test_repeat_of_a_sequence(tmp_path: Path) -> None:
    text = """
name = "seq"
cpus = 1
""" + TINY + """
[[cpu]]
id = 0
program = [{ steps = ["alloc", "alloc", "free"], repeat = 3 }]
"""
    s = run_alone(text, tmp_path)
    assert len(s.held[0]) == 3


def test_batch_free_is_the_builtin_batched_worker(tmp_path: Path) -> None:
    """offline-vs-batched-free as a file: the same interleavings up to the v5.8 race
    (its verification on 5.11 takes minutes, so only the race is compared)."""
    kern, verdict = "v5.8", "violation"
    text = """
name = "batched"
cpus = 2
""" + TINY + """
[initial]
free_first = [1]
[[cpu]]
id = 0
program = [{ offline = { block = 1 } }]
[[cpu]]
id = 1
program = ["alloc", "alloc", "batch_free"]
[properties]
isolation_safety = true
offline_terminates = true
"""
    mine = check(spec_of(text, tmp_path).program(kern), minimize=False)
    builtin = check(offline_program(kern, 2, batched=True), minimize=False)
    assert mine.verdict == builtin.verdict == verdict, mine.message
    assert mine.executions == builtin.executions
    assert mine.message == builtin.message


def test_offline_then_online(tmp_path: Path) -> None:
    text = """
name = "on-off"
cpus = 1
""" + TINY + """
[[cpu]]
id = 0
program = [{ offline = { block = 1 } }, { online = { block = 1 } }, "alloc"]
[properties]
offline_terminates = true
"""
    s = run_alone(text, tmp_path)
    assert [(e.op, e.ret) for e in s.m.hotplug.log] == [("offline", 0), ("online", 0)]
    assert s.zone.managed_pages == 8
    r = check(spec_of(text, tmp_path).program("v6.19"))
    assert r.verdict == "verified", r.message


def test_alloc_contig_and_free_contig(tmp_path: Path) -> None:
    text = """
name = "contig"
cpus = 1
""" + TINY + """
[[cpu]]
id = 0
program = [{ alloc_contig = { start = 4, pages = 4 } }]
"""
    s = run_alone(text, tmp_path)
    assert s.contig[0] == [(4, 4)]
    assert all(s.m.refcount[p] == 1 for p in range(4, 8)) and s.zone.nr_free_pages == 4
    s = run_alone(text.replace("}]\n", '}, "free_contig"]\n'), tmp_path)
    # freed one page at a time: some wait on the pcplist
    assert s.contig[0] == []
    assert s.zone.nr_free_pages + s.zone.per_cpu_pageset[0].count == 8
    # nothing_lost frees what a program still holds at the end, as an exiting task would
    r = check(spec_of(text, tmp_path).program("v6.19"))
    assert r.verdict == "verified", r.message


# =======================================================================================
# Mistakes: one line naming the file, the key and the problem


def base() -> dict[str, Any]:
    return tomllib.loads(HELD_FREE)


def _set(path: str, value: Any) -> Any:
    def edit(d: dict[str, Any]) -> None:
        *head, last = path.split("/")
        node: Any = d
        for k in head:
            node = node[int(k)] if k.isdigit() else node[k]
        if value is _DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return edit


_DELETE = object()

ERRORS = [
    (_set("colour", "red"), "colour: unknown key (expected one of name, description"),
    (_set("cpus", "two"), "cpus: expected an integer, got 'two'"),
    (_set("cpus", 0), "cpus: must be at least 1, got 0"),
    (_set("name", _DELETE), "name: missing"),
    (_set("kernel", "v4.19"), "kernel: "),
    (_set("machine/zone_pages", 10), "machine.zone_pages: 10 is not a whole number of "
     "sections of 4 pages"),
    (_set("machine/pageblock_order", 3), "machine.pageblock_order: pageblock_order 3: "
     "must be 0..2"),
    (_set("machine/section_order", 1), "machine.section_order: section_order 1: a section "
     "must hold a max-order block"),
    (_set("machine/pcp_batch", _DELETE), "machine.pcp_batch: missing (give pcp_high and "
     "pcp_batch together"),
    (_set("machine/pcp_hi", 3), "machine.pcp_hi: unknown key"),
    (_set("cpu/0/program/0/offline/block", 2), "cpu[0].program[0].offline.block: memory "
     "block 2 is outside the zone (memory blocks 0-1)"),
    (_set("cpu/0/program/0/offline/retries", 0), "cpu[0].program[0].offline.retries: must "
     "be at least 1, got 0"),
    (_set("cpu/0/program/0/offline/bloc", 1), "cpu[0].program[0].offline.bloc: unknown key"),
    (_set("cpu/1/id", 2), "cpu[1].id: CPU 2 does not exist (cpus = 2)"),
    (_set("cpu/1/id", 0), "cpu[1].id: CPU 0 already runs cpu[0]"),
    (_set("cpu/1/id", "everyone"), 'cpu[1].id: expected a CPU number or "others", got '
     "'everyone'"),
    (_set("cpu/1/held", {"pageblock": 1, "count": 5}), "cpu[1].held.count: 5 pages do not "
     "fit in a pageblock of 4"),
    (_set("cpu/1/held", 9), "cpu[1].held: 9 pages to allocate before the run, but only 8 "
     "of the zone's 8 are left"),
    (_set("cpu/1/held", [4, 8]), "cpu[1].held[1]: pfn 8 is outside the zone (pfns 0-7)"),
    (_set("cpu/1/held", [4, 4]), "cpu[1].held[1]: pfn 4 is listed twice"),
    (_set("cpu/1/parked", [4]), "cpu[1].parked: pfn 4 is already held by CPU 1"),
    (_set("cpu/1/held", {"pageblock": 1, "count": 1, "migratetype": "pinned"}),
     "cpu[1].held.migratetype: unknown migratetype 'pinned' (one of unmovable, movable"),
    (_set("cpu/1/program/0", "jump"), "cpu[1].program[0]: unknown step 'jump'"),
    (_set("cpu/1/program/0", {"free": 3}), "cpu[1].program[0].free: expected a string, "
     "got 3"),
    (_set("cpu/1/program/0", {"free": "x"}), "cpu[1].program[0].free: no alloc of this CPU "
     "names a page 'x'"),
    (_set("cpu/1/program/0", {"alloc": {"order": 3}}), "cpu[1].program[0].alloc.order: "
     "must be at most 2, got 3"),
    (_set("cpu/1/program/0", {"alloc": {}, "drain": True}), "cpu[1].program[0]: a step is "
     "one of"),
    (_set("cpu/1/program/0", {"choose": ["alloc"]}), "cpu[1].program[0].choose: a choice "
     "needs two options or more"),
    (_set("cpu/1/program/0", {"choose": ["alloc", {"repeat": 0, "free": "oldest"}]}),
     "cpu[1].program[0].choose[1].repeat: must be at least 1, got 0"),
    (_set("cpu/1/program/0", {"alloc_contig": {"start": 6, "pages": 4}}),
     "cpu[1].program[0].alloc_contig.pages: [6, 10) runs past the zone's 8 pages"),
    (_set("cpu/1/program", [{"alloc": {"order": 1}}, "batch_free"]), "cpu[1].program[1]: "
     "batch_free frees order-0 pages (free_unref_page_list), but this CPU allocates order 1"),
    (_set("cpu/1/program", [{"online": {"block": 1, "online_type": "online_movable"}}]),
     "cpu[1].program[0].online.online_type: the machine has no Movable zone"),
    (_set("initial", {"pageblock_types": {"2": "unmovable"}}),
     "initial.pageblock_types.2: pageblock 2 is outside the zone (pageblocks 0-1)"),
    (_set("initial", {"free_first": [1, 1]}), "initial.free_first[1]: pageblock 1 is "
     "listed twice"),
    (_set("initial", {"reserved": [4, 5, 6, 7]}), "cpu[1].held.count: 1 pages for CPU 1, "
     "but pageblock 1 has only 0 left"),
    (_set("properties/offline_terminates", "yes"), "properties.offline_terminates: expected "
     "true or false, got 'yes'"),
    (_set("properties/isolation_safety", True), ""),  # fine: the offline isolates
    (_set("cpu/0/program", ["drain"]), "properties.offline_terminates: no CPU runs an "
     "offline step"),
]


@pytest.mark.parametrize(("edit", "message"), ERRORS, ids=[m[:40] for _, m in ERRORS])
def test_mistakes_are_one_line_naming_the_key(tmp_path: Path, edit: Any, message: str) -> None:
    data = copy.deepcopy(base())
    edit(data)
    if not message:
        scenario_from_dict(data, "my.toml")
        return
    with pytest.raises(ScenarioFileError) as e:
        scenario_from_dict(data, "my.toml")
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith(f"my.toml: {message}"), text


def test_a_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text('name = "x"\ncpus = 2\n[machine\n')
    with pytest.raises(ScenarioFileError, match=rf"^{f}:3: .*\(column \d+\)$"):
        load_scenario(f)


# =======================================================================================
# The command line


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_check_replay_reproducer_and_compare_take_a_file(tmp_path: Path) -> None:
    f = tmp_path / "held-free.toml"
    f.write_text(HELD_FREE)
    code, out, _ = run("check", str(f), "--kernel", "v5.10")
    assert code == 0, out
    assert "scenario:   held-free (v5.10, 2 CPUs)" in out and "verdict:    verified" in out
    ce, repro = tmp_path / "ce.json", tmp_path / "repro.py"
    code, out, _ = run("check", str(f), "--kernel", "v5.8", "--save", str(ce),
                       "--reproducer", str(repro))
    assert code == 1 and "verdict:    violation" in out
    saved = json.loads(ce.read_text())
    assert saved["scenario"] == "held-free" and saved["scenario_file"] == str(f.resolve())
    # replayed and reproduced from elsewhere: the file is found by its absolute path
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        code, out, _ = run("replay", str(ce))
    finally:
        os.chdir(cwd)
    assert code == 1 and "never finishes" in out
    proc = subprocess.run([sys.executable, str(repro)], capture_output=True, text=True,
                          cwd=elsewhere, check=False)
    assert proc.returncode == 1, proc.stderr
    code, out, _ = run("compare", str(f), "--kernels", "v5.8,v5.10", "--json")
    assert code == 0
    assert [(r["kernel"], r["verdict"]) for r in json.loads(out)] == [
        ("v5.8", "violation"), ("v5.10", "verified")]


def test_cli_uses_the_file_kernel_by_default(tmp_path: Path) -> None:
    f = tmp_path / "k.toml"
    f.write_text('kernel = "v5.10"\n' + HELD_FREE)
    code, out, _ = run("check", str(f))
    assert code == 0 and "(v5.10, 2 CPUs)" in out


def test_cli_bad_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(HELD_FREE.replace("block = 1", "block = 7"))
    for cmd in (["check", str(f)], ["compare", str(f)]):
        code, out, err = run(*cmd)
        assert code == 2 and out == ""
        assert err == (f"pagesim: error: {f}: cpu[0].program[0].offline.block: memory "
                       "block 7 is outside the zone (memory blocks 0-1)\n")
    code, _, err = run("check", str(tmp_path / "missing.toml"))
    assert code == 2 and err.startswith("pagesim: error: ") and "no such file" in err
    code, _, err = run("check", str(EXAMPLE), "--cpus", "9")
    assert code == 2 and "runs on 1 to 8 CPUs, not 9" in err


def test_cli_cut_or_binary_file_names_file_and_line(tmp_path: Path) -> None:
    """A file cut short is a syntax error at its end: its last line, not "end of
    document"; bytes that are not text name the file (not just "not text")."""
    text = EXAMPLE.read_text()
    f = tmp_path / "cut.toml"
    f.write_text(text[:text.index("program = [{ offline") + len("program = [{ off")])
    code, out, err = run("check", str(f))
    last = f.read_text().count("\n") + 1
    assert code == 2 and out == ""
    assert err.startswith(f"pagesim: error: {f}:{last}: ") and "end of the file" in err
    assert err.count("\n") == 1
    f.write_bytes(b"name = \"x\"\n\xff\xfe\n")
    code, _, err = run("check", str(f))
    assert code == 2 and err == (f"pagesim: error: {f}: not a TOML file (byte 11 is not "
                                 "UTF-8 text)\n")
