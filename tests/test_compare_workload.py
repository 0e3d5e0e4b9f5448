# SPDX-License-Identifier: GPL-2.0-only
"""``pagesim compare --workload``: the same seeded workload on several generations and
pcp settings, one table (text and JSON), one plot, each run's results; workload files
with a ``[machine]`` table; bad combinations as one line with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from pagesim.cli.main import cli
from pagesim.sim.results import load_results
from pagesim.sim.workload import WorkloadError, load_workload

#: a small machine of its own (4 memory blocks of 2048 pages), CPU 0 offlining the
#: busiest block while CPUs 1-2 allocate and free
MACHINE_WORKLOAD = """\
[workload]
name = "small-machine"
duration = 3000
sample_every = 500
load = 8

[machine]
zone_pages = 8192
section_order = 11

[[mix]]
cpus = "1-2"
alloc = 0.6
prefill = 100
max_held = 400

[[event]]
at = 500
cpu = 0
op = "offline"
block = "busiest"
max_retries = 10
"""

#: CPUs that mostly free what they prefilled: their pcplists fill up to pcp->high, so
#: the high the sysctl sets shows in the pages on pcplists
FREEING_WORKLOAD = """\
[workload]
name = "freeing"
duration = 2000
sample_every = 100
load = 16

[machine]
zone_pages = 16384
section_order = 12
min_free_kbytes = 512

[[mix]]
cpus = "0-1"
alloc = 0.1
prefill = 1500
max_held = 2000
"""


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def _file(tmp_path: Path, text: str, name: str = "w.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# =======================================================================================
# [machine] in a workload file


def test_machine_table_builds_the_workloads_machine(tmp_path: Path) -> None:
    path = _file(tmp_path, MACHINE_WORKLOAD)
    w = load_workload(path)
    assert w.machine is not None and w.machine.zone_pages == 8192
    code, out, _ = run("simulate", "--workload", str(path), "--kernel", "v6.19", "--json")
    assert code == 0
    doc = json.loads(out)
    (zone,) = doc["machine"]["zones"]
    assert zone["present"] == 8192 and zone["name"] == "Normal"
    assert doc["nr_cpus"] == 3  # CPUs 0-2 are named: one more than the highest
    assert doc["workload"]["machine"]["zone_pages"] == 8192
    (ev,) = doc["events"]
    assert ev["nr_pages"] == 2048  # memory blocks of one section of 2^11 pages


def test_command_line_overrides_the_machine_table(tmp_path: Path) -> None:
    path = _file(tmp_path, MACHINE_WORKLOAD.replace('name = "small-machine"',
                                                    'name = "small-machine"\ncpus = 4'))
    code, out, _ = run("simulate", "--workload", str(path), "--kernel", "v6.19", "--json")
    assert code == 0 and json.loads(out)["nr_cpus"] == 4  # the workload's cpus
    code, out, _ = run("simulate", "--workload", str(path), "--kernel", "v6.19",
                       "--cpus", "5", "--json")
    assert code == 0 and json.loads(out)["nr_cpus"] == 5  # --cpus over the workload's
    code, out, _ = run("simulate", "--workload", str(path), "--kernel", "v6.19",
                       "--preset", "4g-4cpu", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["machine"]["source"] == "preset 4g-4cpu"
    assert sum(z["present"] for z in doc["machine"]["zones"]) > 8192


@pytest.mark.parametrize(("table", "key", "problem"), [
    ("[machine]\nzone_pages = 4096\nsection_order = 15\n", "machine.zone_pages",
     "not a whole number of sections"),
    ("[machine]\nzone_pages = 4096\ncolour = 'red'\n", "machine.colour", "unknown key"),
    ("[machine]\nsection_order = 11\n", "machine.zone_pages", "missing"),
    ("[machine]\nzone_pages = 4096\npcp_high = 3\n", "machine.pcp_batch", "missing"),
    ("[machine]\nzone_pages = 'big'\n", "machine.zone_pages", "expected an integer"),
    ("[workload]\ncpus = 0\n", "workload.cpus", "at least 1"),
])
def test_machine_table_errors_name_file_and_key(tmp_path: Path, table: str, key: str,
                                                problem: str) -> None:
    path = _file(tmp_path, table)
    with pytest.raises(WorkloadError) as info:
        load_workload(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: {key}: ") and problem in msg and "\n" not in msg
    p = subprocess.run([sys.executable, "-c", "from pagesim.cli.main import main; main()",
                        "simulate", "--workload", str(path)], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.strip() == f"pagesim: error: {msg}"


# =======================================================================================
# compare --workload


def test_compare_rows_are_the_simulate_runs(tmp_path: Path) -> None:
    """Each row is what `pagesim simulate` reports for that generation and seed; and
    the 2020 story holds on the small machine: 5.11 never hands out a page of an
    isolated block."""
    path = _file(tmp_path, MACHINE_WORKLOAD)
    code, out, _ = run("compare", "--workload", str(path), "--kernels", "v5.8,v5.11",
                       "--seed", "3", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["config"] for r in rows] == ["v5.8", "v5.11"]
    for r in rows:
        code, out, _ = run("simulate", "--workload", str(path), "--kernel", r["kernel"],
                           "--seed", "3", "--json")
        s = json.loads(out)["summary"]
        for key in ("page_ops", "pcp_pages_mean", "pcp_pages_max", "drains",
                    "remote_drains", "offline_retries", "migrations", "isolated_allocs",
                    "contig_failures", "invariant_checks_passed"):
            assert r[key] == s[key], (r["kernel"], key)
        assert r["seed"] == 3 and r["violation"] is None
        assert r["offline_steps"] > 0 and r["migrations"] > 0
    assert rows[1]["isolated_allocs"] == 0


def test_compare_varies_a_pcp_sysctl(tmp_path: Path) -> None:
    """percpu_pagelist_high_fraction=8 gives each CPU a larger share of the zone than
    the low-watermark default (v6.1: pcp->high is the formula's; from 6.7 the sysctl
    moves high_min only), and pages pile up on the pcplists accordingly."""
    path = _file(tmp_path, FREEING_WORKLOAD)
    code, out, _ = run("compare", "--workload", str(path), "--kernels", "v6.1",
                       "--sysctl", "percpu_pagelist_high_fraction=0,8", "--json")
    assert code == 0, out
    default, eighth = json.loads(out)
    assert default["sysctl"] == {"percpu_pagelist_high_fraction": 0}
    assert eighth["config"] == "v6.1 percpu_pagelist_high_fraction=8"
    assert eighth["pcp_pages_max"] > default["pcp_pages_max"]
    # the same operations were asked for: only the allocator's state differs
    assert eighth["page_ops"] == default["page_ops"]


def test_compare_writes_table_plot_and_results(tmp_path: Path) -> None:
    path = _file(tmp_path, MACHINE_WORKLOAD)
    out_dir = tmp_path / "out"
    code, text, _ = run("compare", "--workload", str(path), "--kernels", "v5.10,v6.19",
                        "--out", str(out_dir))
    assert code == 0
    header = next(ln for ln in text.splitlines() if ln.startswith("config"))
    for col in ("page ops", "pcp mean", "drains", "retries", "offline steps", "migrated",
                "contig fail", "checks", "wall s"):
        assert col in header
    assert [ln.split()[0] for ln in text.splitlines()
            if ln.startswith(("v5.10", "v6.19"))] == ["v5.10", "v6.19"]
    rows = json.loads((out_dir / "compare.json").read_text())
    assert [r["config"] for r in rows] == ["v5.10", "v6.19"]
    for r in rows:
        doc = load_results(out_dir / r["config"] / "results.json")
        assert doc["kernel"] == r["kernel"]
        assert doc["summary"]["page_ops"] == r["page_ops"]
    assert (out_dir / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ids = {el.get("id", "") for el in ET.parse(out_dir / "compare.svg").getroot().iter()}
    assert {"pcp0", "pcp1", "migrations0", "migrations1"} <= ids
    assert not [p for p in out_dir.rglob("*.tmp")]


def test_builtin_workload_by_name_and_scenario_form_unchanged() -> None:
    code, out, _ = run("compare", "toy-lost-update", "--kernels", "v6.19", "--json")
    assert code == 0 and json.loads(out)[0]["verdict"] == "violation"
    code, out, _ = run("simulate", "--workload", "no-such-workload")
    assert code == 2


@pytest.mark.parametrize(("args", "message"), [
    (["compare", "toy-lost-update", "--workload", "offline-under-load"], "not both"),
    ([], "give a SCENARIO"),
    (["compare", "--workload", "offline-under-load", "--kernels", "v5.8,v9.9"],
     "unknown kernel 'v9.9'"),
    (["compare", "--workload", "offline-under-load", "--kernels", "v6.19",
      "--sysctl", "percpu_pagelist_high_fraction=3"], "EINVAL"),
    (["compare", "--workload", "offline-under-load", "--kernels", "v5.8",
      "--sysctl", "percpu_pagelist_high_fraction=8"], "v5.8 has no"),
    (["compare", "--workload", "offline-under-load", "--sysctl", "swappiness=1"],
     "unknown sysctl"),
    (["compare", "--workload", "offline-under-load", "--sysctl", "percpu_pagelist_fraction"],
     "expected NAME=VALUE"),
    (["compare", "--workload", "offline-under-load", "--strategy", "dfs"],
     "applies to a scenario"),
    (["compare", "toy-lost-update", "--out", "x"], "applies to --workload"),
    (["compare", "--workload", "nothing-like-this"], "neither a file nor a built-in"),
    (["compare", "--workload", "offline-under-load", "--preset", "4g-2cpu",
      "--zoneinfo", "zi.txt"], "alternatives"),
    # were run as if valid
    (["compare", "--workload", "offline-under-load", "--kernels", "v6.19",
      "--sysctl", "percpu_pagelist_high_fraction=99999999999999999999"],
     "does not fit the sysctl's int"),
    (["compare", "--workload", "offline-under-load", "--cpus", "5000"],
     "--cpus must be 1..1024, not 5000"),
    (["compare", "--workload", "offline-under-load", "--seed", "-1"],
     "Invalid value for '--seed': -1"),
    (["compare", "--workload", "offline-under-load", "--kernels", "v6.19",
      "--out", "/proc/no-such-dir"], "/proc/no-such-dir: cannot create the directory"),
])
def test_bad_combinations_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    argv = args if args else ["compare"]
    p = subprocess.run([sys.executable, "-c", "from pagesim.cli.main import main; main()",
                        *argv], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert p.stdout == ""
