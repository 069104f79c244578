/*
 * shmring - inspect and operate shmring rings from the shell, git style:
 *
 *   shmring ls [--json]                    every ring on this host
 *   shmring stat NAME [--json] [--watch [S]] [--count N]
 *   shmring peek NAME [-n N]               pending records as JSON lines, not consumed
 *   shmring send NAME [JSON ...]           JSON values (or stdin lines) as msgpack records
 *   shmring flush NAME                     the flush barrier: 0 ok, 3 no writer, 4 timeout,
 *                                          5 the writer's output fails
 *   shmring rm NAME [--force]              unlink a ring and its leftover semaphores
 *   shmring gc [--dry-run] [--min-age S]   remove what dead processes left behind
 *   shmring metrics [NAME ...]             counters in the Prometheus text format
 *
 * Commands that read a ring map it with SHM_INSPECT: read-only (O_RDONLY, PROT_READ), so
 * read permission suffices, they never create one, never take a producer entry and
 * change neither the ring's bytes nor its timestamps (gc ages a ring by its ctime).
 * Only send and flush attach as a producer (shmring_attach), as any producer would.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"


/* ---- shared helpers ------------------------------------------------------------- */

const char *cli_cause(int err)
{
	switch (err) {
	case -ENOENT: return "not found";
	case -EACCES:
	case -EPERM: return "permission denied";
	case -EPROTO: return "not a shmring ring (wrong layout or corrupt)";
	case -ENOSPC: return "its pages cannot be had: /dev/shm is full";
	case -EINVAL: return "invalid ring name (1 to 200 of [A-Za-z0-9._-], one leading '/' allowed)";
	default: return strerror(-err);
	}
}

void cli_ring_err(const char *name, int err)
{
	fprintf(stderr, "shmring: ring %s: %s\n", name, cli_cause(err));
}

void cli_ring_msg(const char *name, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "shmring: ring %s: ", name);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

int cli_map(const char *name, struct shm_map *m)
{
	int rc = shm_map_open(name, NULL, SHM_INSPECT, m);
	if (rc)
		cli_ring_err(name, rc);
	return rc;
}

void cli_out_path(const struct shm_map *m, char *buf, size_t size)
{
	static char tmp[SHM_PATH_MAX];
	buf[0] = 0;
	if (shm_path_read(m->hdr, tmp) == 0)
		snprintf(buf, size, "%s", tmp);
}

const char *cli_prog = "shmring";

int cli_opt_uint(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *out)
{
	char why[512];
	if (shm_opt_uint(arg, min, max, out, why, sizeof(why)) == 0)
		return 0;
	fprintf(stderr, "%s: %s: %s (see %s --help)\n", cli_prog, opt, why, cli_prog);
	return -1;
}

int cli_opt_seconds(const char *opt, const char *arg, double min, double max, double *out)
{
	char why[512];
	if (shm_opt_seconds(arg, min, max, out, why, sizeof(why)) == 0)
		return 0;
	fprintf(stderr, "%s: %s: %s (see %s --help)\n", cli_prog, opt, why, cli_prog);
	return -1;
}

/* --watch intervals: from a millisecond to a day. */
#define WATCH_MIN 0.001
#define WATCH_MAX 86400.0

static int print_json(json_t *v)
{
	if (!v) {
		fprintf(stderr, "shmring: out of memory\n");
		return CLI_ERR;
	}
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(v);
	if (!s) {
		fprintf(stderr, "shmring: out of memory\n");
		return CLI_ERR;
	}
	puts(s);
	free(s);
	return CLI_OK;
}

static volatile sig_atomic_t g_stop;

static void on_stop(int sig)
{
	(void)sig;
	g_stop = 1;
}

/* ---- usage ---------------------------------------------------------------------- */

static void usage_main(FILE *f)
{
	fprintf(f,
		"usage: shmring [--help] [--version] COMMAND [ARGS]\n"
		"Inspect and operate shmring rings (/dev/shm/shmring.NAME) from the shell.\n\n"
		"Commands:\n"
		"  ls [--json]                         list every ring on this host\n"
		"  stat NAME [--json] [--watch [S]]    counters of ring NAME, once or every S seconds\n"
		"  peek NAME [-n N]                    the next N pending records as JSON lines,\n"
		"                                      without consuming them\n"
		"  send NAME [JSON ...]                send JSON values (arguments, else stdin lines)\n"
		"  flush NAME                          wait until every record sent before is written\n"
		"  rm NAME [--force]                   remove ring NAME and its leftover semaphores\n"
		"  gc [--dry-run] [--min-age S]        remove flush semaphores and unused rings left\n"
		"                                      by dead processes\n"
		"  metrics [NAME ...]                  counters of every ring (or of NAMEs) in the\n"
		"                                      Prometheus text format\n"
		"  help [COMMAND]                      this text, or the usage of COMMAND\n\n"
		"`shmring COMMAND --help` prints the usage of COMMAND. Commands that read a ring never\n"
		"create it and never attach as a producer; ls, stat, peek and metrics open it\n"
		"read-only, so read permission is enough and the ring and its times stay unchanged.\n"
		"Numbers are decimal digits; durations S are seconds, or a number with s, m, h or d.\n\n"
		"Exit status: 0 ok, 1 error, 2 usage; flush: 3 no live writer, 4 timed out,\n"
		"5 the writer's output fails.\n");
}

static void usage_ls(FILE *f)
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

static void usage_stat(FILE *f)
{
	fprintf(f,
		"usage: shmring stat NAME [--json] [--watch [SECONDS]] [--count N]\n"
		"Print every counter of ring NAME and the file its writer appends to.\n\n"
		"  -j, --json              one JSON object per refresh with the fields below plus\n"
		"                          \"name\" and \"out_path\" (null when no writer ever served)\n"
		"                          and \"writer_error\", \"writer_error_since\" (null or text);\n"
		"                          with --watch also \"time\" (RFC 3339, UTC) and \"rates\":\n"
		"                          {\"sent\", \"written\", \"dropped\"} per second since the\n"
		"                          previous object (null in the first)\n"
		"  -w, --watch [SECONDS]   refresh every SECONDS (default 1; fractions and a unit s,\n"
		"                          m, h or d allowed) until interrupted, in place when stdout\n"
		"                          is a terminal, with the rates per second of records sent,\n"
		"                          written and dropped. A ring removed meanwhile ends it\n"
		"                          with a message and exit status 1\n"
		"  -c, --count N           with --watch: stop after N refreshes\n"
		"  -h, --help              this text\n\n"
		"Fields (struct shmring_stats):\n"
		"  capacity, slot_size       slots in the ring, bytes per slot\n"
		"  max_record                largest msgpack record accepted, bytes\n"
		"  head, tail                slots below head are free again; tail is the next claim\n"
		"  pending                   records in the ring not yet written nor abandoned\n"
		"  sent                      sends that got an outcome (the sum of the others)\n"
		"  written                   JSON lines written (invalid ones included)\n"
		"  invalid                   of written: records written as a shmring_error line\n"
		"  dropped_full              dropped because the ring was full\n"
		"  dropped_oversize          dropped because larger than max_record\n"
		"  abandoned                 revoked: the producer died or stalled mid-send\n"
		"  aborted                   reservations aborted (not in sent)\n"
		"  corrupt                   unreadable slot words the writer skipped\n"
		"  flushes, flushes_done     flush calls, flush barriers the writer confirmed\n"
		"  writer_pid, writer_alive  the last writer's pid; whether a writer serves now\n"
		"  producers                 producer processes attached now\n"
		"  writer_error              what fails in the writer's output, e.g. \"write PATH: No\n"
		"                            space left on device\" (records wait in the ring), or none\n"
		"  writer_error_since        when it began to fail (RFC 3339, UTC)\n"
		"sent = written + dropped_full + dropped_oversize + abandoned + pending\n");
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

void usage_send(FILE *f)
{
	fprintf(f,
		"usage: shmring send NAME [JSON ...]\n"
		"Send each JSON argument, or each non-empty line of standard input when there is\n"
		"none, as one msgpack record to ring NAME (which must exist: it is never created).\n"
		"Objects become maps (key order kept), arrays arrays, strings strings, integers\n"
		"int64, reals doubles, true/false/null themselves. A record is not sent when it is\n"
		"not valid JSON (or an integer beyond int64), or the ring drops it (full,\n"
		"oversize). Options are only read before NAME, so values like -1 are sent as is.\n\n"
		"  -h, --help   this text\n\n"
		"Exit status: 0 every record sent; 1 some were invalid or dropped (a message says\n"
		"how many), or an error.\n");
}

static void usage_flush(FILE *f)
{
	fprintf(f,
		"usage: shmring flush NAME\n"
		"Flush barrier: returns once every record accepted by ring NAME before it, from any\n"
		"process, has been written by the writer (bounded at %d ms).\n\n"
		"  -h, --help   this text\n\n"
		"Exit status: 0 flushed, 3 no live writer, 4 not confirmed in time (writer stopped\n"
		"or overloaded), 5 not confirmed in time while the writer reports that its output\n"
		"fails (full disk, I/O error, file size limit: the message says what; the records\n"
		"wait in the ring), 1 any other error.\n",
		SHMRING_FLUSH_TIMEOUT_MS);
}

static void usage_gc(FILE *f)
{
	fprintf(f,
		"usage: shmring gc [--dry-run] [--min-age S]\n"
		"Remove what dead processes left in /dev/shm: flush semaphores whose producer is gone,\n"
		"and rings with no writer, no producer attached and nothing pending, older than S\n"
		"seconds (default 10). Liveness is the kernel-released lock of each process, so\n"
		"nothing of a live process is touched. Prints one line per object removed.\n\n"
		"  -n, --dry-run    only print what would be removed\n"
		"  -a, --min-age S  leave rings younger than S seconds (their creator may be starting);\n"
		"                   S is seconds, or a number with s, m, h or d (e.g. 90, 1.5m, 2h)\n"
		"  -h, --help       this text\n");
}

static void usage_rm(FILE *f)
{
	fprintf(f,
		"usage: shmring rm NAME [--force]\n"
		"Unlink ring NAME (/dev/shm/shmring.NAME) and its leftover flush semaphores\n"
		"(/dev/shm/sem.shmring.NAME.f.*). Processes that have it mapped keep their mapping;\n"
		"new opens create a new ring.\n\n"
		"  -f, --force  remove it even while a writer serves it (refused otherwise): that\n"
		"               writer is sent SIGTERM (it writes what the ring holds, then exits)\n"
		"               and waited for up to 5 s, so that none serves a ring no one sees\n"
		"  -h, --help   this text\n\n"
		"Exit status: 0 removed (and its writer stopped), 1 error or refused.\n");
}

static void usage_metrics(FILE *f)
{
	fprintf(f,
		"usage: shmring metrics [NAME ...]\n"
		"Print the counters of rings NAME (default: every ring on this host) in the Prometheus\n"
		"text exposition format: every field of `shmring stat`, counters as shmring_*_total,\n"
		"gauges for capacity, pending, producers, writer liveness and the writer's output\n"
		"error (errno, operation, since), each with a ring=\"NAME\" label. Objects that are\n"
		"not readable rings are left out (a NAME given is an error). For node_exporter's\n"
		"textfile collector, shmring-writer --metrics-file keeps such a file up to date.\n\n"
		"  -h, --help   this text\n\n"
		"Exit status: 0 ok, 1 a NAME given could not be read (the others are printed).\n");
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

static int cmd_ls(int argc, char **argv)
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
		rc = print_json(arr);
	} else {
		ls_print_table(rows, n);
	}
out:
	closedir(d);
	free(rows);
	return rc;
}

/* ---- stat ----------------------------------------------------------------------- */

/* "2026-12-04T16:40:00.123456Z" of a CLOCK_REALTIME time in ns. */
static void rfc3339(uint64_t ns, char *buf, size_t len)
{
	time_t sec = (time_t)(ns / 1000000000ull);
	struct tm tm;
	gmtime_r(&sec, &tm);
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%06luZ", (unsigned long)(ns % 1000000000ull / 1000));
}

/* The writer's output error, composed from the record in shared memory; "" when none. */
static void writer_error(const struct shm_map *m, char *buf, size_t len, char *since, size_t slen,
			 const struct shmring_stats *s)
{
	since[0] = 0;
	if (shm_werr_text(m->hdr, buf, len) <= 0) {
		buf[0] = 0;
		return;
	}
	if (s->writer_error_since_ns)
		rfc3339(s->writer_error_since_ns, since, slen);
}

static json_t *stats_json(const char *name, const char *out_path, const struct shmring_stats *s,
			  const char *werr, const char *since)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	int bad = 0;
#define PUT(k, v) bad |= json_object_set_new(o, k, v)
#define PUTI(f) PUT(#f, json_integer((json_int_t)s->f))
	PUT("name", json_string(name));
	PUT("out_path", out_path[0] ? json_string(out_path) : json_null());
	PUTI(capacity);
	PUTI(slot_size);
	PUTI(max_record);
	PUTI(head);
	PUTI(tail);
	PUTI(pending);
	PUTI(sent);
	PUTI(written);
	PUTI(invalid);
	PUTI(dropped_full);
	PUTI(dropped_oversize);
	PUTI(abandoned);
	PUTI(aborted);
	PUTI(corrupt);
	PUTI(flushes);
	PUTI(flushes_done);
	PUTI(writer_pid);
	PUT("writer_alive", json_boolean(s->writer_alive));
	PUTI(producers);
	PUT("writer_error", werr[0] ? json_string(werr) : json_null());
	PUT("writer_error_since", werr[0] && since[0] ? json_string(since) : json_null());
#undef PUTI
#undef PUT
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static void stats_text(const char *name, const char *out_path, const struct shmring_stats *s,
		       const char *werr, const char *since)
{
	printf("%-17s %s\n", "name", name);
	printf("%-17s %s\n", "out_path", out_path[0] ? out_path : "-");
#define P(f) printf("%-17s %llu\n", #f, (unsigned long long)s->f)
	P(capacity);
	P(slot_size);
	P(max_record);
	P(head);
	P(tail);
	P(pending);
	P(sent);
	P(written);
	P(invalid);
	P(dropped_full);
	P(dropped_oversize);
	P(abandoned);
	P(aborted);
	P(corrupt);
	P(flushes);
	P(flushes_done);
#undef P
	printf("%-17s %d\n", "writer_pid", (int)s->writer_pid);
	printf("%-17s %s\n", "writer_alive", s->writer_alive ? "yes" : "no");
	printf("%-17s %u\n", "producers", s->producers);
	if (werr[0])
		printf("%-17s %s (since %s)\n", "writer_error", werr, since[0] ? since : "?");
	else
		printf("%-17s none\n", "writer_error");
}

/* `--watch 2` as well as `--watch=2`: the argument after --watch is its interval (taken
 * out of the arguments, into *every_arg, checked by the caller) when another positional
 * argument, the ring's name, remains. Returns a copy of argv without it, for getopt;
 * free it. */
static char **take_watch_arg(int *argc, char **argv, const char **every_arg)
{
	char **out = calloc((size_t)*argc + 1, sizeof(*out));
	if (!out)
		return NULL;
	int n = 0, positional = 0;
	for (int i = 1; i < *argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (argv[i][0] != '-')
			positional++;
		else if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--count")) && i + 1 < *argc)
			i++;
	}
	for (int i = 0; i < *argc; i++) {
		out[n++] = argv[i];
		if ((!strcmp(argv[i], "--watch") || !strcmp(argv[i], "-w")) && i + 1 < *argc &&
		    positional >= 2 && argv[i + 1][0] != '-') {
			*every_arg = argv[++i];
			positional--;
		}
	}
	out[n] = NULL;
	*argc = n;
	return out;
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
	nanosleep(&ts, NULL); /* a signal ends it early: the loop checks g_stop */
}

/* Whether ring name, mapped as m, was removed (or removed and created anew) since. */
static int ring_removed(const char *name, const struct shm_map *m)
{
	struct stat mine, now;
	char path[SHM_NAME_MAX + 32];
	if (fstat(m->fd, &mine) < 0 || mine.st_nlink == 0)
		return 1;
	snprintf(path, sizeof(path), "%s/%s%s", SHM_DIR, SHM_PREFIX, name[0] == '/' ? name + 1 : name);
	return stat(path, &now) < 0 || now.st_ino != mine.st_ino || now.st_dev != mine.st_dev;
}

/* Records per second of a counter between two refreshes dt seconds apart. */
static double rate(uint64_t now, uint64_t before, double dt)
{
	return (double)(now - before) / dt;
}

static int stat_loop(const char *name, struct shm_map *m, int json, int watch, double every,
		     uint64_t count)
{
	int tty = isatty(STDOUT_FILENO);
	struct shmring_stats prev = { 0 }, st;
	double t_prev = 0;
	char out_path[SHM_PATH_MAX], werr[SHM_PATH_MAX + 256], since[48];
	for (uint64_t i = 0; !g_stop && (!watch || !count || i < count); i++) {
		if (i)
			sleep_s(every);
		if (g_stop)
			break;
		if (watch && i && ring_removed(name, m)) {
			cli_ring_msg(name, "removed while being watched");
			return CLI_ERR;
		}
		int rc = shm_stats_read(m, &st, -1);
		if (rc) {
			cli_ring_err(name, rc);
			return CLI_ERR;
		}
		double t = mono_s();
		struct timespec wall;
		clock_gettime(CLOCK_REALTIME, &wall);
		char when[48];
		rfc3339((uint64_t)wall.tv_sec * 1000000000ull + (uint64_t)wall.tv_nsec, when, sizeof(when));
		double dt = t - t_prev > 1e-6 ? t - t_prev : 1e-6;
		double r_sent = rate(st.sent, prev.sent, dt), r_written = rate(st.written, prev.written, dt);
		double r_dropped = rate(st.dropped_full + st.dropped_oversize,
					prev.dropped_full + prev.dropped_oversize, dt);
		cli_out_path(m, out_path, sizeof(out_path));
		writer_error(m, werr, sizeof(werr), since, sizeof(since), &st);
		if (json) {
			json_t *o = stats_json(name, out_path, &st, werr, since);
			/* Watching: when, and the rates since the previous object (null at first). */
			if (o && watch &&
			    (json_object_set_new(o, "time", json_string(when)) ||
			     json_object_set_new(o, "rates", i ? json_pack("{s:f, s:f, s:f}", "sent", r_sent,
									    "written", r_written,
									    "dropped", r_dropped)
							      : json_null()))) {
				json_decref(o);
				o = NULL;
			}
			if ((rc = print_json(o)))
				return rc;
		} else {
			if (watch && tty)
				fputs("\033[H\033[2J", stdout);
			else if (watch && i)
				putchar('\n');
			if (watch)
				printf("%-17s %s (every %gs)\n", "time", when, every);
			stats_text(name, out_path, &st, werr, since);
			if (watch && i)
				printf("%-17s sent %.1f/s  written %.1f/s  dropped %.1f/s\n", "rates", r_sent,
				       r_written, r_dropped);
			else if (watch)
				printf("%-17s sent -  written -  dropped -\n", "rates");
		}
		fflush(stdout);
		prev = st;
		t_prev = t;
		if (!watch)
			break;
	}
	return CLI_OK;
}

static int cmd_stat(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", no_argument, 0, 'j' },         { "watch", optional_argument, 0, 'w' },
		{ "count", required_argument, 0, 'c' },  { "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	double every = 1;
	const char *every_arg = NULL;
	char **av = take_watch_arg(&argc, argv, &every_arg);
	if (!av) {
		fprintf(stderr, "shmring: out of memory\n");
		return CLI_ERR;
	}
	int json = 0, watch = 0, c;
	uint64_t count = 0;
	while ((c = getopt_long(argc, av, "jw::c:h", lo, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 'w':
			watch = 1;
			if (optarg)
				every_arg = optarg;
			if (every_arg && cli_opt_seconds("--watch", every_arg, WATCH_MIN, WATCH_MAX, &every)) {
				free(av);
				return CLI_USAGE;
			}
			break;
		case 'c':
			if (cli_opt_uint("--count", optarg, 1, UINT32_MAX, &count)) {
				free(av);
				return CLI_USAGE;
			}
			break;
		case 'h': usage_stat(stdout); free(av); return CLI_OK;
		default: usage_stat(stderr); free(av); return CLI_USAGE;
		}
	}
	if (optind != argc - 1) {
		usage_stat(stderr);
		free(av);
		return CLI_USAGE;
	}
	const char *name = av[optind];
	free(av);
	struct shm_map m;
	if (cli_map(name, &m))
		return CLI_ERR;
	if (watch) {
		struct sigaction sa = { .sa_handler = on_stop }; /* no SA_RESTART: wakes the sleep */
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
	}
	int rc = stat_loop(name, &m, json, watch, every, count);
	shm_map_close(&m);
	return rc;
}

/* ---- flush ---------------------------------------------------------------------- */

static void quiet_log(enum shmring_log_level level, const char *msg, void *ctx)
{
	(void)level, (void)msg, (void)ctx;
}

static int cmd_flush(int argc, char **argv)
{
	static const struct option lo[] = { { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'h') {
			usage_flush(stdout);
			return CLI_OK;
		}
		usage_flush(stderr);
		return CLI_USAGE;
	}
	if (optind != argc - 1) {
		usage_flush(stderr);
		return CLI_USAGE;
	}
	const char *name = argv[optind];
	shmring *r;
	shmring_set_log(quiet_log, NULL);
	int rc = shmring_attach(name, &r);
	if (rc) {
		cli_ring_err(name, rc);
		return CLI_ERR;
	}
	rc = shmring_flush(r);
	char werr[SHM_PATH_MAX + 256] = "";
	if (rc == -EIO && shmring_writer_error(r, werr, sizeof(werr)) <= 0)
		snprintf(werr, sizeof(werr), "an error it no longer reports");
	shmring_close(r);
	switch (rc) {
	case 0: return CLI_OK;
	case -ENOTCONN:
		cli_ring_msg(name, "no live writer serves it");
		return CLI_NOWRITER;
	case -ETIMEDOUT:
		cli_ring_msg(name, "flush not confirmed within %d ms (writer stopped or busy)",
			     SHMRING_FLUSH_TIMEOUT_MS);
		return CLI_TIMEOUT;
	case -EIO:
		cli_ring_msg(name, "flush not confirmed within %d ms: the writer's output fails: %s",
			     SHMRING_FLUSH_TIMEOUT_MS, werr);
		return CLI_OUTPUT;
	default:
		cli_ring_msg(name, "flush failed: %s", strerror(-rc));
		return CLI_ERR;
	}
}

/* ---- rm ------------------------------------------------------------------------- */

/* Remove /dev/shm/sem.shmring.NAME.f.<digits and dots>: the flush semaphores of NAME's
 * producers (ring.c names them /shmring.NAME.f.ENTRY.GEN.SEQ). The tail must be digits
 * and dots so that ring "a" never takes the semaphores of ring "a.f.x". */
static int rm_semaphores(const char *name)
{
	char sp[SHM_NAME_MAX + 32], prefix[SHM_NAME_MAX + 40];
	shm_sem_prefix(sp, sizeof(sp), name);
	int plen = snprintf(prefix, sizeof(prefix), "sem.%s", sp + 1); /* glibc's file name */
	DIR *d = opendir(SHM_DIR);
	if (!d)
		return 0;
	int removed = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, prefix, (size_t)plen) || !e->d_name[plen])
			continue;
		if (strspn(e->d_name + plen, "0123456789.") != strlen(e->d_name + plen))
			continue;
		char sem[NAME_MAX + 2];
		snprintf(sem, sizeof(sem), "/%s", e->d_name + 4); /* without "sem." */
		if (sem_unlink(sem) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}

/* How long rm --force waits for the writer it stopped to let go of the ring. */
#define RM_WAIT_S 5.0

/* SIGTERM the writer of ring name, pid as it published it: 0, or -errno after a message. */
static int rm_stop_writer(const char *name, int pid)
{
	char path[64], comm[64] = "";
	if (pid <= 0) {
		cli_ring_msg(name, "a live writer serves it but its pid is unknown; not removed");
		return -ESRCH;
	}
	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	FILE *f = fopen(path, "r");
	if (f) {
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = 0;
		fclose(f);
	}
	comm[strcspn(comm, "\n")] = 0;
	if (strcmp(comm, "shmring-writer")) {
		cli_ring_msg(name, "its writer's pid %d is not a shmring-writer (%s); not removed", pid,
			     comm[0] ? comm : "gone");
		return -ESRCH;
	}
	if (kill(pid, SIGTERM) < 0) {
		int e = errno;
		cli_ring_msg(name, "cannot stop its writer (pid %d): %s; not removed", pid, strerror(e));
		return -e;
	}
	return 0;
}

static int cmd_rm(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "force", no_argument, 0, 'f' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	int force = 0, c;
	while ((c = getopt_long(argc, argv, "fh", lo, NULL)) != -1) {
		switch (c) {
		case 'f': force = 1; break;
		case 'h': usage_rm(stdout); return CLI_OK;
		default: usage_rm(stderr); return CLI_USAGE;
		}
	}
	if (optind != argc - 1) {
		usage_rm(stderr);
		return CLI_USAGE;
	}
	const char *arg = argv[optind];
	char shm[SHM_NAME_MAX + 16];
	int rc = shm_name_check(arg, shm);
	if (rc) {
		cli_ring_err(arg, rc);
		return CLI_ERR;
	}
	const char *name = shm + 1 + strlen(SHM_PREFIX); /* as given, without the leading '/' */
	/* Whether a writer serves it: its OFD lock, which GETLK sees through any descriptor
	 * of the object, even one that is not a ring of this layout. */
	int fd = shm_open(shm, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0 && errno == ENOENT) {
		rm_semaphores(name);
		cli_ring_err(name, -ENOENT);
		return CLI_ERR;
	}
	if (fd < 0 && !force) {
		cli_ring_err(name, -errno);
		return CLI_ERR;
	}
	int pid = 0;
	if (fd >= 0 && shm_lock_held(fd, SHM_LOCK_WRITER) == 1) {
		struct shm_map m;
		if (shm_map_open(name, NULL, SHM_INSPECT, &m) == 0) {
			pid = atomic_load_explicit(&m.hdr->writer_pid, memory_order_relaxed);
			shm_map_close(&m);
		}
		if (!force) {
			if (pid > 0)
				cli_ring_msg(name, "a live writer (pid %d) serves it; stop it first or use --force", pid);
			else
				cli_ring_msg(name, "a live writer serves it; stop it first or use --force");
			close(fd);
			return CLI_ERR;
		}
		/* Removing the ring under a live writer would leave it serving a ring no one can
		 * open again: stop it. The lock says a writer lives; the pid is the one the
		 * serving writer published, and its name is checked, as pids are reused. */
		if ((rc = rm_stop_writer(name, pid))) {
			close(fd);
			return CLI_ERR;
		}
	}
	if (shm_unlink(shm) < 0) {
		rc = -errno;
		cli_ring_err(name, rc);
		if (fd >= 0)
			close(fd);
		return CLI_ERR;
	}
	rm_semaphores(name);
	rc = CLI_OK;
	if (pid > 0) {
		/* SIGTERM: it writes what is in the ring, then exits (and drops its lock). */
		double end = mono_s() + RM_WAIT_S;
		while (shm_lock_held(fd, SHM_LOCK_WRITER) == 1 && mono_s() < end)
			sleep_s(0.01);
		if (shm_lock_held(fd, SHM_LOCK_WRITER) == 1) {
			cli_ring_msg(name, "removed, but its writer (pid %d) is still running after %.0f s",
				     pid, RM_WAIT_S);
			rc = CLI_ERR;
		} else {
			printf("stopped writer pid %d\n", pid);
		}
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

/* ---- gc ------------------------------------------------------------------------- */

static void gc_report(const char *kind, const char *name, void *ctx)
{
	printf("%s %s %s\n", *(int *)ctx ? "would remove" : "removed", kind, name);
}

static int cmd_gc(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dry-run", no_argument, 0, 'n' }, { "min-age", required_argument, 0, 'a' },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	int dry = 0, c;
	double age = 10;
	while ((c = getopt_long(argc, argv, "na:h", lo, NULL)) != -1) {
		switch (c) {
		case 'n': dry = 1; break;
		case 'a':
			if (cli_opt_seconds("--min-age", optarg, 0, UINT32_MAX, &age))
				return CLI_USAGE;
			break;
		case 'h': usage_gc(stdout); return CLI_OK;
		default: usage_gc(stderr); return CLI_USAGE;
		}
	}
	if (optind != argc) {
		usage_gc(stderr);
		return CLI_USAGE;
	}
	int n = shm_gc(NULL, dry, (unsigned)age, gc_report, &dry);
	if (n < 0) {
		fprintf(stderr, "shmring: gc: %s\n", strerror(-n));
		return CLI_ERR;
	}
	return CLI_OK;
}

/* ---- metrics -------------------------------------------------------------------- */

struct metrics_ring {
	char name[SHM_NAME_MAX + 1];
	struct shmring_stats st;
};

/* Read ring name into *r; 0, or the error (printed when `loud`: a ring asked by name). */
static int metrics_read(const char *name, struct metrics_ring *r, int loud)
{
	struct shm_map m;
	int rc = shm_map_open(name, NULL, SHM_INSPECT, &m);
	if (!rc) {
		rc = shm_stats_read(&m, &r->st, -1);
		shm_map_close(&m);
	}
	if (rc && loud)
		cli_ring_err(name, rc);
	snprintf(r->name, sizeof(r->name), "%s", name[0] == '/' ? name + 1 : name);
	return rc;
}

static int metrics_cmp(const void *a, const void *b)
{
	return strcmp(((const struct metrics_ring *)a)->name, ((const struct metrics_ring *)b)->name);
}

static int cmd_metrics(int argc, char **argv)
{
	static const struct option lo[] = { { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'h') {
			usage_metrics(stdout);
			return CLI_OK;
		}
		usage_metrics(stderr);
		return CLI_USAGE;
	}
	struct metrics_ring *rings = NULL;
	struct shm_metrics_ring *view = NULL;
	size_t n = 0, cap = 0;
	int rc = CLI_OK;
	DIR *d = NULL;
	const size_t plen = strlen(SHM_PREFIX);
	struct dirent *e = NULL;
	if (optind == argc && !(d = opendir(SHM_DIR))) {
		fprintf(stderr, "shmring: cannot list %s: %s\n", SHM_DIR, strerror(errno));
		return CLI_ERR;
	}
	for (int i = optind; d ? (e = readdir(d)) != NULL : i < argc; i++) {
		const char *name = d ? e->d_name + plen : argv[i];
		/* As ls: shmring.NAME regular files; semaphores are sem.shmring.* */
		if (d && (strncmp(e->d_name, SHM_PREFIX, plen) || !*name || strlen(name) > SHM_NAME_MAX ||
			  (e->d_type != DT_REG && e->d_type != DT_UNKNOWN)))
			continue;
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 16;
			struct metrics_ring *nr = realloc(rings, nc * sizeof(*rings));
			if (!nr) {
				fprintf(stderr, "shmring: out of memory\n");
				rc = CLI_ERR;
				goto out;
			}
			rings = nr;
			cap = nc;
		}
		if (metrics_read(name, &rings[n], !d) == 0)
			n++;
		else if (!d)
			rc = CLI_ERR;
	}
	if (d)
		qsort(rings, n, sizeof(*rings), metrics_cmp);
	view = calloc(n ? n : 1, sizeof(*view));
	char *text = NULL;
	size_t len = 0;
	for (size_t i = 0; view && i < n; i++)
		view[i] = (struct shm_metrics_ring){ rings[i].name, &rings[i].st };
	if (!view || shm_metrics_text(view, n, &text, &len)) {
		fprintf(stderr, "shmring: out of memory\n");
		rc = CLI_ERR;
		goto out;
	}
	if (fwrite(text, 1, len, stdout) != len || fflush(stdout)) {
		fprintf(stderr, "shmring: metrics: %s\n", strerror(errno));
		rc = CLI_ERR;
	}
	free(text);
out:
	if (d)
		closedir(d);
	free(view);
	free(rings);
	return rc;
}

/* ---- main ----------------------------------------------------------------------- */

static const struct cmd {
	const char *name;
	int (*run)(int, char **);
	void (*usage)(FILE *);
} cmds[] = {
	{ "ls", cmd_ls, usage_ls },       { "stat", cmd_stat, usage_stat },
	{ "peek", cmd_peek, usage_peek }, { "send", cmd_send, usage_send },
	{ "flush", cmd_flush, usage_flush }, { "rm", cmd_rm, usage_rm },
	{ "gc", cmd_gc, usage_gc },       { "metrics", cmd_metrics, usage_metrics },
};

static const struct cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

/* A ring truncated under us turns the next read into SIGBUS: say so in one line. */
static void on_sigbus(int sig)
{
	static const char msg[] = "shmring: the ring's shm object was truncated while being read\n";
	(void)sig;
	(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	_exit(CLI_ERR);
}

int main(int argc, char **argv)
{
	signal(SIGBUS, on_sigbus);
	if (argc < 2) {
		usage_main(stderr);
		return CLI_USAGE;
	}
	const char *a = argv[1];
	if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
		usage_main(stdout);
		return CLI_OK;
	}
	if (!strcmp(a, "--version") || !strcmp(a, "-V")) {
		printf("shmring %d.%d.%d\n", SHMRING_VERSION_MAJOR, SHMRING_VERSION_MINOR,
		       SHMRING_VERSION_PATCH);
		return CLI_OK;
	}
	if (!strcmp(a, "help")) {
		if (argc == 2) {
			usage_main(stdout);
			return CLI_OK;
		}
		const struct cmd *c = find_cmd(argv[2]);
		if (!c || argc > 3) {
			fprintf(stderr, "shmring: no such command: %s\n", argv[2]);
			return CLI_USAGE;
		}
		c->usage(stdout);
		return CLI_OK;
	}
	const struct cmd *c = find_cmd(a);
	if (!c) {
		fprintf(stderr, "shmring: no such command: %s (see shmring --help)\n", a);
		return CLI_USAGE;
	}
	/* getopt's messages then say "shmring stat: ..." */
	static char prog[32];
	snprintf(prog, sizeof(prog), "shmring %s", c->name);
	argv[1] = prog;
	cli_prog = prog;
	return c->run(argc - 1, argv + 1);
}
