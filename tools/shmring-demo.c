/*
 * shmring-demo - the audit sink end to end: several agent processes send compaction
 * records into one JSONL file through the shared ring; a writer is started on demand.
 *
 *   shmring-demo [--out PATH] [--agents N] [--records M]
 *
 * Opens the sink on PATH (default ./shmring-demo.jsonl, emptied first so the counts are
 * exact), forks N agents (default 4) that send M records each (default 25) of every page
 * type and origin kind, some with violations whose details need escaping, some with the
 * classification fallback; agent 0 flushes halfway and checks its records are in the
 * file. Then the parent flushes, prints the file (all of it up to 200 lines, else the
 * first 10) and the ring's counters, and checks that they add up.
 * Exit status: 0 ok, 1 a check failed or an error, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmring.h"
#include "shmring/audit.h"

struct agent_report {
	int agent;
	int sent, dropped, failed;
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Lines of the file that contain needle. */
static long count_lines(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char *line = NULL;
	size_t cap = 0;
	long n = 0;
	while (getline(&line, &cap, f) > 0)
		if (!needle || strstr(line, needle))
			n++;
	free(line);
	fclose(f);
	return n;
}

static int run_agent(shmring_audit_sink *s, int a, int m, const char *path)
{
	static const char *const tools[] = { "grep", "bash", "read_file", "web_search" };
	static const char *const fidelity[] = { "full", "summary", "reference", "digest" };
	struct agent_report rep = { .agent = a };
	char turn[64], page[64], value[96];
	for (int i = 0; i < m; i++) {
		struct shmring_violation v[2] = {
			{ "exit_code", "tool said \"exit 1\"\nsecond line \\ naïve 日本 🚀" },
			{ "source_url", "missing\tafter compaction" },
		};
		int kind = (a * 3 + i) % 4;
		snprintf(turn, sizeof(turn), "agent-%d-turn-%d", a, i);
		snprintf(page, sizeof(page), "page-%d-%d", a, i);
		switch (kind) {
		case SHMRING_ORIGIN_TOOL_PAIR: snprintf(value, sizeof(value), "%s", tools[i % 4]); break;
		case SHMRING_ORIGIN_TURN: snprintf(value, sizeof(value), "msg_%d_%04d", a, i); break;
		case SHMRING_ORIGIN_EXCERPT: snprintf(value, sizeof(value), "notes.md §%d", i); break;
		default: snprintf(value, sizeof(value), "system_prompt"); break;
		}
		uint32_t orig = 1000u + (uint32_t)i * 37u;
		struct shmring_compacted_page_record rec = {
			.ts = NULL, /* now */
			.turn_id = turn,
			.page_id = page,
			.page_type = (enum shmring_page_type)((a + i) % 4),
			.origin = { (enum shmring_origin_kind)kind, value },
			.original_tokens = orig,
			.compacted_tokens = orig / (2u + (uint32_t)i % 3u),
			.fidelity_level = fidelity[(i / 2) % 4],
			.invariant_version = 1,
			.provider_name = a % 2 ? "openai" : "anthropic",
			.violations = v,
			.violation_count = i % 5 == 1 ? 1 : i % 5 == 3 ? 2 : 0,
			.classification_fallback = i % 7 == 3,
		};
		int rc = shmring_audit_send(s, &rec);
		if (rc == 0)
			rep.sent++;
		else if (rc == -EAGAIN || rc == -EMSGSIZE)
			rep.dropped++;
		else
			rep.failed++;
		if (a == 0 && i == m / 2 - 1) {
			uint64_t t0 = now_ms();
			rc = shmring_audit_flush(s);
			char needle[64];
			snprintf(needle, sizeof(needle), "\"turn_id\":\"agent-0-turn-");
			long mine = count_lines(path, needle);
			printf("agent 0: flush after %d records -> %s in %llu ms; %ld of its records in the file%s\n",
			       i + 1, rc ? strerror(-rc) : "ok", (unsigned long long)(now_ms() - t0), mine,
			       rc == 0 && mine != rep.sent ? " (MISMATCH)" : "");
			fflush(stdout);
			if (rc || mine != rep.sent)
				rep.failed++;
		}
	}
	return rep.failed ? 1 : 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: shmring-demo [--out PATH] [--agents N] [--records M]\n"
		   "Send compaction records from N agent processes through the shmring audit sink\n"
		   "into PATH (default ./shmring-demo.jsonl, emptied first), then show the file and\n"
		   "the ring's counters. A shmring-writer is started if none serves the file.\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "out", required_argument, 0, 'o' }, { "agents", required_argument, 0, 'a' },
		{ "records", required_argument, 0, 'm' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	const char *path = "./shmring-demo.jsonl";
	int agents = 4, records = 25, c;
	while ((c = getopt_long(argc, argv, "o:a:m:h", lo, NULL)) != -1) {
		switch (c) {
		case 'o': path = optarg; break;
		case 'a': agents = atoi(optarg); break;
		case 'm': records = atoi(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || agents < 1 || agents > 256 || records < 1 || records > 10000000) {
		usage(stderr);
		return 2;
	}

	/* Emptied rather than removed: a writer left from an earlier run may still have the
	 * file open, and it appends to the same inode. */
	int fd = open(path, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0)
		close(fd);
	else if (errno != ENOENT) {
		fprintf(stderr, "shmring-demo: %s: %s\n", path, strerror(errno));
		return 1;
	}

	/* The build tree's writer (the library looks only next to itself), unless one is named. */
	setenv("SHMRING_WRITER", SHMRING_DEMO_WRITER, 0);
	shmring_audit_sink *s;
	uint64_t t0 = now_ms();
	int rc = shmring_audit_open(path, 0, &s);
	if (rc) {
		fprintf(stderr, "shmring-demo: cannot open the audit sink on %s: %s\n", path, strerror(-rc));
		return 1;
	}
	shmring *ring = shmring_audit_ring(s);
	struct shmring_stats b, st;
	shmring_stats(ring, &b);
	printf("sink open on %s in %llu ms: ring %s (capacity %u), writer pid %d %s\n", path,
	       (unsigned long long)(now_ms() - t0), shmring_audit_ring_name(s), b.capacity,
	       (int)b.writer_pid, b.writer_alive ? "serving" : "NOT serving");
	fflush(stdout);

	for (int a = 0; a < agents; a++) {
		pid_t p = fork();
		if (p < 0) {
			perror("shmring-demo: fork");
			return 1;
		}
		if (p == 0) {
			/* The child uses the parent's sink: the library re-registers it after fork. */
			int st_child = run_agent(s, a, records, path);
			shmring_audit_close(s);
			_exit(st_child);
		}
	}
	int failed = 0;
	for (int a = 0; a < agents; a++) {
		int ws;
		if (wait(&ws) < 0 || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
			failed++;
	}
	rc = shmring_audit_flush(s);
	if (rc) {
		fprintf(stderr, "shmring-demo: flush: %s\n", strerror(-rc));
		failed++;
	}

	long lines = count_lines(path, NULL);
	printf("\n---- %s: %ld lines ----\n", path, lines);
	FILE *f = fopen(path, "r");
	if (f) {
		char *line = NULL;
		size_t cap = 0;
		long n = 0;
		while (getline(&line, &cap, f) > 0 && (lines <= 200 || n < 10)) {
			fputs(line, stdout);
			n++;
		}
		if (lines > 200)
			printf("... (%ld more lines)\n", lines - n);
		free(line);
		fclose(f);
	}

	shmring_stats(ring, &st);
	uint64_t sent = st.sent - b.sent, written = st.written - b.written;
	uint64_t dfull = st.dropped_full - b.dropped_full, dover = st.dropped_oversize - b.dropped_oversize;
	uint64_t aband = st.abandoned - b.abandoned;
	printf("\n---- ring %s, this run ----\n", shmring_audit_ring_name(s));
	printf("  sent              %llu\n", (unsigned long long)sent);
	printf("  written           %llu\n", (unsigned long long)written);
	printf("  dropped_full      %llu\n", (unsigned long long)dfull);
	printf("  dropped_oversize  %llu\n", (unsigned long long)dover);
	printf("  abandoned         %llu\n", (unsigned long long)aband);
	printf("  pending           %llu\n", (unsigned long long)st.pending);
	printf("  writer            pid %d, %s\n", (int)st.writer_pid, st.writer_alive ? "alive" : "not alive");
	bool adds_up = sent == written + dfull + dover + aband + st.pending;
	printf("  sent == written + dropped + abandoned + pending: %s\n", adds_up ? "yes" : "NO");
	if (!adds_up)
		failed++;
	if ((long)written != lines) {
		printf("  lines in the file (%ld) != written (%llu)\n", lines, (unsigned long long)written);
		failed++;
	}
	if (sent != (uint64_t)agents * (uint64_t)records) {
		printf("  sent (%llu) != %d agents x %d records\n", (unsigned long long)sent, agents, records);
		failed++;
	}
	const char *idle = getenv("SHMRING_WRITER_IDLE_EXIT");
	printf("\nThe writer keeps serving while producers are attached and exits by itself after "
	       "%s s with none (SHMRING_WRITER_IDLE_EXIT).\n", idle && *idle ? idle : "10");
	shmring_audit_close(s);
	printf("%s\n", failed ? "demo FAILED" : "demo ok");
	return failed ? 1 : 0;
}
