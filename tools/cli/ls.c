/*
 * ls.c - `shmring ls`: every ring on this host, one row each (a leftover that is not a
 * ring is a row too, never a reason to stop listing).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void usage_ls(FILE *f)
{
	fprintf(f,
		"usage: shmring ls [--json]\n"
		"List every shmring ring on this host (/dev/shm/shmring.*): name, capacity in slots,\n"
		"slot size, pending records, records dropped (full + oversize), whether a writer\n"
		"serves it (and its pid), and the file that writer appends to. Objects named\n"
		"shmring.* that are not rings of this layout are listed with the reason.\n\n"
		"  -j, --json    one JSON array of objects {name, capacity, slot_size, max_record,\n"
		"                pending, dropped, dropped_full, dropped_oversize, writer_alive,\n"
		"                writer_pid, out_path}; an object that is not a ring has\n"
		"                {name, error} instead\n"
		"  -h, --help    this text\n");
}

/* ---- ls ------------------------------------------------------------------------- */

struct ls_row {
	char name[SHM_NAME_MAX + 1];
	int err;                  /* 0: a ring, st and out_path are valid */
	struct shmring_stats st;
	char out_path[SHM_PATH_MAX];
};

static int row_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ls_row *)a)->name, ((const struct ls_row *)b)->name);
}

static void ls_probe(struct ls_row *r)
{
	struct shm_map m;
	r->err = shm_map_open(r->name, NULL, SHM_INSPECT, &m);
	if (r->err)
		return;
	r->err = shm_stats_read(&m, &r->st, -1);
	cli_out_path(&m, r->out_path, sizeof(r->out_path));
	shm_map_close(&m);
}

static json_t *ls_row_json(const struct ls_row *r)
{
	if (r->err)
		return json_pack("{s:s, s:s}", "name", r->name, "error", cli_cause(r->err));
	const struct shmring_stats *s = &r->st;
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:i, s:o}",
			 "name", r->name, "capacity", (json_int_t)s->capacity,
			 "slot_size", (json_int_t)s->slot_size, "max_record", (json_int_t)s->max_record,
			 "pending", (json_int_t)s->pending,
			 "dropped", (json_int_t)(s->dropped_full + s->dropped_oversize),
			 "dropped_full", (json_int_t)s->dropped_full,
			 "dropped_oversize", (json_int_t)s->dropped_oversize,
			 "writer_alive", (int)s->writer_alive, "writer_pid", (int)s->writer_pid,
			 "out_path", r->out_path[0] ? json_string(r->out_path) : json_null());
}

static void ls_print_table(const struct ls_row *rows, size_t n)
{
	int w = 4;
	for (size_t i = 0; i < n; i++)
		if ((int)strlen(rows[i].name) > w)
			w = (int)strlen(rows[i].name);
	printf("%-*s %9s %6s %9s %9s %-12s %s\n", w, "NAME", "CAPACITY", "SLOT", "PENDING", "DROPPED",
	       "WRITER", "OUT");
	for (size_t i = 0; i < n; i++) {
		const struct ls_row *r = &rows[i];
		if (r->err) {
			printf("%-*s %9s %6s %9s %9s %-12s (%s)\n", w, r->name, "-", "-", "-", "-", "-",
			       cli_cause(r->err));
			continue;
		}
		char wr[32];
		if (r->st.writer_alive)
			snprintf(wr, sizeof(wr), "pid %d", (int)r->st.writer_pid);
		else
			snprintf(wr, sizeof(wr), "none");
		printf("%-*s %9u %6u %9llu %9llu %-12s %s\n", w, r->name, r->st.capacity, r->st.slot_size,
		       (unsigned long long)r->st.pending,
		       (unsigned long long)(r->st.dropped_full + r->st.dropped_oversize), wr,
		       r->out_path[0] ? r->out_path : "-");
	}
}

int cmd_ls(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", no_argument, 0, 'j' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	int json = 0, c;
	while ((c = getopt_long(argc, argv, "jh", lo, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 'h': usage_ls(stdout); return CLI_OK;
		default: usage_ls(stderr); return CLI_USAGE;
		}
	}
	if (optind != argc) {
		usage_ls(stderr);
		return CLI_USAGE;
	}
	DIR *d = opendir(SHM_DIR);
	if (!d) {
		fprintf(stderr, "shmring: cannot list %s: %s\n", SHM_DIR, strerror(errno));
		return CLI_ERR;
	}
	struct ls_row *rows = NULL;
	size_t n = 0, cap = 0;
	int rc = CLI_OK;
	const size_t plen = strlen(SHM_PREFIX);
	struct dirent *e;
	while ((e = readdir(d))) {
		/* Semaphores are sem.shmring.*: they do not match the prefix. */
		if (strncmp(e->d_name, SHM_PREFIX, plen) || !e->d_name[plen])
			continue;
		if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN)
			continue;
		if (strlen(e->d_name + plen) > SHM_NAME_MAX)
			continue;
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 16;
			struct ls_row *nr = realloc(rows, nc * sizeof(*rows));
			if (!nr) {
				fprintf(stderr, "shmring: out of memory\n");
				rc = CLI_ERR;
				goto out;
			}
			rows = nr;
			cap = nc;
		}
		memset(&rows[n], 0, sizeof(rows[n]));
		snprintf(rows[n].name, sizeof(rows[n].name), "%s", e->d_name + plen);
		ls_probe(&rows[n]);
		n++;
	}
	if (n)
		qsort(rows, n, sizeof(*rows), row_cmp);
	if (json) {
		json_t *arr = json_array();
		for (size_t i = 0; arr && i < n; i++)
			if (json_array_append_new(arr, ls_row_json(&rows[i]))) {
				json_decref(arr);
				arr = NULL;
			}
		rc = cli_print_json(arr);
	} else {
		ls_print_table(rows, n);
	}
out:
	closedir(d);
	free(rows);
	return rc;
}
