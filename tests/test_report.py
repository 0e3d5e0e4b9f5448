# SPDX-License-Identifier: GPL-2.0-only
"""``pagesim report`` without a browser: the page is self-contained, its embedded data is
the replay's (one lane per CPU, every step with its changes) or the run's (capped, and
saying so), and bad input is one line with exit status 2 and no file written.

The page in a real browser is tests/test_report_browser.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import pagesim
from pagesim.cli.check import counterexample_json
from pagesim.cli.main import main
from pagesim.explore import check
from pagesim.explore.common import VIOLATION
from pagesim.report import embed_json, render_html
from pagesim.report.data import simulation_document, step_kind
from pagesim.scenarios import resolve

EXAMPLE = str(Path(pagesim.__file__).parent / "scenarios" / "examples" / "offline.toml")

SIM_TOML = """\
[workload]
name = "report-test"
duration = 2500
sample_every = 500
load = 8

[[mix]]
cpus = "1"
prefill = 60
max_held = 120
preempt = 0.05

[[event]]
at = 400
cpu = 0
op = "offline"
block = "busiest"
"""


# =======================================================================================
# Inputs, made by the tools that make them for users


def make_counterexample(where: Path, kernel: str = "v5.8") -> Path:
    """The packaged scenario file (offline-termination with one move per worker) checked
    on ``kernel``; the checker must find its hang (spec §6.1), else the test has nothing
    to show and fails here."""
    sc = resolve(EXAMPLE)
    result = check(sc.program(kernel, 2), "dpor")
    assert result.verdict == VIOLATION, f"{EXAMPLE} on {kernel}: {result.verdict}"
    path = where / f"ce-{kernel}.json"
    path.write_text(counterexample_json(sc.name, kernel, 2, result, sc.source))
    return path


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 0), out, err


def make_simulation(where: Path, trace: bool = True, kernel: str = "v5.10") -> Path:
    """A small run of ``pagesim simulate --out`` (an offline under one CPU's load)."""
    wl = where / "w.toml"
    wl.write_text(SIM_TOML)
    out = where / ("sim-traced" if trace else "sim")
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--preset", "4g-2cpu", "--kernel", kernel, "--workload", str(wl),
              "--seed", "3", "--out", str(out), *(["--trace"] if trace else [])])
    assert info.value.code == 0
    return out


def page_data(page: str) -> dict[str, Any]:
    """The JSON block of a report page, parsed as the page's script parses it."""
    blocks = re.findall(r'<script type="application/json" id="report-data">(.*?)</script>',
                        page, re.S)
    assert len(blocks) == 1
    data = json.loads(blocks[0])
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def cex(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_counterexample(tmp_path_factory.mktemp("cex"))


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_simulation(tmp_path_factory.mktemp("sim"))


# =======================================================================================
# Self-contained


URL_ATTR = re.compile(r"""\b(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:[a-z]+:)?//""",
                      re.I)


def assert_self_contained(page: str) -> None:
    assert URL_ATTR.search(page) is None
    assert not re.search(r"https?://", page)
    assert "@import" not in page and not re.search(r"url\(\s*['\"]?(?!data:)", page)
    assert not re.search(r"<(?:script|link|img|iframe)\b[^>]*\bsrc\s*=", page, re.I)
    # the policy that makes the browser refuse any fetch the page might still attempt
    assert re.search(r'http-equiv="Content-Security-Policy" content="default-src '
                     r"&#x27;none&#x27;", page)


def test_counterexample_page_is_self_contained_and_holds_the_replay(
        cex: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ce.html"
    code, stdout, _ = run_cli(["report", str(cex), "-o", str(out)], capsys)
    assert code == 0 and str(out) in stdout
    page = out.read_text()
    assert_self_contained(page)
    doc = page_data(page)
    code, replayed, _ = run_cli(["replay", str(cex), "--json"], capsys)
    assert code == 1  # the violation reproduces
    rep = json.loads(replayed)

    # one lane per CPU, every replay step on its CPU's lane, in order, with its changes
    assert doc["kind"] == "counterexample"
    assert doc["cpus"] == list(range(rep["cpus"])) == [0, 1]
    assert len(doc["items"]) == len(rep["steps"]) > 0
    for x, (item, step) in enumerate(zip(doc["items"], rep["steps"], strict=True)):
        assert (item["x"], item["cpu"], item["title"]) == (x, step["cpu"], step["op"])
        assert item["changes"] == step["changes"]
        assert item["chain"] == step["chain"]
        assert item["label"] == step["chain"][-1][0]
    assert doc["initial"] == rep["initial"] and doc["initial"]
    # the violation is marked on its step and opened first
    v = rep["violation"]
    assert doc["violation"]["property"] == v["property"]
    assert doc["violation"]["item"] == v["step"] == doc["selected"]
    assert [i for i, it in enumerate(doc["items"]) if it.get("violation")] == [v["step"]]
    # the header is also static HTML
    assert f"<td>{rep['kernel']}</td>" in page and "violation: " in page
    # some step moves a page onto a pcplist: the thing the page is for
    assert any(" pcp list[" in name and after and set(after) - set(before or [])
               for it in doc["items"] for name, before, after in it["changes"])


def test_default_output_name_beside_the_counterexample(
        cex: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "found.json"
    copy.write_text(cex.read_text())
    code, _, _ = run_cli(["report", str(copy)], capsys)
    assert code == 0
    assert page_data((tmp_path / "found.html").read_text())["kind"] == "counterexample"


def test_embedded_json_cannot_close_its_script_element() -> None:
    nasty = {"title": "</script><script>alert(1)</script><!-- & \u2028",
             "s": "</SCRIPT >", "n": [1, 2]}
    text = embed_json(nasty)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == nasty
    doc = {"title": nasty["title"], "header": [["scenario", nasty["title"]]], "notes": [],
           "items": [], "cpus": [0], "kinds": []}
    page = render_html(doc)
    # the data block and the script: the only two script elements, each closed once
    assert page.lower().count("</script") == 2
    assert "<script>alert" not in page
    assert page_data(page)["title"] == nasty["title"]


def test_step_kinds_follow_the_op() -> None:
    assert step_kind("spin_lock(&zone[Normal].lock)") == "lock"
    assert step_kind("mutex_trylock(&pcpu_drain_mutex)") == "lock"
    assert step_kind("spin_unlock(&ptl)") == "unlock"
    assert step_kind("READ_ONCE(pcp[cpu1][Normal].count)") == "read"
    assert step_kind("WRITE_ONCE(pageblock[1], 5)") == "write"
    assert step_kind("local_irq_save") == "irq"
    assert step_kind("flush_work(drain cpu1)") == "work"
    assert step_kind("choose(2)") == "choice"


# =======================================================================================
# Simulations


def test_simulate_out_writes_the_report_and_report_rebuilds_it(
        traced_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    written = traced_run / "report.html"
    assert written.is_file()
    again = tmp_path / "again.html"
    code, _, _ = run_cli(["report", str(traced_run), "-o", str(again)], capsys)
    assert code == 0
    # from the live tracer or from the files the run left: the same page
    assert again.read_bytes() == written.read_bytes()
    page = written.read_text()
    assert_self_contained(page)
    doc = page_data(page)
    results = json.loads((traced_run / "results.json").read_text())
    trace = json.loads((traced_run / "trace.json").read_text())["traceEvents"]
    instants = [e for e in trace if e["ph"] == "i"]
    assert doc["kind"] == "simulation"
    assert doc["cpus"] == list(range(results["nr_cpus"]))
    events = [it for it in doc["items"] if it["kind"] not in ("span", "gap", "violation")]
    assert 0 < len(events) <= len(instants)
    # every event shown is one of the trace's, on its CPU, at its step
    seen = {(e["tid"], e["name"], round(e["ts"]), e["args"].get("pfn")) for e in instants}
    for it in events:
        pfn = dict(it["fields"]).get("pfn")
        assert (it["cpu"], it["title"], it["step"], pfn) in seen
    # the offline is a span on CPU0, as long as the results file says it ran
    spans = [it for it in doc["items"] if it["kind"] == "span"]
    off = results["events"][0]
    assert [(s["cpu"], s["label"], s["step"]) for s in spans] == [(0, "offline",
                                                                  off["started"])]
    # boxes are in slot order, slots in step order
    xs = [it["x"] for it in doc["items"]]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    steps = [it["step"] for it in doc["items"]]
    assert steps == sorted(steps)


def test_a_long_trace_is_capped_and_the_page_says_so(
        traced_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "capped.html"
    code, _, _ = run_cli(["report", str(traced_run / "results.json"), "-o", str(out),
                          "--max-events", "40"], capsys)
    assert code == 0
    doc = page_data(out.read_text())
    trace = json.loads((traced_run / "trace.json").read_text())["traceEvents"]
    per_cpu: dict[int, int] = {}
    for e in trace:
        if e["ph"] == "i":
            per_cpu[e["tid"]] = per_cpu.get(e["tid"], 0) + 1
    busy = [c for c, n in per_cpu.items() if n > 40]
    assert busy, "the run is too small to test the cap"
    for cpu, total in per_cpu.items():
        shown = sum(1 for it in doc["items"] if it["cpu"] == cpu
                    and it["kind"] not in ("span", "gap", "violation"))
        left_out = sum(dict(it["fields"])["events left out"] for it in doc["items"]
                       if it["cpu"] == cpu and it["kind"] == "gap")
        assert shown <= 40 and shown + left_out == total
        if cpu in busy:
            assert any(f"CPU{cpu} {shown:,} of {total:,}" in n for n in doc["notes"])
    # the first and last events of a capped CPU are kept
    cpu = busy[0]
    mine = [it for it in doc["items"] if it["cpu"] == cpu and it["kind"] != "span"]
    assert mine[0]["kind"] != "gap" and mine[-1]["kind"] != "gap"


def test_untraced_run_shows_its_long_operations(tmp_path: Path) -> None:
    run = make_simulation(tmp_path, trace=False)
    doc = page_data((run / "report.html").read_text())
    results = json.loads((run / "results.json").read_text())
    assert [(it["kind"], it["cpu"]) for it in doc["items"]] == [
        ("span", e["cpu"]) for e in results["events"]]
    assert any("not traced" in n for n in doc["notes"])
    assert doc["cpus"] == list(range(results["nr_cpus"]))


def test_isolated_allocation_is_marked_from_the_offline_window() -> None:
    results = {"nr_cpus": 2, "steps": 100, "machine": {"zones": [
        {"name": "Normal", "start_pfn": 0, "spanned": 64}]},
        "events": [{"op": "offline", "cpu": 0, "started": 10, "ended": 50, "block": 1,
                    "start_pfn": 32, "nr_pages": 32}],
        "samples": {}, "summary": {}, "workload": {"name": "t"}}
    from pagesim.report.data import SimEvent
    evs = [SimEvent(5, 1, "mm_page_alloc", {"pfn": 40, "order": 0, "migratetype": 1}),
           SimEvent(20, 1, "mm_page_alloc", {"pfn": 40, "order": 0, "migratetype": 1}),
           SimEvent(20, 1, "mm_page_alloc", {"pfn": 8, "order": 0, "migratetype": 1}),
           SimEvent(60, 1, "mm_page_alloc", {"pfn": 40, "order": 0, "migratetype": 1})]
    doc = simulation_document(results, evs, traced=True)
    kinds = [(it["step"], it["kind"]) for it in doc["items"] if it["cpu"] == 1]
    assert kinds == [(5, "alloc"), (20, "isolated"), (20, "alloc"), (60, "alloc")]
    assert doc["items"][doc["selected"]]["kind"] == "isolated"


def test_a_failed_run_opens_on_its_violation() -> None:
    from pagesim.report.data import SimEvent
    results = {"nr_cpus": 3, "steps": 30, "machine": {"zones": []}, "events": [],
               "samples": {}, "summary": {"page_ops": "?"}, "workload": {"name": "t"},
               "violation": {"property": "deadlock", "message": "stuck", "step": 20,
                             "context": "cpu2.w0"}}
    evs = [SimEvent(s, 1, "mm_page_free", {"pfn": s, "order": 0}) for s in (10, 20, 25)]
    doc = simulation_document(results, evs, traced=True)
    marks = [i for i, it in enumerate(doc["items"]) if it.get("violation")]
    assert len(marks) == 1 and doc["selected"] == marks[0] == doc["violation"]["item"]
    it = doc["items"][marks[0]]
    assert (it["cpu"], it["step"], it["kind"]) == (2, 20, "violation")
    # after the events of its step, before the later ones
    assert [x["step"] for x in doc["items"]] == [10, 20, 20, 25]
    assert ["verdict", "violation: deadlock: stuck"] in doc["header"]
    assert doc["cpus"] == [0, 1, 2]


# =======================================================================================
# Bad input


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = run_cli(argv, capsys)
    assert code == 2, (out, err)
    assert err.startswith("pagesim: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_bad_inputs_are_one_line_and_write_nothing(
        cex: Path, traced_run: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    other = tmp_path / "other.json"
    other.write_text('{"format": "pagesim-schedule"}')
    unfit = tmp_path / "unfit.json"
    data = json.loads(cex.read_text())
    data["schedule"] = [["cpu7", None]] + data["schedule"]
    unfit.write_text(json.dumps(data))
    lost = tmp_path / "lost.json"
    data = json.loads(cex.read_text())
    data["scenario_file"] = str(tmp_path / "gone.toml")
    lost.write_text(json.dumps(data))
    several = tmp_path / "several"
    (several / "v5.10").mkdir(parents=True)
    (several / "v5.10" / "results.json").write_text("{}")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([str(tmp_path / "missing.json")], "missing.json: no such file"),
        ([str(garbage)], "garbage.json: not a counterexample or a results file (bad JSON"),
        ([str(other)], "other.json: a 'pagesim-schedule' file"),
        ([EXAMPLE], "offline.toml: a scenario, not a counterexample"),
        ([str(unfit)], "unfit.json: does not fit"),
        ([str(lost)], "gone.toml does not exist"),
        ([str(several)], "several: holds one run per kernel (v5.10)"),
        ([str(empty)], "empty: no results.json here"),
    ]
    for args, message in cases:
        err = _one_line_error(["report", *args, "-o", str(out)], capsys)
        assert message in err, (args, err)
        assert not out.exists()
    # a bad output place
    err = _one_line_error(["report", str(cex), "-o", str(tmp_path / "no" / "r.html")], capsys)
    assert "does not exist" in err
    err = _one_line_error(["report", str(cex), "-o", str(tmp_path)], capsys)
    assert "is a directory" in err
    err = _one_line_error(["report", str(cex), "--max-events", "0"], capsys)
    assert "--max-events" in err


def test_damaged_trace_is_named_and_an_old_report_survives(
        traced_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text((traced_run / "results.json").read_text())
    text = (traced_run / "trace.json").read_text()
    (run / "trace.json").write_text(text[: len(text) // 2])
    out = run / "report.html"
    out.write_text("the old report")
    err = _one_line_error(["report", str(run)], capsys)
    assert "trace.json: not JSON" in err
    assert out.read_text() == "the old report"
    assert sorted(p.name for p in run.iterdir()) == ["report.html", "results.json",
                                                     "trace.json"]
    (run / "trace.json").write_text('{"traceEvents": [{"ph": "i", "name": "x", "pid": 1, '
                                    '"tid": 0, "ts": -1}]}')
    err = _one_line_error(["report", str(run)], capsys)
    assert "trace.json: traceEvents[0]: ts -1" in err
    (run / "results.json").write_text('{"format": "pagesim-sim-results", "version": 9}')
    err = _one_line_error(["report", str(run)], capsys)
    assert "results.json: unsupported results version 9" in err


@pytest.mark.parametrize(("key", "value", "message"), [
    ("machine", 5, "machine: expected an object"),  # were AttributeError tracebacks
    ("summary", 5, "summary: expected an object"),
    ("workload", "x", "workload: expected an object"),
])
def test_damaged_results_are_named(traced_run: Path, tmp_path: Path, key: str, value: Any,
                                   message: str, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads((traced_run / "results.json").read_text())
    doc[key] = value
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps(doc))
    err = _one_line_error(["report", str(bad), "-o", str(tmp_path / "r.html")], capsys)
    assert err == f"pagesim: error: {bad}: {message}\n"
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(("key", "value", "message"), [
    ("kernel", "v9.9", "unknown kernel 'v9.9'"),
    ("cpus", 0, "runs on 2 to 4 CPUs, not 0"),
])
def test_counterexample_that_cannot_be_rebuilt_names_its_file(
        tmp_path: Path, key: str, value: Any, message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    ce = tmp_path / "ce.json"
    ce.write_text(json.dumps({"format": "pagesim-counterexample", "version": 1,
                              "scenario": "toy-lost-update", "kernel": "v6.19", "cpus": 2,
                              "schedule": [["cpu0", None]], key: value}))
    err = _one_line_error(["report", str(ce), "-o", str(tmp_path / "r.html")], capsys)
    assert err.startswith(f"pagesim: error: {ce}: ") and message in err
