# SPDX-License-Identifier: GPL-2.0-only
"""`pagesim check`, `pagesim scenarios`, `pagesim replay` and the scenarios behind them:
the allocator scenarios are verified on every generation, a toy's counterexample is
saved, replayed and reproduced by a standalone script, and bad input is one line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pagesim.cli.main import cli
from pagesim.explore import check
from pagesim.model.mmzone import MIGRATE_MOVABLE
from pagesim.model.page_alloc import alloc_pages
from pagesim.runtime.executor import Execution, Program
from pagesim.runtime.ops import point
from pagesim.scenarios import get, program, scenarios
from pagesim.scenarios.allocator import (
    AllocState,
    all_free_after_drain,
    invariants_when_quiet,
    observed,
    tiny_machine,
)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("k", ["v5.10", "v5.11", "v6.1", "v6.19"])
def test_pcp_alloc_free_verified(k: str) -> None:
    code, out, err = run("check", "pcp-alloc-free", "--kernel", k, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["verdict"] == "verified"
    assert data["complete"] is True
    assert data["executions"] > 1
    assert data["seconds"] < 10
    assert data["property"] is None
    assert data["kernel"] == k


@pytest.mark.parametrize("k", ["v5.8", "v5.10", "v5.11", "v6.0", "v6.1", "v6.11", "v6.19"])
def test_pcp_drain_vs_free_verified(k: str) -> None:
    result = check(program("pcp-drain-vs-free", k, 2))
    assert result.verdict == "verified", result.summary()


def test_text_summary_says_complete() -> None:
    code, out, _ = run("check", "pcp-alloc-free", "--kernel", "v5.11")
    assert code == 0
    assert "verdict:    verified" in out
    assert "complete:   yes" in out


def _leaky(s: AllocState) -> Generator[Any, Any, None]:
    yield from alloc_pages(s.m, 0, MIGRATE_MOVABLE, 2, 0)  # never freed


def _corrupting(s: AllocState) -> Generator[Any, Any, None]:
    s.zone.per_cpu_pageset[0].count += 1  # a count that no longer matches the list
    yield point("quiet, with a corrupt pcp count")
    s.zone.per_cpu_pageset[0].count -= 1


def _program(body: Any) -> Program:
    def setup() -> tuple[AllocState, dict[int, Any]]:
        s = tiny_machine("v6.19", 2)
        return s, {0: body(s)}
    return Program("probe", setup, checks=[invariants_when_quiet],
                   final_checks=[all_free_after_drain], observes=observed)


def test_the_checks_catch_a_leak_and_a_corrupt_quiet_state() -> None:
    leak = check(_program(_leaky))
    assert leak.verdict == "violation" and leak.property == "final"
    assert "31 of 32 pages" in (leak.message or "")
    corrupt = check(_program(_corrupting))
    assert corrupt.verdict == "violation" and corrupt.property == "invariant"


def test_lost_update_counterexample_json() -> None:
    code, out, _ = run("check", "toy-lost-update", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["verdict"] == "violation"
    assert data["property"] == "final"
    assert data["counterexample"] and data["schedule"]
    assert {"step", "thread", "cpu", "op", "chain"} <= set(data["counterexample"][0])


def test_deadlock_is_a_violation() -> None:
    code, out, _ = run("check", "toy-abba")
    assert code == 1
    assert "deadlock" in out
    assert "--save FILE" in out


def test_save_replay_and_reproducer(tmp_path: Path) -> None:
    ce, repro = tmp_path / "ce.json", tmp_path / "repro.py"
    code, out, _ = run("check", "toy-lost-update", "--save", str(ce),
                       "--reproducer", str(repro))
    assert code == 1
    assert "count is 1, expected 2" in out
    assert "CPU0" in out and "racy_increment" in out  # the per-CPU table
    saved = json.loads(ce.read_text())
    assert saved["scenario"] == "toy-lost-update" and saved["cpus"] == 2
    code, out, _ = run("replay", str(ce))
    assert code == 1
    assert "READ_ONCE(counter.count)" in out
    assert out.strip().splitlines()[-1].endswith("all_counted: count is 1, expected 2")
    proc = subprocess.run([sys.executable, str(repro)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "violation: final: all_counted: count is 1, expected 2" in proc.stdout


def test_replay_of_an_allocator_schedule_shows_state(tmp_path: Path) -> None:
    # A violation-free schedule of an allocator scenario: replay shows pcp counts and
    # free pages as they change, and says nothing reproduced.
    ex = Execution(program("pcp-alloc-free", "v5.10", 2))
    while not ex.over:
        ex.step(ex.enabled()[0])
    f = tmp_path / "ok.json"
    f.write_text(json.dumps({"format": "pagesim-counterexample", "version": 1,
                             "scenario": "pcp-alloc-free", "kernel": "v5.10", "cpus": 2,
                             "schedule": [[t, c] for t, c in ex.schedule().steps]}))
    code, out, _ = run("replay", str(f))
    assert code == 0
    assert "state: pcp0=" in out and "free=" in out
    assert "rmqueue" in out
    assert "no violation" in out


@pytest.mark.parametrize(("args", "message"), [
    (["check", "no-such"], "unknown scenario 'no-such'"),
    (["check", "pcp-alloc-free", "--cpus", "9"], "runs on 1 to 3 CPUs, not 9"),
    (["check", "toy-peterson", "--cpus", "3"], "runs on 2 CPUs, not 3"),
    (["check", "pcp-alloc-free", "--kernel", "v4.19"], "unknown kernel 'v4.19'"),
    (["check", "toy-lost-update", "--strategy", "magic"], "unknown strategy 'magic'"),
    (["check", "toy-lost-update", "--max-executions", "0"], "--max-executions must be"),
])
def test_bad_check_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    code, out, err = run(*args)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("pagesim: error: ")
    assert message in err


@pytest.mark.parametrize("text", ['{"format": "pagesim-counterexample", "vers', "[]",
                                  '{"format": "pagesim-counterexample", "version": 1}',
                                  '{"format": "pagesim-counterexample", "version": 1, '
                                  '"scenario": "toy-lost-update", "kernel": "v6.1", '
                                  '"cpus": 2, "schedule": [["cpu7", null]]}'])
def test_bad_replay_file_is_one_line_exit_2(tmp_path: Path, text: str) -> None:
    f = tmp_path / "bad.json"
    f.write_text(text)
    code, out, err = run("replay", str(f))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("pagesim: error: ")


def test_replay_missing_file() -> None:
    code, _, err = run("replay", "/nonexistent/ce.json")
    assert code == 2 and err.count("\n") == 1


def test_scenarios_listing() -> None:
    code, out, _ = run("scenarios", "--json")
    assert code == 0
    names = {s["name"]: s for s in json.loads(out)}
    assert {"pcp-alloc-free", "pcp-drain-vs-free", "toy-lost-update", "toy-peterson",
            "toy-abba"} <= set(names)
    assert names["toy-abba"]["expected"] == "deadlock"
    code, out, _ = run("scenarios")
    assert code == 0
    assert len(out.strip().splitlines()) == len(scenarios())


@pytest.mark.parametrize("s", [s.name for s in scenarios() if s.name.startswith("toy-")])
def test_toys_give_their_documented_answer(s: str) -> None:
    sc = get(s)
    result = check(sc.program("v6.19"))
    if sc.expected == "verified":
        assert result.verdict == "verified"
    else:
        assert result.verdict == "violation"
        assert sc.expected in (result.property, "violation")


# ---------------------------------------------------------------------------------------
# Bad input names its place: the counterexample file, the output that cannot be written


def _ce(**over: Any) -> str:
    data = {"format": "pagesim-counterexample", "version": 1, "scenario": "toy-lost-update",
            "kernel": "v6.19", "cpus": 2, "schedule": [["cpu0", None]]}
    data.update(over)
    return json.dumps(data)


@pytest.mark.parametrize(("text", "message"), [
    (_ce(kernel="v9.9"), "unknown kernel 'v9.9'"),
    (_ce(cpus=0), "scenario toy-lost-update runs on 2 to 4 CPUs, not 0"),
    (_ce(scenario="no-such"), "unknown scenario 'no-such'"),
    (_ce(version=7), "unsupported counterexample version 7"),
    (_ce(scenario_file="/nonexistent/s.toml"), "its scenario file /nonexistent/s.toml: "),
    ('{"format": "pagesim-counterexample", "vers', "not a pagesim counterexample"),
])
def test_replay_errors_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "ce.json"
    f.write_text(text)
    code, out, err = run("replay", str(f))
    assert code == 2 and out == ""
    assert err.startswith(f"pagesim: error: {f}: {message}") and err.count("\n") == 1, err


def test_replay_of_binary_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "ce.json"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    code, _, err = run("replay", str(f))
    assert code == 2 and err.startswith(f"pagesim: error: {f}: not text")


@pytest.mark.parametrize(("where", "message"), [
    ("missing/ce.json", "missing/ce.json: cannot write: {tmp}/missing does not exist"),
    ("sub", "sub: is a directory, not a file"),
])
def test_save_where_it_cannot_names_the_output(tmp_path: Path, where: str,
                                               message: str) -> None:
    (tmp_path / "sub").mkdir()
    target = tmp_path / where
    code, out, err = run("check", "toy-lost-update", "--save", str(target))
    assert code == 2 and out == ""
    assert err == f"pagesim: error: {tmp_path}/{message.format(tmp=tmp_path)}\n"
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_save_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    real, link = tmp_path / "real.json", tmp_path / "link.json"
    link.symlink_to(real)
    code, _, _ = run("check", "toy-lost-update", "--save", str(link))
    assert code == 1
    assert link.is_symlink() and json.loads(real.read_text())["scenario"] == "toy-lost-update"


def test_negative_seed_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from pagesim.cli.main import main
    with pytest.raises(SystemExit) as info:
        main(["check", "toy-lost-update", "--strategy", "random", "--seed", "-1"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Invalid value for '--seed': -1" in err
