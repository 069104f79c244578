/*
 * metrics.c - rings' counters in the Prometheus text exposition format (version 0.0.4),
 * for `shmring metrics` and for the file shmring-writer --metrics-file rewrites for
 * node_exporter's textfile collector: one formatter, so both say the same thing.
 *
 * The format wants each family's samples together under one # HELP and # TYPE, so the
 * text is written family by family, one sample per ring, labelled ring="NAME".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

enum { COUNTER, GAUGE };

struct family {
	const char *name;
	int type;
	const char *help;
	double (*get)(const struct shmring_stats *s);
};

#define GET(f) static double get_##f(const struct shmring_stats *s) { return (double)s->f; }
GET(sent) GET(written) GET(invalid) GET(dropped_full) GET(dropped_oversize) GET(abandoned)
GET(aborted) GET(flushes) GET(flushes_done) GET(corrupt) GET(capacity) GET(slot_size)
GET(max_record) GET(head) GET(tail) GET(pending) GET(producers) GET(writer_pid)
GET(writer_alive) GET(writer_errno) GET(writer_error_op)
#undef GET
static double get_since(const struct shmring_stats *s) { return s->writer_error_since_ns / 1e9; }

static const struct family families[] = {
	{ "shmring_sent_total", COUNTER, "Records sent that got an outcome (written + dropped + abandoned + pending).", get_sent },
	{ "shmring_written_total", COUNTER, "Records whose JSON line the writer wrote.", get_written },
	{ "shmring_invalid_total", COUNTER, "Of written: records written as a shmring_error line.", get_invalid },
	{ "shmring_dropped_full_total", COUNTER, "Records dropped because the ring was full.", get_dropped_full },
	{ "shmring_dropped_oversize_total", COUNTER, "Records dropped because larger than the largest record accepted.", get_dropped_oversize },
	{ "shmring_abandoned_total", COUNTER, "Records whose producer died or stalled mid-send.", get_abandoned },
	{ "shmring_aborted_total", COUNTER, "Reservations aborted (not in sent).", get_aborted },
	{ "shmring_flushes_total", COUNTER, "Flush calls.", get_flushes },
	{ "shmring_flushes_done_total", COUNTER, "Flush sentinels the writer confirmed.", get_flushes_done },
	{ "shmring_corrupt_total", COUNTER, "Unreadable slot words the writer skipped.", get_corrupt },
	{ "shmring_capacity_slots", GAUGE, "Slots in the ring.", get_capacity },
	{ "shmring_slot_size_bytes", GAUGE, "Bytes per slot.", get_slot_size },
	{ "shmring_max_record_bytes", GAUGE, "Largest msgpack record accepted.", get_max_record },
	{ "shmring_head_position", GAUGE, "Slot position below which slots are free again (free-running).", get_head },
	{ "shmring_tail_position", GAUGE, "Next slot position to claim (free-running).", get_tail },
	{ "shmring_pending_records", GAUGE, "Records in the ring not yet written nor abandoned.", get_pending },
	{ "shmring_producers", GAUGE, "Producer processes attached now.", get_producers },
	{ "shmring_writer_alive", GAUGE, "1 when a writer holds the ring's writer lock now, else 0.", get_writer_alive },
	{ "shmring_writer_pid", GAUGE, "Pid of the writer that serves or last served the ring.", get_writer_pid },
	{ "shmring_writer_errno", GAUGE, "Errno of the writer's failing output operation; 0 while its output works.", get_writer_errno },
	{ "shmring_writer_error_op", GAUGE, "What failed: 0 none, 1 open, 2 write, 3 fsync, 4 rotate.", get_writer_error_op },
	{ "shmring_writer_error_since_seconds", GAUGE, "Unix time when the writer's output began failing; 0 while it works.", get_since },
};

/* Ring names are [A-Za-z0-9._-]; escape as the format says all the same. */
static void put_label(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

int shm_metrics_text(const struct shm_metrics_ring *rings, size_t n, char **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	FILE *f = open_memstream(out, len);
	if (!f)
		return -ENOMEM;
	for (size_t k = 0; n && k < sizeof(families) / sizeof(families[0]); k++) {
		const struct family *fa = &families[k];
		fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", fa->name, fa->help, fa->name,
			fa->type == COUNTER ? "counter" : "gauge");
		for (size_t i = 0; i < n; i++) {
			fprintf(f, "%s{ring=\"", fa->name);
			put_label(f, rings[i].name[0] == '/' ? rings[i].name + 1 : rings[i].name);
			/* %.17g: integers up to 2^53 exactly, as the format's float allows */
			fprintf(f, "\"} %.17g\n", fa->get(rings[i].st));
		}
	}
	if (ferror(f)) {
		fclose(f);
		free(*out);
		*out = NULL;
		return -ENOMEM;
	}
	if (fclose(f)) {
		free(*out);
		*out = NULL;
		return -ENOMEM;
	}
	return 0;
}
