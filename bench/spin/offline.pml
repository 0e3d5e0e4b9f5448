/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Memory offline against CPUs that allocate and free: a hand-written SPIN model of
 * the protocol of "mm, page_alloc: disable pcplists during memory offline" (v5.11),
 * the baseline of bench/bench_spin.py.  Written from the project's kernel-semantics
 * spec (§3.1-3.6, §6, §7) and the algorithm of mm/page_alloc.c, mm/page_isolation.c
 * and mm/memory_hotplug.c of v5.10/v5.11; names follow the kernel's.
 *
 * The system (the pagesim scenario offline-vs-alloc-free): 8 pages in two pageblocks
 * of 4, pcp high 3 and batch 2.  CPU0 offlines the second pageblock (pfns 4-7) and
 * gives up after MAXRETRY failed rounds; every other CPU is a worker that allocates
 * an order-0 MOVABLE page or frees the oldest page it holds, holding at most MAXHELD.
 *
 * Generation, chosen at compile time (spin -DV511 -a offline.pml):
 *   V58   start_isolate_page_range() drains once after isolating (set_migratetype_isolate
 *         calls drain_all_pages); failed tests just retry.
 *   V510  as V58, plus drain_all_pages(zone) after every failed test_pages_isolated()
 *         (the 5.9 fix "drain per-cpu pages again during memory offline").
 *   V511  zone_pcp_disable(): high 0 / batch 1 on every CPU, then a forced drain of
 *         every CPU, then isolation (no drain in set_migratetype_isolate), no drain on
 *         retry, zone_pcp_enable() at the end (success or failure).
 * Other knobs: -DNCPU=2 (CPU0 plus one worker; default 3), -DOPS=3 (each worker makes
 * exactly 3 moves as pagesim's scenario does, instead of looping until it chooses to
 * stop), -DANYPAGE (the buddy hands out any free page, see "The buddy" below),
 * -DNOSAFETY (termination only, like pagesim's offline-termination scenario),
 * -DUNFORCED (V511 whose zone_pcp_disable drains only the CPUs whose count it reads
 * as non-zero: the variant the forced drain of §6.3 exists to rule out).
 *
 * Properties (assertions):
 *   safety       no allocation returns a page of a pageblock that was isolated from
 *                the moment the allocation entered its irq-off section until it took
 *                the page (spec §7);
 *   termination  once every worker has stopped, the offline succeeds within EXTRA
 *                more rounds (the bounded form of "offline_pages terminates" under the
 *                fairness assumption of §7: workers eventually stop);
 *   conservation at the end, after draining every pcplist, every page is free in the
 *                buddy (on the free list of its block's type) or offline, and no
 *                reference is left; no deadlock (SPIN's invalid end states).
 *
 * Concurrency, and which steps are atomic.  Each CPU's interrupts-off section is a
 * per-CPU lock, cpulock[c], taken by the task on c and by the drain work item of c
 * (drain_local_pages_wq, a separate process that runs only while c is outside its
 * sections): a section excludes only its own CPU's drain, never the other CPUs, which
 * interleave inside it.  Steps are grouped so that no other CPU's action placed
 * between two accesses of one step could change the outcome (SPIN's partial-order
 * reduction does little here: nearly every variable is global), each grouping argued
 * where it is made:
 *   - every zone->lock section is one d_step: all it touches is protected by
 *     zone->lock except the pageblock type, which it writes at most once;
 *   - free_pcppages_bulk's two phases (unlink from the pcplist without the lock, free
 *     to the buddy under it) are one step: in between the pages are on no list and only
 *     the zone lock's holder can see them, and phase 2 re-reads the block type when
 *     the zone has isolated blocks, so isolation landing in between changes nothing;
 *   - the page table lock sections (unmap and put by a worker, the move of a mapping
 *     by migration) are one step each, as is migration's isolation of the pages in the
 *     range (pagesim makes the same choice);
 *   - a free's prepare half (the lockless read of the block type, IRQs on) is merged
 *     with the put that dropped the last reference, and is a separate step from the
 *     commit: the preemptible window between them is the race of §6.1;
 *   - a commit is one step (see commit() for why), and so is an allocation from a
 *     non-empty list; an allocation that refills is two: rmqueue_bulk under
 *     zone->lock, then count += the pages got and the take (the window of §6.3 in
 *     which a remote count check sees 0 while pages sit on the list);
 *   - zone_pcp_disable/enable write each CPU's (batch, high) pair in one step per CPU.
 *     The kernel's two stores let a reader see new batch with old high, which only
 *     changes how many pages a flush frees while high is still 3.
 * Memory is sequentially consistent, so the store-buffer form of §6.3 (a free's count
 * store passing its load of high) is not modelled; with V511's forced drain it would
 * not matter, and in V58/V510 the counterexamples exist without it.
 *
 * The buddy.  A per-page free flag and "which list" flag instead of free_area[0..2]:
 * orders do not matter to the properties here.  With pageblock_order equal to the
 * largest order (2) no block ever spans two pageblocks, so merging never meets the
 * isolation boundary rule; test_pages_isolated() skips a whole buddy block exactly as
 * it would skip its pages one by one; move_freepages_block() moves every free page of
 * the block whatever its order; and every free page's list type equals its block's
 * type at every zone->lock release (the model asserts it), because frees re-read the
 * type whenever the zone has an isolated block.  What orders would decide is only
 * *which* page __rmqueue_smallest returns.  By default that is deterministic: the
 * lowest free pfn of the offlined block first, then of the other block, which is the
 * order a fresh zone with the second block at the head of the free lists hands pages
 * out (pagesim's scenario sets its zone up that way so the workers' first refill takes
 * pages of the range, the precondition of every race here).  With -DANYPAGE it is any
 * free page on a MOVABLE list: an over-approximation of every free-list order.
 * Only the MOVABLE pcplist exists: workers and migration allocate MOVABLE, and a page
 * freed with a cached type other than MOVABLE is an ISOLATE one, which bypasses the
 * pcplist.  Free-page counters, watermarks and fallbacks are not modelled (nothing
 * here allocates anything but MOVABLE, and there is always a MOVABLE list entry or
 * none at all).  has_unmovable_pages() always passes (every page in use is an LRU
 * page; pcplist pages have refcount 0); there are no signals and no hugetlb pages.
 *
 * Not kernel code: the algorithm of the cited functions, re-expressed.
 */

#ifndef NCPU
#define NCPU 3
#endif
#if !defined(V58) && !defined(V510) && !defined(V511)
#define V511
#endif

#define NPG      8       /* pages in the zone */
#define BLK      4       /* pages per pageblock */
#define RBLK     1       /* the pageblock being offlined */
#define RS       4       /* its first pfn */
#define RE       8       /* one past its last pfn */
#define NONE     8       /* no page */
#define HIGH     3       /* pcp->high */
#define BATCH    2       /* pcp->batch */
#define PCAP     3       /* most pages a pcplist holds (high, just before a flush) */
#define MAXHELD  2       /* most pages a worker holds */
#define MAXRETRY 2       /* failed rounds before CPU0 gives up while workers run */
#define EXTRA    2       /* further rounds once every worker has stopped */

#define MOV      1       /* MIGRATE_MOVABLE */
#define ISO      4       /* MIGRATE_ISOLATE (no CMA) */

byte btype[2];           /* pageblock migratetype bits */
byte nr_iso;             /* zone->nr_isolate_pageblock */
bit  buddy[NPG];         /* free in the buddy (PageBuddy) */
bit  isol[NPG];          /* ... on an ISOLATE free list */
byte ref[NPG];           /* page refcount */
bit  lru[NPG];           /* PG_lru: an in-use page migration can move */
bit  offlined;           /* the range went offline */

byte pcnt[NCPU];         /* pcp->count */
byte pl[NCPU * PCAP];    /* pcp->lists[MIGRATE_MOVABLE], head first; NONE beyond count */
byte high[NCPU];         /* pcp->high */
byte batch[NCPU];        /* pcp->batch */
bit  cpulock[NCPU];      /* CPU c is inside an interrupts-off section */
bit  drainreq[NCPU];     /* drain work queued on CPU c, not yet run */

byte held[NCPU * MAXHELD]; /* per worker, the pages it maps, oldest first */
byte nheld[NCPU];
bit  finished[NCPU];     /* worker c has stopped */
bit  offdone;            /* offline_pages() returned */

/* ---- the buddy, under zone->lock ------------------------------------------------ */

/* __free_one_page() after the type decision of free_one_page()/free_pcppages_bulk():
 * when the zone has an isolated block, or the cached type is ISOLATE, the block's type
 * is re-read under the lock. */
inline to_buddy(p, m) {
	if
	:: nr_iso > 0 || m == ISO -> m = btype[p / BLK]
	:: else
	fi;
	assert(!buddy[p] && ref[p] == 0);
	buddy[p] = 1;
	isol[p] = (m == ISO);
	assert(isol[p] == (btype[p / BLK] == ISO));   /* list type == block type */
	m = 0
}

/* free_pcppages_bulk(zone, count, pcp): the oldest pages first (the list's tail). */
inline bulk(c, n, k, p, m) {
	k = n;
	if
	:: k > pcnt[c] -> k = pcnt[c]
	:: else
	fi;
	do
	:: k > 0 ->
		p = pl[c * PCAP + pcnt[c] - 1];
		pl[c * PCAP + pcnt[c] - 1] = NONE;
		pcnt[c]--;
		k--;
		m = MOV;              /* the cached type: a pcplist page's is MOVABLE */
		to_buddy(p, m)
	:: else -> break
	od;
	p = 0
}

/* __rmqueue_smallest(zone, 0, MIGRATE_MOVABLE): a free page on a MOVABLE list, or
 * NONE.  ISOLATE lists are never an allocation source. */
#ifdef ANYPAGE
#define ZSTEP atomic
inline pick(p) {
	p = NONE;
	if
	:: buddy[4] && !isol[4] -> p = 4
	:: buddy[5] && !isol[5] -> p = 5
	:: buddy[6] && !isol[6] -> p = 6
	:: buddy[7] && !isol[7] -> p = 7
	:: buddy[0] && !isol[0] -> p = 0
	:: buddy[1] && !isol[1] -> p = 1
	:: buddy[2] && !isol[2] -> p = 2
	:: buddy[3] && !isol[3] -> p = 3
	:: else
	fi
}
#else
#define ZSTEP d_step
inline pick(p) {
	p = RS;
	do
	:: p < RS + NPG && !(buddy[p % NPG] && !isol[p % NPG]) -> p++
	:: else -> break
	od;
	if
	:: p < RS + NPG -> p = p % NPG
	:: else -> p = NONE
	fi
}
#endif

/* ---- the pcplist layer ---------------------------------------------------------- */

/* Take the list's head (the most recently added page); prep_new_page gives it its
 * reference and, as a MOVABLE page, PG_lru; a worker maps it in the same step. */
inline take_head(c, p) {
	p = pl[c * PCAP];
	pl[c * PCAP] = pl[c * PCAP + 1];
	pl[c * PCAP + 1] = pl[c * PCAP + 2];
	pl[c * PCAP + 2] = NONE;
	pcnt[c]--;
	ref[p] = 1;
	lru[p] = 1;
#ifndef NOSAFETY
	assert(!(isob && p >= RS && p < RE && btype[RBLK] == ISO));   /* safety */
#endif
	if
	:: c > 0 -> held[c * MAXHELD + nheld[c]] = p; nheld[c]++
	:: else
	fi
}

/* rmqueue_pcplist(zone, 0, MIGRATE_MOVABLE): the page in p, or NONE.  With pages on
 * the list this is one step.  An empty list is refilled by rmqueue_bulk() (batch
 * pages from the buddy, appended to the tail) in the first step, and the count is
 * raised, and the head taken, in a second: in between, a remote count check sees 0
 * while pages sit on the list (spec §6.3, the refill window).  The read of batch goes
 * with the refill: in V58/V510 batch never changes, and in V511 isolation cannot come
 * between them (zone_pcp_disable's forced drain waits for this section). */
inline pcp_alloc(c, p) {
	p = NONE;
	ZSTEP {
		cpulock[c] == 0 -> cpulock[c] = 1;     /* local_irq_save */
		isob = (btype[RBLK] == ISO);           /* ghost: isolated when we began */
		got = 0;
		if
		:: pcnt[c] > 0 -> take_head(c, p); cpulock[c] = 0; isob = 0
		:: else ->
			b = batch[c];
			do
			:: got < b ->
				pick(p);
				if
				:: p == NONE -> break
				:: else ->
					buddy[p] = 0;
					pl[c * PCAP + got] = p;
					got++
				fi
			:: else -> break
			od;
			p = NONE;
			b = 0;
			if
			:: got == 0 -> cpulock[c] = 0; isob = 0   /* no free page */
			:: else
			fi
		fi
	}
	if
	:: got > 0 ->
		d_step {
			pcnt[c] = pcnt[c] + got;
			got = 0;
			take_head(c, p);
			cpulock[c] = 0;
			isob = 0
		}
	:: else
	fi
}

/* free_unref_page_commit() inside its interrupts-off section, after the prepare half
 * left the page's cached type in m.  One step: under sequential consistency nothing
 * another CPU does between the list add and the read of high changes the outcome
 * (a remote count check then sees the page, and the drain it queues waits for this
 * section; isolation then is caught by the flush's re-read of the block type); the
 * store-buffer reordering of §6.3, which would make it matter, is not modelled. */
inline commit(c, p, m, k, q, r) {
	if
	:: m == ISO ->
		/* straight to the buddy: free_one_page() */
		d_step { cpulock[c] == 0 -> cpulock[c] = 1; to_buddy(p, m); cpulock[c] = 0 }
	:: else ->
		d_step {
			cpulock[c] == 0 -> cpulock[c] = 1;
			assert(pcnt[c] < PCAP);
			pl[c * PCAP + 2] = pl[c * PCAP + 1];
			pl[c * PCAP + 1] = pl[c * PCAP];
			pl[c * PCAP] = p;
			pcnt[c]++;
			if
			:: pcnt[c] >= high[c] -> bulk(c, batch[c], k, q, r)
			:: else
			fi;
			cpulock[c] = 0
		}
	fi;
	p = NONE;
	m = 0
}

/* drop a reference; the last one frees the page: free_unref_page()'s prepare half
 * reads the block type without a lock, with IRQs on, then the commit follows */
inline put_page(c, p, m, k, q, r) {
	d_step {
		assert(ref[p] > 0);
		ref[p]--;
		if
		:: ref[p] == 0 -> lru[p] = 0; m = btype[p / BLK]
		:: else -> p = NONE
		fi
	}
	if
	:: p != NONE -> commit(c, p, m, k, q, r)
	:: else
	fi
}

/* drain_local_pages_wq() for CPU c: drain_pages_zone() inside c's own interrupts-off
 * section, so never inside a section of the task on c. */
proctype drainer(byte c) {
	byte k, q, r;
end:	do
	:: d_step {
		drainreq[c] && cpulock[c] == 0 ->
		bulk(c, pcnt[c], k, q, r);
		drainreq[c] = 0
	   }
	od
}

/* ---- a worker ----------------------------------------------------------------- */

/* zap the oldest mapping and drop its reference, under the page table lock */
inline unmap_and_put(c) {
	d_step {
		pg = held[c * MAXHELD];
		held[c * MAXHELD] = held[c * MAXHELD + 1];
		held[c * MAXHELD + 1] = NONE;
		nheld[c]--;
		assert(ref[pg] > 0);
		ref[pg]--;
		if
		:: ref[pg] == 0 -> lru[pg] = 0; mt = btype[pg / BLK]
		:: else -> pg = NONE            /* migration holds it: migration frees it */
		fi
	}
	if
	:: pg != NONE -> commit(c, pg, mt, k, q, r)
	:: else
	fi
}

proctype worker(byte c) {
	byte pg = NONE, mt, k, q, r, b, got;
	bit isob;
#ifdef OPS
	byte n;
	do
	:: n < OPS ->
		if
		:: nheld[c] == 0 -> pcp_alloc(c, pg)
		:: nheld[c] >= MAXHELD -> unmap_and_put(c)
		:: nheld[c] > 0 && nheld[c] < MAXHELD ->
			if
			:: pcp_alloc(c, pg)
			:: unmap_and_put(c)
			fi
		fi;
		pg = NONE;
		n++
	:: else -> break
	od;
	n = 0;
#else
	do
	:: nheld[c] < MAXHELD -> pcp_alloc(c, pg); pg = NONE
	:: nheld[c] > 0 -> unmap_and_put(c)
	:: break
	od;
#endif
	do
	:: nheld[c] > 0 -> unmap_and_put(c)
	:: else -> break
	od;
	finished[c] = 1
}

/* ---- CPU0: offline_pages(4, 4) -------------------------------------------------- */

/* __drain_all_pages(zone, force): choose the CPUs (a remote, unlocked read of each
 * count unless forced), queue their work, flush it. */
inline drain_all_pages(force) {
	mask = 0;
	i = 0;
	do
	:: i < NCPU ->
		if
		:: force || pcnt[i] > 0 -> mask = mask | (1 << i)
		:: else
		fi;
		i++
	:: else -> break
	od;
	skip;
	d_step {
		i = 0;
		do
		:: i < NCPU -> if :: mask & (1 << i) -> drainreq[i] = 1 :: else fi; i++
		:: else -> break
		od;
		i = 0
	}
	i = 0;
	do                                  /* flush_work on each */
	:: i < NCPU -> drainreq[i] == 0; i++
	:: else -> break
	od;
	i = 0;
	mask = 0
}

inline set_pcp(h, bt) {
	i = 0;
	do
	:: i < NCPU -> d_step { batch[i] = bt; high[i] = h; i++ }
	:: else -> break
	od;
	i = 0
}

/* a failed round: give up at the bound, unless every worker has stopped: then EXTRA
 * more rounds alone, and failing those is the termination violation */
inline failed_round() {
	retries++;
	if
	:: retries >= maxr ->
		if
		:: alone -> assert(false)       /* termination: the offline never finishes */
		:: else
		fi;
		skip;
		d_step {
			alone = 1;
			i = 1;
			do
			:: i < NCPU -> if :: !finished[i] -> alone = 0 :: else fi; i++
			:: else -> break
			od;
			i = 0
		}
		if
		:: alone -> maxr = maxr + EXTRA
		:: else -> goto fail
		fi
	:: else
	fi
}

proctype offliner() {
	byte i, mask, pfn, src, p, newpg, mt, k, q, r, b, got, retries, maxr;
	bit isob, ok, alone, gone;
#ifdef V511
	set_pcp(0, 1);                      /* zone_pcp_disable() */
#ifdef UNFORCED
	drain_all_pages(0);
#else
	drain_all_pages(1);
#endif
#endif
	/* start_isolate_page_range() -> set_migratetype_isolate() */
	d_step {
		assert(btype[RBLK] != ISO);
		btype[RBLK] = ISO;
		nr_iso++;
		i = RS;
		do                          /* move_freepages_block(ISOLATE) */
		:: i < RE -> if :: buddy[i] -> isol[i] = 1 :: else fi; i++
		:: else -> break
		od;
		i = 0
	}
#ifndef V511
	drain_all_pages(0);
#endif
	maxr = MAXRETRY;
	do
	:: pfn = RS;
		do
		:: atomic {                 /* scan_movable_pages(pfn, end) */
			do
			:: pfn < RE && !lru[pfn] -> pfn++
			:: else -> break
			od
		   }
			if
			:: pfn >= RE -> break
			:: else
			fi;
			/* do_migrate_range(pfn, end): take every LRU page in use off the LRU
			 * with a reference of our own, then move them one by one */
			skip;
			d_step {
				src = 0;
				i = pfn;
				do
				:: i < RE ->
					if
					:: ref[i] > 0 && lru[i] -> ref[i]++; lru[i] = 0; src = src | (1 << i)
					:: else
					fi;
					i++
				:: else -> break
				od;
				i = 0;
				ok = 1
			}
			p = RS;
			do
			:: p < RE && !(src & (1 << p)) -> p++
			:: p < RE && (src & (1 << p)) ->
				src = src & ~(1 << p);
				/* unmap_and_move() */
				d_step {
					if
					:: ref[p] == 1 ->
						/* the owner freed it meanwhile: ours is the last reference */
						ref[p] = 0; mt = btype[p / BLK]; newpg = p; gone = 1
					:: else -> gone = 0
					fi
				}
				if
				:: gone -> gone = 0; commit(0, newpg, mt, k, q, r)
				:: else ->
					pcp_alloc(0, newpg);
					if
					:: newpg == NONE ->
						/* -ENOMEM: putback_lru_page() */
						d_step {
							ref[p]--;
							if
							:: ref[p] == 0 -> mt = btype[p / BLK]; newpg = p
							:: else -> lru[p] = 1
							fi;
							ok = 0
						}
						if
						:: newpg != NONE -> commit(0, newpg, mt, k, q, r)
						:: else
						fi
					:: else ->
						/* under the page table lock: move the mapping to the new
						 * page and drop the source (the mapping's reference and,
						 * right after, ours), or find that the owner unmapped it */
						d_step {
							if
							:: ref[p] == 1 -> gone = 1
							:: else ->
								assert(ref[p] == 2);
								i = 0;
								do
								:: i < NCPU * MAXHELD && held[i] != p -> i++
								:: else -> break
								od;
								assert(i < NCPU * MAXHELD);
								held[i] = newpg;
								i = 0;
								ref[p] = 0;
								mt = btype[p / BLK];
								newpg = p
							fi
						}
						if
						:: gone ->
							/* drop the unused target, then the source */
							gone = 0;
							put_page(0, newpg, mt, k, q, r);
							newpg = p;
							put_page(0, newpg, mt, k, q, r)
						:: else -> commit(0, newpg, mt, k, q, r)
						fi
					fi
				fi
			:: else -> break
			od;
			p = 0;
			newpg = 0;
			if
			:: !ok -> ok = 1; failed_round()
			:: else
			fi
		od;
		/* test_pages_isolated(): every page of the range free in the buddy */
		skip;
		d_step {
			ok = 1;
			i = RS;
			do
			:: i < RE -> if :: !buddy[i] -> ok = 0 :: else fi; i++
			:: else -> break
			od;
			i = 0
		}
		if
		:: ok -> break
		:: else
		fi;
#ifdef V510
		drain_all_pages(0);
#endif
		failed_round()
	od;
	/* __offline_isolated_pages(), nr_isolate_pageblock -= the range's blocks */
	skip;
	d_step {
		i = RS;
		do
		:: i < RE -> assert(buddy[i] && isol[i]); buddy[i] = 0; isol[i] = 0; i++
		:: else -> break
		od;
		i = 0;
		nr_iso--;
		offlined = 1;
		ok = 0
	}
#ifdef V511
	set_pcp(HIGH, BATCH);               /* zone_pcp_enable() */
#endif
	goto done;
fail:
	skip;
	/* undo_isolate_page_range() -> unset_migratetype_isolate(MIGRATE_MOVABLE) */
	d_step {
		btype[RBLK] = MOV;
		i = RS;
		do
		:: i < RE -> isol[i] = 0; i++
		:: else -> break
		od;
		i = 0;
		nr_iso--;
		ok = 0
	}
#ifdef V511
	set_pcp(HIGH, BATCH);               /* zone_pcp_enable() */
#endif
done:
	offdone = 1
}

/* ---- setup and the final check ------------------------------------------------- */

init {
	byte i, k, q, r;
	d_step {
		btype[0] = MOV;
		btype[1] = MOV;
		i = 0;
		do
		:: i < NPG -> buddy[i] = 1; i++
		:: else -> break
		od;
		i = 0;
		do
		:: i < NCPU * PCAP -> pl[i] = NONE; i++
		:: else -> break
		od;
		i = 0;
		do
		:: i < NCPU * MAXHELD -> held[i] = NONE; i++
		:: else -> break
		od;
		i = 0;
		do
		:: i < NCPU -> high[i] = HIGH; batch[i] = BATCH; i++
		:: else -> break
		od;
		i = 0
	}
	atomic {
		i = 0;
		do
		:: i < NCPU -> run drainer(i); i++
		:: else -> break
		od;
		run offliner();
		i = 1;
		do
		:: i < NCPU -> run worker(i); i++
		:: else -> break
		od;
		i = 0
	}
	/* everyone done: drain every CPU (sequentially, the run is over); then every page
	 * is free on the list of its block's type, or offline, and unreferenced */
	i = 1;
	do
	:: i < NCPU -> finished[i]; i++
	:: else -> break
	od;
	offdone;
	d_step {
		i = 0;
		do
		:: i < NCPU -> assert(!cpulock[i] && !drainreq[i]); bulk(i, pcnt[i], k, q, r); i++
		:: else -> break
		od;
		i = 0;
		do
		:: i < NPG ->
			assert(ref[i] == 0 && !lru[i]);
			assert(buddy[i] || (offlined && i >= RS && i < RE));
			assert(!buddy[i] || isol[i] == (btype[i / BLK] == ISO));
			i++
		:: else -> break
		od;
		i = 0
	}
}
