/*
 * shmring/reserve.h - encode a record straight into the ring (no intermediate buffer),
 * and back-pressure for producers that would rather wait a little than lose a record.
 */
#ifndef SHMRING_RESERVE_H
#define SHMRING_RESERVE_H

#include <msgpack.h>

#include "shmring.h"

#ifdef __cplusplus
extern "C" {
#endif

struct shmring_reservation {
	msgpack_packer pk;   /* packs into the claimed slots; use msgpack_pack_* on &res.pk */
	/* private */
	shmring *r;
	uint64_t pos;
	unsigned n;
	int overflow;
	size_t max_len, len;
	uint8_t *buf;
};

/*
 * Claim room for a record of at most max_len msgpack bytes. Never blocks.
 * Errors: -EAGAIN ring full (dropped, counted), -EMSGSIZE max_len larger than the
 * ring's max record (dropped, counted), -EINVAL.
 * Exactly one of shmring_commit / shmring_abort must follow, soon: until then the
 * writer waits at this record (up to its stall timeout, then revokes it).
 */
int shmring_reserve(shmring *r, size_t max_len, struct shmring_reservation *res);

/* Publish what was packed. -EMSGSIZE if more than max_len was packed (nothing is
 * published, counted as dropped_oversize), -EINVAL if nothing was packed (treated as an
 * abort), -ECANCELED if the writer revoked the reservation after its stall timeout. */
int shmring_commit(struct shmring_reservation *res);

/* Publish nothing; the reservation leaves `sent` and is counted in `aborted`. */
void shmring_abort(struct shmring_reservation *res);

/*
 * Like shmring_send, but when the ring is full wait up to timeout_ms for the writer to
 * free room (sleeping on a futex the writer wakes, not spinning), then behave as
 * shmring_send on a full ring (-EAGAIN, dropped and counted). timeout_ms <= 0: no wait.
 */
int shmring_send_wait(shmring *r, const void *msgpack, size_t len, int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif
