/* test_cli: the shmring program run as a program: help and version, ls, stat, peek with a
 * stopped writer, send and flush, flush exit codes, rm, error lines, no ring created. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "internal.h"
#include "testutil.h"

#ifndef SHMRING_CLI_PATH
#error "built with SHMRING_CLI_PATH"
#endif

/* ---- running the program ---------------------------------------------------------- */

struct run {
	int status;   /* exit status, or 128 + signal */
	char *out, *err;
	size_t out_len, err_len;
};

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

static void buf_add(char **b, size_t *len, const char *p, size_t n)
{
	*b = realloc(*b, *len + n + 1);
	assert_non_null(*b);
	memcpy(*b + *len, p, n);
	*len += n;
	(*b)[*len] = 0;
}

/* When non-zero (and we are root), the program runs as this user and group, from g_cli:
 * a copy in a folder that user can reach (the build tree may be in a 0700 folder). */
static uid_t g_run_uid;
static const char *g_cli = SHMRING_CLI_PATH;

/* Run `shmring ARGS...` (NULL-terminated) with `in` on stdin; capture stdout and stderr. */
static int run_argv(struct run *r, const char *in, const char *const *args)
{
	memset(r, 0, sizeof(*r));
	buf_add(&r->out, &r->out_len, "", 0);
	buf_add(&r->err, &r->err_len, "", 0);
	int pin[2], pout[2], perr[2];
	assert_int_equal(pipe2(pin, O_CLOEXEC), 0);
	assert_int_equal(pipe2(pout, O_CLOEXEC), 0);
	assert_int_equal(pipe2(perr, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(pin[0], 0);
		dup2(pout[1], 1);
		dup2(perr[1], 2);
		if (g_run_uid && (setgroups(0, NULL) || setgid(g_run_uid) || setuid(g_run_uid)))
			_exit(126);
		const char *argv[64];
		int n = 0;
		argv[n++] = g_cli;
		for (int i = 0; args[i] && n < 63; i++)
			argv[n++] = args[i];
		argv[n] = NULL;
		execv(argv[0], (char **)argv);
		_exit(127);
	}
	close(pin[0]);
	close(pout[1]);
	close(perr[1]);
	size_t in_len = in ? strlen(in) : 0, in_off = 0;
	if (!in_len) {
		close(pin[1]);
		pin[1] = -1;
	}
	int open_out = 2;
	while (open_out || pin[1] >= 0) {
		struct pollfd pf[3] = { { pout[0], POLLIN, 0 }, { perr[0], POLLIN, 0 }, { pin[1], POLLOUT, 0 } };
		int rc = poll(pf, 3, 30000);
		assert_true(rc > 0);
		char buf[4096];
		for (int k = 0; k < 2; k++) {
			if (pf[k].fd < 0 || !(pf[k].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = read(pf[k].fd, buf, sizeof(buf));
			if (n > 0) {
				if (k == 0)
					buf_add(&r->out, &r->out_len, buf, (size_t)n);
				else
					buf_add(&r->err, &r->err_len, buf, (size_t)n);
			} else {
				close(pf[k].fd);
				if (k == 0)
					pout[0] = -1;
				else
					perr[0] = -1;
				open_out--;
			}
		}
		if (pin[1] >= 0 && (pf[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
			ssize_t n = pf[2].revents & POLLOUT ? write(pin[1], in + in_off, in_len - in_off) : -1;
			if (n > 0)
				in_off += (size_t)n;
			if (n <= 0 || in_off == in_len) {
				close(pin[1]);
				pin[1] = -1;
			}
		}
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	if (getenv("SHMRING_TEST_VERBOSE"))
		fprintf(stderr, "[%s ...] -> %d\nout: %serr: %s", args[0] ? args[0] : "", r->status,
			r->out, r->err);
	return r->status;
}

#define RUN(r, in, ...) run_argv((r), (in), (const char *const[]){ __VA_ARGS__, NULL })

static const char *shm_path(const char *name)
{
	static char p[300];
	snprintf(p, sizeof(p), "/dev/shm/shmring.%s", name);
	return p;
}

static int shm_exists(const char *name)
{
	return access(shm_path(name), F_OK) == 0;
}

static int sem_exists(const char *sem)
{
	char p[300];
	snprintf(p, sizeof(p), "/dev/shm/sem.%s", sem + 1);
	return access(p, F_OK) == 0;
}

static json_t *parse(const char *s)
{
	json_error_t e;
	json_t *v = json_loads(s, JSON_DECODE_ANY, &e);
	if (!v)
		fprintf(stderr, "not JSON (%s): %s\n", e.text, s);
	assert_non_null(v);
	return v;
}

/* Lines of text as an array of strings (without the newlines). */
static json_t *split_lines(const char *text)
{
	json_t *a = json_array();
	const char *p = text;
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		json_array_append_new(a, json_stringn(p, n));
		p += n + (nl ? 1 : 0);
	}
	return a;
}

static void start_stopped_writer(struct tu_ring *t, const char *cap, const char *slot)
{
	assert_true(tu_writer_start(t, cap, slot) > 0);
	assert_int_equal(kill(t->writer, SIGSTOP), 0);
	int st;
	assert_int_equal(waitpid(t->writer, &st, WUNTRACED), t->writer);
	assert_true(WIFSTOPPED(st));
}

static void cont_writer(struct tu_ring *t)
{
	kill(t->writer, SIGCONT);
	int st;
	waitpid(t->writer, &st, WCONTINUED | WNOHANG);
}

/* ---- help and version -------------------------------------------------------------- */

/* The program (g_cli) says "PROG X.Y.Z" to --version, and exits 0. */
static void assert_version(const char *prog)
{
	struct run r;
	char want[64];
	snprintf(want, sizeof(want), "%s %d.%d.%d\n", prog, SHMRING_VERSION_MAJOR,
		 SHMRING_VERSION_MINOR, SHMRING_VERSION_PATCH);
	assert_int_equal(RUN(&r, NULL, "--version"), 0);
	assert_string_equal(r.out, want);
	run_free(&r);
}

static void test_help_version(void **state)
{
	(void)state;
	assert_version("shmring");
	struct run r;
	static const char *const cmds[] = { "ls", "stat", "peek", "send", "flush", "rm", "gc", "metrics" };
	const size_t ncmds = sizeof(cmds) / sizeof(cmds[0]);
	const char *top[] = { "--help", "help" };
	for (int i = 0; i < 2; i++) {
		assert_int_equal(RUN(&r, NULL, top[i]), 0);
		assert_non_null(strstr(r.out, "usage: shmring"));
		for (size_t k = 0; k < ncmds; k++)
			assert_non_null(strstr(r.out, cmds[k]));
		run_free(&r);
	}
	for (size_t k = 0; k < ncmds; k++) {
		char u[64];
		snprintf(u, sizeof(u), "usage: shmring %s", cmds[k]);
		assert_int_equal(RUN(&r, NULL, cmds[k], "--help"), 0);
		assert_non_null(strstr(r.out, u));
		run_free(&r);
		assert_int_equal(RUN(&r, NULL, "help", cmds[k]), 0);
		assert_non_null(strstr(r.out, u));
		run_free(&r);
	}
	assert_int_equal(RUN(&r, NULL, "nosuchcommand"), 2);
	run_free(&r);
	assert_int_equal(RUN(&r, NULL, "stat"), 2);
	run_free(&r);
	assert_int_equal(RUN(&r, NULL, "peek", "x", "-n", "many"), 2);
	run_free(&r);
}

/* ---- ls ---------------------------------------------------------------------------- */

static json_t *ls_find(json_t *arr, const char *name)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v) {
		const char *n = json_string_value(json_object_get(v, "name"));
		if (n && !strcmp(n, name))
			return v;
	}
	return NULL;
}

static void test_ls(void **state)
{
	struct tu_ring *t = *state;
	struct shmring_options o = { .capacity = 64, .slot_size = 256 };
	assert_int_equal(shmring_open(t->name, &o, &t->r), 0);

	struct run r;
	assert_int_equal(RUN(&r, NULL, "ls"), 0);
	assert_non_null(strstr(r.out, "NAME"));
	const char *row = strstr(r.out, t->name);
	assert_non_null(row);
	assert_non_null(strstr(row, " 64 "));
	assert_non_null(strstr(row, " 256 "));
	run_free(&r);

	assert_int_equal(RUN(&r, NULL, "ls", "--json"), 0);
	json_t *arr = parse(r.out);
	assert_true(json_is_array(arr));
	json_t *e = ls_find(arr, t->name);
	assert_non_null(e);
	assert_int_equal(json_integer_value(json_object_get(e, "capacity")), 64);
	assert_int_equal(json_integer_value(json_object_get(e, "slot_size")), 256);
	assert_int_equal(json_integer_value(json_object_get(e, "pending")), 0);
	assert_int_equal(json_integer_value(json_object_get(e, "dropped")), 0);
	assert_true(json_is_false(json_object_get(e, "writer_alive")));
	assert_true(json_is_null(json_object_get(e, "out_path")));
	json_decref(arr);
	run_free(&r);

	/* Once a writer serves it: alive, its pid and the file it writes. */
	assert_true(tu_writer_start(t, NULL, NULL) > 0);
	char real[PATH_MAX];
	assert_non_null(realpath(t->out, real));
	assert_int_equal(RUN(&r, NULL, "ls", "--json"), 0);
	arr = parse(r.out);
	e = ls_find(arr, t->name);
	assert_non_null(e);
	assert_true(json_is_true(json_object_get(e, "writer_alive")));
	assert_int_equal(json_integer_value(json_object_get(e, "writer_pid")), t->writer);
	assert_string_equal(json_string_value(json_object_get(e, "out_path")), real);
	json_decref(arr);
	run_free(&r);
	assert_int_equal(RUN(&r, NULL, "ls"), 0);
	row = strstr(r.out, t->name);
	assert_non_null(row);
	assert_non_null(strstr(row, real));
	run_free(&r);

}

/* ---- stat -------------------------------------------------------------------------- */

static void check_stats_json(json_t *o, const char *name, const char *out, const struct shmring_stats *s)
{
	assert_true(json_is_object(o));
	/* 19 stats fields + name + out_path + writer_error and its since (the three error
	 * fields of the struct are told as that text) */
	assert_int_equal(json_object_size(o), 23);
	assert_true(json_is_null(json_object_get(o, "writer_error")));
	assert_true(json_is_null(json_object_get(o, "writer_error_since")));
	assert_string_equal(json_string_value(json_object_get(o, "name")), name);
	assert_string_equal(json_string_value(json_object_get(o, "out_path")), out);
#define F(f) do { \
		json_t *v = json_object_get(o, #f); \
		assert_non_null(v); \
		assert_int_equal(json_integer_value(v), (json_int_t)s->f); \
	} while (0)
	F(capacity); F(slot_size); F(max_record); F(head); F(tail); F(pending); F(sent);
	F(written); F(invalid); F(dropped_full); F(dropped_oversize); F(abandoned); F(aborted);
	F(flushes); F(flushes_done); F(corrupt); F(writer_pid); F(producers);
#undef F
	assert_int_equal(json_is_true(json_object_get(o, "writer_alive")), s->writer_alive);
}

static void test_stat(void **state)
{
	struct tu_ring *t = *state;
	assert_true(tu_writer_start(t, "64", "256") > 0);
	assert_int_equal(shmring_attach(t->name, &t->r), 0);
	shmring *h = t->r;
	tu_send_records(h, 1, 0, 5, 10);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	tu_pack_record(&sb, 1, 99, 5000); /* larger than max_record (4088) */
	assert_int_equal(shmring_send(h, sb.data, sb.size), -EMSGSIZE);
	assert_int_equal(tu_flush(h), 0);
	msgpack_sbuffer_destroy(&sb);
	char real[PATH_MAX];
	assert_non_null(realpath(t->out, real));

	struct run r;
	assert_int_equal(RUN(&r, NULL, "stat", t->name, "--json"), 0);
	struct shmring_stats st;
	assert_int_equal(shmring_stats(h, &st), 0);
	assert_int_equal(st.sent, 6);
	assert_int_equal(st.written, 5);
	assert_int_equal(st.dropped_oversize, 1);
	assert_int_equal(st.producers, 1); /* the command did not attach as a producer */
	json_t *o = parse(r.out);
	check_stats_json(o, t->name, real, &st);
	json_decref(o);
	run_free(&r);

	assert_int_equal(RUN(&r, NULL, "stat", t->name), 0);
	assert_non_null(strstr(r.out, "dropped_oversize  1\n"));
	assert_non_null(strstr(r.out, "written           5\n"));
	assert_non_null(strstr(r.out, real));
	run_free(&r);

	/* --watch: one JSON object per refresh; both spellings of the interval. */
	assert_int_equal(RUN(&r, NULL, "stat", "--json", "--watch", "0.05", "--count", "3", t->name), 0);
	json_t *lines = split_lines(r.out);
	assert_int_equal(json_array_size(lines), 3);
	for (size_t i = 0; i < 3; i++) {
		o = parse(json_string_value(json_array_get(lines, i)));
		/* Watching: when (RFC 3339, UTC) and the rates since the previous object. */
		const char *when = json_string_value(json_object_get(o, "time"));
		assert_non_null(when);
		int y, mo, d, h, mi, sec, us;
		char z = 0;
		assert_int_equal(sscanf(when, "%4d-%2d-%2dT%2d:%2d:%2d.%6d%c", &y, &mo, &d, &h, &mi, &sec, &us, &z), 8);
		assert_int_equal(z, 'Z');
		long tod = (long)(time(NULL) % 86400), said = (h * 60L + mi) * 60 + sec;
		assert_true(labs(tod - said) <= 2 || labs(tod - said) >= 86398); /* UTC, now */
		json_t *rates = json_object_get(o, "rates");
		if (i == 0) {
			assert_true(json_is_null(rates));
		} else {
			assert_true(json_is_object(rates));
			assert_true(json_is_number(json_object_get(rates, "sent")));
			assert_true(json_is_number(json_object_get(rates, "dropped")));
			assert_true(json_number_value(json_object_get(rates, "written")) == 0);
		}
		json_object_del(o, "time");
		json_object_del(o, "rates");
		check_stats_json(o, t->name, real, &st);
		json_decref(o);
	}
	json_decref(lines);
	run_free(&r);
	assert_int_equal(RUN(&r, NULL, "stat", t->name, "--watch=0.05", "-c", "2"), 0);
	const char *second = strstr(r.out, "rates");
	assert_non_null(second);
	assert_non_null(strstr(second + 1, "rates"));
	assert_non_null(strstr(r.out, "written 0.0/s"));
	run_free(&r);
	assert_int_equal(RUN(&r, NULL, "stat", t->name, "--watch=0"), 2);
	run_free(&r);

	/* The ring removed while watched: said so, exit 1 (not a stale view forever). */
	pid_t rm = fork();
	assert_true(rm >= 0);
	if (rm == 0) {
		tu_sleep_ms(200);
		_exit(shmring_unlink(t->name) ? 1 : 0);
	}
	assert_int_equal(RUN(&r, NULL, "stat", "--json", "--watch", "0.02", "--count", "250", t->name), 1);
	assert_non_null(strstr(r.err, "removed while being watched"));
	run_free(&r);
	int rst;
	assert_int_equal(waitpid(rm, &rst, 0), rm);
	assert_true(WIFEXITED(rst) && WEXITSTATUS(rst) == 0);

}

/* ---- peek -------------------------------------------------------------------------- */

static void snapshot(const char *name, uint64_t **words, struct shmring_stats *st, size_t *n)
{
	struct shm_map m;
	assert_int_equal(shm_map_open(name, NULL, SHM_ATTACH, &m), 0);
	*n = m.g.capacity;
	*words = malloc(*n * sizeof(uint64_t));
	for (size_t i = 0; i < *n; i++)
		(*words)[i] = atomic_load(&m.words[i]);
	assert_int_equal(shm_stats_read(&m, st, -1), 0);
	shm_map_close(&m);
}

static void test_peek(void **state)
{
	struct tu_ring *t = *state;
	start_stopped_writer(t, "64", "256");
	assert_int_equal(shmring_attach(t->name, &t->r), 0);
	shmring *h = t->r;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	json_t *want = json_array();
	/* Records of one and of several slots, a flush sentinel (the flush times out with
	 * the writer stopped and leaves it in the ring), and bytes that are not msgpack. */
	for (int i = 0; i < 6; i++) {
		if (i == 2)
			assert_int_equal(shmring_flush(h), -ETIMEDOUT);
		if (i == 4) {
			const uint8_t bad[] = { 0xc1, 0x01 };
			assert_int_equal(shmring_send(h, bad, sizeof(bad)), 0);
			json_array_append_new(want, json_null()); /* an error line, checked apart */
			continue;
		}
		size_t pad = i == 1 ? 700 : 5;
		tu_pack_record(&sb, 7, i, pad);
		assert_int_equal(shmring_send(h, sb.data, sb.size), 0);
		char s[1024];
		size_t k = pad < sizeof(s) ? pad : sizeof(s) - 1;
		for (size_t j = 0; j < k; j++)
			s[j] = (char)('a' + (j + (size_t)i) % 26);
		json_array_append_new(want, json_pack("{s:i, s:I, s:s#}", "p", 7, "i", (json_int_t)i, "s", s, k));
	}
	msgpack_sbuffer_destroy(&sb);

	uint64_t *w0, *w1;
	struct shmring_stats s0, s1;
	size_t nw;
	snapshot(t->name, &w0, &s0, &nw);
	assert_int_equal(s0.pending, 6);

	struct run r, r2;
	assert_int_equal(RUN(&r, NULL, "peek", t->name, "-n", "100"), 0);
	json_t *lines = split_lines(r.out);
	assert_int_equal(json_array_size(lines), 6);
	for (size_t i = 0; i < 6; i++) {
		json_t *v = parse(json_string_value(json_array_get(lines, i)));
		json_t *exp = json_array_get(want, i);
		if (json_is_null(exp))
			assert_non_null(json_object_get(v, "shmring_error"));
		else
			assert_true(json_equal(v, exp));
		json_decref(v);
	}
	/* The default count is 10; -n 2 gives the first two; -n 0 nothing. */
	assert_int_equal(RUN(&r2, NULL, "peek", t->name), 0);
	assert_string_equal(r2.out, r.out);
	run_free(&r2);
	assert_int_equal(RUN(&r2, NULL, "peek", "-n", "2", t->name), 0);
	const char *third = strchr(strchr(r.out, '\n') + 1, '\n') + 1;
	assert_int_equal(r2.out_len, (size_t)(third - r.out));
	assert_memory_equal(r2.out, r.out, r2.out_len);
	run_free(&r2);
	assert_int_equal(RUN(&r2, NULL, "peek", t->name, "-n", "0"), 0);
	assert_int_equal(r2.out_len, 0);
	run_free(&r2);

	/* Nothing in the ring moved: every slot word, head, tail and counter. */
	snapshot(t->name, &w1, &s1, &nw);
	assert_memory_equal(w0, w1, nw * sizeof(uint64_t));
	assert_memory_equal(&s0, &s1, sizeof(s0));
	free(w0);
	free(w1);

	/* The writer, resumed, writes exactly the lines peek showed. */
	tu_close(t);
	cont_writer(t);
	assert_int_equal(tu_writer_stop(t), 0);
	FILE *f = fopen(t->out, "r");
	assert_non_null(f);
	char file[65536];
	size_t n = fread(file, 1, sizeof(file) - 1, f);
	fclose(f);
	file[n] = 0;
	assert_string_equal(file, r.out);
	run_free(&r);
	json_decref(lines);
	json_decref(want);
}

/* ---- send and flush ---------------------------------------------------------------- */

static const char *const k_args[] = {
	"{\"a\":1,\"b\":[true,false,null],\"c\":\"\\u00e9\\n\\\"x\\\"\\u0001\"}",
	"-12", "3.25", "\"str\"", "[]", "{}", "9223372036854775807", "-9223372036854775808",
	"1e-7", "{\"nested\":{\"k\":[1,{\"z\":0.1}]},\"u\":\"\\ud83d\\ude00\"}",
	"{\"z\":1,\"a\":2,\"m\":3}",
};
#define N_ARGS (sizeof(k_args) / sizeof(k_args[0]))

static void test_send(void **state)
{
	struct tu_ring *t = *state;
	assert_true(tu_writer_start(t, NULL, NULL) > 0);
	struct run r;
	const char *argv[N_ARGS + 3] = { "send", t->name };
	for (size_t i = 0; i < N_ARGS; i++)
		argv[2 + i] = k_args[i];
	argv[2 + N_ARGS] = NULL;
	assert_int_equal(run_argv(&r, NULL, argv), 0);
	assert_int_equal(r.err_len, 0);
	run_free(&r);
	const char *in = "{\"from\":\"stdin\",\"i\":1}\n\n{\"from\":\"stdin\",\"i\":2}\r\n  \n[1,2,3]";
	assert_int_equal(RUN(&r, in, "send", t->name), 0);
	run_free(&r);
	assert_int_equal(RUN(&r, NULL, "flush", t->name), 0);
	run_free(&r);

	long bad;
	json_t *got = tu_read_jsonl(t->out, &bad);
	assert_non_null(got);
	assert_int_equal(json_array_size(got), N_ARGS + 3);
	for (size_t i = 0; i < N_ARGS; i++) {
		json_t *exp = parse(k_args[i]);
		assert_true(json_equal(json_array_get(got, i), exp));
		json_decref(exp);
	}
	const char *from_stdin[] = { "{\"from\":\"stdin\",\"i\":1}", "{\"from\":\"stdin\",\"i\":2}", "[1,2,3]" };
	for (size_t i = 0; i < 3; i++) {
		json_t *exp = parse(from_stdin[i]);
		assert_true(json_equal(json_array_get(got, N_ARGS + i), exp));
		json_decref(exp);
	}
	json_decref(got);
	/* Key order is kept: the object's line is its text. */
	FILE *f = fopen(t->out, "r");
	char line[4096];
	int found = 0;
	while (fgets(line, sizeof(line), f))
		found |= !strcmp(line, "{\"z\":1,\"a\":2,\"m\":3}\n");
	fclose(f);
	assert_true(found);

	/* Invalid JSON: the others are still sent; exit 1 and the counts. */
	assert_int_equal(RUN(&r, NULL, "send", t->name, "{\"ok\":1}", "{bad", "[1,"), 1);
	assert_non_null(strstr(r.err, "argument 2: invalid JSON"));
	assert_non_null(strstr(r.err, "2 of 3 records not sent: 2 invalid"));
	run_free(&r);
	assert_int_equal(RUN(&r, "{\"ok\":2}\nnot json\n", "send", t->name), 1);
	assert_non_null(strstr(r.err, "line 2: invalid JSON"));
	assert_non_null(strstr(r.err, "1 of 2 records not sent: 1 invalid"));
	run_free(&r);
	/* A record larger than the ring's max record is dropped and said so. */
	static char big[1200000]; /* on stdin: one argument may not exceed 128 KiB */
	memset(big, 'x', sizeof(big));
	big[0] = '"';
	big[sizeof(big) - 3] = '"';
	big[sizeof(big) - 2] = '\n';
	big[sizeof(big) - 1] = 0;
	assert_int_equal(RUN(&r, big, "send", t->name), 1);
	assert_non_null(strstr(r.err, "1 of 1 records not sent: 0 invalid, 1 dropped (0 ring full, 1 oversize)"));
	run_free(&r);
	assert_int_equal(RUN(&r, NULL, "flush", t->name), 0);
	run_free(&r);
	got = tu_read_jsonl(t->out, &bad);
	assert_int_equal(json_array_size(got), N_ARGS + 5);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(got, N_ARGS + 3), "ok")), 1);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(got, N_ARGS + 4), "ok")), 2);
	json_decref(got);
}

static void test_flush_codes(void **state)
{
	struct tu_ring *t = *state;
	assert_int_equal(shmring_open(t->name, NULL, &t->r), 0);
	struct run r;
	assert_int_equal(RUN(&r, NULL, "flush", t->name), 3); /* no writer */
	assert_non_null(strstr(r.err, "no live writer"));
	run_free(&r);
	assert_true(tu_writer_start(t, NULL, NULL) > 0);
	assert_int_equal(RUN(&r, NULL, "send", t->name, "1"), 0);
	run_free(&r);
	assert_int_equal(RUN(&r, NULL, "flush", t->name), 0);
	assert_int_equal(r.err_len, 0);
	run_free(&r);
	assert_int_equal(kill(t->writer, SIGSTOP), 0);
	int st;
	assert_int_equal(waitpid(t->writer, &st, WUNTRACED), t->writer);
	assert_int_equal(RUN(&r, NULL, "flush", t->name), 4); /* stopped writer: timed out */
	assert_non_null(strstr(r.err, "not confirmed"));
	run_free(&r);
	cont_writer(t);
	assert_int_equal(RUN(&r, NULL, "flush", t->name), 0);
	run_free(&r);
}

/* ---- rm ---------------------------------------------------------------------------- */

static void test_rm(void **state)
{
	struct tu_ring *t = *state;
	assert_true(tu_writer_start(t, NULL, NULL) > 0);
	struct run r;
	assert_int_equal(RUN(&r, NULL, "rm", t->name), 1);
	assert_non_null(strstr(r.err, "live writer"));
	assert_true(shm_exists(t->name));
	run_free(&r);

	/* Leftover flush semaphores of this ring go; those of other rings stay, including
	 * ring "NAME.f.x", whose semaphore names start like ours. */
	char mine[256], other[256], lookalike[256];
	snprintf(mine, sizeof(mine), "/shmring.%s.f.7.1.0", t->name);
	snprintf(other, sizeof(other), "/shmring.%sx.f.7.1.0", t->name);
	snprintf(lookalike, sizeof(lookalike), "/shmring.%s.f.x.f.7.1.0", t->name);
	const char *sems[] = { mine, other, lookalike };
	for (int i = 0; i < 3; i++) {
		sem_t *s = sem_open(sems[i], O_CREAT, 0600, 0);
		assert_true(s != SEM_FAILED);
		sem_close(s);
	}
	assert_int_equal(RUN(&r, NULL, "rm", "--force", t->name), 0);
	char said[64];
	snprintf(said, sizeof(said), "stopped writer pid %d\n", (int)t->writer);
	assert_string_equal(r.out, said);
	run_free(&r);
	assert_false(shm_exists(t->name));
	/* --force stopped the writer (SIGTERM: it exits 0), so none serves a ring no one sees. */
	int wst = 0;
	pid_t got = 0;
	for (int i = 0; i < 200 && got == 0; i++) {
		got = waitpid(t->writer, &wst, WNOHANG);
		if (!got)
			tu_sleep_ms(5);
	}
	assert_int_equal(got, t->writer);
	assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
	t->writer = 0;
	assert_false(sem_exists(mine));
	assert_true(sem_exists(other));
	assert_true(sem_exists(lookalike));
	sem_unlink(other);
	sem_unlink(lookalike);

	/* After the writer stopped: removed without --force. */
	assert_true(tu_writer_start(t, NULL, NULL) > 0);
	assert_int_equal(tu_writer_stop(t), 0);
	assert_true(shm_exists(t->name));
	assert_int_equal(RUN(&r, NULL, "rm", t->name), 0);
	run_free(&r);
	assert_false(shm_exists(t->name));
	assert_int_equal(RUN(&r, NULL, "rm", t->name), 1);
	assert_non_null(strstr(r.err, "not found"));
	run_free(&r);
}

/* ---- inspection is read-only ------------------------------------------------------- */

/* Run the program as nobody from a copy in a 0755 folder (the build tree may be in a
 * 0700 one); only as root. Returns 0 when it cannot. */
static int as_nobody_begin(char *dir, char *cli, size_t len)
{
	if (geteuid() != 0)
		return 0;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(chmod(dir, 0755), 0);
	snprintf(cli, len, "%s/shmring", dir);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 0755 '%s'", SHMRING_CLI_PATH, cli, cli);
	assert_int_equal(system(cmd), 0);
	g_cli = cli;
	g_run_uid = 65534;
	return 1;
}

static void as_nobody_end(const char *dir, const char *cli)
{
	g_run_uid = 0;
	g_cli = SHMRING_CLI_PATH;
	unlink(cli);
	rmdir(dir);
}

static char *file_bytes(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char *b = NULL;
	size_t len = 0;
	char buf[65536];
	size_t k;
	while ((k = fread(buf, 1, sizeof(buf), f)) > 0)
		buf_add(&b, &len, buf, k);
	fclose(f);
	*n = len;
	return b;
}

static const char *sample(const char *text, const char *fam, const char *name);

/* ls, stat, peek and metrics (as root and, as root, as nobody against a 0644 ring) change neither
 * the object's bytes nor its mtime and ctime: gc ages rings by ctime. */
static void test_inspect_readonly(void **state)
{
	struct tu_ring *t = *state;
	struct shmring_options o = { .capacity = 64, .slot_size = 256, .mode = 0644 };
	assert_int_equal(shmring_open(t->name, &o, &t->r), 0);
	shmring *h = t->r;
	start_stopped_writer(t, NULL, NULL);
	tu_send_records(h, 1, 0, 3, 10);
	tu_close(t);

	struct stat before, after;
	size_t n0, n1;
	assert_int_equal(stat(shm_path(t->name), &before), 0);
	char *b0 = file_bytes(shm_path(t->name), &n0);
	tu_sleep_ms(20); /* a change would now show in the nanosecond times */
	char dir[] = "/tmp/shmring-cli-XXXXXX", cli[64] = "";
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1 && !as_nobody_begin(dir, cli, sizeof(cli)))
			break;
		struct run r;
		assert_int_equal(RUN(&r, NULL, "stat", t->name), 0);
		assert_non_null(strstr(r.out, "pending           3\n"));
		run_free(&r);
		assert_int_equal(RUN(&r, NULL, "stat", "--json", "--watch", "0.01", "--count", "2", t->name), 0);
		run_free(&r);
		assert_int_equal(RUN(&r, NULL, "ls", "--json"), 0);
		json_t *arr = parse(r.out);
		json_t *e = ls_find(arr, t->name);
		assert_non_null(e);
		assert_int_equal(json_integer_value(json_object_get(e, "pending")), 3);
		assert_true(json_is_true(json_object_get(e, "writer_alive")));
		json_decref(arr);
		run_free(&r);
		assert_int_equal(RUN(&r, NULL, "peek", t->name), 0);
		arr = split_lines(r.out);
		assert_int_equal(json_array_size(arr), 3);
		json_decref(arr);
		run_free(&r);
		assert_int_equal(RUN(&r, NULL, "metrics", t->name), 0);
		assert_string_equal(sample(r.out, "shmring_pending_records", t->name), "3");
		run_free(&r);
	}
	if (cli[0])
		as_nobody_end(dir, cli);
	assert_int_equal(stat(shm_path(t->name), &after), 0);
	char *b1 = file_bytes(shm_path(t->name), &n1);
	assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
	assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
	assert_int_equal(after.st_ctim.tv_sec, before.st_ctim.tv_sec);
	assert_int_equal(after.st_ctim.tv_nsec, before.st_ctim.tv_nsec);
	assert_int_equal(n1, n0);
	assert_memory_equal(b1, b0, n0);
	free(b0);
	free(b1);
	cont_writer(t);
}

/* ---- option values ------------------------------------------------------------------ */

/* Exit 2 and one line on stderr naming the option (and containing `has`, when given). */
static void expect_usage(const char *opt, const char *has, const char *const *args)
{
	struct run r;
	assert_int_equal(run_argv(&r, NULL, args), 2);
	if (!strstr(r.err, opt) || (has && !strstr(r.err, has)) || strchr(r.err, '\n') != r.err + r.err_len - 1)
		fail_msg("wanted one line with '%s' and '%s', got: %s", opt, has ? has : "", r.err);
	assert_int_equal(r.out_len, 0);
	run_free(&r);
}

#define USAGE(opt, has, ...) expect_usage((opt), (has), (const char *const[]){ __VA_ARGS__, NULL })

static void test_numbers(void **state)
{
	struct tu_ring *t = *state;
	struct shmring_options o = { .capacity = 64, .slot_size = 256 };
	shmring *h;
	assert_int_equal(shmring_open(t->name, &o, &h), 0);
	shmring_close(h);

	/* gc --min-age: seconds, or a number with s/m/h/d; "abc" was 0 and removed all. */
	const char *bad_ages[] = { "abc", "", "10x", "-1", "1e3", "0x10", " 5", "5 ", "1.5.2", "m", "inf" };
	for (size_t i = 0; i < sizeof(bad_ages) / sizeof(bad_ages[0]); i++)
		USAGE("--min-age", "not a duration", "gc", "--min-age", bad_ages[i]);
	assert_true(shm_exists(t->name));
	const char *good_ages[] = { "0", "30", "1.5m", "2h", "1d", "10s", "0.5" };
	struct run r;
	for (size_t i = 0; i < sizeof(good_ages) / sizeof(good_ages[0]); i++) {
		assert_int_equal(RUN(&r, NULL, "gc", "--dry-run", "--min-age", good_ages[i]), 0);
		run_free(&r);
	}
	/* stat and peek */
	USAGE("--watch", "not a duration", "stat", "--watch", "abc", t->name);
	USAGE("--watch", "not a duration", "stat", "--watch=1x", t->name);
	USAGE("--watch", "out of range", "stat", "--watch", "0", t->name);
	USAGE("--count", "not a whole number", "stat", "--watch", "--count", "2x", t->name);
	USAGE("--count", "out of range", "stat", "--watch", "--count", "0", t->name);
	USAGE("--count", "not a whole number", "peek", "-n", "abc", t->name);
	USAGE("--count", "not a whole number", "peek", "-n", "-1", t->name);
	assert_int_equal(RUN(&r, NULL, "stat", "--json", "--watch", "10ms", "--count", "1", t->name), 2);
	run_free(&r);
	assert_int_equal(RUN(&r, NULL, "stat", "--json", "--watch", "0.01s", "--count", "1", t->name), 0);
	run_free(&r);

	/* shmring-writer: each numeric option, one line each, no usage dump. */
	g_cli = SHMRING_WRITER_PATH;
	const char *w = "--ring";
	USAGE("--capacity", "capacity must be a power of two (4 ... 1048576)", w, t->name, "--out", t->out,
	      "--capacity", "1000");
	USAGE("--capacity", "not a whole number", w, t->name, "--out", t->out, "--capacity", "4k");
	USAGE("--slot-size", "multiple of 64", w, t->name, "--out", t->out, "--slot-size", "100");
	USAGE("whole pages", "4096", w, t->name, "--out", t->out, "--capacity", "4", "--slot-size", "64");
	USAGE("--stall-timeout", "not a whole number", w, t->name, "--out", t->out, "--stall-timeout", "5x");
	USAGE("--batch-bytes", "not a whole number", w, t->name, "--out", t->out, "--batch-bytes", "-1");
	USAGE("--exit-when-idle", "not a duration", w, t->name, "--out", t->out, "--exit-when-idle", "abc");
	USAGE("--max-bytes", "not a whole number", w, t->name, "--out", t->out, "--max-bytes", "1k");
	USAGE("--keep", "out of range", w, t->name, "--out", t->out, "--keep", "0");
	USAGE("--bogus", "try shmring-writer --help", w, t->name, "--out", t->out, "--bogus");
	USAGE("--capacity", "needs a value", w, t->name, "--out", t->out, "--capacity");
	USAGE("--out", "required", w, t->name);
	USAGE("'extra'", "unexpected", w, t->name, "--out", t->out, "extra");
	assert_version("shmring-writer");
	/* Another geometry than the existing ring's: served as it is, with a warning that
	 * tells both. */
	assert_int_equal(RUN(&r, NULL, w, t->name, "--out", t->out, "--capacity", "128",
			     "--exit-when-idle", "0.2"), 0);
	if (!strstr(r.err, "exists with capacity 64, slot size 256; asked for capacity 128, slot size 256"))
		fail_msg("no geometry warning: %s", r.err);
	run_free(&r);
	g_cli = SHMRING_CLI_PATH;
}

/* ---- metrics ------------------------------------------------------------------------ */

/* Every field of struct shmring_stats, as its metric family. */
static const char *const metric_families[] = {
	"shmring_sent_total", "shmring_written_total", "shmring_invalid_total",
	"shmring_dropped_full_total", "shmring_dropped_oversize_total", "shmring_abandoned_total",
	"shmring_aborted_total", "shmring_flushes_total", "shmring_flushes_done_total",
	"shmring_corrupt_total", "shmring_capacity_slots", "shmring_slot_size_bytes",
	"shmring_max_record_bytes", "shmring_head_position", "shmring_tail_position",
	"shmring_pending_records", "shmring_producers", "shmring_writer_alive", "shmring_writer_pid",
	"shmring_writer_errno", "shmring_writer_error_op", "shmring_writer_error_since_seconds",
};

/* The sample of family fam for ring name, as text ("" when absent). */
static const char *sample(const char *text, const char *fam, const char *name)
{
	static char v[64];
	char key[512];
	snprintf(key, sizeof(key), "\n%s{ring=\"%s\"} ", fam, name);
	const char *p = strstr(text, key);
	v[0] = 0;
	if (p)
		sscanf(p + strlen(key), "%63s", v);
	return v;
}

static char *read_text(const char *path)
{
	size_t n;
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fclose(f);
	return file_bytes(path, &n);
}

/* promtool check metrics < path: 0 ok, 77 no promtool, else its status. */
static int promtool_check(const char *path)
{
	if (system("command -v promtool >/dev/null 2>&1") != 0)
		return 77;
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s'", path);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Wait until the writer's metrics file says `want` for family fam; its text or NULL. */
static char *wait_metrics_file(const char *path, const char *fam, const char *name, const char *want)
{
	for (int i = 0; i < 500; i++) {
		char *t = read_text(path);
		if (t && !strcmp(sample(t, fam, name), want))
			return t;
		free(t);
		tu_sleep_ms(10);
	}
	return NULL;
}

static void send_some(const char *name, int n)
{
	shmring *h;
	assert_int_equal(shmring_attach(name, &h), 0);
	tu_send_records(h, 1, 0, n, 10);
	assert_int_equal(tu_flush(h), 0);
	shmring_close(h);
}

static void test_metrics(void **state)
{
	struct tu_ring *t = *state;
	char prom[300], cliout[300];
	snprintf(prom, sizeof(prom), "%s/shmring.prom", t->dir);
	snprintf(cliout, sizeof(cliout), "%s/cli.prom", t->dir);
	const char *extra[] = { "--metrics-file", prom, "--metrics-interval", "0.1", NULL };
	assert_true(tu_writer_start_with(t, "64", "256", extra) > 0);
	send_some(t->name, 5);

	struct run r;
	assert_int_equal(RUN(&r, NULL, "metrics", t->name), 0);
	for (size_t i = 0; i < sizeof(metric_families) / sizeof(metric_families[0]); i++) {
		char type[128];
		snprintf(type, sizeof(type), "# TYPE %s %s\n", metric_families[i],
			 strstr(metric_families[i], "_total") ? "counter" : "gauge");
		assert_non_null(strstr(r.out, type));
		assert_true(sample(r.out, metric_families[i], t->name)[0] != 0);
	}
	assert_string_equal(sample(r.out, "shmring_written_total", t->name), "5");
	assert_string_equal(sample(r.out, "shmring_sent_total", t->name), "5");
	assert_string_equal(sample(r.out, "shmring_capacity_slots", t->name), "64");
	assert_string_equal(sample(r.out, "shmring_writer_alive", t->name), "1");
	char pid[32];
	snprintf(pid, sizeof(pid), "%d", (int)t->writer);
	assert_string_equal(sample(r.out, "shmring_writer_pid", t->name), pid);
	assert_string_equal(sample(r.out, "shmring_writer_errno", t->name), "0");
	FILE *f = fopen(cliout, "w");
	assert_non_null(f);
	fputs(r.out, f);
	fclose(f);
	run_free(&r);
	/* Every ring when none is named; a name that is not a ring is an error. */
	assert_int_equal(RUN(&r, NULL, "metrics"), 0);
	assert_string_equal(sample(r.out, "shmring_written_total", t->name), "5");
	run_free(&r);
	assert_int_equal(RUN(&r, NULL, "metrics", t->name, "no-such-ring-here"), 1);
	assert_string_equal(sample(r.out, "shmring_written_total", t->name), "5");
	assert_non_null(strstr(r.err, "no-such-ring-here: not found"));
	run_free(&r);

	/* The writer's file, rewritten every 0.1 s; at exit it says the writer is gone. */
	char *text = wait_metrics_file(prom, "shmring_written_total", t->name, "5");
	assert_non_null(text);
	assert_string_equal(sample(text, "shmring_writer_alive", t->name), "1");
	free(text);
	int pc = promtool_check(cliout);
	if (pc != 77) {
		assert_int_equal(pc, 0);
		assert_int_equal(promtool_check(prom), 0);
	}
	assert_int_equal(tu_writer_stop(t), 0);
	text = read_text(prom);
	assert_non_null(text);
	assert_string_equal(sample(text, "shmring_writer_alive", t->name), "0");
	free(text);
	char tmp[320];
	snprintf(tmp, sizeof(tmp), "%s.tmp", prom);
	assert_int_equal(access(tmp, F_OK), -1);
	unlink(prom);
	unlink(cliout);

	/* A metrics file that cannot be written is logged, never fatal. */
	const char *bad[] = { "--metrics-file", "/proc/no-such-dir/shmring.prom", "--metrics-interval", "0.05", NULL };
	assert_true(tu_writer_start_with(t, NULL, NULL, bad) > 0);
	send_some(t->name, 2);
	assert_int_equal(tu_writer_stop(t), 0);
	if (pc == 77)
		skip(); /* the rest passed; promtool is not installed */
}

/* A free TCP port on 127.0.0.1 (the kernel's pick; free again once closed). */
static int free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	assert_true(s >= 0);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
	close(s);
	return ntohs(a.sin_port);
}

/* GET http://127.0.0.1:port/path: the whole response, or NULL if nothing listens. */
static char *http_get(int port, const char *path)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		if (s >= 0)
			close(s);
		return NULL;
	}
	char req[256];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	assert_int_equal(write(s, req, (size_t)n), n);
	char *b = NULL, buf[8192];
	size_t len = 0;
	ssize_t k;
	buf_add(&b, &len, "", 0);
	while ((k = read(s, buf, sizeof(buf))) > 0)
		buf_add(&b, &len, buf, (size_t)k);
	close(s);
	return b;
}

/* node_exporter's textfile collector serves the writer's --metrics-file. */
static void test_node_exporter(void **state)
{
	struct tu_ring *t = *state;
	const char *ne = "/usr/bin/prometheus-node-exporter";
	if (access(ne, X_OK) != 0)
		skip();
	char prom[300];
	snprintf(prom, sizeof(prom), "%s/shmring.prom", t->dir);
	const char *extra[] = { "--metrics-file", prom, "--metrics-interval", "0.1", NULL };
	assert_true(tu_writer_start_with(t, "64", "256", extra) > 0);
	send_some(t->name, 3);
	char *text = wait_metrics_file(prom, "shmring_written_total", t->name, "3");
	assert_non_null(text);
	free(text);

	int port = free_port();
	char dir_arg[300], listen_arg[64];
	snprintf(dir_arg, sizeof(dir_arg), "--collector.textfile.directory=%s", t->dir);
	snprintf(listen_arg, sizeof(listen_arg), "--web.listen-address=127.0.0.1:%d", port);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (!getenv("SHMRING_TEST_VERBOSE")) {
			freopen("/dev/null", "w", stderr);
			freopen("/dev/null", "w", stdout);
		}
		execl(ne, ne, "--collector.disable-defaults", "--collector.textfile", dir_arg, listen_arg,
		      (char *)NULL);
		_exit(127);
	}
	tu_track(pid, NULL);
	char *body = NULL;
	for (int i = 0; i < 500 && !body; i++) {
		body = http_get(port, "/metrics");
		if (!body)
			tu_sleep_ms(10);
	}
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	assert_non_null(body);
	if (!strstr(body, "200 OK") || strcmp(sample(body, "shmring_written_total", t->name), "3") ||
	    strcmp(sample(body, "shmring_writer_alive", t->name), "1"))
		fail_msg("node_exporter did not serve the ring's metrics: %.2000s", body);
	free(body);
	assert_int_equal(tu_writer_stop(t), 0);
	unlink(prom);
}

/* ---- errors ------------------------------------------------------------------------ */

static void expect_error(const char *name, const char *cause, const char *cmd, const char *extra)
{
	struct run r;
	char want[512];
	snprintf(want, sizeof(want), "shmring: ring %s: %s\n", name, cause);
	if (extra)
		assert_int_equal(RUN(&r, NULL, cmd, name, extra), 1);
	else
		assert_int_equal(RUN(&r, NULL, cmd, name), 1);
	assert_string_equal(r.err, want);
	assert_int_equal(r.out_len, 0);
	run_free(&r);
}

static void test_errors(void **state)
{
	struct tu_ring *t = *state;
	/* A ring that does not exist: said so, and never created by any command. */
	expect_error(t->name, "not found", "stat", NULL);
	expect_error(t->name, "not found", "stat", "--json");
	expect_error(t->name, "not found", "peek", NULL);
	expect_error(t->name, "not found", "send", "1");
	expect_error(t->name, "not found", "flush", NULL);
	expect_error(t->name, "not found", "rm", NULL);
	struct run r;
	assert_int_equal(RUN(&r, NULL, "ls"), 0);
	run_free(&r);
	assert_false(shm_exists(t->name));
	assert_int_equal(RUN(&r, NULL, "stat", "bad/name"), 1);
	assert_non_null(strstr(r.err, "shmring: ring bad/name: invalid ring name"));
	run_free(&r);

	/* An shm object with our prefix that is not a ring (old enough not to be waited for
	 * as one still being created). */
	char shm[256];
	snprintf(shm, sizeof(shm), "/shmring.%s", t->name);
	int fd = shm_open(shm, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	char junk[8192];
	memset(junk, 0xab, sizeof(junk));
	assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	tu_sleep_ms(2100);
	const char *notring = "not a shmring ring (wrong layout or corrupt)";
	expect_error(t->name, notring, "stat", NULL);
	expect_error(t->name, notring, "peek", NULL);
	expect_error(t->name, notring, "send", "1");
	expect_error(t->name, notring, "flush", NULL);
	assert_int_equal(RUN(&r, NULL, "ls", "--json"), 0);
	json_t *arr = parse(r.out);
	json_t *e = ls_find(arr, t->name);
	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "error")), notring);
	assert_null(json_object_get(e, "capacity"));
	json_decref(arr);
	run_free(&r);
	assert_int_equal(RUN(&r, NULL, "rm", t->name), 0); /* no writer: it can go */
	run_free(&r);
	assert_false(shm_exists(t->name));

	/* A ring whose header says another layout version. */
	shmring *h;
	assert_int_equal(shmring_open(t->name, NULL, &h), 0);
	shmring_close(h);
	struct shm_map m;
	assert_int_equal(shm_map_open(t->name, NULL, SHM_ATTACH, &m), 0);
	m.hdr->version++;
	shm_map_close(&m);
	expect_error(t->name, notring, "stat", NULL);
	expect_error(t->name, notring, "peek", NULL);

	/* Permission denied: root is never denied, so as root the program runs as nobody
	 * against our 0600 ring; otherwise the ring's mode is 0. */
	shmring_unlink(t->name);
	assert_int_equal(shmring_open(t->name, NULL, &h), 0);
	shmring_close(h);
	char cli_dir[] = "/tmp/shmring-cli-XXXXXX", cli[64] = "";
	if (geteuid() == 0) {
		tu_copy_exe(SHMRING_CLI_PATH, cli_dir, "shmring", cli, sizeof(cli));
		g_cli = cli;
		g_run_uid = 65534;
	} else {
		assert_int_equal(chmod(shm_path(t->name), 0), 0);
	}
	expect_error(t->name, "permission denied", "stat", NULL);
	expect_error(t->name, "permission denied", "peek", NULL);
	expect_error(t->name, "permission denied", "send", "1");
	assert_int_equal(RUN(&r, NULL, "ls", "--json"), 0);
	arr = parse(r.out);
	e = ls_find(arr, t->name);
	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "error")), "permission denied");
	json_decref(arr);
	run_free(&r);
	g_run_uid = 0;
	g_cli = SHMRING_CLI_PATH;
	if (cli[0]) {
		unlink(cli);
		rmdir(cli_dir);
	}
}

static void quiet_log(enum shmring_log_level level, const char *msg, void *ctx)
{
	(void)level, (void)ctx;
	if (getenv("SHMRING_TEST_VERBOSE"))
		fprintf(stderr, "log: %s\n", msg);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	shmring_set_log(quiet_log, NULL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_help_version),
		TU_TEST_KILL(test_ls),
		TU_TEST_KILL(test_stat),
		TU_TEST_KILL(test_peek),
		TU_TEST_KILL(test_send),
		TU_TEST_KILL(test_flush_codes),
		TU_TEST_KILL(test_rm),
		TU_TEST_KILL(test_errors),
		TU_TEST_KILL(test_inspect_readonly),
		TU_TEST_KILL(test_numbers),
		TU_TEST(test_metrics),
		TU_TEST(test_node_exporter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
