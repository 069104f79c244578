/*
 * stat.c - `shmring stat`: every counter of one ring, once or --watch'ed, as text or
 * JSON with a timestamp and per-second rates.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* --watch intervals: from a millisecond to a day. */
#define WATCH_MIN 0.001
#define WATCH_MAX 86400.0

void usage_stat(FILE *f)
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
	for (uint64_t i = 0; !cli_stop && (!watch || !count || i < count); i++) {
		if (i)
			cli_sleep_s(every);
		if (cli_stop)
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
		double t = cli_mono_s();
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
			if ((rc = cli_print_json(o)))
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

int cmd_stat(int argc, char **argv)
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
		struct sigaction sa = { .sa_handler = cli_on_stop }; /* no SA_RESTART: wakes the sleep */
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
	}
	int rc = stat_loop(name, &m, json, watch, every, count);
	shm_map_close(&m);
	return rc;
}
