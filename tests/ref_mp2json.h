/* ref_mp2json.h: a slow, plain msgpack -> JSON converter on msgpack-c's object tree, the
 * yardstick the fast libshm/mp2json.c is compared against byte for byte. */
#ifndef REF_MP2JSON_H
#define REF_MP2JSON_H

#include <stddef.h>
#include <sys/types.h>

/* Same contract and output as shmring_msgpack_to_json(), except that it validates the whole
 * input before writing, so a bad input gives -EBADMSG whatever cap is. Also returns -ENOMEM,
 * and -EPROTO when msgpack-c and the reference's own validator disagree (a bug in one). */
ssize_t ref_msgpack_to_json(const void *in, size_t len, char *out, size_t cap, const char **why);

#endif
