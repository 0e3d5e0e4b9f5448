# SPDX-License-Identifier: GPL-2.0-only
"""`pagesim compare` and the hypothetical kernel variants `pagesim kernels` lists: one
table per scenario across generations, whose verdicts come from the checker, and bad
input as one line with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pagesim.cli.main import cli
from pagesim.model.kernels import VARIANTS, kernel


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_compare_prints_one_row_per_kernel_with_the_checkers_verdict() -> None:
    # offline-termination with the default two moves is slow on DPOR; the stateful
    # search answers in seconds: 5.8 hangs, 5.10's drain on every retry finishes
    code, out, _ = run("compare", "offline-termination", "--kernels", "v5.8,v5.10",
                       "--strategy", "stateful", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["kernel"] for r in rows] == ["v5.8", "v5.10"]
    assert rows[0]["verdict"] == "violation" and "never finishes" in rows[0]["message"]
    assert rows[0]["steps"] > 0 and rows[0]["seconds_to_find"] is not None
    assert rows[1]["verdict"] == "verified" and rows[1]["complete"]


def test_compare_table_has_a_header_and_a_row_per_kernel() -> None:
    code, out, _ = run("compare", "toy-lost-update", "--kernels", "v5.8,v6.19")
    assert code == 0
    lines = out.strip().splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("kernel"))
    assert "verdict" in lines[header] and "found in" in lines[header]
    assert [ln.split()[0] for ln in lines[header + 2:]] == ["v5.8", "v6.19"]
    assert all(" violation " in ln for ln in lines[header + 2:])


@pytest.mark.parametrize("args,message", [
    (["compare", "offline-termination", "--kernels", "v5.8,v9.9"], "unknown kernel 'v9.9'"),
    (["compare", "no-such-scenario"], "unknown scenario"),
    (["compare", "toy-lost-update", "--kernels", ","], "--kernels lists no kernel"),
    (["compare", "toy-lost-update", "--time-limit", "0"], "--time-limit must be positive"),
    (["compare", "toy-lost-update", "--strategy", "bogus"], "unknown strategy"),
    # were run as if valid: two identical rows, and a NaN time limit
    (["compare", "toy-lost-update", "--kernels", "v6.19,v6.19"],
     "--kernels: v6.19 is given twice"),
    (["compare", "toy-lost-update", "--time-limit", "nan"],
     "--time-limit must be positive, not nan"),
])
def test_compare_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    p = subprocess.run([sys.executable, "-c", "from pagesim.cli.main import main; main()",
                        *args], capture_output=True, text=True)
    assert p.returncode == 2
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_kernels_lists_the_hypothetical_variants() -> None:
    code, out, _ = run("kernels")
    assert code == 0
    for name in ("v5.11-unforced", "v5.11-no-disable", "v6.0-locked-count"):
        assert name in out
    code, out, _ = run("kernels", "--json")
    variants = {v["name"]: v for v in json.loads(out)["variants"]}
    assert variants["v5.11-unforced"]["features"] == {"drain_force_all_cpus": False}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_variant_differs_from_its_base_in_its_overrides_only(name: str) -> None:
    base, over, _ = VARIANTS[name]
    v, b = kernel(name), kernel(base)
    vf, bf = v.features(), b.features()
    differ = {f for f, on in vf.items() if bf[f] != on}
    assert differ == {f for f, val in over if bf[f] != val}
    assert differ, f"{name} changes nothing"
