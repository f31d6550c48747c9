/* test_comm.c — the collectives interface (src/comm) on its MPI backend and
 * the one-rank SELF backend. Run under mpiexec with any number of ranks;
 * returns nonzero on any rank's failure.
 *
 * Values are small integers stored in floats, so every sum is exact and the
 * expected results do not depend on the reduction order.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "mpi_check.h"
#include "comm/comm.h"
#include "core/error.h"


/* Every collective on comm c, whose ranks are world ranks `members` (c's rank i is members[i]). */
static void check_collectives(Comm *c, const int *members) {
    int R = c->size, r = c->rank;
    size_t n = 5;
    float *a = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = (float)(members[r] * 10 + (int)i);

    /* all-reduce sum / max (f32), sum (f64) */
    float *s = xmalloc(n * sizeof(float));
    memcpy(s, a, n * sizeof(float));
    comm_allreduce_sum_f32(c, s, n);
    for (size_t i = 0; i < n; i++) {
        float want = 0;
        for (int k = 0; k < R; k++) want += (float)(members[k] * 10 + (int)i);
        CHECK(s[i] == want);
    }
    memcpy(s, a, n * sizeof(float));
    comm_allreduce_max_f32(c, s, n);
    for (size_t i = 0; i < n; i++) {
        float want = -INFINITY;
        for (int k = 0; k < R; k++) want = fmaxf(want, (float)(members[k] * 10 + (int)i));
        CHECK(s[i] == want);
    }
    double d[2] = {0.5 * members[r], 1.0};
    comm_allreduce_sum_f64(c, d, 2);
    double dw = 0;
    for (int k = 0; k < R; k++) dw += 0.5 * members[k];
    CHECK(d[0] == dw && d[1] == (double)R);

    /* all-gather and gather: rank-major */
    float *g = xmalloc((size_t)R * n * sizeof(float));
    memset(g, 0, (size_t)R * n * sizeof(float));
    comm_allgather_f32(c, a, g, n);
    for (int k = 0; k < R; k++) {
        for (size_t i = 0; i < n; i++) CHECK(g[(size_t)k * n + i] == (float)(members[k] * 10 + (int)i));
    }
    int root = R - 1;
    memset(g, 0, (size_t)R * n * sizeof(float));
    comm_gather_f32(c, a, g, n, root);
    if (r == root) {
        for (int k = 0; k < R; k++) {
            for (size_t i = 0; i < n; i++) CHECK(g[(size_t)k * n + i] == (float)(members[k] * 10 + (int)i));
        }
    }

    /* reduce-scatter: every rank sends (R, n) with x[k][i] = rank + k + i */
    float *x = xmalloc((size_t)R * n * sizeof(float));
    for (int k = 0; k < R; k++) {
        for (size_t i = 0; i < n; i++) x[(size_t)k * n + i] = (float)(members[r] + k * 100 + (int)i);
    }
    comm_reduce_scatter_f32(c, x, s, n);
    for (size_t i = 0; i < n; i++) {
        float want = 0;
        for (int k = 0; k < R; k++) want += (float)(members[k] + r * 100 + (int)i);
        CHECK(s[i] == want);
    }

    /* broadcast bytes from the last rank */
    char msg[32];
    snprintf(msg, sizeof msg, "from world rank %d", members[r]);
    comm_broadcast(c, msg, sizeof msg, root);
    char want[32];
    snprintf(want, sizeof want, "from world rank %d", members[root]);
    CHECK(strcmp(msg, want) == 0);

    /* the same in buckets: 1000 bytes in buckets of 64, the last one short */
    unsigned char big[1000];
    for (int i = 0; i < 1000; i++) big[i] = (unsigned char)(r == root ? i * 7 + 3 : 0);
    comm_broadcast_buckets(c, big, sizeof big, 64, root);
    bool same = true;
    for (int i = 0; i < 1000; i++) same = same && big[i] == (unsigned char)(i * 7 + 3);
    CHECK(same);

    comm_barrier(c);
    free(a);
    free(s);
    free(g);
    free(x);
}

int main(int argc, char **argv) {
    int wr, ws;
    mpi_test_begin(&argc, &argv, &wr, &ws);

    /* SELF: one rank, identity collectives, no MPI needed */
    Comm *self = comm_self();
    CHECK(self->rank == 0 && self->size == 1 && self->backend == COMM_SELF);
    check_collectives(self, &wr);
    Comm *self2 = comm_split(self, 3, 0);
    CHECK(self2->size == 1);
    comm_free(self2);
    comm_free(self);

    /* the world */
    Comm *world = comm_mpi_world();
    CHECK(world->rank == wr && world->size == ws && world->backend == COMM_MPI);
    int *members = xmalloc((size_t)ws * sizeof(int));
    for (int i = 0; i < ws; i++) members[i] = i;
    check_collectives(world, members);

    /* split into even and odd ranks, ordered by descending rank (key) */
    Comm *half = comm_split(world, wr % 2, -wr);
    int n_half = 0;
    for (int i = ws - 1; i >= 0; i--) {
        if (i % 2 == wr % 2) members[n_half++] = i;
    }
    CHECK(half->size == n_half);
    CHECK(members[half->rank] == wr);
    check_collectives(half, members);
    comm_free(half);

    /* the DP x TP grid, for every tp dividing the size */
    for (int tp = 1; tp <= ws; tp++) {
        Comm *tpc, *dpc;
        char err[256];
        if (ws % tp != 0) {
            CHECK(comm_grid(world, tp, &tpc, &dpc, err, sizeof err) == -1);
            CHECK(strstr(err, "tensor_parallel") != NULL);
            continue;
        }
        CHECK(comm_grid(world, tp, &tpc, &dpc, err, sizeof err) == 0);
        CHECK(tpc->size == tp && tpc->rank == wr % tp);
        CHECK(dpc->size == ws / tp && dpc->rank == wr / tp);
        for (int i = 0; i < tp; i++) members[i] = (wr / tp) * tp + i;
        check_collectives(tpc, members);
        for (int i = 0; i < ws / tp; i++) members[i] = i * tp + wr % tp;
        check_collectives(dpc, members);
        comm_free(tpc);
        comm_free(dpc);
    }
    char err[256];
    Comm *a, *b;
    CHECK(comm_grid(world, 0, &a, &b, err, sizeof err) == -1 && a == NULL && b == NULL);

    /* node ranks: every rank of this test runs on one machine, so each is
     * its own world rank; in the odd/even split, the index in that comm */
    CHECK(comm_node_rank(world) == wr);
    Comm *parity = comm_split(world, wr % 2, wr);
    CHECK(comm_node_rank(parity) == parity->rank);
    comm_free(parity);
    Comm *one = comm_self();
    CHECK(comm_node_rank(one) == 0);
    comm_free(one);

    /* large counts go through (piecewise where the backend splits) */
    size_t big = 1u << 20;
    float *v = xmalloc(big * sizeof(float));
    for (size_t i = 0; i < big; i++) v[i] = 1.0f;
    comm_allreduce_sum_f32(world, v, big);
    CHECK(v[0] == (float)ws && v[big - 1] == (float)ws);
    free(v);

    free(members);
    comm_free(world);

    return mpi_test_end("test_comm");
}
