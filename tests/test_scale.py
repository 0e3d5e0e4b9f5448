# SPDX-License-Identifier: GPL-2.0-only
"""Running jobs elsewhere (pagesim.scale): local processes and a real Dask cluster give
the tables and files that one process gives; a split random search is one search."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pagesim.cli.main import cli
from pagesim.explore import Bounds, check, merge_results, split_bounds
from pagesim.explore.common import VIOLATION, WITHIN_BOUNDS
from pagesim.scale import DaskPool, PoolError, ProcessPool, SerialPool, make_pool
from pagesim.scale.pools import DASK_HINT, JOBS_ENV, SCHEDULER_ENV
from pagesim.scenarios import resolve


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def _square(x: int) -> int:
    return x * x


# ---------------------------------------------------------------------------------------
# Pools


def test_make_pool_follows_options_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(JOBS_ENV, raising=False)
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    assert isinstance(make_pool(), SerialPool)
    assert isinstance(make_pool(1), SerialPool)
    pool = make_pool(3)
    assert isinstance(pool, ProcessPool) and pool.width == 3
    monkeypatch.setenv(JOBS_ENV, "2")
    assert make_pool().width == 2
    assert isinstance(make_pool(1), SerialPool)  # the option wins
    monkeypatch.setenv(JOBS_ENV, "many")
    with pytest.raises(PoolError, match="PAGESIM_JOBS='many': not a number of jobs"):
        make_pool()
    with pytest.raises(PoolError, match="--jobs -1: must be 0"):
        make_pool(-1)
    with pytest.raises(PoolError, match="alternatives"):
        make_pool(2, "tcp://127.0.0.1:8786")


def test_process_pool_keeps_input_order() -> None:
    with ProcessPool(2) as pool:
        assert pool.map(_square, list(range(7))) == [x * x for x in range(7)]


def test_dask_missing_or_unreachable_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PoolError, match="cannot reach the scheduler"):
        DaskPool("tcp://127.0.0.1:1", timeout=0.5)
    real = importlib.import_module

    def no_dask(name: str, *args: Any) -> Any:
        if name == "distributed":
            raise ImportError(name)
        return real(name, *args)
    monkeypatch.setattr(importlib, "import_module", no_dask)
    with pytest.raises(PoolError) as info:
        DaskPool("tcp://127.0.0.1:8786")
    assert DASK_HINT in str(info.value)


# ---------------------------------------------------------------------------------------
# A split sampled search


def test_split_bounds_shares_the_budget_over_consecutive_seeds() -> None:
    parts = split_bounds(Bounds(strategy="random", seed=5, max_executions=10), 3)
    assert [b.seed for b in parts] == [5, 6, 7]
    assert [b.max_executions for b in parts] == [4, 3, 3]
    assert [b.max_executions for b in split_bounds(Bounds(strategy="pct"), 2)] == [500, 500]
    assert len(split_bounds(Bounds(strategy="random", max_executions=2), 8)) == 2
    with pytest.raises(ValueError, match="dpor is one search"):
        split_bounds(Bounds(strategy="dpor"), 2)


def test_merged_parts_report_the_first_violation_and_every_execution() -> None:
    prog = resolve("toy-lost-update").program("v6.19", None)
    parts = split_bounds(Bounds(strategy="random", seed=0, max_executions=40), 4)
    results = [check(prog, bounds=b) for b in parts]
    merged = merge_results(results)
    first = next(r for r in results if r.verdict == VIOLATION)
    assert merged.verdict == VIOLATION and merged.seed == first.seed
    assert merged.schedule == first.schedule
    assert merged.executions == sum(r.executions for r in results)
    assert not merged.complete
    calm = resolve("toy-locked-counter").program("v6.19", None)
    quiet = merge_results([check(calm, bounds=b) for b in parts])
    assert quiet.verdict == WITHIN_BOUNDS and quiet.executions == 40


def test_check_jobs_splits_a_random_search() -> None:
    code, out, _ = run("check", "toy-lost-update", "--strategy", "random", "--jobs", "2",
                       "--max-executions", "50", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["verdict"] == VIOLATION and doc["strategy"] == "random"
    assert doc["seed"] in (0, 1)
    code, _, err = run("check", "toy-lost-update", "--jobs", "2")
    assert code == 2 and "split a sampled search (random, pct); dpor is one search" in err


# ---------------------------------------------------------------------------------------
# The same tables, wherever the rows ran

_TIMES = ("seconds", "seconds_to_find", "wall_seconds")


def _without_times(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in _TIMES} for r in rows]


def _compare_scenario(*extra: str) -> list[dict[str, Any]]:
    code, out, err = run("compare", "pcp-drain-vs-free", "--kernels", "v5.10,v5.11,v6.19",
                         "--json", *extra)
    assert code == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


WORKLOAD = """
[workload]
name = "scale-test"
duration = 3000
cpus = 2
sample_every = 500

[machine]
zone_pages = 65536
section_order = 15

[[mix]]
cpus = "0-1"
alloc = 0.7
prefill = 50
max_held = 200

[[event]]
at = 1000
cpu = 0
op = "offline"
block = 1
"""


def _compare_workload(tmp_path: Path, name: str, *extra: str) -> Path:
    wl = tmp_path / "w.toml"
    wl.write_text(WORKLOAD)
    out = tmp_path / name
    code, _, err = run("compare", "--workload", str(wl), "--kernels", "v5.10,v6.19",
                       "--out", str(out), *extra)
    assert code == 0, err
    return out


def _same_outputs(a: Path, b: Path) -> None:
    ta = json.loads((a / "compare.json").read_text())
    tb = json.loads((b / "compare.json").read_text())
    assert _without_times(ta) == _without_times(tb)
    for kern in ("v5.10", "v6.19"):
        assert (a / kern / "results.json").read_bytes() == \
               (b / kern / "results.json").read_bytes()


def test_compare_in_local_processes_is_the_same_table(tmp_path: Path) -> None:
    assert _without_times(_compare_scenario("--jobs", "2")) == \
           _without_times(_compare_scenario())
    _same_outputs(_compare_workload(tmp_path, "serial"),
                  _compare_workload(tmp_path, "jobs", "--jobs", "2"))


@pytest.fixture(scope="module")
def dask_scheduler() -> Iterator[str]:
    """A real Dask cluster on this machine: a scheduler and two worker processes."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_compare_on_a_dask_cluster_is_the_same_table(tmp_path: Path,
                                                     dask_scheduler: str) -> None:
    with DaskPool(dask_scheduler) as pool:
        assert pool.width == 2
        assert pool.map(_square, [3, 1, 2]) == [9, 1, 4]
    assert _without_times(_compare_scenario("--scheduler", dask_scheduler)) == \
           _without_times(_compare_scenario())
    _same_outputs(_compare_workload(tmp_path, "serial"),
                  _compare_workload(tmp_path, "dask", "--scheduler", dask_scheduler))


def test_check_on_a_dask_cluster(dask_scheduler: str,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SCHEDULER_ENV, dask_scheduler)
    code, out, _ = run("check", "toy-lost-update", "--strategy", "pct",
                       "--max-executions", "40", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["verdict"] == VIOLATION and doc["strategy"] == "pct"


def test_simulate_in_local_processes_writes_the_same_files(tmp_path: Path) -> None:
    """Traces included: the tracer comes back from the worker with its run."""
    wl = tmp_path / "w.toml"
    wl.write_text(WORKLOAD)
    outs = []
    for name, extra in (("serial", []), ("jobs", ["--jobs", "2"])):
        out = tmp_path / name
        code, _, err = run("simulate", "--workload", str(wl), "--kernel", "v5.10,v6.19",
                           "--trace", "--out", str(out), *extra)
        assert code == 0, err
        outs.append(out)
    for kern in ("v5.10", "v6.19"):
        for f in ("results.json", "trace.txt", "trace.json"):
            assert (outs[0] / kern / f).read_bytes() == (outs[1] / kern / f).read_bytes()


def test_a_worker_without_the_jobs_module_is_one_line(tmp_path: Path, dask_scheduler: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A job whose module only this process can import (pagesim missing on a worker,
    say) fails with an error that says so, not a traceback from the cluster."""
    (tmp_path / "only_here.py").write_text("def double(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    only_here = importlib.import_module("only_here")
    with DaskPool(dask_scheduler) as pool, pytest.raises(PoolError) as info:
        pool.map(only_here.double, [1, 2])
    assert "cannot import only_here: install pagesim on every worker" in str(info.value)
