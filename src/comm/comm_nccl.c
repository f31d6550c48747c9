/* comm_nccl.c — the NCCL backend of the collectives interface (comm.h), for
 * the CUDA build.
 *
 * A NCCL comm is built over an MPI comm of the same ranks: rank 0 makes the
 * NCCL unique id, MPI broadcasts it, every rank joins with
 * ncclCommInitRank. The MPI comm stays with it (a private duplicate) for
 * what NCCL does not do: splits (an MPI split, then a new NCCL id for each
 * part), barriers, and collectives on host memory. Each collective looks at
 * its buffer: device (or managed) memory goes through NCCL, host memory
 * through the MPI twin, so backend-neutral helpers of comm.c that exchange
 * small host values (comm_gatherv_bytes) work on either backend. Every rank
 * of a call must pass the same kind of memory (the buffers decide; a
 * mix would leave ranks waiting in different libraries).
 *
 * Collectives run on a stream the comm owns, and every call synchronizes
 * that stream before it returns: blocking, as comm.h promises, so callers
 * may read or reuse the buffers at once. Producers on other streams must be
 * finished before the call (cudaStreamSynchronize or an event).
 *
 * Each rank must have selected its own GPU (cudaSetDevice) before creating
 * the comm: NCCL refuses two ranks of one communicator on the same device.
 * Errors of NCCL or CUDA calls print file:line and the library's message
 * and exit: a failed collective is not a state a rank can recover from alone.
 */
#ifdef TAU2_HAVE_CUDA

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "comm/comm.h"
#include "core/error.h"
#include "kernels.h"

typedef struct {
    Comm *mpi; /* owned: the same ranks over MPI */
    ncclComm_t nccl;
    cudaStream_t stream;
} NcclImpl;

static void nccl_check_at(ncclResult_t rc, const char *what, const char *file, int line) {
    if (rc == ncclSuccess) return;
    fprintf(stderr, "%s:%d: NCCL error %d (%s) in %s\n", file, line, (int)rc, ncclGetErrorString(rc), what);
    exit(1);
}
#define nccl_check(call) nccl_check_at((call), #call, __FILE__, __LINE__)

static NcclImpl *impl_of(const Comm *c) { return c->impl; }

static ncclDataType_t nccl_dtype(CommDtype dt) {
    switch (dt) {
    case COMM_F32: return ncclFloat32;
    case COMM_F64: return ncclFloat64;
    case COMM_I32: return ncclInt32;
    case COMM_I64: return ncclInt64;
    }
    die_runtime("comm_nccl: unknown dtype %d", (int)dt);
}

static size_t dtype_bytes(CommDtype dt) { return dt == COMM_F64 || dt == COMM_I64 ? 8 : 4; }

static ncclRedOp_t nccl_op(CommOp op) {
    switch (op) {
    case COMM_SUM: return ncclSum;
    case COMM_MAX: return ncclMax;
    case COMM_MIN: return ncclMin;
    }
    die_runtime("comm_nccl: unknown op %d", (int)op);
}

/* Device (or managed) memory, which NCCL can read; plain host memory is not. */
static int on_device(const void *p) {
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        (void)cudaGetLastError(); /* an unknown host pointer on old drivers */
        return 0;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

/* Wait for the comm's stream: the collective's results are in place. */
static void nccl_wait(const Comm *c) { cuda_check(cudaStreamSynchronize(impl_of(c)->stream)); }

static void nccl_allreduce(Comm *c, void *buf, size_t n, CommDtype dt, CommOp op) {
    NcclImpl *im = impl_of(c);
    if (!on_device(buf)) {
        im->mpi->ops->allreduce(im->mpi, buf, n, dt, op);
        return;
    }
    nccl_check(ncclAllReduce(buf, buf, n, nccl_dtype(dt), nccl_op(op), im->nccl, im->stream));
    nccl_wait(c);
}

static void nccl_allgather(Comm *c, const void *send, void *recv, size_t n, CommDtype dt) {
    NcclImpl *im = impl_of(c);
    if (!on_device(send) || !on_device(recv)) {
        im->mpi->ops->allgather(im->mpi, send, recv, n, dt);
        return;
    }
    nccl_check(ncclAllGather(send, recv, n, nccl_dtype(dt), im->nccl, im->stream));
    nccl_wait(c);
}

static void nccl_reduce_scatter(Comm *c, const void *send, void *recv, size_t n, CommDtype dt, CommOp op) {
    NcclImpl *im = impl_of(c);
    if (!on_device(send) || !on_device(recv)) {
        im->mpi->ops->reduce_scatter(im->mpi, send, recv, n, dt, op);
        return;
    }
    nccl_check(ncclReduceScatter(send, recv, n, nccl_dtype(dt), nccl_op(op), im->nccl, im->stream));
    nccl_wait(c);
}

/* NCCL has no gather: the root receives every other rank's piece with
 * point-to-point calls in one group, and copies its own. recv is only
 * looked at on the root. */
static void nccl_gather(Comm *c, const void *send, void *recv, size_t n, CommDtype dt, int root) {
    NcclImpl *im = impl_of(c);
    int is_root = c->rank == root;
    if (!on_device(send)) {
        im->mpi->ops->gather(im->mpi, send, recv, n, dt, root);
        return;
    }
    size_t bytes = n * dtype_bytes(dt);
    nccl_check(ncclGroupStart());
    if (is_root) {
        for (int r = 0; r < c->size; r++) {
            char *dst = (char *)recv + (size_t)r * bytes;
            if (r == root) {
                cuda_check(cudaMemcpyAsync(dst, send, bytes, cudaMemcpyDeviceToDevice, im->stream));
            } else {
                nccl_check(ncclRecv(dst, n, nccl_dtype(dt), r, im->nccl, im->stream));
            }
        }
    } else {
        nccl_check(ncclSend(send, n, nccl_dtype(dt), root, im->nccl, im->stream));
    }
    nccl_check(ncclGroupEnd());
    nccl_wait(c);
}

static void nccl_broadcast(Comm *c, void *buf, size_t bytes, int root) {
    NcclImpl *im = impl_of(c);
    if (!on_device(buf)) {
        im->mpi->ops->broadcast(im->mpi, buf, bytes, root);
        return;
    }
    nccl_check(ncclBroadcast(buf, buf, bytes, ncclUint8, root, im->nccl, im->stream));
    nccl_wait(c);
}

/* Pending NCCL work of this comm first, then an MPI barrier of the same ranks. */
static void nccl_barrier(Comm *c) {
    nccl_wait(c);
    impl_of(c)->mpi->ops->barrier(impl_of(c)->mpi);
}

static Comm *nccl_split(Comm *c, int color, int key) {
    Comm *sub = comm_split(impl_of(c)->mpi, color, key);
    Comm *res = comm_nccl_from_mpi(sub);
    comm_free(sub);
    return res;
}

static void nccl_destroy(Comm *c) {
    NcclImpl *im = impl_of(c);
    nccl_wait(c);
    nccl_check(ncclCommDestroy(im->nccl));
    cuda_check(cudaStreamDestroy(im->stream));
    comm_free(im->mpi);
    free(im);
}

static const CommOps k_nccl_ops = {
    "nccl", nccl_allreduce, nccl_allgather, nccl_reduce_scatter, nccl_gather,
    nccl_broadcast, nccl_barrier, nccl_split, nccl_destroy,
};

Comm *comm_nccl_from_mpi(Comm *mpi_comm) {
    if (!mpi_comm || mpi_comm->backend != COMM_MPI)
        die_runtime("comm_nccl_from_mpi: needs an MPI comm (got %s)", mpi_comm ? mpi_comm->ops->name : "NULL");
    NcclImpl *im = xcalloc(1, sizeof *im);
    /* a private duplicate: the id broadcast and later splits never meet
     * messages of the caller's comm */
    im->mpi = comm_split(mpi_comm, 0, mpi_comm->rank);
    ncclUniqueId id;
    if (im->mpi->rank == 0) nccl_check(ncclGetUniqueId(&id));
    comm_broadcast(im->mpi, &id, sizeof id, 0);
    /* the stream first: an error in NCCL's init must not leave it dangling */
    cuda_check(cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking));
    nccl_check(ncclCommInitRank(&im->nccl, im->mpi->size, id, im->mpi->rank));
    Comm *c = xcalloc(1, sizeof *c);
    c->rank = im->mpi->rank;
    c->size = im->mpi->size;
    c->backend = COMM_NCCL;
    c->ops = &k_nccl_ops;
    c->impl = im;
    return c;
}

void *comm_nccl_stream(const Comm *c) {
    if (c->backend != COMM_NCCL) die_runtime("comm_nccl_stream: not a NCCL comm (%s)", c->ops->name);
    return impl_of(c)->stream;
}

/* The engines' collectives run several times per layer: no pointer query
 * here (NCCL itself refuses a host buffer, and nccl_check reports it). */
static void check_stream_call(const Comm *c, const char *what) {
    if (c->backend != COMM_NCCL) die_runtime("%s: not a NCCL comm (%s)", what, c->ops->name);
}

void comm_nccl_allreduce_on(Comm *c, void *buf, size_t n, CommDtype dt, CommOp op, void *stream) {
    check_stream_call(c, "comm_nccl_allreduce_on");
    nccl_check(ncclAllReduce(buf, buf, n, nccl_dtype(dt), nccl_op(op), impl_of(c)->nccl, (cudaStream_t)stream));
}

void comm_nccl_broadcast_on(Comm *c, void *buf, size_t bytes, int root, void *stream) {
    check_stream_call(c, "comm_nccl_broadcast_on");
    nccl_check(ncclBroadcast(buf, buf, bytes, ncclUint8, root, impl_of(c)->nccl, (cudaStream_t)stream));
}

void comm_nccl_broadcast_staged(Comm *c, void *buf, size_t bytes, size_t bucket_bytes, int root,
                                void (*on_bucket)(void *ctx, const void *dev, size_t off, size_t len), void *ctx) {
    if (c->backend != COMM_NCCL) die_runtime("comm_nccl_broadcast_staged: not a NCCL comm (%s)", c->ops->name);
    if (bucket_bytes == 0) die_runtime("comm_nccl_broadcast_staged: bucket_bytes must be positive");
    if (bytes == 0) return;
    NcclImpl *im = impl_of(c);
    size_t cap = bytes < bucket_bytes ? bytes : bucket_bytes;
    char *stage;
    cuda_check(cudaMalloc((void **)&stage, cap));
    bool is_root = c->rank == root;
    for (size_t off = 0; off < bytes; off += cap) {
        size_t len = bytes - off < cap ? bytes - off : cap;
        char *host = (char *)buf + off;
        if (is_root) cuda_check(cudaMemcpyAsync(stage, host, len, cudaMemcpyHostToDevice, im->stream));
        nccl_check(ncclBroadcast(stage, stage, len, ncclUint8, root, im->nccl, im->stream));
        if (!is_root) cuda_check(cudaMemcpyAsync(host, stage, len, cudaMemcpyDeviceToHost, im->stream));
        /* the bucket is in place before the next one reuses the staging */
        nccl_wait(c);
        if (!is_root && on_bucket) on_bucket(ctx, stage, off, len);
    }
    cuda_check(cudaFree(stage));
}

#endif /* TAU2_HAVE_CUDA */
