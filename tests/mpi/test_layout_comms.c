/* test_layout_comms.c — the communicators of a rank layout (src/comm/layout.h) on
 * the MPI backend. For every colocated and separate layout that fits the
 * world size: each comm exists on exactly the ranks of its role, has the
 * planned size and rank, and an all-reduce over it reaches exactly the world
 * ranks the layout puts in it. Run under mpiexec with any number of ranks;
 * returns nonzero on any rank's failure.
 *
 * Each rank contributes 2^world_rank to the all-reduce (exact in a double for
 * fewer than 53 ranks), so the sum is the bit set of the ranks reached.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <mpi.h>

#include "mpi_check.h"
#include "comm/comm.h"
#include "comm/layout.h"

/* Qwen3-4B's counts (tp 1, 2, 4 and 8 divide them). */
#define NH 32
#define NKV 8
#define INTER 9728
#define VOCAB 151936

typedef enum { C_TRAINER, C_TP, C_DP, C_ROLLOUT, C_ROLLOUT_GROUP, C_LEADERS, C_SYNC, C_USER_SIM, C_COUNT } Which;

static const char *k_names[C_COUNT] = {"trainer", "tp", "dp", "rollout", "rollout_group", "rollout_leaders",
                                       "sync", "user_sim"};

static Comm *comm_of(const LayoutComms *c, Which w) {
    switch (w) {
    case C_TRAINER: return c->trainer;
    case C_TP: return c->tp;
    case C_DP: return c->dp;
    case C_ROLLOUT: return c->rollout;
    case C_ROLLOUT_GROUP: return c->rollout_group;
    case C_LEADERS: return c->rollout_leaders;
    case C_SYNC: return c->sync;
    case C_USER_SIM: return c->user_sim;
    default: return NULL;
    }
}

static bool in_sync(const RankLayout *l) { return !l->colocate && (l->trainer_rank == 0 || l->is_rollout); }

/* Whether world rank k (layout lk) shares comm w with this rank (layout l). */
static bool same_comm(const RankLayout *l, const RankLayout *lk, Which w) {
    switch (w) {
    case C_TRAINER: return l->is_trainer && lk->is_trainer;
    case C_TP: return l->is_trainer && lk->is_trainer && l->dp_rank == lk->dp_rank;
    case C_DP: return l->is_trainer && lk->is_trainer && l->tp_rank == lk->tp_rank;
    case C_ROLLOUT: return l->is_rollout && lk->is_rollout;
    case C_ROLLOUT_GROUP: return l->is_rollout && lk->is_rollout && l->rollout_group == lk->rollout_group;
    case C_LEADERS:
        return l->is_rollout && lk->is_rollout && l->rollout_group_rank == 0 && lk->rollout_group_rank == 0;
    case C_SYNC: return in_sync(l) && in_sync(lk);
    case C_USER_SIM: return l->is_user_sim && lk->is_user_sim;
    default: return false;
    }
}

/* This rank's expected size and rank in comm w; size 0 when it has none. */
static void expect_place(const RankLayout *l, Which w, int *size, int *rank) {
    *size = 0;
    *rank = -1;
    switch (w) {
    case C_TRAINER:
        if (l->is_trainer) *size = l->n_trainer, *rank = l->trainer_rank;
        break;
    case C_TP:
        if (l->is_trainer) *size = l->tp, *rank = l->tp_rank;
        break;
    case C_DP:
        if (l->is_trainer) *size = l->dp, *rank = l->dp_rank;
        break;
    case C_ROLLOUT:
        if (l->is_rollout) *size = l->n_rollout_groups * l->rollout_tp, *rank = l->rollout_rank;
        break;
    case C_ROLLOUT_GROUP:
        if (l->is_rollout) *size = l->rollout_tp, *rank = l->rollout_group_rank;
        break;
    case C_LEADERS:
        if (l->is_rollout && l->rollout_group_rank == 0) *size = l->n_rollout_groups, *rank = l->rollout_group;
        break;
    case C_SYNC:
        /* trainer rank 0 is rank 0, rollout rank r is rank r + 1 */
        if (in_sync(l)) *size = 1 + l->n_rollout_groups * l->rollout_tp, *rank = l->is_rollout ? 1 + l->rollout_rank : 0;
        break;
    case C_USER_SIM:
        if (l->is_user_sim) *size = l->n_user_sim, *rank = l->world_rank - (l->world_size - l->n_user_sim);
        break;
    default: break;
    }
}

static void check_layout(Comm *world, LayoutRequest req) {
    int ws = world->size, wr = world->rank;
    RankLayout l;
    char err[512];
    if (layout_plan(&req, ws, wr, NH, NKV, INTER, VOCAB, &l, err, sizeof err) != 0) {
        fprintf(stderr, "rank %d: layout_plan: %s\n", wr, err);
        CHECK(0);
        return;
    }
    if (wr == 0 && req.tensor_parallel == 2) {
        char d[2048];
        layout_describe(&l, d, sizeof d);
        printf("%s", d);
    }
    LayoutComms c;
    layout_create_comms(&l, world, &c);
    CHECK(c.world == world);
    if (l.colocate) CHECK(c.sync == NULL);

    /* The all-reduce runs on every comm that exists, whether or not it
     * should, so a wrong layout fails its checks instead of hanging. */
    for (int w = 0; w < C_COUNT; w++) {
        Comm *cm = comm_of(&c, (Which)w);
        int size, rank;
        expect_place(&l, (Which)w, &size, &rank);
        if ((cm != NULL) != (size > 0)) {
            fprintf(stderr, "rank %d: %s comm %s\n", wr, k_names[w], cm ? "unexpected" : "missing");
            CHECK(0);
        }
        if (!cm) continue;
        double want = 0, got = (double)(1ull << wr);
        comm_allreduce_sum_f64(cm, &got, 1);
        if (size == 0) continue;
        CHECK(cm->size == size);
        CHECK(cm->rank == rank);
        int members = 0;
        for (int k = 0; k < ws; k++) {
            RankLayout lk;
            CHECK(layout_plan(&req, ws, k, NH, NKV, INTER, VOCAB, &lk, err, sizeof err) == 0);
            if (same_comm(&l, &lk, (Which)w)) want += (double)(1ull << k), members++;
        }
        CHECK(members == size);
        if (got != want) fprintf(stderr, "rank %d: %s comm reached %.0f, want %.0f\n", wr, k_names[w], got, want);
        CHECK(got == want);
    }

    /* trainer rank 0 is rank 0 of the sync comm: its broadcast reaches every rollout rank */
    if (c.sync) {
        int version = wr == 0 ? 4242 : -1;
        comm_broadcast(c.sync, &version, sizeof version, 0);
        CHECK(version == 4242);
    }
    layout_free_comms(&c);
    CHECK(c.trainer == NULL && c.sync == NULL && c.rollout == NULL);
    comm_barrier(world);
}

int main(int argc, char **argv) {
    int wr, ws;
    mpi_test_begin(&argc, &argv, &wr, &ws);
    Comm *world = comm_mpi_world();

    /* colocated: every tp dividing the world, with and without a user-sim rank */
    int layouts = 0;
    for (int tp = 1; tp <= ws; tp *= 2) {
        if (ws % tp != 0) continue;
        LayoutRequest r = {tp, 0, 0, 1, 0, true};
        check_layout(world, r);
        layouts++;
        if (tp > 1) { /* one engine per trainer TP group */
            LayoutRequest e = {tp, 0, 0, tp, 0, true};
            check_layout(world, e);
            layouts++;
        }
        if (ws > 1 && (ws - 1) % tp == 0) {
            LayoutRequest u = {tp, 0, 0, 1, 1, true};
            check_layout(world, u);
            layouts++;
        }
    }

    /* separate: every (tp, dp) that leaves rollout ranks, with and without user-sim ranks */
    for (int us = 0; us <= 1; us++) {
        for (int tp = 1; tp < ws; tp *= 2) {
            for (int dp = 1; dp * tp + us < ws; dp++) {
                LayoutRequest r = {tp, dp, 0, 1, us, false};
                check_layout(world, r);
                layouts++;
                /* engines of 2 ranks where the ranks left divide by 2 */
                if ((ws - us - dp * tp) % 2 == 0) {
                    LayoutRequest e = {tp, dp, 0, 2, us, false};
                    check_layout(world, e);
                    layouts++;
                }
            }
        }
    }

    /* a layout that does not fit fails the same way on every rank, before any comm exists */
    LayoutRequest bad = {1, ws, 1, 1, 0, false};
    RankLayout l;
    char err[512];
    CHECK(layout_plan(&bad, ws, wr, NH, NKV, INTER, VOCAB, &l, err, sizeof err) == -1);
    CHECK(strstr(err, "the requested layout needs") != NULL);

    comm_free(world);

    if (wr == 0) printf("test_layout_comms: %d layouts\n", layouts);
    return mpi_test_end("test_layout_comms");
}
