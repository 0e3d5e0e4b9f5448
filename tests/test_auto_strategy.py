# SPDX-License-Identifier: GPL-2.0-only
"""The ``auto`` strategy: a randomised probe, then the stateful exhaustive search.

The probe must find the shallow races the exhaustive order reaches late (the 5.8 and
5.10 offline races on three CPUs), and when it finds nothing the verdict must be the
stateful search's own: verified stays a proof.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pagesim.cli.main import cli
from pagesim.explore import Bounds, check
from pagesim.explore.toys import locked_counter, lost_update
from pagesim.scenarios.offline import offline_program


@pytest.mark.parametrize("kern", ["v5.8", "v5.10"])
def test_the_probe_finds_the_offline_races_on_three_cpus(kern: str) -> None:
    r = check(offline_program(kern, 3), "auto", minimize=False, time_limit=60)
    assert r.verdict == "violation"
    # the probe found it: the exhaustive search would have stored states
    assert r.distinct_states is None
    assert r.property in ("assertion", "final")
    assert r.schedule is not None


def test_when_the_probe_finds_nothing_the_verdict_is_the_stateful_search() -> None:
    program = locked_counter()
    auto = check(program, "auto", bounds=Bounds(probe_seconds=0.05))
    stateful = check(program, "stateful")
    assert (auto.verdict, auto.complete) == (stateful.verdict, stateful.complete) \
        == ("verified", True)
    assert auto.distinct_states == stateful.distinct_states
    # the probe's executions are counted with the search's
    assert auto.executions > stateful.executions


def test_without_a_probe_auto_is_the_stateful_search() -> None:
    program = lost_update()
    auto = check(program, "auto", bounds=Bounds(probe_seconds=0))
    stateful = check(program, "stateful")
    assert (auto.verdict, auto.property, auto.executions, auto.distinct_states) == \
        (stateful.verdict, stateful.property, stateful.executions,
         stateful.distinct_states)


def test_the_probe_is_repeatable_per_seed() -> None:
    runs = [check(offline_program("v5.10", 3), "auto", seed=3, minimize=False)
            for _ in range(2)]
    assert runs[0].schedule == runs[1].schedule
    assert runs[0].seed == 3


def test_probe_seconds_from_the_environment_and_bad_values(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGESIM_PROBE_SECONDS", "0.25")
    assert Bounds.from_env().probe_seconds == 0.25
    monkeypatch.setenv("PAGESIM_PROBE_SECONDS", "soon")
    with pytest.raises(ValueError, match="PAGESIM_PROBE_SECONDS"):
        Bounds.from_env()
    with pytest.raises(ValueError, match="probe_seconds"):
        Bounds(probe_seconds=-1)


def test_the_cli_takes_auto() -> None:
    res = CliRunner().invoke(cli, ["check", "offline-vs-alloc-free", "--kernel", "v5.10",
                                   "--cpus", "3", "--strategy", "auto", "--json"])
    assert res.exit_code == 1, res.output
    assert '"verdict": "violation"' in res.output
    assert '"strategy": "auto"' in res.output
