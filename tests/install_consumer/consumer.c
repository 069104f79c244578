/*
 * consumer.c - a program built against an installed shmring, as another project would:
 * opens ring NAME, sends one record {"consumer":TAG,"version":"X.Y.Z"}, flushes, prints
 * the ring's counters. Exit status 0 when the record was sent and flushed. It includes
 * every public header and takes <msgpack.h> from them: what they need, the package gives.
 *
 *   consumer NAME TAG
 */
#include <stdio.h>
#include <string.h>

#include <shmring.h>
#include <shmring/audit.h>
#include <shmring/json.h>
#include <shmring/reserve.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: consumer NAME TAG\n");
		return 2;
	}
	char version[32];
	snprintf(version, sizeof(version), "%d.%d.%d", SHMRING_VERSION_MAJOR, SHMRING_VERSION_MINOR,
		 SHMRING_VERSION_PATCH);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str_with_body(&pk, "consumer", 8);
	msgpack_pack_str_with_body(&pk, argv[2], strlen(argv[2]));
	msgpack_pack_str_with_body(&pk, "version", 7);
	msgpack_pack_str_with_body(&pk, version, strlen(version));

	shmring *r;
	int rc = shmring_open(argv[1], NULL, &r);
	if (rc) {
		fprintf(stderr, "consumer: open %s: %s\n", argv[1], strerror(-rc));
		return 1;
	}
	int sent = shmring_send(r, sb.data, sb.size);
	int flushed = shmring_flush(r);
	struct shmring_stats st;
	shmring_stats(r, &st);
	printf("send=%d flush=%d capacity=%u sent=%llu written=%llu pending=%llu writer_alive=%d\n",
	       sent, flushed, st.capacity, (unsigned long long)st.sent,
	       (unsigned long long)st.written, (unsigned long long)st.pending, (int)st.writer_alive);
	shmring_close(r);
	msgpack_sbuffer_destroy(&sb);
	/* Linked from the library too, not only declared. */
	int (*pack)(msgpack_packer *, const struct shmring_compacted_page_record *) = shmring_audit_pack;
	if (!pack)
		return 1;
	return sent == 0 && flushed == 0 ? 0 : 1;
}
