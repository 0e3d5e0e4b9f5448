# SPDX-License-Identifier: GPL-2.0-only
"""The simulator: determinism per seed, workload validation, accounting against the
machine, offline under load, and ``pagesim simulate`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pagesim.cli.main import main
from pagesim.model.invariants import check_invariants
from pagesim.model.memory_hotplug import block_state, memory_block
from pagesim.model.presets import preset_machine
from pagesim.sim.results import (
    RESULTS_NAME,
    SERIES,
    ResultsError,
    load_results,
    to_json,
    write_results,
)
from pagesim.sim.runner import Simulation, pcp_pages_on
from pagesim.sim.workload import (
    Burst,
    Event,
    Mix,
    Workload,
    WorkloadError,
    load_workload,
    workload_from_dict,
)


def small_workload(**over: object) -> Workload:
    """CPUs 1-3 allocate and free (some frees batched, some preempted) while CPU 0
    offlines the busiest block of ZONE_NORMAL."""
    args: dict[str, object] = dict(
        name="small", duration=6000, sample_every=500, load=8,
        mixes=[Mix(cpus=(1, 2, 3), alloc=0.7, orders={0: 90, 2: 10}, batch_free=0.2,
                   max_held=300, prefill=200, preempt=0.02, preempt_delay=50)],
        events=[Event(at=1000, cpu=0, op="offline", block="busiest", max_retries=20)])
    args.update(over)
    return Workload(**args)  # type: ignore[arg-type]


def run(kernel: str = "v5.11", seed: int = 1, workload: Workload | None = None,
        preset: str = "4g-4cpu") -> tuple[Simulation, dict[str, object]]:
    m = preset_machine(preset, kernel)
    sim = Simulation(m, workload or small_workload(), seed, machine_info={"source": preset})
    result = sim.run()
    return sim, to_json(result)


# =======================================================================================
# Determinism


def test_same_seed_same_results_file(tmp_path: Path) -> None:
    texts = []
    for i in range(2):
        _, doc = run("v5.10", seed=7)
        path = tmp_path / f"r{i}.json"
        path.write_text(json.dumps(doc, sort_keys=True))
        texts.append(path.read_bytes())
    assert texts[0] == texts[1]
    assert json.loads(texts[0])["summary"]["stepped_ops"] > 0  # the preempted path ran


def test_different_seeds_differ() -> None:
    _, a = run("v5.10", seed=1)
    _, b = run("v5.10", seed=2)
    assert a["samples"] != b["samples"]


# =======================================================================================
# Workload files


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "w.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(("text", "key", "problem"), [
    ("[workload]\nduration = -5\n", "workload.duration", "at least 1"),
    ("[workload]\nspeed = 3\n", "workload.speed", "unknown key"),
    ("[[mix]]\ncpus = '1-3'\nalloc = 1.5\n", "mix[0].alloc", "between 0 and 1"),
    ("[[mix]]\ncpus = 'x'\n", "mix[0].cpus", "expected"),
    ("[[mix]]\nmigratetypes = { sticky = 1 }\n", "mix[0].migratetypes.sticky",
     "unknown migratetype"),
    ("[[mix]]\norders = { zero = 1 }\n", "mix[0].orders", "keys must be orders"),
    ("[[event]]\ncpu = 0\nop = 'offline'\nblock = 3\n", "event[0].at", "missing"),
    ("[[event]]\nat = 1\ncpu = 0\nop = 'explode'\n", "event[0].op", "unknown operation"),
    ("[[event]]\nat = 1\ncpu = 0\nop = 'offline'\nblock = 'first'\n", "event[0].block",
     "unknown block"),
    ("[[burst]]\nat = 1\ncpu = 0\ncount = 0\n", "burst[0].count", "at least 1"),
    ("[scenario]\n", "scenario", "unknown table"),
    ("[workload]\nload = nan\n[[mix]]\n", "workload.load", "expected a number >= 0, got nan"),
    ("[workload]\nload = 1e308\n[[mix]]\n", "workload.load", "must be at most 1e+09"),
    ("[[mix]]\nweight = nan\n", "mix[0].weight", "expected a number > 0, got nan"),
    ("[[mix]]\norders = { 0 = inf }\n", "mix[0].orders.0", "expected a weight >= 0"),
    ("[workload]\nname = 5\n[[mix]]\n", "workload.name", "expected a string, got 5"),
    ("[workload]\ncpus = 5000\n[[mix]]\n", "workload.cpus", "must be at most 1024"),
    ("[workload]\nname = 'x'\n", "workload", "nothing to run"),
    ("", "workload", "nothing to run"),
    ("[workload]\nduration = 100\n[[burst]]\nat = 100\ncpu = 0\ncount = 1\n",
     "burst[0].at", "step 100 is not before the end of the run"),
    ("[[event]]\nat = 99999999\ncpu = 0\nop = 'offline'\nblock = 1\n", "event[0].at",
     "past the last step a run may take (workload.max_steps 20000000)"),
])
def test_workload_errors_name_file_key_and_problem(tmp_path: Path, text: str, key: str,
                                                   problem: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(WorkloadError) as info:
        load_workload(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: {key}: ")
    assert problem in msg


def test_toml_syntax_error_is_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "[workload\nname = 1\n")
    with pytest.raises(WorkloadError) as info:
        load_workload(path)
    # the line, as for a scenario file
    assert str(info.value).startswith(f"{path}:1: ") and "\n" not in str(info.value)


def test_workload_checked_against_the_machine() -> None:
    m = preset_machine("4g-2cpu", "v6.19")
    w = small_workload()  # names CPUs 2 and 3
    with pytest.raises(WorkloadError, match=r"mix\[0\]\.cpus: CPU 2 does not exist"):
        Simulation(m, w, 1)
    w = Workload(mixes=[Mix(cpus="all", orders={11: 1})])
    with pytest.raises(WorkloadError, match=r"mix\[0\]\.orders: order 11 is above"):
        Simulation(m, w, 1)


def test_toml_and_python_workloads_are_the_same() -> None:
    w = small_workload()
    again = workload_from_dict({
        "workload": {k: v for k, v in w.to_dict().items()
                     if k not in ("mixes", "bursts", "events")},
        "mix": w.to_dict()["mixes"], "event": w.to_dict()["events"]})
    assert again.to_dict() == w.to_dict()


# =======================================================================================
# Accounting


def _allocated(m: object) -> int:
    """Managed pages that are neither free in the buddy nor on a pcplist."""
    zones = [z for z in m.zones if z.present_pages]  # type: ignore[attr-defined]
    return sum(z.managed_pages - z.nr_free_pages for z in zones) - pcp_pages_on(m)  # type: ignore[arg-type]


def test_counts_agree_with_the_machine() -> None:
    """Pages allocated minus pages freed is what the workload holds, and the machine's
    own counters say the same; every invariant holds at the end."""
    m = preset_machine("4g-4cpu", "v6.19")
    before = _allocated(m)
    w = small_workload(events=[], bursts=[Burst(at=100, cpu=2, count=50, order=1,
                                                hold=1000)],
                       mixes=[Mix(cpus=(1, 2), orders={0: 80, 1: 10, 3: 10},
                                  migratetypes={"movable": 3, "unmovable": 1},
                                  batch_free=0.3, prefill=300, preempt=0.02),
                              Mix(cpus=(3,), kind="churn", max_held=200, batch=16)])
    sim = Simulation(m, w, 3)
    r = sim.run()
    c = r.counters
    assert r.violation is None and r.finished
    assert c.allocs > 1000 and c.frees > 1000 and c.batched_frees > 0
    held = sim.in_use()
    assert c.alloc_pages - c.free_pages == held
    assert _allocated(m) - before == held
    check_invariants(m)
    assert c.invariant_checks >= 2
    assert r.samples["in_use"][-1] == held


def test_offline_under_load_succeeds_on_v5_11() -> None:
    sim, doc = run("v5.11", seed=5)
    (ev,) = doc["events"]  # type: ignore[misc]
    assert ev["ret"] == 0 and not ev["gave_up"]
    assert ev["duration_steps"] > 0
    m = sim.m
    assert block_state(m, memory_block(m, ev["block"])) == "offline"
    summary = doc["summary"]
    assert summary["isolated_allocs"] == 0  # type: ignore[index]
    assert summary["drains"] >= 1  # type: ignore[index]
    assert max(doc["samples"]["isolated_on_pcp"]) == 0  # type: ignore[index]
    check_invariants(m)


def test_v5_8_hands_out_pages_of_isolated_blocks_where_v5_11_does_not() -> None:
    """The 2020 story at small scale: with the same load and seed, 5.8's per-pageblock
    drains leave a window that 5.11's zone_pcp_disable closes."""
    w = small_workload(load=24)
    _, old = run("v5.8", seed=1, workload=w)
    _, new = run("v5.11", seed=1, workload=small_workload(load=24))
    assert old["summary"]["isolated_allocs"] > 0  # type: ignore[index]
    assert new["summary"]["isolated_allocs"] == 0  # type: ignore[index]
    assert old["summary"]["drains"] > new["summary"]["drains"]  # type: ignore[index]


def test_contig_and_online_events() -> None:
    w = small_workload(events=[
        Event(at=500, cpu=0, op="offline", block="busiest"),
        Event(at=3000, cpu=0, op="online", block="last-offlined"),
        Event(at=3500, cpu=1, op="alloc_contig", start_pfn=0x108000, nr_pages=512),
        Event(at=5000, cpu=1, op="free_contig")], duration=8000)
    sim, doc = run("v6.19", seed=2, workload=w)
    rets = [e["ret"] for e in doc["events"]]  # type: ignore[index]
    assert rets[0] == 0 and rets[1] == 0
    assert rets[2] in (0, -16)  # -EBUSY is an allowed outcome under load
    assert doc["violation"] is None
    check_invariants(sim.m)


# =======================================================================================
# Results file and command line


def test_results_file_round_trip_and_damage(tmp_path: Path) -> None:
    m = preset_machine("4g-2cpu", "v6.19")
    w = Workload(duration=2000, sample_every=200, mixes=[Mix(cpus="all", prefill=10)])
    r = Simulation(m, w, 1).run()
    path = tmp_path / RESULTS_NAME
    write_results(r, path)
    data = load_results(path)
    assert set(data["samples"]) == set(SERIES)
    assert len({len(v) for v in data["samples"].values()}) == 1
    assert [p.name for p in tmp_path.iterdir()] == [RESULTS_NAME]
    path.write_text(path.read_text()[:200])
    with pytest.raises(ResultsError, match="not JSON"):
        load_results(path)


SMALL_TOML = """\
[workload]
name = "cli"
duration = 3000
sample_every = 500
load = 8

[[mix]]
cpus = "1"
prefill = 100
max_held = 200

[[event]]
at = 500
cpu = 0
op = "offline"
block = "busiest"
"""


def test_cli_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wl = tmp_path / "w.toml"
    wl.write_text(SMALL_TOML)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--preset", "4g-2cpu", "--kernel", "v5.11", "--workload",
              str(wl), "--out", str(out), "--seed", "3"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "offlined" in text and "invariant checks passed" in text
    data = load_results(out / RESULTS_NAME)
    assert data["seed"] == 3 and data["kernel"] == "v5.11"
    assert data["events"][0]["ret"] == 0
    from pagesim.sim.plots import PLOTS
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [RESULTS_NAME, "report.html", *(f"{n}.{f}" for n in PLOTS for f in ("png", "svg"))])


def test_cli_several_kernels_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wl = tmp_path / "w.toml"
    wl.write_text(SMALL_TOML)
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--preset", "4g-2cpu", "--kernel", "v5.10,v6.19", "--workload",
              str(wl), "--json", "--out", str(tmp_path / "o")])
    assert info.value.code == 0
    docs = json.loads(capsys.readouterr().out)
    assert [d["kernel"] for d in docs] == ["v5.10", "v6.19"]
    assert (tmp_path / "o" / "v6.19" / RESULTS_NAME).is_file()


@pytest.mark.parametrize("args", [
    ["--kernel", "v4.19"],
    ["--seed", "many"],
    ["--trace"],
    ["--preset", "3x"],
    ["--bogus"],
])
def test_cli_bad_args_exit_2_with_one_line(args: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("pagesim: error: ") and err.count("\n") == 1


def test_cli_bad_workload_leaves_no_files(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    wl = tmp_path / "w.toml"
    wl.write_text(SMALL_TOML.replace('cpus = "1"', 'cpus = "1-5"'))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--preset", "4g-2cpu", "--kernel", "v6.19", "--workload",
              str(wl), "--out", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"pagesim: error: {wl}: mix[0].cpus: CPU 2 does not exist (the machine " \
                  "has 2)\n"
    assert not out.exists() or not any(out.iterdir())


# =======================================================================================
# Impossible workloads and parameters: one line, before anything runs


SMALL_MACHINE = "[machine]\nzone_pages = 65536\nsection_order = 15\n"


@pytest.mark.parametrize(("body", "key", "problem"), [
    ("[[mix]]\nprefill = 40000\n", "mix.prefill",
     "the prefills need at least 80000 pages; the machine manages 65536"),
    ("[[burst]]\nat = 10\ncpu = 0\ncount = 99999999\n", "burst[0].count",
     "99999999 blocks of order 0 are 99999999 pages; the machine manages 65536"),
    ("[[event]]\nat = 10\ncpu = 0\nop = 'offline'\nblock = 9\n", "event[0].block",
     "memory block 9 does not exist (the machine's memory blocks: 0-1)"),
    ("[[event]]\nat = 10\ncpu = 0\nop = 'alloc_contig'\nstart_pfn = 65000\nnr_pages = 1024\n",
     "event[0]", "alloc_contig of pfns [65000, 66024) runs past the machine's last pfn, 65535"),
])
def test_workload_beyond_the_machine_is_bad_input(tmp_path: Path, body: str, key: str,
                                                  problem: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Before: a prefill or burst bigger than the machine ran for ever one failing
    allocation at a time, a missing block 'failed -22' and a contiguous range past the
    machine was reported as the model failing (exit 1)."""
    wl = _write(tmp_path, "[workload]\nduration = 1000\ncpus = 2\n" + SMALL_MACHINE + body)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--kernel", "v6.19", "--workload", str(wl), "--out", str(out)])
    assert info.value.code == 2
    assert capsys.readouterr().err == f"pagesim: error: {wl}: {key}: {problem}\n"
    assert not out.exists()


def test_a_burst_without_load_runs_at_its_step(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Before: with no [[mix]] the clock jumped to the first sample, past the end of a
    short run, and the burst never ran."""
    wl = _write(tmp_path, "[workload]\nduration = 100\ncpus = 1\n" + SMALL_MACHINE +
                "[[burst]]\nat = 10\ncpu = 0\ncount = 5\nhold = 20\n")
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--kernel", "v6.19", "--workload", str(wl), "--json"])
    assert info.value.code == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["allocs"] == 5 and summary["frees"] == 5


@pytest.mark.parametrize(("args", "message"), [
    (["--seed", "-1"], "Invalid value for '--seed': -1 is not in the range x>=0"),
    (["--kernel", "v6.19,v6.19"], "--kernel: v6.19 is given twice"),
])
def test_cli_impossible_parameters(tmp_path: Path, args: list[str], message: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    wl = _write(tmp_path, SMALL_TOML)
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--preset", "4g-2cpu", "--workload", str(wl), *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_cli_out_that_cannot_be_made_fails_before_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wl = _write(tmp_path, SMALL_TOML)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--preset", "4g-2cpu", "--kernel", "v6.19", "--workload", str(wl),
              "--out", str(blocker / "out")])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""  # no table: it did not run
    assert err == f"pagesim: error: {blocker}/out: cannot create the directory: Not a " \
                  "directory\n"


def test_damaged_series_is_a_results_error(tmp_path: Path) -> None:
    m = preset_machine("4g-2cpu", "v6.19")
    r = Simulation(m, Workload(duration=1000, sample_every=200, mixes=[Mix(cpus="all")]),
                   1).run()
    path = tmp_path / RESULTS_NAME
    write_results(r, path)
    doc = json.loads(path.read_text())
    doc["samples"]["pcp_pages"] = 5  # was a TypeError
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match=r"samples\.pcp_pages: expected a list of lists"):
        load_results(path)
    doc["samples"]["pcp_pages"] = [["x"]] * len(doc["samples"]["step"])
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match=r"samples\.pcp_pages: expected a list of lists"):
        load_results(path)
