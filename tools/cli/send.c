/*
 * send.c - `shmring send`: JSON values from the command line or standard input,
 * packed as msgpack with msgpack-c and offered to a ring with shmring_send.
 *
 * The ring must exist (shmring_attach: never created here). Bad JSON and dropped records
 * do not stop the others; the exit status and one summary line tell how many failed.
 */
#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>

#include "cli.h"

struct send_ctx {
	const char *name;
	shmring *r;
	msgpack_sbuffer sb;
	unsigned long total, invalid, full, oversize, other;
};

static int pack_json(msgpack_packer *pk, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char *key;
		json_t *val;
		if (msgpack_pack_map(pk, json_object_size(v)))
			return -1;
#if JANSSON_VERSION_HEX >= 0x020e00
		size_t klen;
		/* Keys may hold NUL (JSON_ALLOW_NUL); jansson keeps insertion order. */
		json_object_keylen_foreach((json_t *)v, key, klen, val) {
#else
		json_object_foreach((json_t *)v, key, val) {
			size_t klen = strlen(key);
#endif
			if (msgpack_pack_str_with_body(pk, key, klen) || pack_json(pk, val))
				return -1;
		}
		return 0;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *val;
		if (msgpack_pack_array(pk, json_array_size(v)))
			return -1;
		json_array_foreach(v, i, val)
			if (pack_json(pk, val))
				return -1;
		return 0;
	}
	case JSON_STRING:
		return msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		return msgpack_pack_int64(pk, (int64_t)json_integer_value(v));
	case JSON_REAL:
		return msgpack_pack_double(pk, json_real_value(v));
	case JSON_TRUE:
		return msgpack_pack_true(pk);
	case JSON_FALSE:
		return msgpack_pack_false(pk);
	case JSON_NULL:
		return msgpack_pack_nil(pk);
	}
	return -1;
}

/* One value: where says which argument or line it came from, for the error message. */
static void send_one(struct send_ctx *s, const char *text, size_t len, const char *where)
{
	json_error_t err;
	s->total++;
	json_t *v = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	if (!v) {
		s->invalid++;
		cli_ring_msg(s->name, "%s: invalid JSON: %s", where, err.text);
		return;
	}
	msgpack_sbuffer_clear(&s->sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &s->sb, msgpack_sbuffer_write);
	int prc = pack_json(&pk, v);
	json_decref(v);
	if (prc) {
		s->other++;
		cli_ring_msg(s->name, "%s: cannot pack: out of memory", where);
		return;
	}
	int rc = shmring_send(s->r, s->sb.data, s->sb.size);
	switch (rc) {
	case 0: break;
	case -EAGAIN: s->full++; break;
	case -EMSGSIZE:
		s->oversize++;
		cli_ring_msg(s->name, "%s: record of %zu bytes is larger than the ring's max record",
			     where, s->sb.size);
		break;
	default:
		s->other++;
		cli_ring_msg(s->name, "%s: not sent: %s", where, strerror(-rc));
		break;
	}
}

static int send_stdin(struct send_ctx *s)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned long no = 0;
	char where[48];
	while ((n = getline(&line, &cap, stdin)) >= 0) {
		no++;
		size_t len = (size_t)n;
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		if (strspn(line, " \t") >= len)
			continue; /* blank lines separate nothing: skipped */
		snprintf(where, sizeof(where), "line %lu", no);
		send_one(s, line, len, where);
	}
	int e = ferror(stdin) ? errno : 0;
	free(line);
	if (e) {
		cli_ring_msg(s->name, "reading standard input: %s", strerror(e));
		return -1;
	}
	return 0;
}

static void quiet_log(enum shmring_log_level level, const char *msg, void *ctx)
{
	(void)level, (void)msg, (void)ctx; /* the summary line says it once */
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

int cmd_send(int argc, char **argv)
{
	/* Options only before NAME: after it every argument is JSON, "-1" included. */
	int i = 1;
	for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage_send(stdout);
			return CLI_OK;
		}
		fprintf(stderr, "shmring send: unknown option %s\n", argv[i]);
		usage_send(stderr);
		return CLI_USAGE;
	}
	if (i >= argc) {
		usage_send(stderr);
		return CLI_USAGE;
	}
	struct send_ctx s = { .name = argv[i++] };
	shmring_set_log(quiet_log, NULL);
	int rc = shmring_attach(s.name, &s.r);
	if (rc) {
		cli_ring_err(s.name, rc);
		return CLI_ERR;
	}
	msgpack_sbuffer_init(&s.sb);
	int failed = 0;
	if (i == argc) {
		failed = send_stdin(&s) != 0;
	} else {
		char where[48];
		for (int k = i; k < argc; k++) {
			snprintf(where, sizeof(where), "argument %d", k - i + 1);
			send_one(&s, argv[k], strlen(argv[k]), where);
		}
	}
	msgpack_sbuffer_destroy(&s.sb);
	shmring_close(s.r);
	unsigned long bad = s.invalid + s.full + s.oversize + s.other;
	if (bad) {
		cli_ring_msg(s.name, "%lu of %lu records not sent: %lu invalid, %lu dropped "
			     "(%lu ring full, %lu oversize), %lu other errors",
			     bad, s.total, s.invalid, s.full + s.oversize, s.full, s.oversize, s.other);
		return CLI_ERR;
	}
	return failed ? CLI_ERR : CLI_OK;
}
