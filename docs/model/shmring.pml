/*
 * shmring.pml - Promela model of shmring's claim / publish / consume / revoke protocol
 * (docs/DESIGN.md sections 2-6; libshm/ring.c claim() and publish(); writer/writer.c
 * step(), commit()/free_range() and revoke_claim()). docs/model/README.md says what is
 * modelled and what is abstracted; docs/model/check.sh runs every configuration.
 *
 * Steps: one atomic{} block is one access to shared memory (a load, a store or a CAS),
 * together with the purely local computation that follows it, which no other process can
 * observe. The ghost variables (after "ghosts" below) are never read by the protocol:
 * they feed the assertions and the LTL property only.
 *
 * Configuration (spin -D...):
 *   CAP     ring slots (2 or 4)              NMAX    largest record in slots (1 or 2)
 *   NREC    records of producer 0            NREC1   records of producer 1
 *   KILLS   producer crashes in a run        STALLS  stall timeouts of a live owner
 *   MAXTRY  claim() iterations before a drop QMAX    quarantine entries
 *   W1_OLD         writer.c step() before the W1' re-read (the bug in README.md "Findings")
 *   KILL_ANYWHERE  producers may also crash in the claim loop, holding nothing (the
 *                  instants where a death must leave no count, DESIGN §9)
 *   SENT_OLD       ring.c before layout 3: `sent` bumped when a send starts, before the
 *                  record has an outcome (finding 2: a death in between never settles)
 *   ALLOW_CORRUPT  let the writer skip a word as corrupt (as the C does) instead of
 *                  failing at once, to see what follows
 *   ALLOW_REPAIR   the same for a producer's repair() rewriting a word
 */

#ifndef CAP
#define CAP 2
#endif
#ifndef NMAX
#define NMAX 1
#endif
#ifndef NREC
#define NREC 2
#endif
#ifndef NREC1
#define NREC1 NREC               /* records of producer 1 (producer 0 sends NREC) */
#endif
#ifndef KILLS
#define KILLS 1
#endif
#ifndef STALLS
#define STALLS 1
#endif
#ifndef MAXTRY
#define MAXTRY 3
#endif
#ifndef QMAX
#define QMAX 2
#endif

#define NP    2                  /* producers; owner ids 1..NP (0 = none, as in the C) */
#define NID   (NP * NREC + 1)    /* record ids 1..NP*NREC; 0 = no record */
#define PADID 255                /* ghost owner of cells covered by a producer's PAD */

/* Slot word states (libshm/layout.h enum shm_state). */
#define FREE    0
#define CLAIMED 1
#define READY   2
#define PAD     3
#define DEAD    4
#define QUAR    5
#define HOLE    6

/*
 * A slot word packed in a short: | lap (8) | owner (2) | n or q (2) | state (3) |.
 * The lap is exact (position / CAP): positions never wrap in the model (README), so no
 * lap aliasing can hide a bug. kind (record / flush sentinel) is not modelled.
 */
#define MK(l, o, n, s)  (((((l) * 4 + (o)) * 4) + (n)) * 8 + (s))
#define ST(w)           ((w) % 8)
#define NQ(w)           (((w) / 8) % 4)
#define OWN(w)          (((w) / 32) % 4)
#define LAP(w)          ((w) / 128)
#define LAPOF(p)        ((p) / CAP)
#define IDX(p)          ((p) % CAP)
#define FREEAT(p)       MK(LAPOF(p), 0, 0, FREE)

/* ---- shared memory ------------------------------------------------------------------ */
short word[CAP];                 /* slot words: all FREE(lap 0) = 0, as ftruncate leaves them */
byte  data[CAP];                 /* one data cell per slot: the id of the record written there */
byte  tail;                      /* next position to claim (producers: CAS) */
byte  head;                      /* hdr->head: published by the writer after W3 (W4) */
byte  qstart[QMAX], qn[QMAX], qowner[QMAX];
bit   qrel[QMAX];                /* quarantine table: start, n, owner (0 = free), released */
bit   alive[NP];                 /* the producer's OFD lock: the kernel drops it at death */

/* ---- ghosts ------------------------------------------------------------------------- */
bit   fin[NP];                   /* producer p finished or crashed */
bit   crashed[NP];
bit   wdone;                     /* the writer has exited */
byte  ncrash, nstall;            /* crashes and stall revocations so far */
byte  cown[CAP];                 /* record id that may write this cell (0 none, PADID pad) */
bit   gkeep[CAP];                /* cell belongs to a run the writer left quarantined */
byte  rpos[NID], rn[NID];        /* where record id was claimed and how many slots */
byte  fate[NID];                 /* F_* below */
byte  npend;                     /* records published and not yet written to the file */
byte  nuncounted;                /* revoked claims (W2) the writer has not counted yet */
byte  ncorrupt;                  /* words the writer skipped as corrupt */
byte  nrepair;                   /* words a producer's repair() rewrote */

/* ---- the counters of DESIGN §9 (not ghosts: the C keeps them in shared memory) ------- */
byte  cwrit, caband;             /* writer: written, abandoned (stored at each commit, W4) */
byte  cdrop;                     /* producers: dropped_full, one atomic add per drop */
#ifdef SENT_OLD
byte  csent;                     /* the old `sent`: bumped as a send starts */
#endif

#define F_NONE      0            /* never offered (its producer crashed first) */
#define F_CLAIMED   1            /* claimed, being filled */
#define F_PUBLISHED 2
#define F_WRITTEN   3            /* read by the writer into a batch (once) */
#define F_DROPPED   4            /* claim() gave up: full (dropped_full) */
#define F_REVOKED   5            /* the writer revoked the claim (W2): abandoned */

#define ALLDONE (fin[0] && fin[1])

/* A crash while holding slots: the process stops for good and the kernel drops its
 * OFD lock at once. Used as the first option of a holding producer's next step, so that
 * it costs no extra state when not taken. */
#define CRASH \
	ncrash < KILLS -> ncrash++; alive[me] = 0; crashed[me] = 1; fin[me] = 1; goto dead

/* quarantine_ok(x): does x name a live quarantine entry? Loads e->n, then e->owner. */
inline quarantine_ok(x)
{
	if
	:: (ST(x) == QUAR || ST(x) == HOLE) && NQ(x) < QMAX ->
		qm = qn[NQ(x)];
		atomic { ok = (qowner[NQ(x)] != 0 && qm != 0 && qm <= NMAX); qm = 0 }
	:: else -> ok = 0
	fi
}

/* repair(T, p, x) of ring.c: a word at p >= T that the protocol cannot explain becomes
 * FREE(lap(p)) if the writer has passed p's previous lap and the tail is still T. ok = 1:
 * retry. The model has no scribbled words, so the CAS must never succeed: if it did, a
 * producer would have rewritten a word the protocol still uses. */
inline repair(p, x)
{
	atomic {
		if
		:: head + CAP <= p || T < head -> ok = 0     /* head <= p - capacity, or T < head */
		:: else -> ok = 1
		fi
	}
	if
	:: ok ->
		atomic { ok = (tail == T) }
		if
		:: ok ->
			atomic {
				if
				:: word[IDX(p)] == x ->
					word[IDX(p)] = FREEAT(p);
					nrepair++;
#ifndef ALLOW_REPAIR
					assert(nrepair == 0)
#endif
				:: else -> skip
				fi
			}
		:: else -> skip
		fi
	:: else -> skip
	fi
}

/* ---- producer: shmring_send() = claim(), copy, publish() ---------------------------- */
proctype Producer(byte me)
{
	byte j, n, want, T, tries, m, qm, id, k;
	short w, wk;
	bit ok;

	do
	:: (me == 0 && j < NREC) || (me == 1 && j < NREC1) ->
		atomic {
			id = me * NREC + j + 1;
			tries = 0;
			if
			:: n = 1
#if NMAX > 1
			:: n = 2
#endif
			fi
		}
#ifdef SENT_OLD
		csent++;                          /* offer(): counted before any outcome */
#endif
claim:		/* ---- claim(): ring.c ---- */
		atomic {                                                  /* C1 */
#ifdef KILL_ANYWHERE
			if
			:: CRASH                          /* killed in the claim loop: nothing held */
			:: true
			fi;
#endif
			w = 0; wk = 0; m = 0; ok = 0;
			if
			:: tries >= MAXTRY -> goto drop   /* the C caps its loop too: a drop */
			:: else -> tries++
			fi;
			assert(tail < 240);               /* positions never wrap in the model */
			T = tail
		}
		atomic {                                                  /* C2 */
			w = word[IDX(T)];
			want = n
		}
		if
		:: w == FREEAT(T) ->
			/* continuation slots must be free for their own lap; a quarantined run
			 * starting inside the range is padded up to */
			if
			:: n == 2 ->
				atomic { wk = word[IDX(T + 1)] }
				if
				:: wk == FREEAT(T + 1) -> skip
				:: else ->
					quarantine_ok(wk);
					if
					:: ok -> want = 1
					:: else ->
						if
						:: LAP(wk) + 1 == LAPOF(T + 1) ->
							repair(T + 1, wk);
							if
							:: ok -> skip
							:: else -> goto drop      /* full */
							fi
						:: else -> skip
						fi;
						goto claim                    /* retry */
					fi
				fi
			:: else -> skip
			fi;
			atomic {                                          /* C3: the claim point */
				if
				:: word[IDX(T)] == w ->
					if
					:: want == n ->
						word[IDX(T)] = MK(LAPOF(T), me + 1, n, CLAIMED);
						/* no claim covers a cell someone may still write or read */
						assert(cown[IDX(T)] == 0);
						cown[IDX(T)] = id;
						if
						:: n == 2 -> assert(cown[IDX(T + 1)] == 0); cown[IDX(T + 1)] = id
						:: else -> skip
						fi;
						rpos[id] = T; rn[id] = n; fate[id] = F_CLAIMED
					:: else ->
						word[IDX(T)] = MK(LAPOF(T), 0, want, PAD);
						assert(cown[IDX(T)] == 0);
						cown[IDX(T)] = PADID
					fi;
					ok = 1
				:: else -> ok = 0
				fi
			}
			if
			:: ok ->
				atomic {                                  /* C4 (failure: helped) */
					if
					:: CRASH
					:: true ->
						if
						:: tail == T -> tail = T + want
						:: else -> skip
						fi
					fi
				}
				if
				:: want == n -> goto fill
				:: else -> goto claim
				fi
			:: else -> goto claim
			fi
		:: w != FREEAT(T) && LAP(w) == LAPOF(T) ->
			/* claimed at T, tail not moved yet: help (claimed_span) */
			if
			:: ST(w) == QUAR || ST(w) == HOLE -> m = qn[NQ(w)]
			:: ST(w) == FREE -> m = 0
			:: else -> m = NQ(w)
			fi;
			ok = (m != 0 && m <= NMAX);
			if
			:: ok && ST(w) >= QUAR -> quarantine_ok(w)
			:: else -> skip
			fi;
			if
			:: !ok ->
				/* unreadable: repair it, or drop rather than spin */
				repair(T, w);
				if
				:: ok -> goto claim
				:: else -> goto drop
				fi
			:: else -> skip
			fi;
			atomic { if :: tail == T -> tail = T + m :: else -> skip fi }
			goto claim
		:: else ->               /* w is of another lap than T's */
			if
			:: LAP(w) + 1 == LAPOF(T) -> quarantine_ok(w)
			:: else -> ok = 0
			fi;
			if
			:: ok ->
				/* a quarantined run of the last lap that the writer has passed becomes
				 * a hole of this lap: the tail steps over it */
				m = qn[NQ(w)];
				atomic {
					if
					:: head + CAP < T + m -> goto drop   /* head < T - capacity + m: full */
					:: else -> skip
					fi
				}
				atomic {
					if
					:: word[IDX(T)] == w -> word[IDX(T)] = MK(LAPOF(T), OWN(w), NQ(w), HOLE); ok = 1
					:: else -> ok = 0
					fi
				}
				if
				:: ok ->
					atomic {
						if
						:: CRASH
						:: true -> if :: tail == T -> tail = T + m :: else -> skip fi
						fi
					}
				:: else -> skip
				fi;
				goto claim
			:: else ->
				/* last lap's occupant not consumed yet (full), a stale T, or a
				 * scribbled word, which repair() tells apart */
				repair(T, w);
				if
				:: ok -> goto claim
				:: else -> skip
				fi;
				if
				:: LAP(w) + 1 == LAPOF(T) -> goto drop
				:: else ->
					assert(LAP(w) > LAPOF(T));         /* T was stale */
					goto claim
				fi
			fi
		fi;
fill:		/* ---- copy the record into its slots, one cell per step ---- */
		k = 0;
		do
		:: k < n ->
			atomic {
				if
				:: CRASH
				:: true ->
					/* a producer writes only cells of its own claim: never a cell that
					 * was revoked and handed to another record */
					assert(cown[IDX(T + k)] == id);
					data[IDX(T + k)] = id;
					k++
				fi
			}
		:: else -> break
		od;
		/* ---- publish() ---- */
		atomic {                                                  /* P1 */
			if
			:: CRASH
			:: true ->
				if
				:: word[IDX(T)] == MK(LAPOF(T), me + 1, n, CLAIMED) ->
					word[IDX(T)] = MK(LAPOF(T), 0, n, READY);
					fate[id] = F_PUBLISHED;
					npend++;
					ok = 1
				:: else -> w = word[IDX(T)]; ok = 0
				fi
			fi
		}
		if
		:: ok -> skip
		:: else ->
			/* revoked while we were stopped: we are alive, so the word names our
			 * quarantined run, and we must find our entry (Q1) */
			assert(fate[id] == F_REVOKED);
			assert(ST(w) == QUAR || ST(w) == HOLE);
			atomic {
				if
				:: CRASH
				:: true ->
					assert(NQ(w) < QMAX && qowner[NQ(w)] == me + 1)
				fi
			}
			atomic {
				if
				:: CRASH
				:: true ->
					/* else: our run would stay quarantined for good */
					assert(IDX(qstart[NQ(w)]) == IDX(T))
				fi
			}
			atomic {
				if
				:: CRASH
				:: true -> qrel[NQ(w)] = 1                         /* Q1 */
				fi
			}
		fi;
		goto next;
drop:		/* the drop's one atomic add is its outcome; a death before it leaves nothing */
		atomic { fate[id] = F_DROPPED; cdrop++ }
next:
		atomic { j++; n = 0; want = 0; T = 0; k = 0; w = 0; wk = 0; m = 0; ok = 0; id = 0; tries = 0 }
	:: else -> break
	od;
	fin[me] = 1;
dead:
	skip
}

/* ---- writer: step() and commit() of writer.c ---------------------------------------- */
#define WRESET  n = 0; q = 0; o = 0; c = 0; id = 0; wd = 0; ok = 0; i = 0; p = 0

proctype Writer()
{
	byte wh, fr, t, ts, n, q, o, c, id, p, i, bc, ba;   /* ts: the tail as last loaded */
	short w, wd;
	bit ok;

	do
	:: true ->
step:
		atomic {                                                  /* W1 */
			WRESET;
			w = word[IDX(wh)];
			/* the head is always a claim boundary: a free word there means the ring is
			 * empty, never a hole the tail has stepped over (ghost read of the tail) */
			assert(w != FREEAT(wh) || tail == wh);
			t = wh
		}
		if
		:: w == FREEAT(wh) -> goto idle                 /* nothing claimed here yet */
		:: else -> skip
		fi;
		atomic {
			if
			:: ST(w) == READY && LAP(w) == LAPOF(wh) && ts > wh && NQ(w) <= ts - wh ->
				/* a READY run of this lap under the tail seen before: no fresh load */
				t = ts
			:: else ->
				/* a claim whose claimer stopped or died before C4, with nobody behind
				 * it: the writer moves the tail for it, like any helper */
				if
				:: tail == wh && LAP(w) == LAPOF(wh) && ST(w) == CLAIMED && NQ(w) >= 1 ->
					tail = wh + NQ(w)
				:: else -> skip
				fi;
				t = tail;
				ts = t
			fi;
			assert(t >= wh && t - wh <= CAP);   /* the tail is never behind nor a lap ahead */
			if
			:: t == wh -> goto idle             /* tail not past us: treat as empty */
			:: else -> skip
			fi
		}
		if
		:: LAP(w) != LAPOF(wh) ->
#ifndef W1_OLD
			/* proposed fix: the tail (acquire) is past wh, so the word is marked for
			 * this lap by now; read it again before calling it corrupt */
			atomic {
				w = word[IDX(wh)];
				if
				:: LAP(w) != LAPOF(wh) -> goto corrupt
				:: else -> skip
				fi
			}
#else
			goto corrupt
#endif
		:: else -> skip
		fi;
		if
		:: ST(w) == CLAIMED ->
			/* step() returns 0 the first time it sees a claim: the batch is committed
			 * before the stall timer runs */
			if
			:: wh != fr || bc > 0 -> goto commit
			:: else -> skip
			fi;
			/* wait: the word changes, or the stall timeout expires (at any moment; for
			 * a live owner at most STALLS times in a run) */
			if
			:: word[IDX(wh)] != w -> goto step
			:: nstall < STALLS || !alive[OWN(w) - 1] -> skip
			fi;
			/* ---- revoke_claim() ---- */
			atomic {
				n = NQ(w);
				o = OWN(w);
				assert(o >= 1 && o <= NP);
				q = QMAX;
				ok = alive[o - 1]                             /* owner_alive(): OFD lock */
			}
			if
			:: ok ->
				atomic {                              /* quarantine_alloc(), Q0 */
					i = 0;
					do
					:: i < QMAX && qowner[i] == 0 -> q = i; break
					:: i < QMAX && qowner[i] != 0 -> i++
					:: i >= QMAX -> break
					od;
					if
					:: q < QMAX -> qstart[q] = wh; qn[q] = n; qrel[q] = 0; qowner[q] = o
					:: else -> goto step              /* table full: keep waiting */
					fi;
					wd = MK(LAP(w), o, q, QUAR)
				}
			:: else ->
				wd = MK(LAP(w), o, n, DEAD)
			fi;
			atomic {                                          /* W2 */
				if
				:: word[IDX(wh)] == w ->
					word[IDX(wh)] = wd;
					id = cown[IDX(wh)];
					assert(id >= 1 && id < NID && rpos[id] == wh && fate[id] == F_CLAIMED);
					fate[id] = F_REVOKED;
					nuncounted++;
					if
					:: q < QMAX -> nstall++
					:: else -> skip
					fi;
					ok = 1
				:: else -> ok = 0
				fi
			}
			if
			:: !ok && q < QMAX -> qowner[q] = 0           /* published at the last instant */
			:: else -> skip
			fi;
			goto step
		:: ST(w) == READY ->
			n = NQ(w);
			assert(n >= 1 && n <= NMAX && n <= t - wh);
			/* convert: read the record's cells, one per step */
			atomic {
				id = data[IDX(wh)];
				/* not torn, not stale: the record published at this position, read once */
				assert(id >= 1 && id < NID);
				assert(fate[id] == F_PUBLISHED && rpos[id] == wh && rn[id] == n);
				assert(cown[IDX(wh)] == id);
				if
				:: n == 1 -> fate[id] = F_WRITTEN; bc++; wh = wh + n
				:: else -> skip
				fi
			}
			if
			:: n == 2 ->
				atomic {
					assert(data[IDX(wh + 1)] == id && cown[IDX(wh + 1)] == id);
					fate[id] = F_WRITTEN; bc++; wh = wh + n
				}
			:: else -> skip
			fi
		:: ST(w) == PAD || ST(w) == DEAD ->
			atomic {
				n = NQ(w);
				assert(n >= 1 && n <= NMAX && n <= t - wh);
				if
				:: ST(w) == DEAD -> nuncounted--; ba++
				:: else -> skip
				fi;
				wh = wh + n
			}
		:: ST(w) == QUAR || ST(w) == HOLE ->
			atomic {
				q = NQ(w);
				assert(q < QMAX);
				n = qn[q];
				assert(n >= 1 && n <= NMAX && n <= t - wh);
				if
				:: ST(w) == QUAR -> nuncounted--; ba++
				:: else -> skip
				fi
			}
			atomic {
				o = qowner[q];
				assert(o >= 1 && o <= NP)       /* a run named by a word has its entry */
			}
			/* Q1 partner: the owner released it, or died */
			atomic { ok = qrel[q] }
			if
			:: ok -> skip
			:: else -> atomic { ok = !alive[o - 1] }
			fi;
			if
			:: ok ->
				atomic {
					if
					:: word[IDX(wh)] == w -> word[IDX(wh)] = MK(LAPOF(wh), 0, n, PAD); ok = 1
					:: else -> ok = 0
					fi
				}
				if
				:: ok -> qowner[q] = 0
				:: else -> skip
				fi
			:: else -> skip
			fi;
			atomic {
				/* ghost: the cells of a run still quarantined stay its owner's */
				gkeep[IDX(wh)] = !ok;
				if
				:: n == 2 -> gkeep[IDX(wh + 1)] = !ok
				:: else -> skip
				fi;
				wh = wh + n
			}
		:: else ->
corrupt:		/* a word it cannot read: skip one slot and count it (writer.c step()) */
			atomic {
				ncorrupt++;
				wh = wh + 1;
#ifndef ALLOW_CORRUPT
				/* corrupt words come from memory corruption only, never the protocol */
				assert(ncorrupt == 0)
#endif
			}
		fi;
		/* progressed: a batch may be committed now (buffer full) or later */
#ifndef NO_EARLY_COMMIT
		if
		:: goto commit
		:: goto step
		fi;
#else
		goto step;
#endif

idle:		/* step() returned 0: commit what is pending, then wait for news */
		if
		:: wh != fr || bc > 0 || ba > 0 ->
commit:			/* ---- commit() ---- */
			atomic { WRESET; npend = npend - bc; p = fr }    /* write(2) */
			do                                            /* free_range() */
			:: p != wh ->
				atomic {
					wd = word[IDX(p)];
					if
					:: LAP(wd) == LAPOF(p) + 1 ->
						assert(false)     /* claimed again before it was freed */
					:: (ST(wd) == QUAR || ST(wd) == HOLE) && LAP(wd) == LAPOF(p) ->
						p++; wd = 0; ok = 0 /* a run still quarantined keeps its start */
					:: else -> ok = 1
					fi
				}
				if
				:: ok ->
					atomic {                              /* W3 */
						/* a plain store: nobody else may have changed the word */
						assert(word[IDX(p)] == wd);
						word[IDX(p)] = MK(LAPOF(p) + 1, 0, 0, FREE);
						if
						:: !gkeep[IDX(p)] -> cown[IDX(p)] = 0
						:: else -> skip
						fi;
						p++; wd = 0; ok = 0
					}
				:: else -> skip
				fi
			:: else -> break
			od;
			/* W4: totals, head and confirmed, one instant under the progress seqlock */
			atomic { fr = wh; head = wh; p = 0; cwrit = cwrit + bc; caband = caband + ba; bc = 0; ba = 0 }
			goto step
		:: else -> skip
		fi;
		if
		:: word[IDX(wh)] != w || tail != t -> skip        /* something changed */
		:: ALLDONE && word[IDX(wh)] == w && tail == t -> break
		fi
	od;
	/* ---- every producer finished or crashed, and nothing is left to do ---- */
	assert(ncorrupt == 0);
	assert(bc == 0 && ba == 0 && wh == fr && wh == tail);
	assert(npend == 0);
	i = 1;
	do
	:: i < NID ->
		/* published => written (exactly once: F_WRITTEN is set once, asserted above);
		 * a record neither written, dropped nor revoked is the one its crashed
		 * producer was holding or had not offered yet */
		assert(fate[i] != F_PUBLISHED);
		assert(fate[i] != F_CLAIMED || crashed[(i - 1) / NREC]);
		assert(fate[i] != F_NONE || crashed[(i - 1) / NREC] || i > NREC + NREC1);
		i++
	:: else -> break
	od;
	/* each revoked claim counted abandoned exactly once */
	assert(nuncounted == 0);
	/* DESIGN §9: every record with an outcome is counted once, under that outcome, and
	 * none without one: written, abandoned and dropped are the fates, and the ring holds
	 * nothing (wh == tail above), so pending is 0 and sent is their sum */
	i = 1; c = 0; n = 0; o = 0;
	do
	:: i < NID ->
		c = c + (fate[i] == F_WRITTEN);
		n = n + (fate[i] == F_REVOKED);
		o = o + (fate[i] == F_DROPPED);
		i++
	:: else -> break
	od;
	assert(cwrit == c && caband == n && cdrop == o);
#ifdef SENT_OLD
	/* the old identity: sent counted at the start of every send that began */
	assert(csent == cwrit + caband + cdrop);
#endif
	/* the ring drains back to its full capacity: every slot consumed is free for its
	 * next lap, or is the start of a quarantined run, or (slot of the head) a claim or
	 * hole whose crashed maker never moved the tail: the next claimer moves it */
	p = (wh > CAP -> wh - CAP : 0);
	do
	:: p < wh ->
		w = word[IDX(p)];
		assert(w == MK(LAPOF(p) + 1, 0, 0, FREE) ||
		       ((ST(w) == QUAR || ST(w) == HOLE) && LAP(w) == LAPOF(p)) ||
		       (IDX(p) == IDX(wh) && LAP(w) == LAPOF(wh) && (crashed[0] || crashed[1])));
		p++
	:: else -> break
	od;
	/* every run still quarantined can be recycled: its owner released it or died */
	i = 0;
	do
	:: i < QMAX ->
		assert(qowner[i] == 0 || qrel[i] || !alive[qowner[i] - 1]);
		i++
	:: else -> break
	od;
	wdone = 1
}

init {
	atomic {
		alive[0] = 1;
		alive[1] = 1;
		run Writer();
		run Producer(0);
		run Producer(1)
	}
}

/* Liveness (pan -a -f, weak fairness): every published record is eventually written
 * (npend counts the records published and not yet written: it returns to 0 after every
 * publication), and the writer eventually exits (no livelock, no writer stuck). */
ltl live { [] <> (npend == 0) && <> wdone }
