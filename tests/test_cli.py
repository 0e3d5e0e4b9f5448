# SPDX-License-Identifier: GPL-2.0-only
"""The command line: outputs, and one-line errors with exit status 2 for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def test_releases_are_every_version_kernel_accepts() -> None:
    from pagesim.model.kernels import UnknownKernelError, kernel, releases

    names = releases()
    assert names[0] == "v5.8" and names[-1] == "v6.19" and len(names) == 32
    assert [kernel(n).name for n in names] == names
    for outside in ("v5.7", "v5.20", "v6.20"):
        with pytest.raises(UnknownKernelError):
            kernel(outside)


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


# ---------------------------------------------------------------------------------------
# Damaged /proc files the parsers accept line by line: one line naming file (and line),
# never a machine built from what the file does not say


def _edited(tmp_path: Path, src: Path, old: str, new: str, count: int = 1) -> str:
    text = src.read_text()
    assert old in text
    f = tmp_path / src.name
    f.write_text(text.replace(old, new, count))
    return str(f)


@pytest.mark.parametrize(("old", "new", "count", "message"), [
    ("    cpu: 1\n", "    cpu: 0\n", 1, "zoneinfo.txt:90: cpu 0 after cpu 0: the kernel "
     "lists CPUs in increasing order"),
    ("    cpu: 1\n", "    cpu: 5000\n", 1, "zoneinfo.txt:136: cpu 1: the zones above list "
     "cpu 5000 here"),
    ("              count:    63\n", "              count:    -3\n", 1,
     "zoneinfo.txt:130: count: -3 is impossible"),
    ("              batch:    63\n", "              batch:    0\n", 1,
     "zoneinfo.txt:132: batch: 0 is impossible"),
    ("              high:     0\n", "              high:     -1\n", 1,
     "zoneinfo.txt:85: high: -1 is impossible"),
    ("pages free     772745", "pages free     999999999", 1,
     "zoneinfo.txt: zone DMA32: pages free 999999999 > managed 772808"),
    ("min      10036", "min      99999999", 1,
     "zoneinfo.txt: zone DMA32: watermark min 99999999 > low 12545"),
    ("protection: (0, 3018, 5066, 5066, 5066)", "protection: (0, 3018)", 1,
     "zoneinfo.txt: zone DMA: protection lists 2 values, one per zone (5) expected"),
    ("zone   Normal", "zone   Banana", 1, "zoneinfo.txt: zone 'Banana': not a zone of x86-64"),
])
def test_damaged_zoneinfo_is_one_line(tmp_path: Path, old: str, new: str, count: int,
                                      message: str) -> None:
    f = _edited(tmp_path, HOST / "zoneinfo.txt", old, new, count)
    code, out, err = run("zoneinfo", "--from", f)
    assert code == 2 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("pagesim: error:")]
    assert len(errors) == 1 and f"{tmp_path}/{message}" in errors[0], err
    assert "Traceback" not in err


def test_zoneinfo_with_an_offline_cpu(tmp_path: Path) -> None:
    """CPU 1 offline (the file lists 0 and 2): no silent renumbering or recounting;
    with --cpus the numbering is kept and CPU 2's pcps stay CPU 2's."""
    f = _edited(tmp_path, HOST / "zoneinfo.txt", "    cpu: 1\n", "    cpu: 2\n", -1)
    code, out, err = run("zoneinfo", "--from", f)
    assert code == 2 and out == ""
    assert f"pagesim: error: {f}: pagesets of CPUs 0, 2: a CPU in between is offline" in err
    code, out, _ = run("zoneinfo", "--from", f, "--cpus", "3")
    assert code == 0
    assert out.count("    cpu: 2\n") == 3  # DMA, DMA32, Normal
    assert "    cpu: 2\n              count:    0\n              high:     0\n" \
           "              batch:    63\n" in out


@pytest.mark.parametrize(("src", "old", "new", "flag", "message"), [
    # cut at a line boundary: the Normal zone's line is missing
    ("buddyinfo.txt", "Node 0, zone   Normal    832", "", "--buddyinfo",
     "buddyinfo.txt:3: unexpected end of file: expected zone Normal"),
    ("buddyinfo.txt", "zone   Normal", "zone   Banana", "--buddyinfo",
     "buddyinfo.txt:3: node 0 zone Banana, expected node 0 zone Normal"),
    ("pagetypeinfo.txt", "Pages per block:  512", "Pages per block:  511", "--pagetypeinfo",
     "pagetypeinfo.txt:2: pages per block 511: a pageblock of order 9 has 512"),
    ("pagetypeinfo.txt", "Page block order: 9", "Page block order: 99", "--pagetypeinfo",
     "pagetypeinfo.txt:1: page block order 99 is impossible"),
    ("pagetypeinfo.txt", "    Unmovable", "    Unmovabel", "--pagetypeinfo",
     "pagetypeinfo.txt: unknown migratetype 'Unmovabel'"),
    ("pagetypeinfo.txt", "zone   Normal", "zone   Banana", "--pagetypeinfo",
     "pagetypeinfo.txt: lists zones DMA, DMA32, Banana; the zoneinfo's populated zones "
     "are DMA, DMA32, Normal"),
])
def test_other_files_must_describe_the_zoneinfo(tmp_path: Path, src: str, old: str,
                                                new: str, flag: str, message: str) -> None:
    text = (HOST / src).read_text()
    if new == "":  # drop the whole line
        text = "".join(line for line in text.splitlines(keepends=True) if old not in line)
    else:
        text = text.replace(old, new)
    f = tmp_path / src
    f.write_text(text)
    code, out, err = run("pagetypeinfo", "--from", str(HOST / "zoneinfo.txt"), flag, str(f))
    assert code == 2 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("pagesim: error:")]
    assert len(errors) == 1 and f"{tmp_path}/{message}" in errors[0], err


def test_binary_input_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "bin"
    f.write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = run("buddyinfo", "--from", str(HOST / "zoneinfo.txt"), "--buddyinfo",
                       str(f))
    assert code == 2
    assert f"pagesim: error: {f}: not text" in err


def test_demo_without_kernels() -> None:
    code, out, err = run("demo", "--kernel", ",")
    assert code == 2 and out == ""
    assert err == "pagesim: error: --kernel: give at least one generation\n"


def test_a_reader_that_goes_away_is_not_an_error() -> None:
    """``pagesim zoneinfo | head -1`` when the reader has gone before pagesim writes:
    pagesim stops as a tool killed by SIGPIPE does (status 141, nothing on stderr),
    without calling it bad input."""
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-c",
                            "from pagesim.cli.main import main; main()",
                            "zoneinfo", "--preset", "4g-2cpu"],
                           stdout=w, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(w)
    assert (p.returncode, p.stderr) == (141, b"")
