/*
 * bench_peers.c - the producers and consumers of shmring-bench: shmring itself and the
 * channels a user would otherwise choose (pipe with framed records, POSIX message queue,
 * AF_UNIX datagram socket, one O_APPEND file every producer writes its own lines to,
 * ZeroMQ ipc PUSH/PULL). Each consumer does what shmring-writer does: msgpack -> JSON
 * with the same converter and batched write(2)s to an O_APPEND file.
 *
 * Every peer gets the most generous buffers this process may have (about the ring's 32
 * MiB where the kernel allows it); what each one got is reported with the results.
 */
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifdef HAVE_ZMQ
#include <zmq.h>
#endif

#include "bench.h"
#include "shmring.h"
#include "shmring/json.h"
#include "shmring/reserve.h"

#define MSG_MAX   512      /* records are < 512 bytes: one shmring slot, one mq message */
#define BUF_BYTES (32 << 20) /* the shmring ring's data area: 65536 x 512 */

int peer_available(enum peer p)
{
#ifdef HAVE_ZMQ
	(void)p;
	return 1;
#else
	return p != PEER_ZMQ;
#endif
}

static void quiet_log(enum shmring_log_level l, const char *m, void *c)
{
	(void)l, (void)m, (void)c;
}

/* ---- channel setup (parent, before any fork) ---------------------------------------- */

int chan_setup(struct run_cfg *c, int fds[2])
{
	fds[0] = fds[1] = -1;
	switch (c->peer) {
	case PEER_PIPE: {
		if (pipe2(fds, O_CLOEXEC) < 0)
			return -errno;
		/* As large as we may: root may pass pipe-max-size, others stop at it. */
		int want = BUF_BYTES;
		while (want >= 65536 && fcntl(fds[1], F_SETPIPE_SZ, want) < 0)
			want /= 2;
		c->pipe_bytes = fcntl(fds[1], F_GETPIPE_SZ);
		if (!c->blocking && fcntl(fds[1], F_SETFL, O_WRONLY | O_NONBLOCK) < 0)
			return -errno;
		return 0;
	}
	case PEER_MQ: {
		struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
		(void)setrlimit(RLIMIT_MSGQUEUE, &rl); /* allowed to root; others keep 800 KiB */
		mq_unlink(c->chan);
		/* Deepest first: the ceiling is fs.mqueue.msg_max unless CAP_SYS_RESOURCE. */
		long cand[24], nc = 0, sysmax = 0;
		FILE *f = fopen("/proc/sys/fs/mqueue/msg_max", "r");
		if (f) {
			if (fscanf(f, "%ld", &sysmax) != 1)
				sysmax = 0;
			fclose(f);
		}
		for (long d = 65536; d >= 1; d /= 2) {
			if (sysmax > d && (nc == 0 || cand[nc - 1] > sysmax))
				cand[nc++] = sysmax;
			cand[nc++] = d;
		}
		for (long i = 0; i < nc; i++) {
			long depth = cand[i];
			struct mq_attr a = { .mq_maxmsg = depth, .mq_msgsize = MSG_MAX };
			mqd_t q = mq_open(c->chan, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &a);
			if (q != (mqd_t)-1) {
				mq_close(q);
				c->mq_depth = (uint32_t)depth;
				return 0;
			}
			if (errno != EINVAL && errno != EMFILE && errno != ENOMEM)
				return -errno;
		}
		return -EINVAL;
	}
	case PEER_DGRAM:
	case PEER_ZMQ:
		unlink(c->chan);
		return 0;
	case PEER_FILE: {
		int fd = open(c->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			return -errno;
		close(fd);
		return 0;
	}
	default:
		return 0;
	}
}

void chan_teardown(struct run_cfg *c, int fds[2])
{
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	fds[0] = fds[1] = -1;
	if (c->peer == PEER_MQ)
		mq_unlink(c->chan);
	if (c->peer == PEER_DGRAM || c->peer == PEER_ZMQ)
		unlink(c->chan);
}

static int big_buf(int fd, int opt_force, int opt)
{
	int v = BUF_BYTES;
	if (setsockopt(fd, SOL_SOCKET, opt_force, &v, sizeof(v)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v));
	socklen_t l = sizeof(v);
	getsockopt(fd, SOL_SOCKET, opt, &v, &l);
	return v;
}

/* A socket path cut short would bind or connect somewhere else: refuse it instead. */
static int sun_set(struct sockaddr_un *a, const char *path)
{
	size_t n = strlen(path);
	if (n >= sizeof(a->sun_path))
		return -ENAMETOOLONG;
	memcpy(a->sun_path, path, n + 1);
	return 0;
}

/* ---- consumers ---------------------------------------------------------------------- */

#define FAIL(res, ...)                                                              \
	do {                                                                        \
		snprintf((res)->err, sizeof((res)->err), __VA_ARGS__);              \
		(res)->failed = 1;                                                  \
		goto out;                                                           \
	} while (0)

static void wait_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (poll(&p, 1, -1) < 0 && errno == EINTR)
		;
}

void consumer_main(const struct run_cfg *c, int fds[2], struct shared *sh, int ready_fd)
{
	struct cons_result *res = &sh->cons;
	struct outbuf ob = { .fd = -1 };
	int rc, fd = -1;
	mqd_t q = (mqd_t)-1;
	uint8_t *rbuf = NULL;
	char one = 1;
#ifdef HAVE_ZMQ
	void *zctx = NULL, *zs = NULL;
#endif
	if ((rc = outbuf_init(&ob, c->out, c->batch_bytes, (uint64_t)c->P * c->warm, res)))
		FAIL(res, "open %s: %s", c->out, strerror(-rc));
	size_t rcap = c->peer == PEER_PIPE ? (size_t)c->pipe_bytes + MSG_MAX + 8 : 64 * MSG_MAX;
	if (!(rbuf = malloc(rcap)))
		FAIL(res, "out of memory");

	switch (c->peer) {
	case PEER_PIPE:
		close(fds[1]);
		fds[1] = -1;
		fd = fds[0];
		fcntl(fd, F_SETFL, O_RDONLY | O_NONBLOCK);
		break;
	case PEER_MQ:
		q = mq_open(c->chan, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		if (q == (mqd_t)-1)
			FAIL(res, "mq_open: %s", strerror(errno));
		break;
	case PEER_DGRAM: {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		if (sun_set(&a, c->chan))
			FAIL(res, "socket path too long (%zu bytes): %s", strlen(c->chan), c->chan);
		fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
			FAIL(res, "bind %s: %s", c->chan, strerror(errno));
		big_buf(fd, SO_RCVBUFFORCE, SO_RCVBUF);
		break;
	}
#ifdef HAVE_ZMQ
	case PEER_ZMQ: {
		char ep[400];
		int hwm = c->zmq_hwm;
		snprintf(ep, sizeof(ep), "ipc://%s", c->chan);
		zctx = zmq_ctx_new();
		zs = zctx ? zmq_socket(zctx, ZMQ_PULL) : NULL;
		if (!zs || zmq_setsockopt(zs, ZMQ_RCVHWM, &hwm, sizeof(hwm)) ||
		    zmq_bind(zs, ep))
			FAIL(res, "zmq bind %s: %s", ep, zmq_strerror(zmq_errno()));
		break;
	}
#endif
	default:
		FAIL(res, "no consumer for %s", peer_names[c->peer]);
	}
	if (write(ready_fd, &one, 1) != 1)
		FAIL(res, "ready pipe: %s", strerror(errno));
	close(ready_fd);

	/* Receive what is there; when nothing is, write the batch, then block. */
	for (;;) {
		ssize_t n;
		switch (c->peer) {
		case PEER_PIPE: {
			static size_t have; /* bytes of an incomplete frame kept at rbuf */
			n = read(fd, rbuf + have, rcap - have);
			if (n > 0) {
				size_t len = have + (size_t)n, off = 0;
				while (len - off >= 4) {
					uint32_t fl;
					memcpy(&fl, rbuf + off, 4);
					if (fl > MSG_MAX)
						FAIL(res, "bad frame length %u", fl);
					if (len - off < 4 + (size_t)fl)
						break;
					if ((rc = outbuf_add(&ob, rbuf + off + 4, fl)))
						FAIL(res, "write: %s", strerror(-rc));
					off += 4 + fl;
				}
				memmove(rbuf, rbuf + off, len - off);
				have = len - off;
				continue;
			}
			if (n == 0)
				goto done; /* every producer closed its end */
			if (errno != EAGAIN && errno != EINTR)
				FAIL(res, "read: %s", strerror(errno));
			break;
		}
		case PEER_MQ:
			n = mq_receive(q, (char *)rbuf, MSG_MAX, NULL);
			if (n > 0) {
				if ((rc = outbuf_add(&ob, rbuf, (size_t)n)))
					FAIL(res, "write: %s", strerror(-rc));
				continue;
			}
			if (n == 0) {
				if (++res->ends == (uint64_t)c->P)
					goto done;
				continue;
			}
			if (errno != EAGAIN && errno != EINTR)
				FAIL(res, "mq_receive: %s", strerror(errno));
			break;
		case PEER_DGRAM: {
			/* recvmmsg: up to 64 datagrams per system call, the best a receiver can do. */
			struct mmsghdr mm[64];
			struct iovec iov[64];
			for (int i = 0; i < 64; i++) {
				iov[i].iov_base = rbuf + (size_t)i * MSG_MAX;
				iov[i].iov_len = MSG_MAX;
				memset(&mm[i].msg_hdr, 0, sizeof(mm[i].msg_hdr));
				mm[i].msg_hdr.msg_iov = &iov[i];
				mm[i].msg_hdr.msg_iovlen = 1;
			}
			int k = recvmmsg(fd, mm, 64, MSG_DONTWAIT, NULL);
			if (k > 0) {
				for (int i = 0; i < k; i++) {
					if (mm[i].msg_len == 0) {
						res->ends++;
						continue;
					}
					if ((rc = outbuf_add(&ob, iov[i].iov_base, mm[i].msg_len)))
						FAIL(res, "write: %s", strerror(-rc));
				}
				if (res->ends == (uint64_t)c->P)
					goto done;
				continue;
			}
			if (errno != EAGAIN && errno != EINTR)
				FAIL(res, "recvmmsg: %s", strerror(errno));
			break;
		}
#ifdef HAVE_ZMQ
		case PEER_ZMQ:
			n = zmq_recv(zs, rbuf, MSG_MAX, ZMQ_DONTWAIT);
			if (n > 0) {
				if ((rc = outbuf_add(&ob, rbuf, (size_t)n)))
					FAIL(res, "write: %s", strerror(-rc));
				continue;
			}
			if (n == 0) {
				if (++res->ends == (uint64_t)c->P)
					goto done;
				continue;
			}
			if (zmq_errno() != EAGAIN && zmq_errno() != EINTR)
				FAIL(res, "zmq_recv: %s", zmq_strerror(zmq_errno()));
			break;
#endif
		default:
			break;
		}
		/* Momentarily empty: write what we have, then sleep until there is more. */
		if ((rc = outbuf_commit(&ob)))
			FAIL(res, "write: %s", strerror(-rc));
		if (c->peer == PEER_MQ)
			wait_readable((int)q);
#ifdef HAVE_ZMQ
		else if (c->peer == PEER_ZMQ) {
			zmq_pollitem_t it = { .socket = zs, .events = ZMQ_POLLIN };
			zmq_poll(&it, 1, -1);
		}
#endif
		else
			wait_readable(fd);
	}
done:
	if ((rc = outbuf_commit(&ob)))
		FAIL(res, "write: %s", strerror(-rc));
	res->t_end = bench_now_ns();
	self_cpu(&res->cpu_end_ns, &res->csw_end);
	res->runq_end_ns = runq_wait_ns("/proc/thread-self/schedstat");
	res->lines = ob.lines;
	res->invalid = ob.invalid;
	res->writes = ob.writes;
out:
	outbuf_close(&ob);
	free(rbuf);
	if (q != (mqd_t)-1)
		mq_close(q);
	if (fd >= 0)
		close(fd);
#ifdef HAVE_ZMQ
	if (zs)
		zmq_close(zs);
	if (zctx)
		zmq_ctx_term(zctx);
#endif
}

/* ---- producers ---------------------------------------------------------------------- */

struct px {
	const struct run_cfg *c;
	bool block;
	shmring *r;
	int fd;
	mqd_t q;
	void *zctx, *zs;
	uint8_t frame[MSG_MAX + 8];
	char line[4096];
};

/* One record through the peer. 0 sent, -EAGAIN dropped (non-blocking), <0 error. */
static inline int send_shmring(struct px *x, const uint8_t *mp, size_t len)
{
	return x->block ? shmring_send_wait(x->r, mp, len, 1000) : shmring_send(x->r, mp, len);
}

static inline int send_pipe(struct px *x, const uint8_t *mp, size_t len)
{
	/* One write of at most PIPE_BUF bytes: atomic, so frames of producers never mix. */
	uint32_t l = (uint32_t)len;
	memcpy(x->frame, &l, 4);
	memcpy(x->frame + 4, mp, len);
	ssize_t k = write(x->fd, x->frame, len + 4);
	if (k == (ssize_t)(len + 4))
		return 0;
	return k < 0 ? -errno : -EIO;
}

static inline int send_mq(struct px *x, const uint8_t *mp, size_t len)
{
	return mq_send(x->q, (const char *)mp, len, 0) == 0 ? 0 : -errno;
}

static inline int send_dgram(struct px *x, const uint8_t *mp, size_t len)
{
	ssize_t k = send(x->fd, mp, len, x->block ? 0 : MSG_DONTWAIT);
	return k == (ssize_t)len ? 0 : k < 0 ? -errno : -EIO;
}

static inline int send_file(struct px *x, const uint8_t *mp, size_t len)
{
	/* The producer converts and appends its own line: one write(2) per record. */
	ssize_t k = shmring_msgpack_to_json(mp, len, x->line, sizeof(x->line) - 1, NULL);
	if (k < 0)
		return (int)k;
	x->line[k++] = '\n';
	ssize_t w = write(x->fd, x->line, (size_t)k);
	return w == k ? 0 : w < 0 ? -errno : -EIO;
}

static inline int send_zmq(struct px *x, const uint8_t *mp, size_t len)
{
#ifdef HAVE_ZMQ
	int k = zmq_send(x->zs, mp, len, x->block ? 0 : ZMQ_DONTWAIT);
	return k == (int)len ? 0 : -zmq_errno();
#else
	(void)x, (void)mp, (void)len;
	return -ENOSYS;
#endif
}

typedef int (*send_fn)(struct px *, const uint8_t *, size_t);

/* Warm-up and end markers: delivered, whatever the mode (retry on a full channel). */
static int send_sure(struct px *x, send_fn f, const uint8_t *mp, size_t len)
{
	for (;;) {
		int rc = f(x, mp, len);
		if (rc != -EAGAIN && rc != -EINTR)
			return rc;
		struct timespec d = { 0, 50000 };
		nanosleep(&d, NULL);
	}
}

/* A send's outcome: a full channel is a drop, anything else an error (the first kept). */
static inline __attribute__((always_inline)) void tally(int rc, uint64_t *dropped, uint64_t *errors,
							int *first_err)
{
	if (__builtin_expect(rc != 0, 0)) {
		if (rc == -EAGAIN)
			(*dropped)++;
		else if (!(*errors)++)
			*first_err = rc;
	}
}

/* The measured loop, specialised per peer (always_inline: the send is a direct call). One
 * call in 64 is timed into the histogram. */
static inline __attribute__((always_inline)) void
measure(struct px *x, send_fn f, const struct pool *pl, struct prod_result *res, uint64_t M,
	enum mode mode, uint64_t pace_ticks)
{
	uint64_t next = tick_start();
	uint64_t sent = 0, dropped = 0, errors = 0;
	int first_err = 0;
	uint8_t buf[2048];
	struct fixbuf fb = { buf, 0, sizeof(buf) };
	res->t_first = bench_now_ns();
	if (mode == MODE_TRANSPORT) {
		for (uint64_t i = 0; i < M; i++) {
			unsigned k = (unsigned)(i % POOL_SIZE);
			int rc;
			if (pace_ticks) { /* paced: one send per interval, the rest spent spinning */
				next += pace_ticks;
				while (__rdtsc() < next)
					_mm_pause();
			}
			if (pace_ticks || (i & 63) == 0) {
				uint64_t t0 = tick_start();
				rc = f(x, pl->mp[k], pl->mp_len[k]);
				uint64_t t1 = tick_end();
				hist_add(&res->lat, t1 - t0);
				if (rc == 0)
					hist_add(&res->lat_ok, t1 - t0);
			} else {
				rc = f(x, pl->mp[k], pl->mp_len[k]);
			}
			sent++;
			tally(rc, &dropped, &errors, &first_err);
		}
	} else if (x->r && !x->block) {
		/* shmring, non-blocking: the typed send encodes straight into the ring (what
		 * shmring_audit_send does), so there is no separate build + encode to time. */
		for (uint64_t i = 0; i < M; i++) {
			struct shmring_compacted_page_record rec;
			int rc;
			if ((i & 63) == 0) {
				uint64_t t0 = tick_start();
				build_record(pl, i, &rec);
				rc = shmring_audit_send_to(x->r, &rec);
				uint64_t t2 = tick_end();
				hist_add(&res->lat, t2 - t0);
				if (rc == 0)
					hist_add(&res->lat_ok, t2 - t0);
			} else {
				build_record(pl, i, &rec);
				rc = shmring_audit_send_to(x->r, &rec);
			}
			sent++;
			tally(rc, &dropped, &errors, &first_err);
		}
	} else {
		/* Peers, and shmring's blocking send (the typed API has no waiting variant):
		 * pack into a buffer, then send it. */
		for (uint64_t i = 0; i < M; i++) {
			int rc;
			if ((i & 63) == 0) {
				uint64_t t0 = tick_start();
				rc = build_and_pack(pl, i, &fb);
				uint64_t t1 = tick_start();
				if (rc == 0)
					rc = f(x, buf, fb.used);
				uint64_t t2 = tick_end();
				hist_add(&res->lat, t2 - t0);
				hist_add(&res->lat_enc, t1 - t0);
				if (rc == 0)
					hist_add(&res->lat_ok, t2 - t0);
			} else {
				rc = build_and_pack(pl, i, &fb);
				if (rc == 0)
					rc = f(x, buf, fb.used);
			}
			sent++;
			tally(rc, &dropped, &errors, &first_err);
		}
	}
	res->t_last = bench_now_ns();
	res->sent = sent;
	res->dropped = dropped;
	res->errors = errors;
	if (errors)
		snprintf(res->err, sizeof(res->err), "%llu send errors, first: %s",
			 (unsigned long long)errors, strerror(-first_err));
}

static send_fn peer_send(enum peer p)
{
	switch (p) {
	case PEER_SHMRING: return send_shmring;
	case PEER_PIPE: return send_pipe;
	case PEER_MQ: return send_mq;
	case PEER_DGRAM: return send_dgram;
	case PEER_FILE: return send_file;
	default: return send_zmq;
	}
}

void producer_main(const struct run_cfg *c, int fds[2], struct shared *sh, int who, int ready_fd,
		   int start_fd)
{
	struct prod_result *res = &sh->prod[who];
	static struct pool pl;
	static struct px x;
	char one = 1;
	int rc;
	uint64_t cpu0 = 0, csw0 = 0, cpu1, csw1, rq0 = 0;
	x.c = c;
	x.block = c->blocking;
	x.fd = -1;
	x.q = (mqd_t)-1;
	if ((rc = pool_build(&pl, who)) ||
	    (c->rec_bytes == REC_FLOATS && (rc = pool_floats(&pl))) ||
	    (c->rec_bytes > REC_FLOATS && (rc = pool_fixed_size(&pl, c->rec_bytes))))
		FAIL(res, "pool: %s", strerror(-rc));
	switch (c->peer) {
	case PEER_SHMRING:
		shmring_set_log(quiet_log, NULL); /* drops are counted here, not logged */
		if ((rc = shmring_attach(c->chan, &x.r)))
			FAIL(res, "shmring_attach %s: %s", c->chan, strerror(-rc));
		break;
	case PEER_PIPE:
		close(fds[0]);
		fds[0] = -1;
		x.fd = fds[1];
		break;
	case PEER_MQ:
		x.q = mq_open(c->chan, O_WRONLY | O_CLOEXEC | (c->blocking ? 0 : O_NONBLOCK));
		if (x.q == (mqd_t)-1)
			FAIL(res, "mq_open %s: %s", c->chan, strerror(errno));
		break;
	case PEER_DGRAM: {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		if (sun_set(&a, c->chan))
			FAIL(res, "socket path too long (%zu bytes): %s", strlen(c->chan), c->chan);
		x.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (x.fd < 0 || connect(x.fd, (struct sockaddr *)&a, sizeof(a)) < 0)
			FAIL(res, "connect %s: %s", c->chan, strerror(errno));
		big_buf(x.fd, SO_SNDBUFFORCE, SO_SNDBUF);
		break;
	}
	case PEER_FILE:
		/* O_NONBLOCK means nothing to a regular file: both modes block the same way. */
		x.fd = open(c->out, O_WRONLY | O_APPEND | O_CLOEXEC);
		if (x.fd < 0)
			FAIL(res, "open %s: %s", c->out, strerror(errno));
		break;
	case PEER_ZMQ: {
#ifdef HAVE_ZMQ
		char ep[400];
		int hwm = c->zmq_hwm;
		snprintf(ep, sizeof(ep), "ipc://%s", c->chan);
		x.zctx = zmq_ctx_new();
		x.zs = x.zctx ? zmq_socket(x.zctx, ZMQ_PUSH) : NULL;
		if (!x.zs || zmq_setsockopt(x.zs, ZMQ_SNDHWM, &hwm, sizeof(hwm)) || zmq_connect(x.zs, ep))
			FAIL(res, "zmq connect %s: %s", ep, zmq_strerror(zmq_errno()));
#endif
		break;
	}
	default:
		break;
	}
	send_fn f = peer_send(c->peer);

	/* Warm-up: every page of the channel and of the output path touched once, delivered
	 * whatever the mode, before the clock starts. */
	bool blk = x.block;
	x.block = true;
	for (uint64_t i = 0; i < c->warm; i++) {
		unsigned k = (unsigned)(i % POOL_SIZE);
		if ((rc = send_sure(&x, f, pl.mp[k], pl.mp_len[k])))
			FAIL(res, "warm-up send: %s", strerror(-rc));
	}
	x.block = blk;
	if (write(ready_fd, &one, 1) != 1)
		FAIL(res, "ready pipe: %s", strerror(errno));
	close(ready_fd);
	self_cpu(&cpu0, &csw0);
	rq0 = runq_wait_ns("/proc/thread-self/schedstat");
	while (read(start_fd, &one, 1) < 0 && errno == EINTR)
		; /* the start barrier: returns 0 when the parent closes its end */
	close(start_fd);

	uint64_t pt = (uint64_t)((double)c->pace_ns / bench_ns_per_tick);
	switch (c->peer) {
	case PEER_SHMRING: measure(&x, send_shmring, &pl, res, c->M, c->mode, pt); break;
	case PEER_PIPE: measure(&x, send_pipe, &pl, res, c->M, c->mode, pt); break;
	case PEER_MQ: measure(&x, send_mq, &pl, res, c->M, c->mode, pt); break;
	case PEER_DGRAM: measure(&x, send_dgram, &pl, res, c->M, c->mode, pt); break;
	case PEER_FILE: measure(&x, send_file, &pl, res, c->M, c->mode, pt); break;
	default: measure(&x, send_zmq, &pl, res, c->M, c->mode, pt); break;
	}

	/* End marker: an empty message, delivered whatever the mode (a pipe ends by EOF). */
	x.block = true;
	if (c->peer == PEER_MQ && !c->blocking) {
		struct mq_attr a = { .mq_flags = 0 };
		mq_setattr(x.q, &a, NULL);
	}
	if (c->peer == PEER_MQ || c->peer == PEER_DGRAM || c->peer == PEER_ZMQ) {
		if ((rc = send_sure(&x, f, (const uint8_t *)"", 0)))
			FAIL(res, "end marker: %s", strerror(-rc));
	}
out:
	if (x.r)
		shmring_close(x.r);
	if (x.fd >= 0)
		close(x.fd);
	if (x.q != (mqd_t)-1)
		mq_close(x.q);
#ifdef HAVE_ZMQ
	if (x.zs)
		zmq_close(x.zs);
	if (x.zctx)
		zmq_ctx_term(x.zctx); /* waits until every message reached the consumer */
#endif
	self_cpu(&cpu1, &csw1);
	res->runq_ns = rq0 ? runq_wait_ns("/proc/thread-self/schedstat") - rq0 : 0;
	res->cpu_ns = cpu1 - cpu0;
	res->csw = csw1 - csw0;
	pool_free(&pl);
}
