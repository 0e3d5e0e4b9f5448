# SPDX-License-Identifier: GPL-2.0-only
"""Stateful exhaustive search: Source-DPOR with sleep sets, plus a table of visited
states, so that an execution reaching a state already explored stops there.

The stateless explorers (:mod:`pagesim.explore.dpor`) re-explore a state each time an
interleaving that is not equivalent to an earlier one reaches it: two CPUs that each
allocate and free a page reach the same machine through many orders of their lock
sections. Here every state reached by a new step is fingerprinted
(:mod:`pagesim.runtime.fingerprint`); a state whose exploration is complete is not
explored again, and a state on the current branch is a loop, which ends the branch (so
programs whose workers loop forever can be explored at all).

**Why caching alone would be unsound.** DPOR finds the branches still to explore from
the races of the executions it ran: when an execution stops at a cached state, the
races between the steps before it and the steps that would have followed are not seen,
and the backtrack points they would have added are lost (Yang, Chen, Gopalakrishnan and
Kirby, "Efficient Stateful Dynamic Partial Order Reduction", SPIN 2008). And with sleep
sets, the exploration of a state covers only what its sleep set did not exclude
(Godefroid, "Partial-Order Methods for the Verification of Concurrent Systems", LNCS
1032, 1996, section 5.3).

**What this search does about it.**

1. *Sleep sets.* A state is stored with the sleep set it was explored under; a revisit
   is cut only if some stored sleep set is a subset of the current one, so the earlier
   exploration covered every execution the current one must (the traces from the state
   that do not start with a sleeping thread). Otherwise it is explored again.
2. *Summaries instead of the lost races.* When a state's exploration completes, it is
   stored with a summary of every access made below it: ``(thread, key, kind)`` for
   every step taken in its subtree, the pending step of every unfinished thread at
   every end, and the summaries of the cached states its executions stopped at. When an
   execution stops at a cached state, each summarised access stands for a step that
   could follow, and every step ``e`` of the current execution that it depends on, by
   another thread and not already ordered before that thread's position (its vector
   clock), gets its node *fully expanded*: every enabled thread not asleep is added to
   the backtrack set. That covers whatever Source-DPOR would have added for the real
   race (a source set is a subset of the enabled threads, and a sleeping one is
   already covered). For keys that name one object exactly, only the last such step of
   each other thread is taken, as DPOR itself does: reversing it exposes the earlier
   ones in a later execution; for the coarse keys below, every such step is.
3. *Keys across executions.* Footprint keys hold object identities, which differ
   between executions. An object reachable when an execution starts is named by its
   number in a traversal of the initial state (the same in every execution, since
   ``setup`` is deterministic), and those names are part of every fingerprint, so two
   states with the same fingerprint hold the same named objects in the same places and
   a summary's keys mean the same objects in both. An object created later is named
   only by its class and the field or index (coarse: all such objects with that field
   conflict), a lock by its name.
4. *Loops.* A revisit of a state on the current branch is a loop. Its summary is not
   complete yet, so every node of the branch is fully expanded and the nodes are
   marked *tainted*; a later revisit of a tainted state fully expands the whole branch
   it happens on. So loops cost reduction, not soundness; a terminating program has
   none.

Every cached state was reached and checked (invariants after every step, final checks,
deadlocks and assertions are decided by the state and the step), and every execution
the stateless search would run is, up to equivalence, run here or continues from a
cached state whose subtree covered it; visible steps (``Program.observes``) are in the
footprints, hence in the summaries, so the per-step checks stay sound as in the
stateless search. States met after a violation in an execution that keeps going are
neither stored nor cut (the checks stop running after the first violation), and neither
are states the fingerprinter cannot read.

**The step bound.** ``max_steps`` is not in the fingerprint. Each stored state records
the longest run explored below it; a revisit at depth ``d`` is cut only if ``d`` plus
that length stays below the bound and no run below it was cut by the bound, so the
cut cannot hide a run that would have exceeded it. A loop in a program that must
terminate (``Program.terminates``, the default) is a liveness violation, reported with
the loop repeated up to the bound, which replays as the stateless search's liveness
counterexample. In a program that loops by design the loop is just cut and the bound is
no property, only a guard against an unbounded state space: reaching it ends the
branch without a violation and leaves the search incomplete (so a verdict of
``verified`` never rests on a cut branch), and revisits are cut whatever their depth.

``executions`` counts the runs from ``setup()`` that reached their end (each branch
replays its prefix: generators cannot be copied), ``pruned`` those stopped by sleep
sets, at a cached state or at a loop, and ``distinct_states`` the states fingerprinted
and stored.
"""

from __future__ import annotations

import sys
from typing import Any

from pagesim.explore.common import Bounds, Budget, Found, Outcome
from pagesim.explore.dpor import (
    _advance,
    _analyse,
    _first_branch,
    _Node,
    _take_with_sleep,
)
from pagesim.runtime.executor import (
    WRITE_KINDS,
    Execution,
    Key,
    Program,
    Schedule,
    replay,
)
from pagesim.runtime.fingerprint import Fingerprinter

#: a summarised access: thread, canonical key, kind
Access = tuple[str, tuple[Any, ...], str]


class _SNode(_Node):
    __slots__ = ("fp", "height", "summary", "tainted", "truncated")

    def __init__(self, enabled: list[str], sleep: set[str], fp: bytes | None) -> None:
        super().__init__(enabled, sleep)
        self.fp = fp
        #: accesses made below this node (its steps, its children's summaries)
        self.summary: set[Access] = set()
        #: the longest run explored below, in steps
        self.height = 0
        #: a loop was cut below: the summary is incomplete
        self.tainted = False
        #: a run below was cut by the step bound
        self.truncated = False

    def expand(self) -> None:
        self.backtrack.update(self.enabled)


class _Entry:
    """A visited state: the sleep sets of its completed explorations and what they
    found below it."""

    __slots__ = ("height", "sleeps", "summary", "tainted", "truncated")

    def __init__(self) -> None:
        self.sleeps: list[frozenset[str]] = []
        self.summary: frozenset[Access] = frozenset()
        self.height = 0
        self.tainted = False
        self.truncated = False

    def covers(self, sleep: set[str], depth: int, limit: int | None) -> bool:
        """Whether an exploration of this state covered what one from here would:
        its sleep set excluded no more, and (under a step bound that is a property)
        no run below was cut by the bound and none would exceed it from ``depth``."""
        if limit is not None and (self.truncated or depth + self.height >= limit):
            return False
        return any(s <= sleep for s in self.sleeps)


class _Keys:
    """Footprint keys of one execution in a form that means the same in every
    execution (see the module docstring, point 3)."""

    def __init__(self, ex: Execution, names: dict[int, int]) -> None:
        self.ex = ex
        self.names = names
        self.cache: dict[Key, tuple[Any, ...]] = {}

    def canon(self, key: Key) -> tuple[Any, ...]:
        c = self.cache.get(key)
        if c is not None:
            return c
        kind = key[0]
        if kind in ("field", "index", "lock"):
            n = self.names.get(key[1])
            if n is not None:
                c = ("=", kind, n, *key[2:])
            else:
                obj = self.ex.memory._pinned.get(key[1])
                if kind == "lock":
                    c = ("~", kind, getattr(obj, "name", ""))
                else:
                    c = ("~", kind, type(obj).__qualname__, *key[2:])
        else:  # ("cpu", n), ("work", tid), ("global",), ("observer",): the same everywhere
            c = key
        self.cache[key] = c
        return c


def explore_stateful(program: Program, bounds: Bounds) -> Outcome:
    """Source-DPOR with sleep sets and state caching; see the module docstring."""
    budget = Budget(bounds)
    out = budget.outcome
    fpr = Fingerprinter()
    limit = bounds.max_steps if bounds.max_steps is not None else program.max_steps
    loops_allowed = not program.terminates
    table: dict[bytes, _Entry] = {}
    #: one copy of each distinct summary: most states share theirs with many others
    summaries: dict[frozenset[Access], frozenset[Access]] = {}
    on_stack: dict[bytes, list[int]] = {}
    stack: list[_SNode] = []
    bound_cut = False
    while True:
        ex = Execution(program, max_steps=sys.maxsize if loops_allowed else limit,
                       keep_going=not bounds.stop_on_violation)
        roots: list[Any] = [ex.state]
        for th in ex.threads.values():
            roots += (th.gen, th.pending)
        names = fpr.object_names(roots)
        keys = _Keys(ex, names)
        for node in stack[:-1]:
            node.take(ex, node.tid)
        child_sleep: set[str] = set()
        if stack:
            child_sleep = _take_with_sleep(ex, stack[-1])
            _record(stack[-1], ex, keys)
        blocked = False
        hit: _Entry | None = None
        loop = stop = False
        while not ex.over:
            depth = len(ex.steps)
            if loops_allowed and depth >= limit:
                bound_cut = True
                if stack:
                    stack[-1].truncated = True
                break
            fp = fpr.fingerprint(ex, names) if ex.violation is None else None
            if fp is not None:
                where = on_stack.get(fp)
                if where and (not loops_allowed
                              or any(stack[i].sleep <= child_sleep for i in where)):
                    loop = True
                    if not loops_allowed:
                        stop = _report_loop(program, budget, ex, where[0], limit)
                    break
                entry = table.get(fp)
                if entry is not None and entry.covers(
                        child_sleep, depth, None if loops_allowed else limit):
                    hit = entry
                    break
            enabled = ex.enabled()
            node = _SNode(list(enabled), child_sleep, fp)
            if not _first_branch(ex, node):
                blocked = True
                break
            if fp is not None:
                on_stack.setdefault(fp, []).append(len(stack))
                table.setdefault(fp, _Entry())
            stack.append(node)
            child_sleep = _take_with_sleep(ex, node)
            _record(node, ex, keys)
        if stack:
            leaf = stack[-1]
            for tid, th in ex.threads.items():
                if not th.finished:
                    for key, kind in ex.pending_footprint(tid):
                        leaf.summary.add((tid, keys.canon(key), kind))
            length = len(ex.steps) - (len(stack) - 1)
            if hit is not None:
                length += hit.height
                leaf.summary |= hit.summary
                leaf.truncated |= hit.truncated
            leaf.height = max(leaf.height, length)
            if (ex.violation is not None and ex.violation.property == "liveness") or (
                    loop and not loops_allowed):
                leaf.truncated = True  # runs below may be longer than any explored
        _analyse(ex, stack)  # type: ignore[arg-type]  # _SNode is a _Node, never stored back
        if loop or (hit is not None and hit.tainted):
            for node in stack:
                node.expand()
            if stack:
                stack[-1].tainted = True
        elif hit is not None:
            _apply_summary(ex, stack, hit.summary, keys)
        # a loop of a program that must terminate is the run of a liveness violation
        cut = blocked or hit is not None or (loop and loops_allowed)
        if budget.record(ex, counted=not cut) or stop:
            out.distinct_states = len(table)
            return out
        if not _backtrack(stack, table, on_stack, summaries):
            out.complete = not bound_cut
            out.distinct_states = len(table)
            return out


def _record(node: _SNode, ex: Execution, keys: _Keys) -> None:
    """Add the step just taken from ``node`` to its summary."""
    st = ex.steps[-1]
    for key, kind in st.footprint:
        node.summary.add((st.tid, keys.canon(key), kind))


def _backtrack(stack: list[_SNode], table: dict[bytes, _Entry],
               on_stack: dict[bytes, list[int]],
               summaries: dict[frozenset[Access], frozenset[Access]]) -> bool:
    """As the stateless search's, and a node whose exploration is complete is stored
    with its summary and merged into its parent."""
    while stack:
        node = stack[-1]
        if _advance(node):
            return True
        stack.pop()
        if node.fp is not None:
            where = on_stack[node.fp]
            where.remove(len(stack))
            if not where:
                del on_stack[node.fp]
            entry = table[node.fp]
            entry.sleeps.append(frozenset(node.sleep))
            merged = entry.summary.union(node.summary)
            entry.summary = summaries.setdefault(merged, merged)
            entry.height = max(entry.height, node.height)
            entry.tainted |= node.tainted
            entry.truncated |= node.truncated
        if stack:
            parent = stack[-1]
            parent.summary |= node.summary
            parent.height = max(parent.height, node.height + 1)
            parent.tainted |= node.tainted
            parent.truncated |= node.truncated
    return False


def _apply_summary(ex: Execution, stack: list[_SNode], summary: frozenset[Access],
                   keys: _Keys) -> None:
    """Fully expand the node before every step of this execution that an access of
    the cached state's subtree could race with (module docstring, point 2)."""
    threads = ex.threads
    tindex = {tid: th.index for tid, th in threads.items()}
    n = len(tindex)
    seq_of: list[int] = []
    clocks: list[list[int] | None] = [None] * n
    for th in threads.values():
        if th.creator_step is None:
            clocks[th.index] = [0] * n
    vcs: list[list[int]] = []
    last_w: dict[Key, int] = {}
    reads: dict[Key, dict[int, int]] = {}
    by_key: dict[tuple[Any, ...], list[tuple[int, int, str]]] = {}
    nodes = len(stack)
    for i, st in enumerate(ex.steps):
        t = tindex[st.tid]
        pre = clocks[t]
        assert pre is not None
        vc = pre.copy()
        vc[t] += 1
        for key, kind in st.footprint:
            w = last_w.get(key)
            if w is not None:
                _join(vc, vcs[w])
            if kind in WRITE_KINDS:
                for r in reads.get(key, {}).values():
                    _join(vc, vcs[r])
                last_w[key] = i
                reads[key] = {}
            else:
                reads.setdefault(key, {})[t] = i
            if i < nodes:
                by_key.setdefault(keys.canon(key), []).append((i, t, kind))
        vcs.append(vc)
        seq_of.append(vc[t])
        clocks[t] = vc
        if st.created is not None:
            clocks[tindex[st.created]] = vc.copy()
    for tid, ck, kind in summary:
        found = by_key.get(ck)
        if not found:
            continue
        ti = tindex.get(tid)
        clock = clocks[ti] if ti is not None else None
        exact = ck[0] != "~"
        done: set[int] = set()
        for i, te, other in reversed(found):
            if te == ti or te in done:
                continue
            if kind not in WRITE_KINDS and other not in WRITE_KINDS:
                continue
            if clock is not None and clock[te] >= seq_of[i]:
                done.add(te)  # ordered before the thread's position, and so is all before
                continue
            stack[i].expand()
            if exact:
                done.add(te)


def _join(into: list[int], other: list[int]) -> None:
    for i, v in enumerate(other):
        if v > into[i]:
            into[i] = v


def _report_loop(program: Program, budget: Budget, ex: Execution, start: int,
                 limit: int) -> bool:
    """A loop in a program that must terminate: the liveness violation the stateless
    search finds at the step bound, by running the loop until the bound. True if the
    search must stop."""
    out = budget.outcome
    out.violations += 1
    if out.first is None:
        steps = [(s.tid, s.choice) for s in ex.steps]
        cycle = steps[start:]
        while len(steps) < limit:
            steps += cycle
        rep = replay(program, Schedule(tuple(steps[:limit]), program.name),
                     max_steps=limit)
        if rep.violation is not None:
            taken = rep.steps[:rep.violation.step + 1]
            out.first = Found(rep.violation,
                              Schedule(tuple((s.tid, s.choice) for s in taken),
                                       program.name),
                              sum(1 for s in taken if s.preemption))
    return budget.stop_on_violation
