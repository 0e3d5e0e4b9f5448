# SPDX-License-Identifier: GPL-2.0-only
"""The `offline-vs-free` scenario, answered by the checker: a free whose prepare read
the block type before isolation parks the page on CPU1's pcplist in 5.8-5.10 (spec
§6.1); from 5.11 the commit flushes it to the ISOLATE list (§6.2)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pagesim.cli.main import cli
from pagesim.explore import check
from pagesim.scenarios import get, program


@pytest.mark.parametrize("k", ["v5.8", "v5.10"])
def test_stale_free_parks_an_isolated_page_before_5_11(k: str) -> None:
    result = check(program("offline-vs-free", k))
    assert result.verdict == "violation", result.summary()
    assert result.property == "invariant"
    assert result.message is not None
    assert "no_isolated_page_on_pcplists" in result.message
    assert "pcp[cpu1]" in result.message
    assert result.seconds < 10


@pytest.mark.parametrize("k", ["v5.11", "v6.0", "v6.19"])
def test_offline_vs_free_verified_from_5_11(k: str) -> None:
    result = check(program("offline-vs-free", k))
    assert result.verdict == "verified", result.summary()
    assert result.complete
    assert result.executions > 1
    assert result.seconds < 10


def test_cli_lists_and_checks_the_scenario() -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["scenarios", "--json"])
    assert res.exit_code == 0
    names = {s["name"]: s for s in json.loads(res.stdout)}
    assert names["offline-vs-free"]["expected"] == get("offline-vs-free").expected
    res = runner.invoke(cli, ["check", "offline-vs-free", "--kernel", "v6.19", "--json"])
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    assert (data["verdict"], data["complete"]) == ("verified", True)
