/* comm.h — the collectives interface: all-reduce, all-gather, reduce-scatter,
 * gather, broadcast, barrier and communicator splits over a group of ranks.
 *
 * A Comm is a group of ranks (rank, size) plus a backend behind a table of
 * functions, so the model's tensor-parallel code is written once and runs on
 * MPI now (CPU, `mpirun -np 2` checks the same sharded math) and on NCCL later
 * (GPU buffers) without change:
 *
 *   COMM_SELF  one rank, every collective is the identity; needs no MPI_Init,
 *              so a TP = 1 run has no MPI dependency at run time
 *   COMM_MPI   an MPI communicator (MPI must be initialized by the caller)
 *   COMM_NCCL  NCCL over GPUs (CUDA build, comm_nccl.c): buffers in device
 *              memory go through NCCL, host buffers through its MPI twin
 *
 * Every collective is blocking and must be called by all ranks of the comm in
 * the same order with the same counts (MPI's rule); buffers are host memory
 * for SELF and MPI. Counts are elements, size_t; MPI calls are split into
 * pieces of at most INT_MAX elements where the operation allows it.
 *
 * Determinism: MPI_Allreduce with MPI_SUM on floats adds in an order chosen by
 * the library's algorithm, which depends on the rank count and message size.
 * Runs with the same rank count and sizes pick the same algorithm, so results
 * repeat bit for bit run to run; they differ in the last bits from a run with
 * another rank count. Open MPI's algorithms give every rank the same bits;
 * code that must keep replicated values identical (the model's norm weights)
 * still broadcasts them from one rank rather than trusting that.
 */
#ifndef TAU2_COMM_COMM_H
#define TAU2_COMM_COMM_H

#include <stddef.h>

typedef enum { COMM_SELF, COMM_MPI, COMM_NCCL } CommBackend;
typedef enum { COMM_F32, COMM_F64, COMM_I32, COMM_I64 } CommDtype;
typedef enum { COMM_SUM, COMM_MAX, COMM_MIN } CommOp;

typedef struct Comm Comm;

/* One backend. recv buffers of allgather/gather hold size * n elements, rank
 * r's piece at r * n; reduce_scatter reads size * n and keeps piece `rank`. */
typedef struct {
    const char *name;
    void (*allreduce)(Comm *c, void *buf, size_t n, CommDtype dt, CommOp op);
    void (*allgather)(Comm *c, const void *send, void *recv, size_t n, CommDtype dt);
    void (*reduce_scatter)(Comm *c, const void *send, void *recv, size_t n, CommDtype dt, CommOp op);
    void (*gather)(Comm *c, const void *send, void *recv, size_t n, CommDtype dt, int root);
    void (*broadcast)(Comm *c, void *buf, size_t bytes, int root);
    void (*barrier)(Comm *c);
    /* A new comm of the ranks with the same color, ordered by key then rank. */
    Comm *(*split)(Comm *c, int color, int key);
    void (*destroy)(Comm *c); /* backend state only; comm_free frees c */
} CommOps;

struct Comm {
    int rank, size;
    CommBackend backend;
    const CommOps *ops;
    void *impl; /* backend state: the MPI_Comm for MPI */
};

/* The one-rank comm (rank 0, size 1). Free it with comm_free like any other. */
Comm *comm_self(void);
/* A duplicate of MPI_COMM_WORLD. MPI must be initialized (die_runtime if not). */
Comm *comm_mpi_world(void);
/* Wrap a duplicate of an MPI communicator given as its Fortran handle
 * (MPI_Comm_c2f), so this header does not need mpi.h. */
Comm *comm_mpi_from_fortran(int fcomm);
void comm_free(Comm *c);
#ifdef TAU2_HAVE_CUDA
/* A NCCL comm of the ranks of an MPI comm (collective over it; the MPI comm
 * is borrowed, a duplicate is kept). Each rank must have selected its GPU
 * (cudaSetDevice) first, one GPU per rank. Split and free like any comm. */
Comm *comm_nccl_from_mpi(Comm *mpi_comm);
/* The cudaStream_t the comm's collectives run on (synchronized before each
 * collective returns). */
void *comm_nccl_stream(const Comm *c);
/* A GPU engine's device collectives: queued on its own `stream` (a
 * cudaStream_t) behind the kernels already there, and not waited for, so
 * the stream runs on with no host round trip. buf is device memory; every
 * rank of c queues the same calls in the same order (NCCL's rule). */
void comm_nccl_allreduce_on(Comm *c, void *buf, size_t n, CommDtype dt, CommOp op, void *stream);
void comm_nccl_broadcast_on(Comm *c, void *buf, size_t bytes, int root, void *stream);
/* A host buffer (bytes) from root to every rank of the NCCL comm c, in
 * buckets of at most bucket_bytes staged through device memory on each
 * rank's GPU: root copies each bucket up and NCCL broadcasts it; the other
 * ranks copy it down into buf and, while it is still on the device, hand
 * it to on_bucket (when not NULL) with its offset in buf and its length in
 * bytes, e.g. for an inference engine on the same GPU to take its weights
 * from. Collective over c. */
void comm_nccl_broadcast_staged(Comm *c, void *buf, size_t bytes, size_t bucket_bytes, int root,
                                void (*on_bucket)(void *ctx, const void *dev, size_t off, size_t len), void *ctx);
#endif
/* End the whole job now with exit code `code`: MPI_Abort over the world for
 * an MPI comm of several ranks (no rank is left waiting in a collective),
 * else exit. */
_Noreturn void comm_abort(Comm *c, int code);

/* Ranks of the same color form a new comm, ordered by key (then old rank). */
Comm *comm_split(Comm *c, int color, int key);

/* The trainer grid: world ranks laid out as DP groups of tp consecutive ranks
 * (a TP group shares a node). Rank r has tp rank r % tp and dp rank r / tp;
 * *tp_comm holds the ranks of its TP group, *dp_comm the ranks with the same
 * tp rank. Returns 0, or -1 with err when tp does not divide the size. */
int comm_grid(Comm *world, int tp, Comm **tp_comm, Comm **dp_comm, char *err, size_t errlen);

/* buf (n) = the elementwise sum / max over ranks, on every rank. */
void comm_allreduce_sum_f32(Comm *c, float *buf, size_t n);
void comm_allreduce_max_f32(Comm *c, float *buf, size_t n);
void comm_allreduce_sum_f64(Comm *c, double *buf, size_t n);
/* recv (size * n) = every rank's send (n), rank-major, on every rank. */
void comm_allgather_f32(Comm *c, const float *send, float *recv, size_t n);
/* recv (n) = piece `rank` of the elementwise sum of every rank's send (size * n). */
void comm_reduce_scatter_f32(Comm *c, const float *send, float *recv, size_t n);
/* recv (size * n) on root = every rank's send (n), rank-major; recv unused elsewhere. */
void comm_gather_f32(Comm *c, const float *send, float *recv, size_t n, int root);
/* Pieces of different sizes: every rank's send (n bytes) to root. On root
 * *out is a new buffer (free()) holding the pieces rank after rank and
 * counts (size entries) their sizes; elsewhere *out is NULL. */
void comm_gatherv_bytes(Comm *c, const void *send, size_t n, int root, char **out, size_t *counts);
/* bytes of buf from root to every rank. */
void comm_broadcast(Comm *c, void *buf, size_t bytes, int root);
/* The same in flattened buckets of at most bucket_bytes (> 0), one
 * broadcast each, in order: a large buffer (a model's weights) never needs
 * a staging copy or a message of more than a bucket, and the backend can
 * pipeline one bucket's transfer behind the next. */
void comm_broadcast_buckets(Comm *c, void *buf, size_t bytes, size_t bucket_bytes, int root);
void comm_barrier(Comm *c);

/* Bytes of one host name in comm_node_names (NUL-padded, truncated). */
#define COMM_NODE_NAME_BYTES 256

/* Every rank's host name: a new buffer (free()) of size *
 * COMM_NODE_NAME_BYTES bytes, rank r's at r * COMM_NODE_NAME_BYTES; two
 * ranks share a node when their names are equal. Collective. */
char *comm_node_names(Comm *c);

/* This rank's index among the ranks of c on the same node (same host
 * name), in rank order: which of the node's GPUs a rank takes. Collective. */
int comm_node_rank(Comm *c);

#endif
