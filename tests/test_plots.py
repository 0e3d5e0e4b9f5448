# SPDX-License-Identifier: GPL-2.0-only
"""Plots of a simulation: the files exist and are whole pictures of the run's series,
``pagesim simulate --out`` draws them, ``pagesim plot`` redraws them, and bad input is
one line with exit status 2."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pagesim.cli.main import main
from pagesim.model.presets import preset_machine
from pagesim.sim.plots import PLOTS, write_plots
from pagesim.sim.results import RESULTS_NAME, load_results, to_json, write_results
from pagesim.sim.runner import Simulation
from pagesim.sim.workload import Event, Mix, Workload

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SVG_NS = "{http://www.w3.org/2000/svg}"


def _workload(offline: bool = True) -> Workload:
    """Two CPUs allocating and freeing while CPU 0 offlines the busiest block: enough
    samples for lines, one offline for the progress plot."""
    return Workload(
        name="plots", duration=3000, sample_every=300, load=8,
        mixes=[Mix(cpus=(1, 2, 3), alloc=0.7, orders={0: 90, 2: 10}, max_held=200,
                   prefill=100)],
        events=[Event(at=500, cpu=0, op="offline", block="busiest", max_retries=20)]
        if offline else [])


@pytest.fixture(scope="module")
def results_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    m = preset_machine("4g-4cpu", "v5.11")
    r = Simulation(m, _workload(), 1, machine_info={"source": "4g-4cpu"}).run()
    path = tmp_path_factory.mktemp("run") / RESULTS_NAME
    write_results(r, path)
    return path


def _svg_ids(path: Path) -> set[str]:
    root = ET.parse(path).getroot()  # raises if the SVG is not whole XML
    assert root.tag == f"{SVG_NS}svg"
    return {el.get("id", "") for el in root.iter()}


def test_write_plots_draws_every_series(results_file: Path, tmp_path: Path) -> None:
    data = load_results(results_file)
    report = write_plots(data, tmp_path)
    assert report.skipped == []
    assert sorted(p.name for p in report.written) == sorted(
        f"{n}.{f}" for n in PLOTS for f in ("png", "svg"))
    for name in PLOTS:
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
    # one line per CPU, one per order, one per offline series: as many as the file has
    nr_cpus = len(data["samples"]["pcp_pages"][0])
    nr_orders = len(data["samples"]["free_blocks"][0])
    assert nr_cpus == data["nr_cpus"] == 4
    ids = _svg_ids(tmp_path / "pcp_pages.svg")
    assert {i for i in ids if i.startswith("cpu")} == {f"cpu{c}" for c in range(nr_cpus)}
    ids = _svg_ids(tmp_path / "free_blocks.svg")
    assert {i for i in ids if i.startswith("order")} == {f"order{o}"
                                                         for o in range(nr_orders)}
    ids = _svg_ids(tmp_path / "offline.svg")
    assert {"retries", "isolated_on_pcp", "drains", "remote_drains", "migrations"} <= ids
    offline = [i for i, e in enumerate(data["events"]) if e["op"] == "offline"]
    assert offline and {f"event{i}" for i in offline} <= ids
    # no temporary files left beside the pictures
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_same_results_same_svg(results_file: Path, tmp_path: Path) -> None:
    data = load_results(results_file)
    write_plots(data, tmp_path / "a", ("svg",))
    write_plots(data, tmp_path / "b", ("svg",))
    for name in PLOTS:
        assert (tmp_path / "a" / f"{name}.svg").read_bytes() == \
            (tmp_path / "b" / f"{name}.svg").read_bytes()


def test_missing_offline_is_skipped_with_a_note(tmp_path: Path) -> None:
    m = preset_machine("4g-2cpu", "v6.19")
    w = Workload(duration=1000, sample_every=200, mixes=[Mix(cpus="all", prefill=10)])
    r = Simulation(m, w, 1).run()
    data: dict[str, Any] = json.loads(json.dumps(to_json(r)))
    del data["samples"]["pcp_pages"]
    report = write_plots(data, tmp_path, ("png",))
    assert sorted(p.name for p in report.written) == ["free_blocks.png"]
    assert any(n.startswith("pcp_pages: ") and "pcp_pages" in n.split(":", 1)[1]
               for n in report.skipped)
    assert any(n.startswith("offline: ") for n in report.skipped)


def test_pagesim_plot_redraws(results_file: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pics"
    with pytest.raises(SystemExit) as info:
        main(["plot", str(results_file), "--out", str(out), "--format", "svg"])
    assert info.value.code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.svg" for n in PLOTS)
    assert str(out) in capsys.readouterr().out


def _small_toml(tmp_path: Path) -> Path:
    wl = tmp_path / "w.toml"
    wl.write_text('[workload]\nname = "cli"\nduration = 1500\nsample_every = 300\n\n'
                  '[[mix]]\ncpus = "1"\nprefill = 50\nmax_held = 100\n\n'
                  '[[event]]\nat = 300\ncpu = 0\nop = "offline"\nblock = "busiest"\n')
    return wl


def test_simulate_out_writes_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wl = _small_toml(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--preset", "4g-2cpu", "--kernel", "v6.19", "--workload",
              str(wl), "--out", str(out)])
    assert info.value.code == 0
    names = {p.name for p in out.iterdir()}
    assert {f"{n}.{f}" for n in PLOTS for f in ("png", "svg")} | {RESULTS_NAME,
                                                                 "report.html"} == names



def test_simulate_without_matplotlib_says_so_once(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import pagesim.cli.simulate as simulate_cli
    monkeypatch.setattr(simulate_cli, "plots_available", lambda: False)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--preset", "4g-2cpu", "--kernel", "v5.11,v6.19", "--workload",
              str(_small_toml(tmp_path)), "--out", str(out)])
    assert info.value.code == 0
    err = capsys.readouterr().err
    assert err == "pagesim: plots skipped: matplotlib is not installed " \
                  "(pip install 'pagesim[plot]')\n"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        sorted([f"v5.11/{RESULTS_NAME}", "v5.11/report.html", f"v6.19/{RESULTS_NAME}",
                "v6.19/report.html"])

def _truncated(results_file: Path, tmp_path: Path) -> Path:
    p = tmp_path / "cut.json"
    p.write_text(results_file.read_text()[:300])
    return p


def _not_results(_: Path, tmp_path: Path) -> Path:
    p = tmp_path / "other.json"
    p.write_text('{"format": "something-else"}')
    return p


def _missing(_: Path, tmp_path: Path) -> Path:
    return tmp_path / "nope.json"


def _series_not_a_list(results_file: Path, tmp_path: Path) -> Path:
    doc = json.loads(results_file.read_text())
    doc["samples"]["pcp_pages"] = 5  # was a TypeError traceback
    p = tmp_path / "damaged.json"
    p.write_text(json.dumps(doc))
    return p


def _events_not_a_list(results_file: Path, tmp_path: Path) -> Path:
    doc = json.loads(results_file.read_text())
    doc["events"] = "none"
    p = tmp_path / "damaged.json"
    p.write_text(json.dumps(doc))
    return p


@pytest.mark.parametrize(("make", "problem"), [
    (_truncated, "not JSON"),
    (_not_results, "not a pagesim results file"),
    (_missing, "no such file"),
    (_series_not_a_list, "samples.pcp_pages: expected a list of lists of numbers"),
    (_events_not_a_list, "events: expected a list"),
])
def test_pagesim_plot_bad_input_is_one_line(results_file: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            make: Any, problem: str) -> None:
    bad = make(results_file, tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["plot", str(bad), "--out", str(tmp_path / "pics")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pagesim: error: {bad}: ") and problem in err
    assert err.count("\n") == 1
    assert not (tmp_path / "pics").exists()


def test_pagesim_plot_out_that_cannot_be_made(results_file: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as info:
        main(["plot", str(results_file), "--out", str(blocker / "pics")])
    assert info.value.code == 2
    assert capsys.readouterr().err == (f"pagesim: error: {blocker}/pics: cannot create the "
                                       "directory: Not a directory\n")


def test_pagesim_plot_bad_format(results_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["plot", str(results_file), "--format", "gif"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == "pagesim: error: --format: 'gif' is not one of png, svg\n"
