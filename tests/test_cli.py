# SPDX-License-Identifier: GPL-2.0-only
"""The command line: outputs, and one-line errors with exit status 2 for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pagesim.cli.main import cli

REF = Path(__file__).parent / "data" / "reference"
HOST = REF / "host-6.18"
DEB = REF / "debian-6.1-2cpu-hotplug"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_zoneinfo_round_trip_and_recompute() -> None:
    code, out, err = run("zoneinfo", "--from", str(HOST / "zoneinfo.txt"), "--recompute")
    assert code == 0
    assert out == (HOST / "zoneinfo.txt").read_text()
    assert "modelling v6.18" in err


def test_pagetypeinfo_and_buddyinfo_from_all_three_files() -> None:
    args = ["--from", str(DEB / "filled.zoneinfo.txt"), "--buddyinfo",
            str(DEB / "filled.buddyinfo.txt"), "--pagetypeinfo",
            str(DEB / "filled.pagetypeinfo.txt"), "--kernel", "v6.1"]
    code, out, _ = run("pagetypeinfo", *args)
    assert code == 0 and out == (DEB / "filled.pagetypeinfo.txt").read_text()
    code, out, _ = run("buddyinfo", *args)
    assert code == 0 and out == (DEB / "filled.buddyinfo.txt").read_text()


def test_recompute_for_another_generation_changes_high() -> None:
    code, out, _ = run("zoneinfo", "--from", str(DEB / "boot.zoneinfo.txt"), "--kernel",
                       "v5.10", "--recompute")
    assert code == 0
    assert "              high:  378\n              batch: 63" in out  # 6 * batch in 5.x
    assert "high_min" not in out


def test_preset() -> None:
    code, out, _ = run("buddyinfo", "--preset", "4g-2cpu")
    assert code == 0
    assert out.startswith("Node 0, zone      DMA ")
    assert out.count("\n") == 3  # DMA, DMA32, Normal


def test_kernels_json() -> None:
    code, out, _ = run("kernels", "--json")
    assert code == 0
    data = json.loads(out)
    names = {c["feature"]: c["since"] for c in data["changes"]}
    assert names["zone_pcp_disable"] == "v5.11"
    assert names["pcp_high_autotune"] == "v6.7"


def test_demo_runs() -> None:
    code, out, _ = run("demo", "--kernel", "v5.10,v6.19")
    assert code == 0
    assert "v5.10: DMA batch 1 high 0; DMA32 batch 63 high 378" in out
    assert out.count("invariants hold") == 2


@pytest.mark.parametrize(("args", "message"), [
    (["zoneinfo", "--from", "/no/such/file"], "/no/such/file: no such file"),
    (["zoneinfo", "--kernel", "v4.19"], "unknown kernel 'v4.19': pagesim models v5.8 to v6.19"),
    (["zoneinfo", "--kernel", "banana"], "unknown kernel 'banana'"),
    (["zoneinfo", "--preset", "3x-cpus"], "unknown preset '3x-cpus'"),
    (["zoneinfo", "--preset", "0g-2cpu"], "RAM must be 1..1024 GiB"),
    (["zoneinfo", "--from", str(HOST / "buddyinfo.txt")],
     "buddyinfo.txt:1: unexpected line"),
    (["zoneinfo", "--buddyinfo", str(HOST / "buddyinfo.txt")], "give --from too"),
    (["zoneinfo", "--from", str(HOST / "zoneinfo.txt"), "--preset", "4g-2cpu"],
     "alternatives"),
])
def test_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    code, out, err = run(*args)
    assert code == 2
    assert out == ""
    lines = [line for line in err.splitlines() if line.startswith("pagesim: error:")]
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in err


def test_truncated_zoneinfo_names_file_and_line(tmp_path: Path) -> None:
    text = (DEB / "boot.zoneinfo.txt").read_text()
    cut = "\n".join(text.splitlines()[:120]) + "\n"
    f = tmp_path / "cut.txt"
    f.write_text(cut)
    code, out, err = run("zoneinfo", "--from", str(f))
    assert code == 2 and out == ""
    assert f"pagesim: error: {f}:121:" in err


def test_binary_input(tmp_path: Path) -> None:
    f = tmp_path / "bin"
    f.write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = run("zoneinfo", "--from", str(f))
    assert code == 2 and "pagesim: error:" in err


@pytest.mark.parametrize(("args", "message"), [
    (["zoneinfo", "--cpus", "abc"], "Invalid value for '--cpus'"),
    (["check", "toy-lost-update", "--bogus"], "No such option '--bogus'"),
    (["nosuch"], "No such command 'nosuch'"),
])
def test_usage_errors_are_one_line_too(args: list[str], message: str) -> None:
    """Through the real entry point (click's usage errors are raised outside commands)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "from pagesim.cli.main import main; main()",
                           *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pagesim: error: ") and message in lines[0]


def test_entry_point_exit_codes() -> None:
    import subprocess
    import sys

    def rc(*args: str) -> int:
        return subprocess.run([sys.executable, "-c",
                               "from pagesim.cli.main import main; main()", *args],
                              capture_output=True, text=True, timeout=120).returncode

    assert rc("check", "toy-lost-update") == 1
    assert rc("check", "toy-locked-counter") == 0
    assert rc("kernels") == 0
