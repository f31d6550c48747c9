/* test_comm_nccl.c — the NCCL backend of the collectives interface, one GPU
 * per rank. Exits 77 (skipped) on every rank when the build has no CUDA or
 * the node has fewer GPUs than ranks.
 *
 * Values are small integers stored in floats, so every sum is exact whatever
 * NCCL's reduction order.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "mpi_check.h"
#include "mpi_gpu.h"
#include "comm/comm.h"
#include "core/error.h"

#ifdef TAU2_HAVE_CUDA
#include "kernels.h"

static float *dev_floats(const float *host, size_t n) {
    float *d;
    cuda_check(cudaMalloc((void **)&d, n * sizeof(float)));
    if (host) cuda_check(cudaMemcpy(d, host, n * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}

static void to_host(float *host, const float *dev, size_t n) {
    cuda_check(cudaMemcpy(host, dev, n * sizeof(float), cudaMemcpyDeviceToHost));
}

/* What the staged broadcast handed over, bucket by bucket, in order. */
typedef struct {
    float *seen;
    size_t next_off;
    int calls;
} Staged;

static void on_bucket(void *ctx, const void *dev, size_t off, size_t len) {
    Staged *st = ctx;
    CHECK(off == st->next_off && len % sizeof(float) == 0);
    cuda_check(cudaMemcpy(st->seen + off / sizeof(float), dev, len, cudaMemcpyDeviceToHost));
    st->next_off = off + len;
    st->calls++;
}

/* value i of rank r's piece */
static float val(int r, size_t i) { return (float)(r * 100 + (int)i); }

/* Every collective on comm c with device buffers; members[i] is c's rank i in the world. */
static void check_device(Comm *c, const int *members) {
    int R = c->size, r = c->rank;
    size_t n = 1000; /* past one NCCL slice, not a multiple of anything */
    float *h = xmalloc((size_t)R * n * sizeof(float)), *got = xmalloc((size_t)R * n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = val(members[r], i);
    float *d = dev_floats(h, n), *dall = dev_floats(NULL, (size_t)R * n);

    comm_allreduce_sum_f32(c, d, n);
    to_host(got, d, n);
    for (size_t i = 0; i < n; i++) {
        float want = 0;
        for (int k = 0; k < R; k++) want += val(members[k], i);
        CHECK(got[i] == want);
    }
    cuda_check(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    comm_allreduce_max_f32(c, d, n);
    to_host(got, d, n);
    for (size_t i = 0; i < n; i++) {
        float want = -INFINITY;
        for (int k = 0; k < R; k++) want = fmaxf(want, val(members[k], i));
        CHECK(got[i] == want);
    }

    double *dd, hd[3] = {members[r] + 0.5, 1.0, -2.0 * members[r]}, gd[3];
    cuda_check(cudaMalloc((void **)&dd, sizeof hd));
    cuda_check(cudaMemcpy(dd, hd, sizeof hd, cudaMemcpyHostToDevice));
    comm_allreduce_sum_f64(c, dd, 3);
    cuda_check(cudaMemcpy(gd, dd, sizeof gd, cudaMemcpyDeviceToHost));
    double s0 = 0, s2 = 0;
    for (int k = 0; k < R; k++) s0 += members[k] + 0.5, s2 += -2.0 * members[k];
    CHECK(gd[0] == s0 && gd[1] == (double)R && gd[2] == s2);
    cuda_check(cudaFree(dd));

    cuda_check(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    comm_allgather_f32(c, d, dall, n);
    to_host(got, dall, (size_t)R * n);
    for (int k = 0; k < R; k++)
        for (size_t i = 0; i < n; i++) CHECK(got[(size_t)k * n + i] == val(members[k], i));

    /* reduce-scatter: piece k of every rank's send holds val(member, k*n + i) */
    for (size_t i = 0; i < (size_t)R * n; i++) h[i] = val(members[r], i);
    cuda_check(cudaMemcpy(dall, h, (size_t)R * n * sizeof(float), cudaMemcpyHostToDevice));
    comm_reduce_scatter_f32(c, dall, d, n);
    to_host(got, d, n);
    for (size_t i = 0; i < n; i++) {
        float want = 0;
        for (int k = 0; k < R; k++) want += val(members[k], (size_t)r * n + i);
        CHECK(got[i] == want);
    }

    int root = R - 1;
    for (size_t i = 0; i < n; i++) h[i] = val(members[r], i);
    cuda_check(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    comm_gather_f32(c, d, dall, n, root);
    if (r == root) {
        to_host(got, dall, (size_t)R * n);
        for (int k = 0; k < R; k++)
            for (size_t i = 0; i < n; i++) CHECK(got[(size_t)k * n + i] == val(members[k], i));
    }

    comm_broadcast(c, d, n * sizeof(float), root);
    to_host(got, d, n);
    for (size_t i = 0; i < n; i++) CHECK(got[i] == val(members[root], i));
    /* in buckets of 3 floats (the last one short when n % 3), from rank 0 */
    for (size_t i = 0; i < n; i++) h[i] = val(members[r], i);
    cuda_check(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    comm_broadcast_buckets(c, d, n * sizeof(float), 3 * sizeof(float), 0);
    to_host(got, d, n);
    for (size_t i = 0; i < n; i++) CHECK(got[i] == val(members[0], i));
    comm_barrier(c);

    /* a host buffer staged through the GPUs in buckets of 7 floats (the
     * last one short), from the last rank; each bucket seen on the device */
    for (size_t i = 0; i < n; i++) h[i] = val(members[r], i);
    Staged st = {.seen = xcalloc(n, sizeof(float)), .next_off = 0, .calls = 0};
    comm_nccl_broadcast_staged(c, h, n * sizeof(float), 7 * sizeof(float), root, r == root ? NULL : on_bucket, &st);
    for (size_t i = 0; i < n; i++) CHECK(h[i] == val(members[root], i));
    if (r != root) {
        CHECK(st.calls == (int)((n + 6) / 7) && st.next_off == n * sizeof(float));
        for (size_t i = 0; i < n; i++) CHECK(st.seen[i] == val(members[root], i));
    }
    free(st.seen);

    /* host buffers go through the MPI twin */
    for (size_t i = 0; i < n; i++) h[i] = val(members[r], i);
    comm_allreduce_sum_f32(c, h, n);
    float want0 = 0;
    for (int k = 0; k < R; k++) want0 += val(members[k], 0);
    CHECK(h[0] == want0);
    char msg[32];
    snprintf(msg, sizeof msg, "rank %d", r);
    char *all = NULL;
    size_t *counts = xcalloc((size_t)R, sizeof(size_t));
    comm_gatherv_bytes(c, msg, strlen(msg), 0, &all, counts);
    if (r == 0) CHECK(all && counts[0] == strlen("rank 0") && memcmp(all, "rank 0", counts[0]) == 0);
    free(all);
    free(counts);

    cuda_check(cudaFree(d));
    cuda_check(cudaFree(dall));
    free(h);
    free(got);
}
#endif

int main(int argc, char **argv) {
    int wr, ws;
    mpi_test_begin(&argc, &argv, &wr, &ws);
    Comm *world = comm_mpi_world();
    if (mpi_test_gpu(world) < 0) {
        comm_free(world);
        MPI_Finalize();
        return 77;
    }
#ifdef TAU2_HAVE_CUDA
    Comm *nc = comm_nccl_from_mpi(world);
    CHECK(nc->backend == COMM_NCCL && nc->rank == wr && nc->size == ws);
    int *members = xmalloc((size_t)ws * sizeof(int));
    for (int i = 0; i < ws; i++) members[i] = i;
    check_device(nc, members);

    /* split into even and odd ranks, in descending rank order (key) */
    Comm *half = comm_split(nc, wr % 2, -wr);
    CHECK(half->backend == COMM_NCCL);
    int n_half = 0;
    for (int i = ws - 1; i >= 0; i--)
        if (i % 2 == wr % 2) members[n_half++] = i;
    CHECK(half->size == n_half && members[half->rank] == wr);
    check_device(half, members);
    comm_free(half);
    comm_free(nc);
    free(members);
#endif
    comm_free(world);
    return mpi_test_end("test_comm_nccl");
}
