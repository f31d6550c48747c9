/* comm_mpi.c — the MPI backend of the collectives interface (comm.h).
 *
 * Each Comm owns a duplicated MPI communicator, so its collectives never
 * match messages of other code on the same ranks. Errors of MPI calls abort
 * (MPI_ERRORS_ARE_FATAL, the default): a failed collective is not a state a
 * rank can recover from alone.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include "comm/comm.h"
#include "core/error.h"

/* Largest count passed to one MPI call (MPI counts are int). */
#define MPI_PIECE ((size_t)INT_MAX)

static MPI_Comm mpi_of(const Comm *c) { return *(const MPI_Comm *)c->impl; }

static MPI_Datatype mpi_dtype(CommDtype dt) {
    switch (dt) {
    case COMM_F32: return MPI_FLOAT;
    case COMM_F64: return MPI_DOUBLE;
    case COMM_I32: return MPI_INT32_T;
    case COMM_I64: return MPI_INT64_T;
    }
    die_runtime("comm_mpi: unknown dtype %d", (int)dt);
}

static size_t dtype_bytes(CommDtype dt) { return dt == COMM_F64 || dt == COMM_I64 ? 8 : 4; }

static MPI_Op mpi_op(CommOp op) {
    switch (op) {
    case COMM_SUM: return MPI_SUM;
    case COMM_MAX: return MPI_MAX;
    case COMM_MIN: return MPI_MIN;
    }
    die_runtime("comm_mpi: unknown op %d", (int)op);
}

static int int_count(size_t n, const char *what) {
    if (n > MPI_PIECE) die_runtime("%s: %zu elements per rank exceed MPI's int count", what, n);
    return (int)n;
}

/* Every collective starts with the ranks' arrival (a nonblocking barrier)
 * waited for by mpi_wait_idle, then runs as MPI's blocking call. A blocking
 * MPI call polls for as long as it waits (Open MPI spins, and only yields
 * when the node is oversubscribed), so a rank that waits seconds for the
 * others (the trainers for one long SFT conversation, the rollout engines
 * for the slowest group) burns a core all that time, a core the working
 * ranks of a colocated or oversubscribed job need. Waiting for the barrier
 * alone and not for the collective itself keeps the collective at MPI's
 * own speed: a nonblocking collective advances only when it is polled,
 * and polling it between naps slowed the gradients' allreduce. */
static void mpi_wait_idle(MPI_Request *req) {
    /* poll at full speed for 2 ms (ranks in step meet within microseconds) */
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int done = 0;
    for (;;) {
        MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (done) return;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - t0.tv_sec) * 1000000000L + (now.tv_nsec - t0.tv_nsec) > 2000000L) break;
    }
    /* then nap between polls, 20 us doubling to 1 ms: a long wait ends at
     * most a millisecond late and costs about a thousand polls a second */
    long nap_ns = 20000;
    for (;;) {
        nanosleep(&(struct timespec){0, nap_ns}, NULL);
        MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (done) return;
        nap_ns = nap_ns * 2 > 1000000L ? 1000000L : nap_ns * 2;
    }
}

static void mpi_arrive(Comm *c) {
    MPI_Request req;
    MPI_Ibarrier(mpi_of(c), &req);
    mpi_wait_idle(&req);
}

/* Elementwise, so pieces of INT_MAX elements reduce independently. */
static void mpi_allreduce(Comm *c, void *buf, size_t n, CommDtype dt, CommOp op) {
    mpi_arrive(c);
    char *p = buf;
    size_t es = dtype_bytes(dt);
    for (size_t off = 0; off < n; off += MPI_PIECE) {
        size_t k = n - off < MPI_PIECE ? n - off : MPI_PIECE;
        MPI_Allreduce(MPI_IN_PLACE, p + off * es, (int)k, mpi_dtype(dt), mpi_op(op), mpi_of(c));
    }
}

static void mpi_allgather(Comm *c, const void *send, void *recv, size_t n, CommDtype dt) {
    mpi_arrive(c);
    int k = int_count(n, "comm_allgather");
    MPI_Allgather(send, k, mpi_dtype(dt), recv, k, mpi_dtype(dt), mpi_of(c));
}

static void mpi_reduce_scatter(Comm *c, const void *send, void *recv, size_t n, CommDtype dt, CommOp op) {
    mpi_arrive(c);
    int k = int_count(n, "comm_reduce_scatter");
    MPI_Reduce_scatter_block(send, recv, k, mpi_dtype(dt), mpi_op(op), mpi_of(c));
}

static void mpi_gather(Comm *c, const void *send, void *recv, size_t n, CommDtype dt, int root) {
    mpi_arrive(c);
    int k = int_count(n, "comm_gather");
    MPI_Gather(send, k, mpi_dtype(dt), recv, k, mpi_dtype(dt), root, mpi_of(c));
}

static void mpi_broadcast(Comm *c, void *buf, size_t bytes, int root) {
    mpi_arrive(c);
    char *p = buf;
    for (size_t off = 0; off < bytes; off += MPI_PIECE) {
        size_t k = bytes - off < MPI_PIECE ? bytes - off : MPI_PIECE;
        MPI_Bcast(p + off, (int)k, MPI_BYTE, root, mpi_of(c));
    }
}

static void mpi_barrier(Comm *c) { mpi_arrive(c); }

static Comm *mpi_wrap(MPI_Comm owned);

static Comm *mpi_split(Comm *c, int color, int key) {
    MPI_Comm sub;
    MPI_Comm_split(mpi_of(c), color, key, &sub);
    return mpi_wrap(sub);
}

static void mpi_destroy(Comm *c) {
    MPI_Comm *mc = c->impl;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(mc);
    free(mc);
}

static const CommOps k_mpi_ops = {
    "mpi", mpi_allreduce, mpi_allgather, mpi_reduce_scatter, mpi_gather,
    mpi_broadcast, mpi_barrier, mpi_split, mpi_destroy,
};

/* A Comm owning `owned` (freed by comm_free). */
static Comm *mpi_wrap(MPI_Comm owned) {
    Comm *c = xcalloc(1, sizeof *c);
    MPI_Comm *mc = xmalloc(sizeof *mc);
    *mc = owned;
    MPI_Comm_rank(owned, &c->rank);
    MPI_Comm_size(owned, &c->size);
    c->backend = COMM_MPI;
    c->ops = &k_mpi_ops;
    c->impl = mc;
    return c;
}

static void require_init(const char *what) {
    int init = 0, finalized = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&finalized);
    if (!init || finalized) die_runtime("%s: MPI is not initialized (call MPI_Init first)", what);
}

Comm *comm_mpi_world(void) {
    require_init("comm_mpi_world");
    MPI_Comm dup;
    MPI_Comm_dup(MPI_COMM_WORLD, &dup);
    return mpi_wrap(dup);
}

Comm *comm_mpi_from_fortran(int fcomm) {
    require_init("comm_mpi_from_fortran");
    MPI_Comm dup;
    MPI_Comm_dup(MPI_Comm_f2c((MPI_Fint)fcomm), &dup);
    return mpi_wrap(dup);
}

void comm_abort(Comm *c, int code) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (c && c->backend == COMM_MPI && c->size > 1 && init && !fin) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}
