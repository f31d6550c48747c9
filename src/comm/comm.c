/* comm.c — the backend-neutral front of the collectives interface (comm.h),
 * the rank layout, and the one-rank SELF backend. */
#include "comm/comm.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"

static size_t dtype_size(CommDtype dt) {
    switch (dt) {
    case COMM_F32: return 4;
    case COMM_I32: return 4;
    case COMM_F64: return 8;
    case COMM_I64: return 8;
    }
    die_runtime("comm: unknown dtype %d", (int)dt);
}

/* ------------------------------------------------------------ SELF backend */

/* One rank: the reduction of one value is the value, a gather is a copy. */
static void self_allreduce(Comm *c, void *buf, size_t n, CommDtype dt, CommOp op) {
    (void)c, (void)buf, (void)n, (void)dt, (void)op;
}

static void self_copy(const void *send, void *recv, size_t n, CommDtype dt) {
    if (send != recv && n) memmove(recv, send, n * dtype_size(dt));
}

static void self_allgather(Comm *c, const void *send, void *recv, size_t n, CommDtype dt) {
    (void)c;
    self_copy(send, recv, n, dt);
}

static void self_reduce_scatter(Comm *c, const void *send, void *recv, size_t n, CommDtype dt, CommOp op) {
    (void)c, (void)op;
    self_copy(send, recv, n, dt);
}

static void self_gather(Comm *c, const void *send, void *recv, size_t n, CommDtype dt, int root) {
    (void)c, (void)root;
    self_copy(send, recv, n, dt);
}

static void self_broadcast(Comm *c, void *buf, size_t bytes, int root) {
    (void)c, (void)buf, (void)bytes, (void)root;
}

static void self_barrier(Comm *c) { (void)c; }

static Comm *self_split(Comm *c, int color, int key) {
    (void)c, (void)color, (void)key;
    return comm_self();
}

static void self_destroy(Comm *c) { (void)c; }

static const CommOps k_self_ops = {
    "self", self_allreduce, self_allgather, self_reduce_scatter, self_gather,
    self_broadcast, self_barrier, self_split, self_destroy,
};

Comm *comm_self(void) {
    Comm *c = xcalloc(1, sizeof *c);
    c->rank = 0;
    c->size = 1;
    c->backend = COMM_SELF;
    c->ops = &k_self_ops;
    return c;
}

void comm_free(Comm *c) {
    if (!c) return;
    c->ops->destroy(c);
    free(c);
}

/* ------------------------------------------------------------ front */

static void check_root(const Comm *c, int root, const char *what) {
    if (root < 0 || root >= c->size) die_runtime("%s: root %d outside a comm of %d ranks", what, root, c->size);
}

Comm *comm_split(Comm *c, int color, int key) {
    if (color < 0) die_runtime("comm_split: color must be non-negative (got %d)", color);
    return c->ops->split(c, color, key);
}

int comm_grid(Comm *world, int tp, Comm **tp_comm, Comm **dp_comm, char *err, size_t errlen) {
    *tp_comm = *dp_comm = NULL;
    if (tp < 1 || world->size % tp != 0) {
        snprintf(err, errlen, "tensor_parallel %d must be a positive divisor of the number of ranks (%d)", tp,
                 world->size);
        return -1;
    }
    int r = world->rank;
    *tp_comm = comm_split(world, r / tp, r % tp);
    *dp_comm = comm_split(world, r % tp, r / tp);
    return 0;
}

void comm_allreduce_sum_f32(Comm *c, float *buf, size_t n) {
    if (c->size > 1 && n) c->ops->allreduce(c, buf, n, COMM_F32, COMM_SUM);
}

void comm_allreduce_max_f32(Comm *c, float *buf, size_t n) {
    if (c->size > 1 && n) c->ops->allreduce(c, buf, n, COMM_F32, COMM_MAX);
}

void comm_allreduce_sum_f64(Comm *c, double *buf, size_t n) {
    if (c->size > 1 && n) c->ops->allreduce(c, buf, n, COMM_F64, COMM_SUM);
}

void comm_allgather_f32(Comm *c, const float *send, float *recv, size_t n) {
    if (n) c->ops->allgather(c, send, recv, n, COMM_F32);
}

void comm_reduce_scatter_f32(Comm *c, const float *send, float *recv, size_t n) {
    if (n) c->ops->reduce_scatter(c, send, recv, n, COMM_F32, COMM_SUM);
}

void comm_gather_f32(Comm *c, const float *send, float *recv, size_t n, int root) {
    check_root(c, root, "comm_gather_f32");
    if (n) c->ops->gather(c, send, recv, n, COMM_F32, root);
}

void comm_gatherv_bytes(Comm *c, const void *send, size_t n, int root, char **out, size_t *counts) {
    check_root(c, root, "comm_gatherv_bytes");
    *out = NULL;
    /* Sizes first; then every piece padded to the largest, as whole 32-bit
     * words (the backends' gather takes one count for all ranks). */
    int64_t mine = (int64_t)n;
    int64_t *sizes = xmalloc((size_t)c->size * sizeof *sizes);
    if (c->size > 1) c->ops->allgather(c, &mine, sizes, 1, COMM_I64);
    else sizes[0] = mine;
    int64_t max = 0;
    for (int r = 0; r < c->size; r++) max = sizes[r] > max ? sizes[r] : max;
    size_t words = (size_t)(max + 3) / 4;
    char *padded = xcalloc(words ? words : 1, 4);
    if (n) memcpy(padded, send, n);
    bool is_root = c->rank == root;
    char *all = is_root ? xmalloc((size_t)c->size * (words ? words : 1) * 4) : NULL;
    if (words) {
        if (c->size > 1) c->ops->gather(c, padded, all, words, COMM_I32, root);
        else memcpy(all, padded, words * 4);
    }
    if (is_root) {
        size_t total = 0;
        for (int r = 0; r < c->size; r++) total += (size_t)sizes[r];
        char *res = xmalloc(total ? total : 1), *p = res;
        for (int r = 0; r < c->size; r++) {
            memcpy(p, all + (size_t)r * words * 4, (size_t)sizes[r]);
            p += sizes[r];
            counts[r] = (size_t)sizes[r];
        }
        *out = res;
    }
    free(all);
    free(padded);
    free(sizes);
}

void comm_broadcast(Comm *c, void *buf, size_t bytes, int root) {
    check_root(c, root, "comm_broadcast");
    if (c->size > 1 && bytes) c->ops->broadcast(c, buf, bytes, root);
}

void comm_broadcast_buckets(Comm *c, void *buf, size_t bytes, size_t bucket_bytes, int root) {
    check_root(c, root, "comm_broadcast_buckets");
    if (bucket_bytes == 0) die_runtime("comm_broadcast_buckets: bucket size must be positive");
    for (size_t off = 0; off < bytes; off += bucket_bytes) {
        size_t n = bytes - off < bucket_bytes ? bytes - off : bucket_bytes;
        comm_broadcast(c, (char *)buf + off, n, root);
    }
}

void comm_barrier(Comm *c) {
    if (c->size > 1) c->ops->barrier(c);
}

/* A host name of fixed width, so every rank sends the same number of words. */
char *comm_node_names(Comm *c) {
    char name[COMM_NODE_NAME_BYTES] = {0};
    if (gethostname(name, sizeof name - 1) != 0) die_runtime("comm_node_names: gethostname failed");
    char *all = xmalloc((size_t)c->size * COMM_NODE_NAME_BYTES);
    c->ops->allgather(c, name, all, COMM_NODE_NAME_BYTES / 4, COMM_I32);
    return all;
}

int comm_node_rank(Comm *c) {
    if (c->size == 1) return 0;
    char *all = comm_node_names(c);
    const char *name = all + (size_t)c->rank * COMM_NODE_NAME_BYTES;
    int mine = 0; /* the lower ranks with this rank's host name */
    for (int q = 0; q < c->rank; q++)
        if (memcmp(all + (size_t)q * COMM_NODE_NAME_BYTES, name, COMM_NODE_NAME_BYTES) == 0) mine++;
    free(all);
    return mine;
}
