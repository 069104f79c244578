/*
 * peek.c - `shmring peek`: the records waiting in a ring, as the writer will write
 * them, without consuming them.
 *
 * It walks from the head exactly as the writer's step() does, but only reads: no word,
 * counter or byte of the ring is written, and it takes no producer entry. Everything read
 * is untrusted and checked against the geometry validated at open. The writer may consume
 * (and free) a record while we copy it, so each READY word is loaded again after its
 * bytes are copied out: if it changed, the copy may be torn and the walk stops there.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "drain.h"
#include "shmring/json.h"

struct peek {
	const struct shm_map *m;
	uint8_t *copy;      /* one record's bytes, out of shared memory */
	char *json;         /* its line */
	size_t json_cap;
	unsigned long printed;
};

/* Print the line the writer would write for the record at pos (len bytes in p->copy). */
static int peek_print(struct peek *p, uint64_t pos, uint32_t len)
{
	int invalid;
	ssize_t k = shm_record_line(p->copy, len, pos, p->json, p->json_cap, &invalid);
	if (k < 0)
		return (int)k;
	if (fwrite(p->json, 1, (size_t)k, stdout) != (size_t)k)
		return -EIO;
	p->printed++;
	return 0;
}

/*
 * One position: returns how many slots to advance (0 = stop the walk) or a negative
 * errno. The same reading as the writer's (libshm/drain.c: shm_run_span, shm_record_at,
 * shm_record_line), minus its side effects: where the writer would wait (a claim being
 * filled), the walk stops; where it would skip, so does the walk.
 */
static long peek_step(struct peek *p, uint64_t pos, uint64_t room)
{
	const struct shm_map *m = p->m;
	const uint64_t mask = m->g.capacity - 1;
	const unsigned lap = (unsigned)shm_lap(&m->g, pos);
	/* Pairs with P1 (the producer's publish): a READY word's bytes are visible. */
	uint64_t wd = atomic_load_explicit(&m->words[pos & mask], memory_order_acquire);
	if (wd == w_make(lap, 0, 0, 0, W_FREE))
		return 0; /* nothing claimed here yet */
	if (w_lap(wd) != lap)
		/* the writer consumed and freed it meanwhile (W3), or unreadable: one slot */
		return w_lap(wd) == ((lap + 1) & W_LAP_MASK) ? 0 : 1;
	if (w_state(wd) == W_CLAIMED)
		return 0; /* still being filled: the writer waits here too */
	unsigned n = shm_run_span(m, wd);
	if (n == 0 || n > room)
		return 1;
	if (w_state(wd) != W_READY)
		return n; /* padding, revoked or quarantined: skipped, no line */
	const uint8_t *src;
	uint32_t len = shm_record_at(m, pos, n, &src);
	if (w_kind(wd))
		return len ? (long)n : 1; /* flush sentinels: the writer writes no line */
	memcpy(p->copy, src, len);
	/* Seqlock-style re-check: the copy is complete before the word is read again; an
	 * unchanged word means the writer did not free (W3) the slots meanwhile. */
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&m->words[pos & mask], memory_order_relaxed) != wd)
		return 0;
	int rc = peek_print(p, pos, len); /* len 0: the writer writes an error line for it */
	return rc ? rc : (long)n;
}

static int peek_walk(const struct shm_map *m, uint64_t want)
{
	const struct shm_geom *g = &m->g;
	uint64_t max_bytes = (uint64_t)g->max_slots * g->slot_size;
	struct peek p = { .m = m };
	p.json_cap = shmring_json_bound(max_bytes) + 1;
	p.copy = malloc(max_bytes);
	p.json = malloc(p.json_cap);
	int rc = 0;
	if (!p.copy || !p.json) {
		rc = -ENOMEM;
		goto out;
	}
	/* Pairs with W4 (the writer's release of head): slots below it are consumed. */
	uint64_t pos = atomic_load_explicit(&m->hdr->head, memory_order_acquire);
	/* At most one lap of positions: a corrupt ring cannot make the walk loop. */
	for (uint64_t walked = 0; p.printed < want && walked < g->capacity;) {
		/* Pairs with C4: positions below the tail have been claimed. */
		uint64_t tail = atomic_load_explicit(&m->hdr->tail, memory_order_acquire);
		uint64_t room = tail - pos; /* free-running: unsigned difference */
		if (room == 0 || room > g->capacity)
			break; /* nothing more claimed, or the writer passed us */
		long adv = peek_step(&p, pos, room);
		if (adv < 0) {
			rc = (int)adv;
			break;
		}
		if (adv == 0)
			break;
		pos += (uint64_t)adv;
		walked += (uint64_t)adv;
	}
out:
	free(p.copy);
	free(p.json);
	return rc;
}

void usage_peek(FILE *f)
{
	fprintf(f,
		"usage: shmring peek NAME [-n N]\n"
		"Print the next N records waiting in ring NAME (default 10) as JSON lines, exactly as\n"
		"the writer will write them, without consuming them: nothing in the ring is written,\n"
		"producers and the writer are not disturbed. Stops early at a record still being\n"
		"filled or when the writer consumes the record being read.\n\n"
		"  -n, --count N   records to print (default 10)\n"
		"  -h, --help      this text\n");
}

int cmd_peek(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "count", required_argument, 0, 'n' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	uint64_t want = 10;
	int c;
	while ((c = getopt_long(argc, argv, "n:h", lo, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (cli_opt_uint("--count", optarg, 0, UINT32_MAX, &want))
				return CLI_USAGE;
			break;
		case 'h': usage_peek(stdout); return CLI_OK;
		default: usage_peek(stderr); return CLI_USAGE;
		}
	}
	if (optind != argc - 1) {
		usage_peek(stderr);
		return CLI_USAGE;
	}
	const char *name = argv[optind];
	struct shm_map m;
	if (cli_map(name, &m))
		return CLI_ERR;
	int rc = peek_walk(&m, want);
	shm_map_close(&m);
	if (fflush(stdout) && !rc)
		rc = -errno;
	if (rc) {
		cli_ring_msg(name, "peek failed: %s", strerror(-rc));
		return CLI_ERR;
	}
	return CLI_OK;
}
