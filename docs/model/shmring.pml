/*
 * shmring.pml - Promela model of shmring's claim / publish / consume / revoke protocol
 * (docs/DESIGN.md sections 2-6; libshm/ring.c claim() and publish(); writer/writer.c
 * step(), commit()/free_range() and revoke_claim()). docs/model/README.md says what is
 * modelled and what is abstracted; docs/model/check.sh runs every configuration.
 *
 * One atomic{} block = one C11 atomic access (a CAS or an exchange); every plain load or
 * store is its own step. Ghost variables (g_*) are never read by the protocol: they only
 * feed assertions and the LTL properties.
 *
 * Configuration (spin -D...): CAP ring slots, NMAX largest record in slots (1 or 2),
 * NREC records per producer, KILLS producer crashes allowed, MAXTRY claim() iterations
 * before a drop (the C caps them at 10000), QMAX quarantine entries.
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
#ifndef KILLS
#define KILLS 1
#endif
#ifndef MAXTRY
#define MAXTRY 3
#endif
#ifndef QMAX
#define QMAX 2
#endif

#define NP   2                   /* producers; owner ids 1..NP (0 = none, as in the C) */
#define NID  (NP * NREC + 1)     /* record ids 1..NP*NREC; 0 = no record */
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
 * The lap is exact (position / CAP, positions never wrap in the model: see README), so
 * no lap aliasing can hide a bug; kind (record / flush sentinel) is not modelled.
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
bit   qrel[QMAX];                /* quarantine table (start, n, owner, released) */
bit   alive[NP];                 /* the producer's OFD lock: the kernel drops it at death */

/* ---- ghosts ------------------------------------------------------------------------- */
bit   kill[NP];                  /* producer p has crashed: it takes no further step */
bit   fin[NP];                   /* producer p finished or crashed */
bit   wdone;                     /* the writer has exited */
byte  cown[CAP];                 /* record id that may write this cell (0 none, PADID padding) */
bit   gkeep[CAP];                /* cell belongs to a run the writer left quarantined */
byte  rpos[NID], rn[NID];        /* where record id was claimed, how many slots */
byte  fate[NID];                 /* see F_* */
byte  wr[NID];                   /* times the writer read record id into a batch */
byte  npub, nwr;                 /* records published; records whose batch was written */
byte  nabandoned;                /* revoked claims counted by the writer (DEAD + QUAR) */
byte  ncorrupt;                  /* words the writer skipped as corrupt */
byte  ndead_word;                /* DEAD words written by W2 */
byte  nquar_word;                /* QUAR words written by W2 */

#define F_NONE      0            /* not offered (its producer crashed first) */
#define F_CLAIMED   1            /* claimed, being filled */
#define F_PUBLISHED 2
#define F_DROPPED   3            /* claim() gave up: ring full (counted as dropped_full) */
#define F_REVOKED   4            /* the writer revoked the claim (W2): counted abandoned */

#define ALLDONE (fin[0] && fin[1])

/* ---- producer ----------------------------------------------------------------------- */
proctype Producer(byte me)
{
	byte j, n, want, T, tries, q, m, h, id, k;
	short w, wk, exp;
	bit ok;

	{
	j = 0;
	do
	:: j < NREC ->
		id = me * NREC + j + 1;
		/* the record's size in slots */
		if
		:: n = 1
#if NMAX > 1
		:: n = 2
#endif
		fi;
		tries = 0;
claim:		/* ---- claim(): ring.c ---- */
		if
		:: tries >= MAXTRY -> goto drop
		:: else -> tries++
		fi;
		assert(tail < 240);          /* positions never wrap in the model */
		T = tail;                                            /* C1 */
		w = word[IDX(T)];                                    /* C2 */
		if
		:: w == FREEAT(T) ->
			want = n;
			/* continuation slots must be free for their own lap; a quarantined run
			 * starting inside the range is padded up to */
			if
			:: n == 2 ->
				wk = word[IDX(T + 1)];
				if
				:: wk == FREEAT(T + 1) -> skip
				:: else ->
					if
					:: ST(wk) == QUAR || ST(wk) == HOLE -> want = 1
					:: else -> goto drop        /* full */
					fi
				fi
			:: else -> skip
			fi;
			atomic {                                     /* C3: the claim point */
				if
				:: word[IDX(T)] == w ->
					if
					:: want == n ->
						word[IDX(T)] = MK(LAPOF(T), me + 1, n, CLAIMED);
						/* no claim may cover a cell someone may still write or the
						 * writer may still read */
						k = 0;
						do
						:: k < n -> assert(cown[IDX(T + k)] == 0); cown[IDX(T + k)] = id; k++
						:: else -> break
						od;
						rpos[id] = T; rn[id] = n; fate[id] = F_CLAIMED
					:: else ->
						word[IDX(T)] = MK(LAPOF(T), 0, want, PAD);
						k = 0;
						do
						:: k < want -> assert(cown[IDX(T + k)] == 0); cown[IDX(T + k)] = PADID; k++
						:: else -> break
						od
					fi;
					ok = 1
				:: else -> ok = 0
				fi
			}
			if
			:: ok ->
				atomic { if :: tail == T -> tail = T + want :: else -> skip fi }   /* C4 */
				if
				:: want == n -> goto fill
				:: else -> goto claim
				fi
			:: else -> goto claim
			fi
		:: else ->
			if
			:: LAP(w) == LAPOF(T) ->
				/* claimed at T, tail not moved yet: help (claimed_span) */
				if
				:: ST(w) == QUAR || ST(w) == HOLE -> m = qn[NQ(w)]
				:: ST(w) == FREE -> m = 0
				:: else -> m = NQ(w)
				fi;
				if
				:: m == 0 || m > NMAX -> goto drop
				:: else -> skip
				fi;
				atomic { if :: tail == T -> tail = T + m :: else -> skip fi }
				goto claim
			:: LAP(w) + 1 == LAPOF(T) ->
				/* last lap's occupant: a quarantined run the writer has passed becomes
				 * a hole of this lap; anything else means full */
				if
				:: ST(w) == QUAR || ST(w) == HOLE -> skip
				:: else -> goto drop
				fi;
				m = qn[NQ(w)];
				if
				:: m == 0 || m > NMAX -> goto drop
				:: else -> skip
				fi;
				h = head;
				if
				:: h + CAP < T + m -> goto drop     /* head < T - capacity + m */
				:: else -> skip
				fi;
				atomic {
					if
					:: word[IDX(T)] == w -> word[IDX(T)] = MK(LAPOF(T), OWN(w), NQ(w), HOLE); ok = 1
					:: else -> ok = 0
					fi
				}
				if
				:: ok -> atomic { if :: tail == T -> tail = T + m :: else -> skip fi }
				:: else -> skip
				fi;
				goto claim
			:: else ->
				/* T is stale: the word is of a later lap */
				assert(LAP(w) > LAPOF(T));
				goto claim
			fi
		fi;
fill:		/* ---- copy the record into its slots, one cell per step ---- */
		k = 0;
		do
		:: k < n ->
			atomic {
				/* a producer writes only cells of its own claim: never a cell that was
				 * revoked and handed to another record */
				assert(cown[IDX(T + k)] == id);
				data[IDX(T + k)] = id;
				k++
			}
		:: else -> break
		od;
		/* ---- publish() ---- */
		atomic {                                             /* P1 */
			if
			:: word[IDX(T)] == MK(LAPOF(T), me + 1, n, CLAIMED) ->
				word[IDX(T)] = MK(LAPOF(T), 0, n, READY);
				fate[id] = F_PUBLISHED;
				npub++;
				ok = 1
			:: else -> exp = word[IDX(T)]; ok = 0
			fi
		}
		if
		:: ok -> skip
		:: else ->
			/* revoked while we were stopped: the word must be our quarantined run
			 * (we are alive, so never DEAD), and we must find our entry (Q1) */
			assert(fate[id] == F_REVOKED);
			assert(ST(exp) == QUAR || ST(exp) == HOLE);
			q = NQ(exp);
			if
			:: q < QMAX && qowner[q] == me + 1 ->
				if
				:: IDX(qstart[q]) == IDX(T) -> qrel[q] = 1        /* Q1 */
				:: else -> assert(false)    /* our run would stay quarantined forever */
				fi
			:: else -> assert(false)
			fi
		fi;
		goto next;
drop:
		fate[id] = F_DROPPED;
next:
		j++
	:: else -> break
	od;
	fin[me] = 1
	} unless { kill[me] }
}

/* A crash: the process stops for good and the kernel drops its OFD lock at once. */
proctype Killer()
{
	byte c = 0;
	do
	:: atomic { c < KILLS && !fin[0] -> kill[0] = 1; alive[0] = 0; fin[0] = 1; c++ }
	:: atomic { c < KILLS && !fin[1] -> kill[1] = 1; alive[1] = 0; fin[1] = 1; c++ }
	:: break
	od
}

/* ---- writer ------------------------------------------------------------------------- */
proctype Writer()
{
	byte wh, fr, t, room, n, q, qnn, o, c, id, p, bc, i;
	short w, wd;
	bit ok;

	wh = 0; fr = 0; bc = 0;
	do
	:: true ->
step:		/* ---- step(): writer.c ---- */
		w = word[IDX(wh)];                                    /* W1 */
		if
		:: w == FREEAT(wh) -> t = wh; goto idle             /* nothing claimed here yet */
		:: else -> skip
		fi;
		t = tail;
		room = t - wh;
		assert(t >= wh && room <= CAP);     /* the tail is never behind or a lap ahead */
		if
		:: room == 0 -> goto idle           /* claimed, tail not moved yet: treat as empty */
		:: else -> skip
		fi;
		if
		:: LAP(w) != LAPOF(wh) ->
#ifdef W1_RECHECK
			/* proposed fix: the tail (acquire) is past wh, so its word is marked for
			 * this lap by now; read it again before calling it corrupt */
			w = word[IDX(wh)];
			if
			:: LAP(w) != LAPOF(wh) -> goto corrupt
			:: else -> skip
			fi
#else
			goto corrupt
#endif
		:: else -> skip
		fi;
		if
		:: ST(w) == CLAIMED ->
			/* step() returns 0 the first time it sees the claim: the batch is committed
			 * before the stall timer can revoke */
			if
			:: wh != fr || bc > 0 -> goto commit_then_step
			:: else -> skip
			fi;
			/* the stall timeout is free to expire at any moment; or the word changes */
			if
			:: word[IDX(wh)] != w -> goto step
			:: true -> skip
			fi;
			/* ---- revoke_claim() ---- */
			n = NQ(w);
			o = OWN(w);
			assert(o >= 1 && o <= NP);
			q = QMAX;
			if
			:: alive[o - 1] ->                               /* owner_alive(): OFD lock */
				atomic {                                  /* quarantine_alloc (Q0) */
					i = 0;
					do
					:: i < QMAX && qowner[i] == 0 -> q = i; break
					:: i < QMAX && qowner[i] != 0 -> i++
					:: i >= QMAX -> break
					od;
					if
					:: q < QMAX -> qstart[q] = wh; qn[q] = n; qrel[q] = 0; qowner[q] = o
					:: else -> skip
					fi
				}
				if
				:: q == QMAX -> goto step               /* table full: keep waiting */
				:: else -> skip
				fi;
				wd = MK(LAP(w), o, q, QUAR)
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
					if
					:: q < QMAX -> nquar_word++
					:: else -> ndead_word++
					fi;
					ok = 1
				:: else -> ok = 0
				fi
			}
			if
			:: !ok && q < QMAX -> qowner[q] = 0              /* published at the last instant */
			:: else -> skip
			fi;
			goto step
		:: ST(w) == READY ->
			n = NQ(w);
			assert(n >= 1 && n <= NMAX && n <= room);
			/* convert: read the record's cells, one per step */
			atomic {
				id = data[IDX(wh)];
				/* not torn, not stale: the record published at this position, read once */
				assert(id >= 1 && id < NID);
				assert(fate[id] == F_PUBLISHED && rpos[id] == wh && rn[id] == n);
				assert(wr[id] == 0);
				assert(cown[IDX(wh)] == id)
			}
			c = 1;
			do
			:: c < n ->
				atomic { assert(data[IDX(wh + c)] == id && cown[IDX(wh + c)] == id); c++ }
			:: else -> break
			od;
			atomic { wr[id]++; bc++; wh = wh + n }
		:: ST(w) == PAD || ST(w) == DEAD ->
			n = NQ(w);
			assert(n >= 1 && n <= NMAX && n <= room);
			atomic {
				if
				:: ST(w) == DEAD -> nabandoned++
				:: else -> skip
				fi;
				wh = wh + n
			}
		:: ST(w) == QUAR || ST(w) == HOLE ->
			q = NQ(w);
			assert(q < QMAX);
			qnn = qn[q];
			assert(qnn >= 1 && qnn <= NMAX && qnn <= room);
			if
			:: ST(w) == QUAR -> nabandoned++
			:: else -> skip
			fi;
			o = qowner[q];
			assert(o >= 1 && o <= NP);          /* a run named by a word has its entry */
			/* Q1 partner: released, or the owner died */
			if
			:: qrel[q] -> ok = 1
			:: else -> ok = !alive[o - 1]
			fi;
			if
			:: ok ->
				atomic {
					if
					:: word[IDX(wh)] == w -> word[IDX(wh)] = MK(LAPOF(wh), 0, qnn, PAD); ok = 1
					:: else -> ok = 0
					fi
				}
				if
				:: ok -> qowner[q] = 0
				:: else -> skip
				fi
			:: else -> skip
			fi;
			/* ghost: cells of a run still quarantined stay with its owner */
			c = 0;
			do
			:: c < qnn -> gkeep[IDX(wh + c)] = !ok; c++
			:: else -> break
			od;
			wh = wh + qnn
		:: else ->
corrupt:		/* a word it cannot read: skip one slot, count it (writer.c step()) */
			atomic { ncorrupt++; wh = wh + 1 }
#ifndef ALLOW_CORRUPT
			/* corrupt words come only from memory corruption, never from the protocol */
			assert(false)
#endif
		fi;
		/* progressed: a batch may be committed now (buffer full) or later */
		if
		:: goto commit_then_step
		:: goto step
		fi;

idle:		/* step() returned 0: commit what is pending, then wait for news */
		if
		:: wh != fr || bc > 0 ->
commit_then_step:
			/* ---- commit() ---- */
			atomic { nwr = nwr + bc; bc = 0 }            /* write(2) of the batch */
			p = fr;
			do                                            /* free_range() */
			:: p != wh ->
				wd = word[IDX(p)];
				if
				:: LAP(wd) == LAPOF(p) + 1 ->
					assert(false)  /* claimed again before it was freed */
				:: (ST(wd) == QUAR || ST(wd) == HOLE) && LAP(wd) == LAPOF(p) ->
					skip               /* a run still quarantined keeps its start word */
				:: else ->
					atomic {                              /* W3 */
						/* a plain store: nobody else may have changed the word */
						assert(word[IDX(p)] == wd);
						word[IDX(p)] = MK(LAPOF(p) + 1, 0, 0, FREE);
						if
						:: !gkeep[IDX(p)] -> cown[IDX(p)] = 0
						:: else -> skip
						fi
					}
				fi;
				p++
			:: else -> break
			od;
			fr = wh;
			head = wh;                                    /* W4 */
			goto step
		:: else -> skip
		fi;
		if
		:: word[IDX(wh)] != w || tail != t -> skip       /* something happened: step */
		:: ALLDONE && word[IDX(wh)] == w && tail == t -> break
		fi
	od;
	/* ---- every producer finished or crashed and nothing is left to do ---- */
	assert(ncorrupt == 0);
	assert(bc == 0 && wh == fr && wh == tail);
	assert(npub == nwr);
	i = 1;
	do
	:: i < NID ->
		/* published => written exactly once; a record that is neither written, dropped
		 * nor revoked is the one its crashed producer was holding */
		assert(fate[i] != F_PUBLISHED || wr[i] == 1);
		assert(fate[i] == F_PUBLISHED || wr[i] == 0);
		assert(fate[i] != F_CLAIMED || kill[(i - 1) / NREC]);
		assert(fate[i] != F_NONE || kill[(i - 1) / NREC]);
		i++
	:: else -> break
	od;
	/* each revoked claim is counted abandoned exactly once */
	assert(nabandoned == ndead_word + nquar_word);
	/* every quarantined run can be recycled: its owner released it or died */
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
		run Producer(1);
		run Killer()
	}
}

/* Liveness (check with -a -f): every published record is eventually written, i.e. the
 * published and written counts meet again after any publication (written is a subset of
 * published), and the writer eventually exits. */
ltl written { [] <> (npub == nwr) }
ltl terminates { <> wdone }
