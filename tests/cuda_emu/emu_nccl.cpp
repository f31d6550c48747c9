/* emu_nccl.cpp — NCCL between the processes of one machine, for the CUDA
 * emulation: the collectives and point-to-point calls that src/comm/
 * comm_nccl.c makes, over POSIX shared memory.
 *
 * Emulated device memory is host memory in each process, so moving it
 * between ranks needs a channel NCCL would not: a communicator is a shared
 * mapping named after its unique id (every rank of the comm opens the same
 * name; the last to join unlinks it, so nothing stays in /dev/shm), holding
 * a barrier, one staging slot per rank and one mailbox per ordered pair of
 * ranks. Like everything in the emulator it runs synchronously at the call
 * (the stream argument is only checked): a collective returns when its
 * result is in place.
 *
 * What it checks, where real NCCL would fault or hang silently: buffers
 * must be emulated device memory of the right size (emu_runtime.cpp's
 * registry), every rank of a collective must pass the same operation,
 * count, type and root (checked at each call: a mismatch aborts with both
 * descriptions), and a wait longer than TAU2_CUDA_EMU_NCCL_TIMEOUT seconds
 * (default 300) aborts naming the call instead of hanging the test.
 *
 * Results are deterministic: each element of a reduction is summed in rank
 * order, so every rank gets the same bits.
 *
 * Collectives inside ncclGroupStart/End run at once, in call order (every
 * rank issues them in the same order, so that cannot deadlock); sends and
 * receives are queued and progressed together at ncclGroupEnd, as NCCL does,
 * so a rank may post several of each in one group. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <vector>

#include <cuda_runtime_api.h>
#include <nccl.h>

/* Bytes each rank stages per step of a collective, and per mailbox. */
static const size_t SLOT_BYTES = (size_t)1 << 20;
static const size_t DESC_BYTES = 128;

/* Shared header of one communicator. */
struct Shared {
    std::atomic<uint32_t> joined;  /* ranks that mapped it (the last unlinks) */
    std::atomic<uint32_t> arrived; /* the barrier's count this generation */
    std::atomic<uint32_t> generation;
};

/* One ordered pair's mailbox: full holds the bytes in data, 0 when empty. */
struct Mailbox {
    std::atomic<uint64_t> full;
    char pad[56];
};

struct ncclComm {
    int nranks, rank;
    char name[64];
    void *map;
    size_t map_bytes;
    Shared *sh;
    char *desc;   /* (nranks, DESC_BYTES): each rank's description of the current collective */
    char *slots;  /* (nranks, SLOT_BYTES) */
    Mailbox *box; /* (nranks * nranks): box[src * nranks + dst] */
    char *box_data; /* (nranks * nranks, SLOT_BYTES) */
};

static_assert(sizeof(std::atomic<uint32_t>) == 4 && sizeof(std::atomic<uint64_t>) == 8,
              "shared-memory atomics must be plain words");

static ncclResult_t emu_fail(ncclResult_t rc, const char *fmt, const char *what) {
    fprintf(stderr, "cuda-emu: NCCL: %s: %s\n", what, fmt);
    return rc;
}

/* Exits the process: the other ranks wait on this one and would hang. */
[[noreturn]] __attribute__((format(printf, 1, 2))) static void emu_fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cuda-emu: NCCL: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    fflush(stderr);
    abort();
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double timeout_s(void) {
    static double t = -1;
    if (t < 0) {
        const char *e = getenv("TAU2_CUDA_EMU_NCCL_TIMEOUT");
        t = e && atof(e) > 0 ? atof(e) : 300.0;
    }
    return t;
}

/* One pass of a wait loop: yield the core (ranks may outnumber cores), and
 * abort once the wait has lasted past the timeout. */
static void wait_pass(double t0, long *spins, const char *what) {
    if (++*spins < 64) {
        sched_yield();
        return;
    }
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
    if ((*spins & 1023) == 0 && now_s() - t0 > timeout_s())
        emu_fatal("%s: no progress for TAU2_CUDA_EMU_NCCL_TIMEOUT seconds (a rank exited, or is waiting in "
                  "another call)",
                  what);
}

/* All ranks of the comm meet (sense by generation). */
static void comm_barrier(ncclComm *c, const char *what) {
    Shared *s = c->sh;
    uint32_t gen = s->generation.load();
    if (s->arrived.fetch_add(1) + 1 == (uint32_t)c->nranks) {
        s->arrived.store(0);
        s->generation.fetch_add(1);
        return;
    }
    double t0 = now_s();
    long spins = 0;
    while (s->generation.load() == gen) wait_pass(t0, &spins, what);
}

static size_t type_bytes(ncclDataType_t t) {
    switch (t) {
    case ncclInt8: case ncclUint8: case ncclFloat8e4m3: case ncclFloat8e5m2: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 0;
    }
}

/* Whether [p, p + bytes) lies in one emulated device allocation. */
static bool device_range(const void *p, size_t bytes) {
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess || a.type != cudaMemoryTypeDevice) return false;
    if (bytes == 0) return true;
    return cudaPointerGetAttributes(&a, (const char *)p + bytes - 1) == cudaSuccess &&
           a.type == cudaMemoryTypeDevice;
}

static ncclResult_t check_buffer(const void *p, size_t bytes, const char *what) {
    if (bytes && !device_range(p, bytes))
        return emu_fail(ncclInvalidArgument, "buffer is not emulated device memory of that size", what);
    return ncclSuccess;
}

/* Every rank describes the collective it is in; all must agree. */
static void check_same_call(ncclComm *c, const char *what) {
    char mine[DESC_BYTES];
    snprintf(mine, sizeof mine, "%s", what);
    memcpy(c->desc + (size_t)c->rank * DESC_BYTES, mine, DESC_BYTES);
    comm_barrier(c, mine);
    for (int r = 0; r < c->nranks; r++) {
        const char *theirs = c->desc + (size_t)r * DESC_BYTES;
        if (strncmp(theirs, mine, DESC_BYTES) != 0) emu_fatal("ranks disagree on the collective: %s vs %s", mine, theirs);
    }
    comm_barrier(c, mine); /* nobody rewrites desc before all compared */
}

/* ------------------------------------------------------------ reductions */

template <typename T> static T apply(ncclRedOp_t op, T a, T b) {
    switch (op) {
    case ncclSum: case ncclAvg: return a + b;
    case ncclProd: return a * b;
    case ncclMax: return a > b ? a : b;
    case ncclMin: return a < b ? a : b;
    default: return a;
    }
}

/* out[i] = op over ranks (in rank order) of slot r's element i. */
template <typename T> static void reduce_slots(ncclComm *c, void *out, size_t n, ncclRedOp_t op) {
    T *o = (T *)out;
    for (size_t i = 0; i < n; i++) {
        T acc = ((const T *)c->slots)[i];
        for (int r = 1; r < c->nranks; r++) acc = apply(op, acc, ((const T *)(c->slots + (size_t)r * SLOT_BYTES))[i]);
        if (op == ncclAvg) acc = (T)(acc / (T)c->nranks);
        o[i] = acc;
    }
}

static bool reduce_typed(ncclComm *c, void *out, size_t n, ncclDataType_t t, ncclRedOp_t op) {
    switch (t) {
    case ncclFloat32: reduce_slots<float>(c, out, n, op); return true;
    case ncclFloat64: reduce_slots<double>(c, out, n, op); return true;
    case ncclInt32: reduce_slots<int32_t>(c, out, n, op); return true;
    case ncclUint32: reduce_slots<uint32_t>(c, out, n, op); return true;
    case ncclInt64: reduce_slots<int64_t>(c, out, n, op); return true;
    case ncclUint64: reduce_slots<uint64_t>(c, out, n, op); return true;
    case ncclInt8: reduce_slots<int8_t>(c, out, n, op); return true;
    case ncclUint8: reduce_slots<uint8_t>(c, out, n, op); return true;
    default: return false; /* half types: the project never reduces them */
    }
}

/* ------------------------------------------------------------ groups */

struct P2p {
    bool send;
    char *buf;
    size_t bytes, done;
    int peer;
    ncclComm *comm;
};
static int g_group_depth;
static std::vector<P2p> g_pending;

/* Moves what it can of one queued send or receive; true when it is done. */
static bool p2p_progress(P2p *op) {
    ncclComm *c = op->comm;
    int src = op->send ? c->rank : op->peer, dst = op->send ? op->peer : c->rank;
    size_t k = (size_t)src * c->nranks + dst;
    Mailbox *b = &c->box[k];
    char *data = c->box_data + k * SLOT_BYTES;
    while (op->done < op->bytes) {
        uint64_t full = b->full.load();
        if (op->send) {
            if (full) return false; /* the receiver has not taken the last piece */
            size_t len = op->bytes - op->done < SLOT_BYTES ? op->bytes - op->done : SLOT_BYTES;
            memcpy(data, op->buf + op->done, len);
            b->full.store(len);
            op->done += len;
        } else {
            if (!full) return false;
            memcpy(op->buf + op->done, data, full);
            op->done += full;
            b->full.store(0);
        }
    }
    return true;
}

static void run_pending(void) {
    double t0 = now_s();
    long spins = 0;
    for (;;) {
        bool all = true;
        for (auto &op : g_pending) all = p2p_progress(&op) && all;
        if (all) break;
        wait_pass(t0, &spins, "ncclSend/ncclRecv");
    }
    g_pending.clear();
}

static ncclResult_t queue_p2p(bool send, const void *buf, size_t n, ncclDataType_t t, int peer, ncclComm_t c,
                              const char *what) {
    if (!c || peer < 0 || peer >= c->nranks || peer == c->rank || !type_bytes(t))
        return emu_fail(ncclInvalidArgument, "bad comm, peer or type", what);
    size_t bytes = n * type_bytes(t);
    ncclResult_t rc = check_buffer(buf, bytes, what);
    if (rc != ncclSuccess) return rc;
    g_pending.push_back(P2p{send, (char *)buf, bytes, 0, peer, c});
    if (g_group_depth == 0) run_pending();
    return ncclSuccess;
}

extern "C" {

ncclResult_t ncclGroupStart(void) {
    g_group_depth++;
    return ncclSuccess;
}

ncclResult_t ncclGroupEnd(void) {
    if (g_group_depth == 0) return emu_fail(ncclInvalidUsage, "no group open", "ncclGroupEnd");
    if (--g_group_depth == 0) run_pending();
    return ncclSuccess;
}

/* ------------------------------------------------------------ communicators */

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    static unsigned counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "/tau2emu-nccl-%ld-%u-%lld%09ld", (long)getpid(), counter++,
             (long long)ts.tv_sec, ts.tv_nsec);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *out, int nranks, ncclUniqueId id, int rank) {
    if (!out || nranks < 1 || rank < 0 || rank >= nranks)
        return emu_fail(ncclInvalidArgument, "bad rank or count", "ncclCommInitRank");
    if (strncmp(id.internal, "/tau2emu-nccl-", 14) != 0)
        return emu_fail(ncclInvalidArgument, "not an id of ncclGetUniqueId", "ncclCommInitRank");
    ncclComm *c = new ncclComm();
    c->nranks = nranks;
    c->rank = rank;
    snprintf(c->name, sizeof c->name, "%.63s", id.internal);
    size_t n = (size_t)nranks;
    size_t header = 4096, desc = n * DESC_BYTES, boxes = n * n * sizeof(Mailbox);
    c->map_bytes = header + desc + boxes + n * SLOT_BYTES + n * n * SLOT_BYTES;
    int fd = shm_open(c->name, O_RDWR | O_CREAT, 0600);
    if (fd < 0) return emu_fail(ncclSystemError, strerror(errno), "ncclCommInitRank: shm_open");
    /* every rank sets the same size; a new object reads as zeros */
    if (ftruncate(fd, (off_t)c->map_bytes) != 0) {
        close(fd);
        return emu_fail(ncclSystemError, strerror(errno), "ncclCommInitRank: ftruncate");
    }
    c->map = mmap(NULL, c->map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (c->map == MAP_FAILED) return emu_fail(ncclSystemError, strerror(errno), "ncclCommInitRank: mmap");
    char *base = (char *)c->map;
    c->sh = (Shared *)base;
    c->desc = base + header;
    c->box = (Mailbox *)(base + header + desc);
    c->slots = base + header + desc + boxes;
    c->box_data = c->slots + n * SLOT_BYTES;
    /* the last rank to arrive unlinks the name: the mapping lives on */
    if (c->sh->joined.fetch_add(1) + 1 == (uint32_t)nranks) shm_unlink(c->name);
    comm_barrier(c, "ncclCommInitRank");
    *out = c;
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t c) {
    if (!c) return ncclSuccess;
    munmap(c->map, c->map_bytes);
    delete c;
    return ncclSuccess;
}

ncclResult_t ncclCommCount(const ncclComm_t c, int *count) {
    *count = c->nranks;
    return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t c, int *rank) {
    *rank = c->rank;
    return ncclSuccess;
}

/* ------------------------------------------------------------ collectives */

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t n, ncclDataType_t t, ncclRedOp_t op, ncclComm_t c,
                           cudaStream_t st) {
    (void)st;
    size_t tb = type_bytes(t), bytes = n * tb;
    if (!c || !tb) return emu_fail(ncclInvalidArgument, "bad comm or type", "ncclAllReduce");
    if (check_buffer(send, bytes, "ncclAllReduce send") || check_buffer(recv, bytes, "ncclAllReduce recv"))
        return ncclInvalidArgument;
    char what[DESC_BYTES];
    snprintf(what, sizeof what, "ncclAllReduce(count %zu, type %d, op %d)", n, (int)t, (int)op);
    check_same_call(c, what);
    size_t per = SLOT_BYTES / tb;
    for (size_t i0 = 0; i0 < n; i0 += per) {
        size_t len = n - i0 < per ? n - i0 : per;
        memcpy(c->slots + (size_t)c->rank * SLOT_BYTES, (const char *)send + i0 * tb, len * tb);
        comm_barrier(c, what);
        if (!reduce_typed(c, (char *)recv + i0 * tb, len, t, op))
            emu_fatal("%s: type not emulated", what);
        comm_barrier(c, what); /* slots are read before the next piece */
    }
    return ncclSuccess;
}

ncclResult_t ncclBroadcast(const void *send, void *recv, size_t n, ncclDataType_t t, int root, ncclComm_t c,
                           cudaStream_t st) {
    (void)st;
    size_t tb = type_bytes(t), bytes = n * tb;
    if (!c || !tb || root < 0 || root >= c->nranks)
        return emu_fail(ncclInvalidArgument, "bad comm, type or root", "ncclBroadcast");
    bool is_root = c->rank == root;
    if ((is_root && check_buffer(send, bytes, "ncclBroadcast send")) || check_buffer(recv, bytes, "ncclBroadcast recv"))
        return ncclInvalidArgument;
    char what[DESC_BYTES];
    snprintf(what, sizeof what, "ncclBroadcast(count %zu, type %d, root %d)", n, (int)t, root);
    check_same_call(c, what);
    for (size_t i0 = 0; i0 < bytes; i0 += SLOT_BYTES) {
        size_t len = bytes - i0 < SLOT_BYTES ? bytes - i0 : SLOT_BYTES;
        if (is_root) memcpy(c->slots + (size_t)root * SLOT_BYTES, (const char *)send + i0, len);
        comm_barrier(c, what);
        memcpy((char *)recv + i0, c->slots + (size_t)root * SLOT_BYTES, len);
        comm_barrier(c, what);
    }
    return ncclSuccess;
}

ncclResult_t ncclAllGather(const void *send, void *recv, size_t n, ncclDataType_t t, ncclComm_t c, cudaStream_t st) {
    (void)st;
    size_t tb = type_bytes(t), bytes = n * tb;
    if (!c || !tb) return emu_fail(ncclInvalidArgument, "bad comm or type", "ncclAllGather");
    if (check_buffer(send, bytes, "ncclAllGather send") ||
        check_buffer(recv, bytes * (size_t)c->nranks, "ncclAllGather recv"))
        return ncclInvalidArgument;
    char what[DESC_BYTES];
    snprintf(what, sizeof what, "ncclAllGather(count %zu, type %d)", n, (int)t);
    check_same_call(c, what);
    for (size_t i0 = 0; i0 < bytes; i0 += SLOT_BYTES) {
        size_t len = bytes - i0 < SLOT_BYTES ? bytes - i0 : SLOT_BYTES;
        memcpy(c->slots + (size_t)c->rank * SLOT_BYTES, (const char *)send + i0, len);
        comm_barrier(c, what);
        for (int r = 0; r < c->nranks; r++)
            memcpy((char *)recv + (size_t)r * bytes + i0, c->slots + (size_t)r * SLOT_BYTES, len);
        comm_barrier(c, what);
    }
    return ncclSuccess;
}

/* Piece k of the result (recv on rank k) is reduced from piece k of every
 * rank's send; one piece after another. */
ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t n, ncclDataType_t t, ncclRedOp_t op,
                               ncclComm_t c, cudaStream_t st) {
    (void)st;
    size_t tb = type_bytes(t), bytes = n * tb;
    if (!c || !tb) return emu_fail(ncclInvalidArgument, "bad comm or type", "ncclReduceScatter");
    if (check_buffer(send, bytes * (size_t)c->nranks, "ncclReduceScatter send") ||
        check_buffer(recv, bytes, "ncclReduceScatter recv"))
        return ncclInvalidArgument;
    char what[DESC_BYTES];
    snprintf(what, sizeof what, "ncclReduceScatter(count %zu, type %d, op %d)", n, (int)t, (int)op);
    check_same_call(c, what);
    /* recv may alias this rank's piece of send: reduce into a copy first */
    std::vector<char> mine(bytes);
    size_t per = SLOT_BYTES / tb;
    for (int k = 0; k < c->nranks; k++) {
        for (size_t i0 = 0; i0 < n; i0 += per) {
            size_t len = n - i0 < per ? n - i0 : per;
            memcpy(c->slots + (size_t)c->rank * SLOT_BYTES, (const char *)send + ((size_t)k * n + i0) * tb, len * tb);
            comm_barrier(c, what);
            if (k == c->rank && !reduce_typed(c, mine.data() + i0 * tb, len, t, op))
                emu_fatal("%s: type not emulated", what);
            comm_barrier(c, what);
        }
    }
    memcpy(recv, mine.data(), bytes);
    return ncclSuccess;
}

ncclResult_t ncclSend(const void *send, size_t n, ncclDataType_t t, int peer, ncclComm_t c, cudaStream_t st) {
    (void)st;
    return queue_p2p(true, send, n, t, peer, c, "ncclSend");
}

ncclResult_t ncclRecv(void *recv, size_t n, ncclDataType_t t, int peer, ncclComm_t c, cudaStream_t st) {
    (void)st;
    return queue_p2p(false, recv, n, t, peer, c, "ncclRecv");
}

const char *ncclGetErrorString(ncclResult_t r) {
    switch (r) {
    case ncclSuccess: return "no error (emulated NCCL)";
    case ncclInvalidArgument: return "invalid argument (emulated NCCL; see the cuda-emu message above)";
    case ncclInvalidUsage: return "invalid usage (emulated NCCL)";
    case ncclSystemError: return "system error (emulated NCCL: shared memory)";
    default: return "error (emulated NCCL)";
    }
}

} /* extern "C" */
