/* test_audit: the compaction audit sink: exact JSON lines, one autostarted writer for many
 * openers, unopenable paths, no-autostart, capacity rounding, writer restart and failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>

#include "internal.h"
#include "shmring/audit.h"
#include "shmring/json.h"
#include "testutil.h"

/* ---- helpers ---------------------------------------------------------------------- */

static _Atomic int g_warns;
static char g_last_warn[512];

static void quiet_log(enum shmring_log_level lvl, const char *msg, void *ctx)
{
	(void)ctx;
	if (lvl == SHMRING_LOG_WARN) {
		atomic_fetch_add(&g_warns, 1);
		snprintf(g_last_warn, sizeof(g_last_warn), "%s", msg);
	}
	if (getenv("SHMRING_TEST_VERBOSE"))
		fprintf(stderr, "log %d: %s\n", (int)lvl, msg);
}

/* A fresh folder for one test; the sink's file is DIR/a.jsonl. */
struct at {
	char dir[120];
	char path[140];
	char name[32];   /* ring name, once known */
};

static void at_init(void *p, const char *tag)
{
	struct at *t = p;
	static int seq;
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(t->dir, sizeof(t->dir), "%s/shmring-audit-%s-%d-%d", tmp, tag, (int)getpid(), seq++);
	snprintf(t->path, sizeof(t->path), "%s/a.jsonl", t->dir);
	t->name[0] = 0;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	chmod(p, 0700);
	return remove(p) < 0 && errno != ENOENT ? -1 : 0;
}

/* Processes whose command line mentions name (the writer's does: --ring NAME). */
static int count_procs_with(const char *name)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9' || atoi(e->d_name) == getpid())
			continue;
		char p[300], buf[8192];
		snprintf(p, sizeof(p), "/proc/%s/cmdline", e->d_name);
		int fd = open(p, O_RDONLY);
		if (fd < 0)
			continue;
		ssize_t k = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (k <= 0)
			continue;
		for (ssize_t i = 0; i < k; i++)
			if (!buf[i])
				buf[i] = ' ';
		buf[k] = 0;
		if (strstr(buf, name))
			n++;
	}
	if (d)
		closedir(d);
	return n;
}

/* Kill the ring's writer (not our child: wait for its lock to go), unlink the ring. */
static void ring_cleanup(const char *name)
{
	if (!name || !name[0])
		return;
	shmring *r;
	if (shmring_attach(name, &r) == 0) {
		struct shmring_stats st;
		for (int i = 0; i < 400; i++) {
			if (shmring_stats(r, &st) || !st.writer_alive)
				break;
			if (i == 0 || i % 50 == 0)
				kill(st.writer_pid, SIGKILL);
			tu_sleep_ms(5);
		}
		shmring_close(r);
	}
	shmring_unlink(name);
}

static void at_cleanup(struct at *t)
{
	ring_cleanup(t->name);
	nftw(t->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Fixture: a struct at named after the test (AT_TEST), its folder and ring removed at
 * teardown. */
static int at_setup(void **state)
{
	return tu_setup_as(state, sizeof(struct at), at_init);
}

static int at_teardown(void **state)
{
	at_cleanup(*state);
	free(*state);
	return 0;
}

#define AT_TEST(f) cmocka_unit_test_prestate_setup_teardown(f, at_setup, at_teardown, (void *)#f)

/* tu_flush for a sink: retries while the 100 ms bound passes (a loaded machine, a writer
 * under TSan: CI saw 8 forked openers' flushes time out), for tests whose subject is not
 * the bound itself. */
static int at_flush(shmring_audit_sink *s)
{
	uint64_t end = tu_now_ms() + 10000;
	int rc;
	while ((rc = shmring_audit_flush(s)) == -ETIMEDOUT && tu_now_ms() < end)
		;
	return rc;
}

static void at_open(struct at *t, const char *path, size_t cap, shmring_audit_sink **s)
{
	assert_int_equal(shmring_audit_open(path, cap, s), 0);
	snprintf(t->name, sizeof(t->name), "%s", shmring_audit_ring_name(*s));
	tu_track(0, t->name);
}

static struct shmring_stats sink_stats(shmring_audit_sink *s)
{
	struct shmring_stats st;
	assert_int_equal(shmring_stats(shmring_audit_ring(s), &st), 0);
	return st;
}

/* The file's lines, without their newlines; *n set to the count. */
static char **read_lines(const char *path, size_t *n)
{
	FILE *f = fopen(path, "r");
	char **v = NULL;
	*n = 0;
	if (!f)
		return NULL;
	char *line = NULL;
	size_t cap = 0;
	ssize_t k;
	while ((k = getline(&line, &cap, f)) > 0) {
		assert_int_equal(line[k - 1], '\n');
		line[k - 1] = 0;
		v = realloc(v, (*n + 1) * sizeof(*v));
		v[(*n)++] = strdup(line);
	}
	free(line);
	fclose(f);
	return v;
}

static void free_lines(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* What the writer's converter makes of the packed record, without a ring. */
static char *render(const struct shmring_compacted_page_record *rec)
{
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	assert_int_equal(shmring_audit_pack(&pk, rec), 0);
	size_t cap = shmring_json_bound(sb.size) + 1;
	char *out = malloc(cap);
	ssize_t k = shmring_msgpack_to_json(sb.data, sb.size, out, cap, NULL);
	assert_true(k > 0);
	out[k] = 0;
	msgpack_sbuffer_destroy(&sb);
	return out;
}

/* ---- exact lines ------------------------------------------------------------------- */

static const struct shmring_violation V1[] = { { "exit_code", "missing" } };
static const struct shmring_violation V3[] = { { "a", "1" }, { "b", "2" }, { "c", "" } };

/* Every control byte 0x01..0x1f, then 0x7f. */
static char ctl[33];
static const char ctl_json[] =
	"\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f"
	"\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b"
	"\\u001c\\u001d\\u001e\\u001f\x7f";
static struct shmring_violation VESC[2] = {
	{ "say \"hi\" \\ back\\slash", NULL /* ctl */ },
	{ "line1\nline2\tx\r", "é 日本 🚀 / ok" },
};

struct case_ {
	struct shmring_compacted_page_record rec;
	const char *want;
};

static const struct case_ cases[] = {
	{ { "2026-11-24T08:55:52.123456Z", "turn-1", "page-1", SHMRING_PAGE_TOOL_OUTPUT,
	    { SHMRING_ORIGIN_TOOL_PAIR, "grep" }, 1200, 300, "summary", 2, "anthropic", NULL, 0, false },
	  "{\"ts\":\"2026-11-24T08:55:52.123456Z\",\"turn_id\":\"turn-1\",\"page_id\":\"page-1\","
	  "\"page_type\":\"tool_output\",\"origin\":{\"kind\":\"tool_pair\",\"tool_name\":\"grep\"},"
	  "\"original_tokens\":1200,\"compacted_tokens\":300,\"fidelity_level\":\"summary\","
	  "\"invariant_version\":2,\"provider_name\":\"anthropic\",\"violations\":[]}" },
	{ { "2026-01-02T03:04:05.000000Z", "turn-2", "page-2", SHMRING_PAGE_CONVERSATION_TURN,
	    { SHMRING_ORIGIN_TURN, "msg_01" }, 0, 0, "full", 0, "openai", V1, 1, true },
	  "{\"ts\":\"2026-01-02T03:04:05.000000Z\",\"turn_id\":\"turn-2\",\"page_id\":\"page-2\","
	  "\"page_type\":\"conversation_turn\",\"origin\":{\"kind\":\"turn\",\"message_id\":\"msg_01\"},"
	  "\"original_tokens\":0,\"compacted_tokens\":0,\"fidelity_level\":\"full\","
	  "\"invariant_version\":0,\"provider_name\":\"openai\","
	  "\"violations\":[{\"missing_field\":\"exit_code\",\"detail\":\"missing\"}],"
	  "\"classification_fallback\":true}" },
	{ { "x", "turn-3", "page-3", SHMRING_PAGE_MEMORY_EXCERPT,
	    { SHMRING_ORIGIN_EXCERPT, "notes.md" }, UINT32_MAX, UINT32_MAX, "reference", 255, "local",
	    V3, 3, false },
	  "{\"ts\":\"x\",\"turn_id\":\"turn-3\",\"page_id\":\"page-3\","
	  "\"page_type\":\"memory_excerpt\",\"origin\":{\"kind\":\"excerpt\",\"source_label\":\"notes.md\"},"
	  "\"original_tokens\":4294967295,\"compacted_tokens\":4294967295,\"fidelity_level\":\"reference\","
	  "\"invariant_version\":255,\"provider_name\":\"local\","
	  "\"violations\":[{\"missing_field\":\"a\",\"detail\":\"1\"},{\"missing_field\":\"b\",\"detail\":\"2\"},"
	  "{\"missing_field\":\"c\",\"detail\":\"\"}]}" },
	{ { "2026-11-24T08:55:52.999999Z", "turn-4", "page-4", SHMRING_PAGE_SYSTEM_CONTEXT,
	    { SHMRING_ORIGIN_SYSTEM, "system_prompt" }, 7, 3, "digest", 1, "p", V3, 0, true },
	  "{\"ts\":\"2026-11-24T08:55:52.999999Z\",\"turn_id\":\"turn-4\",\"page_id\":\"page-4\","
	  "\"page_type\":\"system_context\",\"origin\":{\"kind\":\"system\",\"key\":\"system_prompt\"},"
	  "\"original_tokens\":7,\"compacted_tokens\":3,\"fidelity_level\":\"digest\","
	  "\"invariant_version\":1,\"provider_name\":\"p\",\"violations\":[],"
	  "\"classification_fallback\":true}" },
	/* Page type and origin kind combined otherwise; empty strings are strings. */
	{ { "", "", "", SHMRING_PAGE_TOOL_OUTPUT, { SHMRING_ORIGIN_SYSTEM, "" }, 1, 2, "", 3, "", NULL, 0,
	    false },
	  "{\"ts\":\"\",\"turn_id\":\"\",\"page_id\":\"\",\"page_type\":\"tool_output\","
	  "\"origin\":{\"kind\":\"system\",\"key\":\"\"},\"original_tokens\":1,\"compacted_tokens\":2,"
	  "\"fidelity_level\":\"\",\"invariant_version\":3,\"provider_name\":\"\",\"violations\":[]}" },
	{ { "t", "a", "b", SHMRING_PAGE_SYSTEM_CONTEXT, { SHMRING_ORIGIN_TOOL_PAIR, "bash" }, 65536, 65535,
	    "f", 128, "q", V1, 1, false },
	  "{\"ts\":\"t\",\"turn_id\":\"a\",\"page_id\":\"b\",\"page_type\":\"system_context\","
	  "\"origin\":{\"kind\":\"tool_pair\",\"tool_name\":\"bash\"},\"original_tokens\":65536,"
	  "\"compacted_tokens\":65535,\"fidelity_level\":\"f\",\"invariant_version\":128,"
	  "\"provider_name\":\"q\",\"violations\":[{\"missing_field\":\"exit_code\",\"detail\":\"missing\"}]}" },
	{ { "t", "a", "b", SHMRING_PAGE_MEMORY_EXCERPT, { SHMRING_ORIGIN_TURN, "m" }, 127, 128, "f", 127,
	    "q", NULL, 0, true },
	  "{\"ts\":\"t\",\"turn_id\":\"a\",\"page_id\":\"b\",\"page_type\":\"memory_excerpt\","
	  "\"origin\":{\"kind\":\"turn\",\"message_id\":\"m\"},\"original_tokens\":127,"
	  "\"compacted_tokens\":128,\"fidelity_level\":\"f\",\"invariant_version\":127,"
	  "\"provider_name\":\"q\",\"violations\":[],\"classification_fallback\":true}" },
	{ { "t", "a", "b", SHMRING_PAGE_CONVERSATION_TURN, { SHMRING_ORIGIN_EXCERPT, "s" }, 255, 256, "f",
	    9, "q", NULL, 0, false },
	  "{\"ts\":\"t\",\"turn_id\":\"a\",\"page_id\":\"b\",\"page_type\":\"conversation_turn\","
	  "\"origin\":{\"kind\":\"excerpt\",\"source_label\":\"s\"},\"original_tokens\":255,"
	  "\"compacted_tokens\":256,\"fidelity_level\":\"f\",\"invariant_version\":9,"
	  "\"provider_name\":\"q\",\"violations\":[]}" },
};

/* Escaping: quotes, backslashes, every control byte, 0x7f, '/', UTF-8 as is. */
static char want_esc[1024];
static struct shmring_compacted_page_record esc_rec(void)
{
	for (int i = 0; i < 31; i++)
		ctl[i] = (char)(i + 1);
	ctl[31] = 0x7f;
	ctl[32] = 0;
	VESC[0].detail = ctl;
	snprintf(want_esc, sizeof(want_esc),
		 "{\"ts\":\"2026-11-24T08:55:52.123456Z\",\"turn_id\":\"é 日本 🚀\",\"page_id\":\"p\\\"q\","
		 "\"page_type\":\"tool_output\",\"origin\":{\"kind\":\"tool_pair\",\"tool_name\":\"a\\tb\\nc\"},"
		 "\"original_tokens\":1,\"compacted_tokens\":1,\"fidelity_level\":\"\\\\\","
		 "\"invariant_version\":1,\"provider_name\":\"x/y\","
		 "\"violations\":[{\"missing_field\":\"say \\\"hi\\\" \\\\ back\\\\slash\",\"detail\":\"%s\"},"
		 "{\"missing_field\":\"line1\\nline2\\tx\\r\",\"detail\":\"é 日本 🚀 / ok\"}],"
		 "\"classification_fallback\":true}",
		 ctl_json);
	struct shmring_compacted_page_record r = {
		"2026-11-24T08:55:52.123456Z", "é 日本 🚀", "p\"q", SHMRING_PAGE_TOOL_OUTPUT,
		{ SHMRING_ORIGIN_TOOL_PAIR, "a\tb\nc" }, 1, 1, "\\", 1, "x/y", VESC, 2, true,
	};
	return r;
}

/* ts NULL: now, as YYYY-MM-DDTHH:MM:SS.ffffffZ, within a few seconds. */
static void check_now_ts(const char *line, const char *rest)
{
	const char *pat = "dddd-dd-ddTdd:dd:dd.ddddddZ";
	assert_memory_equal(line, "{\"ts\":\"", 7);
	const char *ts = line + 7;
	for (int i = 0; pat[i]; i++) {
		if (pat[i] == 'd')
			assert_true(ts[i] >= '0' && ts[i] <= '9');
		else
			assert_int_equal(ts[i], pat[i]);
	}
	assert_string_equal(ts + 27, rest);
	struct tm tm = { 0 };
	assert_int_equal(sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
				&tm.tm_hour, &tm.tm_min, &tm.tm_sec), 6);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	/* Not time(NULL): it reads the coarse clock, up to a tick behind the CLOCK_REALTIME the
	 * stamp was taken from, so a stamp at hh:mm:ss.999 could be "after" it. */
	struct timespec ts_now;
	assert_int_equal(clock_gettime(CLOCK_REALTIME, &ts_now), 0);
	time_t t = timegm(&tm), now = ts_now.tv_sec;
	assert_true(t <= now && now - t <= 5);
}

static void test_exact_lines(void **state)
{
	struct at *t = *state;
	shmring_audit_sink *s;
	at_open(t, t->path, 0, &s);
	const size_t nc = sizeof(cases) / sizeof(cases[0]);
	for (size_t i = 0; i < nc; i++) {
		char *r = render(&cases[i].rec);
		assert_string_equal(r, cases[i].want);
		free(r);
		assert_int_equal(shmring_audit_send(s, &cases[i].rec), 0);
	}
	struct shmring_compacted_page_record e = esc_rec();
	char *r = render(&e);
	assert_string_equal(r, want_esc);
	free(r);
	assert_int_equal(shmring_audit_send(s, &e), 0);
	/* ts NULL, twice: the per-second cache and a second later. */
	struct shmring_compacted_page_record n = cases[0].rec;
	n.ts = NULL;
	assert_int_equal(shmring_audit_send(s, &n), 0);
	assert_int_equal(shmring_audit_send(s, &n), 0);
	/* A record bigger than the 64 KiB per-thread buffer takes the heap path. */
	size_t big_n = 100000;
	char *big = malloc(big_n + 1);
	memset(big, 'x', big_n);
	big[big_n] = 0;
	struct shmring_violation bv = { "huge", big };
	struct shmring_compacted_page_record b = cases[0].rec;
	b.violations = &bv;
	b.violation_count = 1;
	assert_int_equal(shmring_audit_send(s, &b), 0);
	assert_int_equal(at_flush(s), 0);

	size_t nl;
	char **lines = read_lines(t->path, &nl);
	assert_int_equal(nl, nc + 4);
	for (size_t i = 0; i < nc; i++)
		assert_string_equal(lines[i], cases[i].want);
	assert_string_equal(lines[nc], want_esc);
	const char *rest = strchr(cases[0].want + 7, '"'); /* after the ts value */
	check_now_ts(lines[nc + 1], rest);
	check_now_ts(lines[nc + 2], rest);
	const char *bl = lines[nc + 3];
	assert_int_equal(strlen(bl), strlen(cases[0].want) - 2 + strlen("{\"missing_field\":\"huge\",\"detail\":\"\"}") + big_n + 2);
	assert_non_null(strstr(bl, "\"violations\":[{\"missing_field\":\"huge\",\"detail\":\"xxxx"));
	free_lines(lines, nl);

	/* Larger than the ring's largest record: -EMSGSIZE, counted, nothing written. */
	struct shmring_stats st = sink_stats(s);
	big = realloc(big, st.max_record + 2);
	memset(big, 'y', st.max_record + 1);
	big[st.max_record + 1] = 0;
	bv.detail = big;
	assert_int_equal(shmring_audit_send(s, &b), -EMSGSIZE);
	assert_int_equal(sink_stats(s).dropped_oversize, 1);
	assert_int_equal(shmring_audit_dropped_count(s), 0);
	free(big);
	assert_int_equal(at_flush(s), 0);
	st = sink_stats(s);
	assert_int_equal(st.written, nc + 4);
	assert_int_equal(st.sent, st.written + st.dropped_oversize);
	assert_int_equal(st.pending, 0);
	assert_int_equal(st.invalid, 0);
	shmring_audit_close(s);
}

/* ---- many openers, one writer ---------------------------------------------------------- */

struct report {
	int k, open_rc, flush_rc, sent;
	int32_t writer_pid;
	char name[32];
};

static void test_many_openers_one_writer(void **state)
{
	struct at *t = *state;
	enum { P = 8, K = 300 };
	char parent[200], base[160], link[200];
	snprintf(parent, sizeof(parent), "%.*s", (int)(strrchr(t->dir, '/') - t->dir), t->dir);
	snprintf(base, sizeof(base), "%s", strrchr(t->dir, '/') + 1);
	snprintf(link, sizeof(link), "%s-link", t->dir);
	assert_int_equal(mkdir(t->dir, 0700), 0);
	assert_int_equal(symlink(t->dir, link), 0);
	/* The same file, spelled eight ways. */
	char paths[P][512];
	snprintf(paths[0], 512, "%s/a.jsonl", t->dir);
	snprintf(paths[1], 512, "%s/./a.jsonl", t->dir);
	snprintf(paths[2], 512, "%s/../%s/a.jsonl", t->dir, base);
	snprintf(paths[3], 512, "%s//a.jsonl", t->dir);
	snprintf(paths[4], 512, "%s/a.jsonl", base); /* relative, from parent */
	snprintf(paths[5], 512, "%s/sub/../a.jsonl", t->dir);
	snprintf(paths[6], 512, "%s/a.jsonl", link);
	snprintf(paths[7], 512, "./%s/./../%s/a.jsonl", base, base);
	int go[2], res[2];
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(res), 0);
	for (int k = 0; k < P; k++) {
		if (fork() == 0) {
			close(go[1]);
			char c;
			ssize_t rd = read(go[0], &c, 1); /* EOF: everyone starts at once */
			(void)rd;
			if (chdir(parent) < 0)
				_exit(1);
			struct report rep = { .k = k };
			shmring_audit_sink *s = NULL;
			rep.open_rc = shmring_audit_open(paths[k], 0, &s);
			if (rep.open_rc == 0) {
				char turn[32];
				for (int i = 0; i < K; i++) {
					snprintf(turn, sizeof(turn), "c%d-%d", k, i);
					struct shmring_compacted_page_record r = cases[i % 8].rec;
					r.turn_id = turn;
					if (shmring_audit_send(s, &r) == 0)
						rep.sent++;
				}
				rep.flush_rc = at_flush(s);
				struct shmring_stats st = sink_stats(s);
				rep.writer_pid = st.writer_alive ? st.writer_pid : -1;
				snprintf(rep.name, sizeof(rep.name), "%s", shmring_audit_ring_name(s));
				shmring_audit_close(s);
			}
			if (write(res[1], &rep, sizeof(rep)) != sizeof(rep))
				_exit(1);
			_exit(0);
		}
	}
	close(go[0]);
	close(go[1]);
	close(res[1]);
	assert_int_equal(tu_wait_children(P), 0);
	struct report reps[P];
	for (int k = 0; k < P; k++)
		assert_int_equal(read(res[0], &reps[k], sizeof(reps[k])), sizeof(reps[k]));
	close(res[0]);
	snprintf(t->name, sizeof(t->name), "%s", reps[0].name);
	tu_track(0, t->name);
	for (int k = 0; k < P; k++) {
		assert_int_equal(reps[k].open_rc, 0);
		assert_int_equal(reps[k].flush_rc, 0);
		assert_int_equal(reps[k].sent, K);
		assert_string_equal(reps[k].name, reps[0].name); /* one ring */
		assert_int_equal(reps[k].writer_pid, reps[0].writer_pid); /* one writer */
	}
	assert_true(reps[0].writer_pid > 0);
	/* Exactly one writer process for the ring, and only one ever served it. */
	assert_int_equal(count_procs_with(t->name), 1);
	struct shm_map m;
	assert_int_equal(shm_map_open(t->name, NULL, SHM_ATTACH, &m), 0);
	assert_int_equal(atomic_load(&m.hdr->writer_epoch), 1);
	char want_path[PATH_MAX + 16], real[PATH_MAX];
	assert_non_null(realpath(t->dir, real));
	snprintf(want_path, sizeof(want_path), "%s/a.jsonl", real);
	assert_string_equal(m.hdr->out_path, want_path);
	shm_map_close(&m);

	/* Every record exactly once. */
	long bad;
	json_t *arr = tu_read_jsonl(t->path, &bad);
	assert_non_null(arr);
	assert_int_equal(json_array_size(arr), P * K);
	static unsigned char seen[P][K];
	memset(seen, 0, sizeof(seen));
	size_t idx;
	json_t *v;
	json_array_foreach(arr, idx, v) {
		int k, i;
		assert_int_equal(sscanf(json_string_value(json_object_get(v, "turn_id")), "c%d-%d", &k, &i), 2);
		assert_true(k >= 0 && k < P && i >= 0 && i < K);
		assert_int_equal(seen[k][i], 0);
		seen[k][i] = 1;
		json_t *want = json_loads(cases[i % 8].want, 0, NULL);
		assert_non_null(want);
		json_object_set(want, "turn_id", json_object_get(v, "turn_id"));
		assert_true(json_equal(v, want)); /* the rest of the record as sent */
		json_decref(want);
	}
	json_decref(arr);
	unlink(link);
}

/* ---- errors ---------------------------------------------------------------------------- */

static void test_unopenable_paths(void **state)
{
	struct at *t = *state;
	shmring_audit_sink *s = NULL;
	assert_int_equal(mkdir(t->dir, 0700), 0);
	/* A directory. */
	assert_int_equal(shmring_audit_open(t->dir, 0, &s), -EISDIR);
	assert_null(s);
	char p[400];
	snprintf(p, sizeof(p), "%s/", t->dir);
	assert_int_equal(shmring_audit_open(p, 0, &s), -EISDIR);
	/* Under a regular file, directly or deeper. */
	char file[300];
	snprintf(file, sizeof(file), "%s/plain", t->dir);
	int fd = open(file, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	snprintf(p, sizeof(p), "%s/a.jsonl", file);
	assert_int_equal(shmring_audit_open(p, 0, &s), -ENOTDIR);
	snprintf(p, sizeof(p), "%s/sub/a.jsonl", file);
	assert_int_equal(shmring_audit_open(p, 0, &s), -ENOTDIR);
	/* A symlink as the file: never written through. */
	snprintf(p, sizeof(p), "%s/link.jsonl", t->dir);
	assert_int_equal(symlink(file, p), 0);
	assert_int_equal(shmring_audit_open(p, 0, &s), -ELOOP);
	/* Read-only file: permission denied (root may write anyway). */
	if (geteuid() != 0) {
		snprintf(p, sizeof(p), "%s/ro.jsonl", t->dir);
		fd = open(p, O_CREAT | O_WRONLY, 0400);
		assert_true(fd >= 0);
		close(fd);
		assert_int_equal(shmring_audit_open(p, 0, &s), -EACCES);
	}
	/* Arguments. */
	assert_int_equal(shmring_audit_open(NULL, 0, &s), -EINVAL);
	assert_int_equal(shmring_audit_open("", 0, &s), -EINVAL);
	assert_int_equal(shmring_audit_open(t->path, 0, NULL), -EINVAL);
	assert_int_equal(shmring_audit_open(t->path, (1u << 20) + 1, &s), -EINVAL);
	assert_null(s);
	assert_int_equal(count_procs_with(t->dir), 0);
}

static int32_t no_writer_pid(shmring_audit_sink *s)
{
	struct shmring_stats st = sink_stats(s);
	return st.writer_alive ? st.writer_pid : 0;
}

/* No autostart and no writer: send never blocks (a full ring drops, counts, warns),
 * flush is -ENOTCONN at once; invalid records send nothing. A later opener with
 * autostart gets the waiting records written. */
static void test_no_autostart(void **state)
{
	struct at *t = *state;
	setenv("SHMRING_NO_AUTOSTART", "1", 1);
	shmring_audit_sink *s;
	uint64_t t0 = tu_now_ms();
	at_open(t, t->path, 64, &s);
	assert_true(tu_now_ms() - t0 < 500);
	assert_int_equal(no_writer_pid(s), 0);
	assert_int_equal(count_procs_with(t->name), 0);
	int warns0 = atomic_load(&g_warns);
	int ok = 0, full = 0;
	uint64_t worst = 0;
	t0 = tu_now_ms();
	for (int i = 0; i < 100; i++) {
		uint64_t a = tu_now_ms();
		int rc = shmring_audit_send(s, &cases[i % 8].rec);
		uint64_t d = tu_now_ms() - a;
		worst = d > worst ? d : worst;
		if (rc == 0)
			ok++;
		else if (rc == -EAGAIN)
			full++;
	}
	assert_true(tu_now_ms() - t0 < 500);
	assert_true(worst < 50);
	assert_int_equal(ok, 64);
	assert_int_equal(full, 36);
	assert_int_equal(shmring_audit_dropped_count(s), 36);
	/* Logged at WARN for the first drop and each power of two: 1,2,4,8,16,32. */
	assert_int_equal(atomic_load(&g_warns) - warns0, 6);
	assert_non_null(strstr(g_last_warn, "dropped"));
	t0 = tu_now_ms();
	assert_int_equal(shmring_audit_flush(s), -ENOTCONN);
	assert_true(tu_now_ms() - t0 < 50);

	/* Invalid records: -EINVAL, nothing sent. */
	uint64_t sent0 = sink_stats(s).sent;
	struct shmring_compacted_page_record r;
	const char **fields[] = { &r.turn_id, &r.page_id, &r.origin.value, &r.fidelity_level,
				  &r.provider_name };
	for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
		r = cases[1].rec;
		*fields[f] = NULL;
		assert_int_equal(shmring_audit_send(s, &r), -EINVAL);
	}
	struct shmring_violation vn[2] = { { "a", "b" }, { NULL, "b" } };
	r = cases[1].rec;
	r.violations = vn;
	r.violation_count = 2;
	assert_int_equal(shmring_audit_send(s, &r), -EINVAL);
	vn[1].missing_field = "a";
	vn[1].detail = NULL;
	assert_int_equal(shmring_audit_send(s, &r), -EINVAL);
	r.violations = NULL;
	assert_int_equal(shmring_audit_send(s, &r), -EINVAL);
	r = cases[1].rec;
	r.page_type = (enum shmring_page_type)4;
	assert_int_equal(shmring_audit_send(s, &r), -EINVAL);
	r.page_type = (enum shmring_page_type)-1;
	assert_int_equal(shmring_audit_send(s, &r), -EINVAL);
	r = cases[1].rec;
	r.origin.kind = (enum shmring_origin_kind)4;
	assert_int_equal(shmring_audit_send(s, &r), -EINVAL);
	assert_int_equal(shmring_audit_send(s, NULL), -EINVAL);
	assert_int_equal(shmring_audit_send(NULL, &cases[0].rec), -EINVAL);
	assert_int_equal(shmring_audit_flush(NULL), -EINVAL);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	assert_int_equal(shmring_audit_pack(&pk, &r), -EINVAL);
	assert_int_equal(shmring_audit_pack(&pk, NULL), -EINVAL);
	assert_int_equal(shmring_audit_pack(NULL, &cases[0].rec), -EINVAL);
	assert_int_equal(sb.size, 0);
	msgpack_sbuffer_destroy(&sb);
	assert_int_equal(sink_stats(s).sent, sent0);

	/* With autostart again, a second opener starts the writer; it drains the 64. */
	unsetenv("SHMRING_NO_AUTOSTART");
	shmring_audit_sink *s2;
	assert_int_equal(shmring_audit_open(t->path, 0, &s2), 0);
	assert_true(no_writer_pid(s2) > 0);
	assert_int_equal(at_flush(s2), 0);
	assert_int_equal(at_flush(s), 0);
	size_t nl;
	char **lines = read_lines(t->path, &nl);
	assert_int_equal(nl, 64);
	for (size_t i = 0; i < nl; i++)
		assert_string_equal(lines[i], cases[i % 8].want);
	free_lines(lines, nl);
	shmring_audit_close(s2);
	shmring_audit_close(s);
}

static uint32_t capacity_of(const char *name)
{
	shmring *r;
	struct shmring_stats st;
	assert_int_equal(shmring_attach(name, &r), 0);
	assert_int_equal(shmring_stats(r, &st), 0);
	shmring_close(r);
	return st.capacity;
}

static void test_capacity(void **state)
{
	(void)state;
	setenv("SHMRING_NO_AUTOSTART", "1", 1);
	const size_t asked[] = { 100, 0, 1, 64, 65, 4096, 5000, 1u << 20 };
	const uint32_t want[] = { 128, 4096, 64, 64, 128, 4096, 8192, 1u << 20 };
	for (size_t i = 0; i < sizeof(asked) / sizeof(asked[0]); i++) {
		struct at t;
		at_init(&t, "cap");
		shmring_audit_sink *s;
		at_open(&t, t.path, asked[i], &s);
		assert_int_equal(capacity_of(t.name), want[i]);
		assert_int_equal(sink_stats(s).capacity, want[i]);
		if (i == 0) {
			/* An existing ring keeps its size. */
			shmring_audit_sink *s2;
			assert_int_equal(shmring_audit_open(t.path, 1000, &s2), 0);
			assert_int_equal(sink_stats(s2).capacity, 128);
			shmring_audit_close(s2);
		}
		shmring_audit_close(s);
		at_cleanup(&t);
	}
	unsetenv("SHMRING_NO_AUTOSTART");
}

/* A live writer serving the ring into another file: -EEXIST. */
static void test_other_file_served(void **state)
{
	struct at *t = *state;
	setenv("SHMRING_NO_AUTOSTART", "1", 1);
	shmring_audit_sink *s;
	at_open(t, t->path, 0, &s);
	shmring_audit_close(s);
	unsetenv("SHMRING_NO_AUTOSTART");
	struct tu_ring tr;
	snprintf(tr.name, sizeof(tr.name), "%s", t->name);
	tr.dir[0] = 0;
	tr.writer = 0;
	snprintf(tr.out, sizeof(tr.out), "%s/other.jsonl", t->dir);
	assert_true(tu_writer_start(&tr, NULL, NULL) > 0);
	s = NULL;
	assert_int_equal(shmring_audit_open(t->path, 0, &s), -EEXIST);
	assert_null(s);
	/* The same file served by a writer started by hand is fine. */
	assert_int_equal(tu_writer_stop(&tr), 0);
	snprintf(tr.out, sizeof(tr.out), "%s", t->path);
	pid_t w = tu_writer_start(&tr, NULL, NULL);
	assert_true(w > 0);
	assert_int_equal(shmring_audit_open(t->path, 0, &s), 0);
	assert_int_equal(no_writer_pid(s), w);
	assert_int_equal(shmring_audit_send(s, &cases[0].rec), 0);
	assert_int_equal(at_flush(s), 0);
	shmring_audit_close(s);
	assert_int_equal(tu_writer_stop(&tr), 0);
}

/* The writer died: flush starts a new one, which writes what waited in the ring. */
static void test_flush_restarts_writer(void **state)
{
	struct at *t = *state;
	shmring_audit_sink *s;
	at_open(t, t->path, 0, &s);
	int32_t w1 = no_writer_pid(s);
	assert_true(w1 > 0);
	assert_int_equal(shmring_audit_send(s, &cases[0].rec), 0);
	assert_int_equal(at_flush(s), 0);
	kill(w1, SIGKILL);
	for (int i = 0; i < 400 && no_writer_pid(s); i++)
		tu_sleep_ms(5);
	assert_int_equal(no_writer_pid(s), 0);
	for (int i = 1; i < 4; i++)
		assert_int_equal(shmring_audit_send(s, &cases[i].rec), 0);
	assert_int_equal(at_flush(s), 0);
	int32_t w2 = no_writer_pid(s);
	assert_true(w2 > 0 && w2 != w1);
	size_t nl;
	char **lines = read_lines(t->path, &nl);
	assert_int_equal(nl, 4);
	for (size_t i = 0; i < nl; i++)
		assert_string_equal(lines[i], cases[i].want);
	free_lines(lines, nl);
	shmring_audit_close(s);
}

/* A writer binary that is missing, exits at once, or never serves. */
static void test_start_failures(void **state)
{
	struct at *t = *state;
	shmring_audit_sink *s = NULL;
	assert_int_equal(mkdir(t->dir, 0700), 0);
	/* The ring name is known only from a sink: get it without a writer. */
	setenv("SHMRING_NO_AUTOSTART", "1", 1);
	at_open(t, t->path, 0, &s);
	shmring_audit_close(s);
	unsetenv("SHMRING_NO_AUTOSTART");
	s = NULL;

	char exe[300];
	snprintf(exe, sizeof(exe), "%s/does-not-exist", t->dir);
	setenv("SHMRING_WRITER", exe, 1);
	assert_int_equal(shmring_audit_open(t->path, 0, &s), -ENOENT);

	/* Exists but cannot be executed: exec's errno comes back from the grandchild. */
	snprintf(exe, sizeof(exe), "%s/noexec", t->dir);
	int fd = open(exe, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	close(fd);
	setenv("SHMRING_WRITER", exe, 1);
	assert_int_equal(shmring_audit_open(t->path, 0, &s), -EACCES); /* no x bit: even root */
	assert_null(s);

	setenv("SHMRING_WRITER", "/bin/false", 1);
	uint64_t t0 = tu_now_ms();
	assert_int_equal(shmring_audit_open(t->path, 0, &s), -ECHILD);
	assert_true(tu_now_ms() - t0 < 1000);

	/* Never serves: killed after 2 s, nothing left behind. */
	snprintf(exe, sizeof(exe), "%s/stuck.sh", t->dir);
	FILE *f = fopen(exe, "w");
	assert_non_null(f);
	fputs("#!/bin/sh\nwhile :; do sleep 0.05; done\n", f);
	fclose(f);
	chmod(exe, 0755);
	setenv("SHMRING_WRITER", exe, 1);
	t0 = tu_now_ms();
	assert_int_equal(shmring_audit_open(t->path, 0, &s), -ETIMEDOUT);
	uint64_t dt = tu_now_ms() - t0;
	assert_true(dt >= 1900 && dt < 3500);
	assert_null(s);
	tu_sleep_ms(100);
	assert_int_equal(count_procs_with(t->name), 0);

	setenv("SHMRING_WRITER", SHMRING_WRITER_PATH, 1);
	assert_int_equal(shmring_audit_open(t->path, 0, &s), 0);
	assert_int_equal(count_procs_with(t->name), 1);
	shmring_audit_close(s);
}

/* Threads of one process and forked children share one sink. */
struct thr_arg {
	shmring_audit_sink *s;
	int id, n, ok;
};

/* ---- the encoder against msgpack-c's packer ----------------------------------------- */

/* The reference: the record packed token by token with msgpack-c, as the Rust struct's
 * field order says (what libshm did before its direct encoder). */
static void ref_str(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

static void ref_pack(msgpack_packer *pk, const struct shmring_compacted_page_record *r)
{
	static const char *pt[] = { "tool_output", "conversation_turn", "memory_excerpt", "system_context" };
	static const char *ok[] = { "tool_pair", "turn", "excerpt", "system" };
	static const char *ov[] = { "tool_name", "message_id", "source_label", "key" };
	msgpack_pack_map(pk, r->classification_fallback ? 12 : 11);
	ref_str(pk, "ts"); ref_str(pk, r->ts);
	ref_str(pk, "turn_id"); ref_str(pk, r->turn_id);
	ref_str(pk, "page_id"); ref_str(pk, r->page_id);
	ref_str(pk, "page_type"); ref_str(pk, pt[r->page_type]);
	ref_str(pk, "origin"); msgpack_pack_map(pk, 2);
	ref_str(pk, "kind"); ref_str(pk, ok[r->origin.kind]);
	ref_str(pk, ov[r->origin.kind]); ref_str(pk, r->origin.value);
	ref_str(pk, "original_tokens"); msgpack_pack_uint32(pk, r->original_tokens);
	ref_str(pk, "compacted_tokens"); msgpack_pack_uint32(pk, r->compacted_tokens);
	ref_str(pk, "fidelity_level"); ref_str(pk, r->fidelity_level);
	ref_str(pk, "invariant_version"); msgpack_pack_uint8(pk, r->invariant_version);
	ref_str(pk, "provider_name"); ref_str(pk, r->provider_name);
	ref_str(pk, "violations"); msgpack_pack_array(pk, r->violation_count);
	for (size_t i = 0; i < r->violation_count; i++) {
		msgpack_pack_map(pk, 2);
		ref_str(pk, "missing_field"); ref_str(pk, r->violations[i].missing_field);
		ref_str(pk, "detail"); ref_str(pk, r->violations[i].detail);
	}
	if (r->classification_fallback) {
		ref_str(pk, "classification_fallback");
		msgpack_pack_true(pk);
	}
}

/* A string whose length sits on or next to a msgpack header boundary, or is random. */
static char *edge_str(unsigned *seed)
{
	static const size_t edges[] = { 0, 1, 31, 32, 255, 256, 65535, 65536, 70000 };
	size_t n = rand_r(seed) % 3 == 0 ? edges[rand_r(seed) % 9] : (size_t)(rand_r(seed) % 300);
	char *s = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		s[i] = (char)(1 + rand_r(seed) % 255); /* any byte but NUL, UTF-8 or not */
	s[n] = 0;
	return s;
}

static uint32_t edge_u32(unsigned *seed)
{
	static const uint32_t edges[] = { 0, 127, 128, 255, 256, 65535, 65536, UINT32_MAX };
	return rand_r(seed) % 2 ? edges[rand_r(seed) % 8] : (uint32_t)rand_r(seed);
}

static void test_encoder_matches_msgpack_c(void **state)
{
	(void)state;
	unsigned seed = 20261124;
	msgpack_sbuffer want, got;
	for (int it = 0; it < 3000; it++) {
		char *str[6];
		for (int k = 0; k < 6; k++)
			str[k] = edge_str(&seed);
		static const size_t vcounts[] = { 0, 1, 15, 16, 17 };
		size_t nv = vcounts[rand_r(&seed) % 5];
		struct shmring_violation *v = calloc(nv + 1, sizeof(*v));
		for (size_t i = 0; i < nv; i++) {
			v[i].missing_field = edge_str(&seed);
			v[i].detail = edge_str(&seed);
		}
		struct shmring_compacted_page_record rec = {
			.ts = str[0], .turn_id = str[1], .page_id = str[2],
			.page_type = (enum shmring_page_type)(rand_r(&seed) % 4),
			.origin = { (enum shmring_origin_kind)(rand_r(&seed) % 4), str[3] },
			.original_tokens = edge_u32(&seed), .compacted_tokens = edge_u32(&seed),
			.fidelity_level = str[4], .invariant_version = (uint8_t)edge_u32(&seed),
			.provider_name = str[5], .violations = nv ? v : NULL, .violation_count = nv,
			.classification_fallback = rand_r(&seed) % 2,
		};
		msgpack_sbuffer_init(&want);
		msgpack_sbuffer_init(&got);
		msgpack_packer pw, pg;
		msgpack_packer_init(&pw, &want, msgpack_sbuffer_write);
		msgpack_packer_init(&pg, &got, msgpack_sbuffer_write);
		ref_pack(&pw, &rec);
		assert_int_equal(shmring_audit_pack(&pg, &rec), 0);
		assert_int_equal(got.size, want.size);
		assert_memory_equal(got.data, want.data, want.size);
		msgpack_sbuffer_destroy(&want);
		msgpack_sbuffer_destroy(&got);
		for (size_t i = 0; i < nv; i++) {
			free((void *)v[i].missing_field);
			free((void *)v[i].detail);
		}
		free(v);
		for (int k = 0; k < 6; k++)
			free(str[k]);
	}
}

/* shmring_audit_send_to encodes in the ring: the same bytes as shmring_audit_pack, read
 * back from the ring's data area; one over the ring's max record is refused and counted. */
static void test_send_to_ring(void **state)
{
	struct tu_ring *t = *state;
	shmring *r = tu_serve(t, "64", "128", NULL);
	struct shmring_violation v[2] = { { "exit_code", "missing" }, { "x", "y" } };
	struct shmring_compacted_page_record rec = {
		.ts = "2026-11-24T08:55:52.123456Z", .turn_id = "t", .page_id = "p",
		.origin = { SHMRING_ORIGIN_TURN, "m" }, .original_tokens = 70000,
		.compacted_tokens = 12, .fidelity_level = "full", .invariant_version = 3,
		.provider_name = "prov", .violations = v, .violation_count = 2,
	};
	for (int i = 0; i < 100; i++) { /* a record spans 3 slots: flush every 10 */
		assert_int_equal(shmring_audit_send_to(r, &rec), 0);
		if (i % 10 == 9)
			assert_int_equal(tu_flush(r), 0);
	}
	char *line = render(&rec);
	size_t n = 0;
	char **lines = read_lines(t->out, &n);
	assert_int_equal(n, 100);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(lines[i], line);
	free_lines(lines, n);
	free(line);
	/* Over the max record (a quarter of 64 x 128 B): -EMSGSIZE, counted, nothing sent. */
	char *big = calloc(4000, 1);
	memset(big, 'a', 3999);
	rec.page_id = big;
	struct shmring_stats st;
	assert_int_equal(shmring_audit_send_to(r, &rec), -EMSGSIZE);
	assert_int_equal(shmring_stats(r, &st), 0);
	assert_int_equal(st.dropped_oversize, 1);
	assert_int_equal(st.sent, 101);
	assert_int_equal(shmring_audit_send_to(NULL, &rec), -EINVAL);
	free(big);
}

static void *thr_main(void *p)
{
	struct thr_arg *a = p;
	char turn[32];
	for (int i = 0; i < a->n; i++) {
		snprintf(turn, sizeof(turn), "t%d-%d", a->id, i);
		struct shmring_compacted_page_record r = cases[i % 8].rec;
		r.turn_id = turn;
		r.ts = NULL;
		a->ok += shmring_audit_send(a->s, &r) == 0;
	}
	return NULL;
}

static void test_threads_and_fork(void **state)
{
	struct at *t = *state;
	enum { T = 4, C = 2, N = 500 };
	shmring_audit_sink *s;
	at_open(t, t->path, 0, &s);
	for (int c = 0; c < C; c++) {
		if (fork() == 0) {
			struct thr_arg a = { s, T + c, N, 0 };
			thr_main(&a);
			int rc = at_flush(s);
			shmring_audit_close(s);
			_exit(rc == 0 && a.ok == N ? 0 : 1);
		}
	}
	pthread_t th[T];
	struct thr_arg args[T];
	for (int i = 0; i < T; i++) {
		args[i] = (struct thr_arg){ s, i, N, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, thr_main, &args[i]), 0);
	}
	for (int i = 0; i < T; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].ok, N);
	}
	assert_int_equal(tu_wait_children(C), 0);
	assert_int_equal(at_flush(s), 0);
	long bad;
	json_t *arr = tu_read_jsonl(t->path, &bad);
	assert_non_null(arr);
	assert_int_equal(json_array_size(arr), (T + C) * N);
	json_decref(arr);
	struct shmring_stats st = sink_stats(s);
	assert_int_equal(st.written, (T + C) * N);
	assert_int_equal(st.pending, 0);
	shmring_audit_close(s);
}

int main(void)
{
	/* The build tree's writer, whatever is installed; leftovers exit soon by themselves. */
	setenv("SHMRING_WRITER", SHMRING_WRITER_PATH, 1);
	setenv("SHMRING_WRITER_IDLE_EXIT", "5", 1);
	unsetenv("SHMRING_NO_AUTOSTART");
	unsetenv("SHMRING_WRITER_LOG");
	shmring_set_log(quiet_log, NULL);
	const struct CMUnitTest tests[] = {
		AT_TEST(test_exact_lines),
		AT_TEST(test_many_openers_one_writer),
		AT_TEST(test_unopenable_paths),
		AT_TEST(test_no_autostart),
		cmocka_unit_test(test_capacity),
		AT_TEST(test_other_file_served),
		AT_TEST(test_flush_restarts_writer),
		AT_TEST(test_start_failures),
		AT_TEST(test_threads_and_fork),
		cmocka_unit_test(test_encoder_matches_msgpack_c),
		TU_TEST(test_send_to_ring),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
