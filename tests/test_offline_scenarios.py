# SPDX-License-Identifier: GPL-2.0-only
"""The acceptance of the offline scenarios: the checker finds each known race and
verifies each known fix by itself (spec §6, §7). Nothing here scripts an interleaving:
every verdict comes from an exhaustive search of the scenario on that generation."""

from __future__ import annotations

import pytest

from pagesim.explore import check
from pagesim.runtime.executor import replay
from pagesim.scenarios import program
from pagesim.scenarios.offline import offline_program


def _ops(result: object) -> list[str]:
    return [r.op for r in result.trace]  # type: ignore[attr-defined]


def test_v58_offline_never_finishes_with_a_page_parked_on_a_pcplist() -> None:
    """§6.1: a free commits its page to a pcplist after isolation's single drain, and
    nothing drains it again: once the worker has stopped, offline still fails."""
    r = check(offline_program("v5.8", 2, ops=1, check_safety=False))
    assert r.verdict == "violation"
    assert r.property == "final"
    assert "never finishes" in (r.message or "")
    assert "parked on pcp[cpu1][Normal]'s pcplist" in (r.message or "")
    # the counterexample: the worker's commit comes after isolation wrote the block
    ops = _ops(r)
    isolate = next(i for i, op in enumerate(ops) if op.startswith("WRITE_ONCE(pageblock[1]"))
    assert any("pcp[cpu1][Normal].count, 1" in op for op in ops[isolate:])


def test_v510_drain_on_retry_restores_termination() -> None:
    """9683182612214a: draining after every failed test moves the parked page to the
    ISOLATE list, so the offline finishes once the workers stop, in every
    interleaving..."""
    r = check(offline_program("v5.10", 2, ops=1, check_safety=False))
    assert r.verdict == "verified", r.message
    assert r.complete


def test_v510_can_still_hand_out_a_page_of_an_isolated_block() -> None:
    """...but isolation's promise still breaks: an allocation returns a page of the
    isolated block from a pcplist (§6.1 safety, §7)."""
    r = check(offline_program("v5.10", 2, ops=2))
    assert r.verdict == "violation"
    assert r.property == "assertion"
    assert "isolated from before the allocation began" in (r.message or "")


def test_stateful_search_agrees_with_dpor_on_the_offline_scenario() -> None:
    """State caching must not change a verdict: two moves per worker, verified by the
    stateful search (DPOR alone takes minutes here), and the one-move version verified
    by both."""
    assert check(offline_program("v5.11", 2, ops=2), "stateful").verdict == "verified"
    assert check(offline_program("v5.11", 2, ops=1), "stateful").verdict == "verified"


def test_v511_is_verified_with_two_cpus() -> None:
    """The fix: every interleaving of an offline against a CPU that allocates a page
    (refilling its pcplist from the buddy) and frees it keeps both properties. (Two moves
    per worker take minutes: bench/bench_spin.py runs the larger configurations.)"""
    r = check(offline_program("v5.11", 2, ops=1))
    assert r.verdict == "verified", r.message
    assert r.complete and r.executions > 1000


def test_the_forced_drain_is_necessary() -> None:
    """§6.3: without force_all_cpus, zone_pcp_disable() skips a CPU whose count it
    reads as 0 while that CPU's refill (sized with the old batch) has not yet raised
    it; the leftover page of the refill is handed out after isolation."""
    r = check(offline_program("v5.11-unforced", 2, ops=2), "stateful")
    assert r.verdict == "violation"
    ops = _ops(r)
    # the drain read CPU1's count as 0 and queued no work on CPU1
    assert any(op == "READ_ONCE(pcp[cpu1][Normal].count)" for op in ops) or any(
        "pcp[cpu1][Normal].count" in op for op in ops)
    assert not any("queue_work_on(1" in op for op in ops)


def test_v60_remote_drain_unlocked_count_is_found_and_its_fix_verified() -> None:
    """§6.5: 6.0's drain_pages_zone() reads a remote count without the pcp lock and
    skips a CPU in the middle of a refill; the 6.11 fix (count read under the lock)
    closes it, as does the same fix on 6.0."""
    r = check(offline_program("v6.0", 2, ops=2), "stateful")
    assert r.verdict == "violation"
    assert "isolated from before the allocation began" in (r.message or "")
    # the same refill leaves a page stuck: the offline hangs (one allocation suffices)
    hang = check(offline_program("v6.0", 2, ops=1, check_safety=False), "stateful")
    assert hang.verdict == "violation"
    assert "never finishes" in (hang.message or "")
    for kern in ("v6.0-locked-count", "v6.11"):
        fixed = check(offline_program(kern, 2, ops=1, check_safety=False), "stateful")
        assert fixed.verdict == "verified", (kern, fixed.message)


def test_counterexamples_replay_to_the_same_violation() -> None:
    r = check(program("offline-vs-alloc-free", "v5.10", 2))
    again = replay(program("offline-vs-alloc-free", "v5.10", 2), r.schedule)
    assert again.violation is not None
    assert again.violation.message == r.message


def test_batched_free_race_is_found_on_v58() -> None:
    """The path of the original report: free_unref_page_list() samples every block
    type before committing the batch."""
    r = check(program("offline-vs-batched-free", "v5.8", 2))
    assert r.verdict == "violation"


def test_batched_free_is_verified_after_the_fix() -> None:
    r = check(program("offline-vs-batched-free", "v5.11", 2), "stateful")
    assert r.verdict == "verified", r.message


def test_offline_program_rejects_a_single_cpu() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        check(offline_program("v5.11", 1))


def test_contiguous_allocation_owns_its_range_or_fails_cleanly() -> None:
    """§6.6: alloc_contig_range keeps the racy single drain; every race must surface
    as -EBUSY, never as a success that shares a page with a worker."""
    r = check(program("contig-vs-alloc-free", "v5.8", 2), "stateful")
    assert r.verdict == "verified", r.message


def test_two_isolation_users_never_both_win() -> None:
    r = check(program("two-isolation-users", "v5.11", 2), "stateful")
    assert r.verdict == "verified", r.message
    assert r.executions >= 2  # both orders of the two isolations were explored


def test_offline_online_cycle_hangs_on_v58_only_at_its_first_offline() -> None:
    r = check(program("offline-online-cycle", "v5.8", 2), "stateful", minimize=False)
    assert r.verdict == "violation"
    assert "offline #1" in (r.message or "")
