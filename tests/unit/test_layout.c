/* test_layout.c — planning the rank layout (src/comm/layout.h): colocated
 * and separate layouts, user-sim ranks, every rank's place in them, every
 * error with its message and suggestion, the description, and the
 * communicators of a one-rank world on the SELF backend (no MPI). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "comm/comm.h"
#include "comm/layout.h"

/* Qwen3-4B's counts: 32 heads, 8 kv heads, MLP 9728, vocab 151936. */
#define NH 32
#define NKV 8
#define INTER 9728
#define VOCAB 151936

static LayoutRequest req(int tp, int dp, int groups, int rtp, int us, bool colocate) {
    LayoutRequest r = {tp, dp, groups, rtp, us, colocate};
    return r;
}

/* Plan for rank `rank` of `world`; fails the test on an error. */
static RankLayout plan_ok(LayoutRequest r, int world, int rank) {
    RankLayout l;
    char err[512];
    if (layout_plan(&r, world, rank, NH, NKV, INTER, VOCAB, &l, err, sizeof err) != 0) fail_msg("%s", err);
    return l;
}

/* The error of a layout that must not plan (checked on every rank). */
static void plan_err(LayoutRequest r, int world, char *err, size_t errlen) {
    for (int rank = 0; rank < world; rank++) {
        RankLayout l;
        assert_int_equal(layout_plan(&r, world, rank, NH, NKV, INTER, VOCAB, &l, err, errlen), -1);
        assert_false(l.is_trainer || l.is_rollout || l.is_user_sim);
        assert_int_equal(l.trainer_rank, -1);
        assert_int_equal(l.rollout_rank, -1);
    }
}

static void expect_err(LayoutRequest r, int world, const char *want) {
    char err[512];
    plan_err(r, world, err, sizeof err);
    assert_string_equal(err, want);
}

/* Every rank of a planned layout: roles, ranks in them, and that each role
 * holds exactly the counts planned. */
static void check_all_ranks(LayoutRequest r, int world) {
    RankLayout l0 = plan_ok(r, world, 0);
    int trainers = 0, rollouts = 0, sims = 0;
    for (int rank = 0; rank < world; rank++) {
        RankLayout l = plan_ok(r, world, rank);
        assert_int_equal(l.world_rank, rank);
        assert_int_equal(l.n_trainer, l0.n_trainer);
        assert_int_equal(l.n_trainer, l.dp * l.tp);
        if (l.is_trainer) {
            trainers++;
            assert_int_equal(l.trainer_rank, rank);
            assert_int_equal(l.dp_rank, rank / l.tp);
            assert_int_equal(l.tp_rank, rank % l.tp);
        } else {
            assert_int_equal(l.trainer_rank, -1);
            assert_int_equal(l.dp_rank, -1);
            assert_int_equal(l.tp_rank, -1);
        }
        if (l.is_rollout) {
            rollouts++;
            assert_int_equal(l.rollout_group, l.rollout_rank / l.rollout_tp);
            assert_int_equal(l.rollout_group_rank, l.rollout_rank % l.rollout_tp);
            assert_int_equal(l.rollout_rank, l.colocate ? rank : rank - l.n_trainer);
        } else {
            assert_int_equal(l.rollout_rank, -1);
            assert_int_equal(l.rollout_group, -1);
            assert_int_equal(l.rollout_group_rank, -1);
        }
        if (l.is_user_sim) {
            sims++;
            assert_true(rank >= world - l.n_user_sim);
            assert_false(l.is_trainer || l.is_rollout);
        }
        /* every rank has a role; only colocated ranks have two */
        assert_true(l.is_trainer || l.is_rollout || l.is_user_sim);
        if (!l.colocate) assert_false(l.is_trainer && l.is_rollout);
    }
    assert_int_equal(trainers, l0.n_trainer);
    assert_int_equal(rollouts, l0.n_rollout_groups * l0.rollout_tp);
    assert_int_equal(sims, l0.n_user_sim);
    assert_int_equal(trainers + (l0.colocate ? 0 : rollouts) + sims, world);
}

static void test_colocated(void **state) {
    (void)state;
    /* 1 rank */
    RankLayout l = plan_ok(req(1, 0, 0, 1, 0, true), 1, 0);
    assert_true(l.colocate && l.is_trainer && l.is_rollout && !l.is_user_sim);
    assert_int_equal(l.tp, 1);
    assert_int_equal(l.dp, 1);
    assert_int_equal(l.n_trainer, 1);
    assert_int_equal(l.n_rollout_groups, 1);
    assert_int_equal(l.rollout_tp, 1);
    assert_int_equal(l.rollout_group, 0);
    assert_int_equal(l.rollout_group_rank, 0);
    check_all_ranks(req(1, 0, 0, 1, 0, true), 1);

    /* 2 ranks, tp 1 and 2 */
    l = plan_ok(req(1, 0, 0, 1, 0, true), 2, 1);
    assert_int_equal(l.dp, 2);
    assert_int_equal(l.dp_rank, 1);
    assert_int_equal(l.tp_rank, 0);
    assert_int_equal(l.n_rollout_groups, 2);
    assert_int_equal(l.rollout_group, 1);
    check_all_ranks(req(1, 0, 0, 1, 0, true), 2);
    l = plan_ok(req(2, 0, 0, 1, 0, true), 2, 1);
    assert_int_equal(l.dp, 1);
    assert_int_equal(l.dp_rank, 0);
    assert_int_equal(l.tp_rank, 1);
    /* the engine is unsharded: each rank of the TP group is its own rollout group */
    assert_int_equal(l.n_rollout_groups, 2);
    assert_int_equal(l.rollout_tp, 1);
    assert_int_equal(l.rollout_group, 1);
    check_all_ranks(req(2, 0, 0, 1, 0, true), 2);

    /* 8 ranks, tp 1 and 2; a given dp and rollout_groups that match */
    l = plan_ok(req(1, 0, 0, 1, 0, true), 8, 7);
    assert_int_equal(l.dp, 8);
    assert_int_equal(l.dp_rank, 7);
    l = plan_ok(req(2, 4, 8, 1, 0, true), 8, 5);
    assert_int_equal(l.dp, 4);
    assert_int_equal(l.n_trainer, 8);
    assert_int_equal(l.dp_rank, 2);
    assert_int_equal(l.tp_rank, 1);
    assert_int_equal(l.rollout_group, 5);
    assert_int_equal(l.rollout_rank, 5);
    check_all_ranks(req(1, 0, 0, 1, 0, true), 8);
    check_all_ranks(req(2, 0, 0, 1, 0, true), 8);
    check_all_ranks(req(8, 0, 0, 1, 0, true), 8);

    /* rollout_tp = tp: each trainer TP group is one engine on its shards */
    l = plan_ok(req(2, 0, 4, 2, 0, true), 8, 5);
    assert_int_equal(l.dp, 4);
    assert_int_equal(l.rollout_tp, 2);
    assert_int_equal(l.n_rollout_groups, 4);
    assert_int_equal(l.rollout_rank, 5);
    assert_int_equal(l.rollout_group, l.dp_rank);
    assert_int_equal(l.rollout_group_rank, l.tp_rank);
    check_all_ranks(req(2, 0, 0, 2, 0, true), 8);
    check_all_ranks(req(8, 0, 0, 8, 0, true), 8);
    check_all_ranks(req(2, 0, 0, 2, 0, true), 2);
}

static void test_separate(void **state) {
    (void)state;
    /* 8 = 4 trainers (dp 2 x tp 2) + 4 rollout groups of 1, given or derived */
    LayoutRequest forms[] = {
        req(2, 2, 4, 1, 0, false),
        req(2, 2, 0, 1, 0, false),
        req(2, 0, 4, 1, 0, false),
    };
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        for (int rank = 0; rank < 8; rank++) {
            RankLayout l = plan_ok(forms[i], 8, rank);
            assert_false(l.colocate);
            assert_int_equal(l.tp, 2);
            assert_int_equal(l.dp, 2);
            assert_int_equal(l.n_trainer, 4);
            assert_int_equal(l.n_rollout_groups, 4);
            assert_int_equal(l.rollout_tp, 1);
            assert_int_equal(l.n_user_sim, 0);
            assert_int_equal(l.is_trainer, rank < 4);
            assert_int_equal(l.is_rollout, rank >= 4);
            assert_false(l.is_user_sim);
            if (rank < 4) {
                assert_int_equal(l.dp_rank, rank / 2);
                assert_int_equal(l.tp_rank, rank % 2);
            } else {
                assert_int_equal(l.rollout_rank, rank - 4);
                assert_int_equal(l.rollout_group, rank - 4);
                assert_int_equal(l.rollout_group_rank, 0);
            }
        }
        check_all_ranks(forms[i], 8);
    }

    /* both derived: one TP group trains, every other rank rolls out */
    RankLayout l = plan_ok(req(2, 0, 0, 1, 0, false), 8, 0);
    assert_int_equal(l.dp, 1);
    assert_int_equal(l.n_trainer, 2);
    assert_int_equal(l.n_rollout_groups, 6);
    check_all_ranks(req(2, 0, 0, 1, 0, false), 8);

    /* the smallest separate worlds */
    l = plan_ok(req(1, 0, 0, 1, 0, false), 2, 1);
    assert_true(l.is_rollout && !l.is_trainer);
    assert_int_equal(l.n_rollout_groups, 1);
    check_all_ranks(req(1, 0, 0, 1, 0, false), 2);
    check_all_ranks(req(2, 1, 0, 1, 0, false), 4);
    check_all_ranks(req(1, 3, 1, 1, 0, false), 4);

    /* engines of 2 ranks: 8 = dp 1 x tp 2 + 3 groups of 2 */
    for (int rank = 0; rank < 8; rank++) {
        l = plan_ok(req(2, 1, 0, 2, 0, false), 8, rank);
        assert_int_equal(l.n_rollout_groups, 3);
        assert_int_equal(l.rollout_tp, 2);
        if (rank >= 2) {
            assert_int_equal(l.rollout_group, (rank - 2) / 2);
            assert_int_equal(l.rollout_group_rank, rank % 2);
        }
    }
    check_all_ranks(req(2, 1, 0, 2, 0, false), 8);
    check_all_ranks(req(1, 0, 2, 2, 0, false), 6);
    check_all_ranks(req(1, 1, 1, 2, 1, false), 4);
}

static void test_user_sim(void **state) {
    (void)state;
    /* separate: 4 trainers, 2 rollout groups, ranks 6-7 simulate users */
    RankLayout l = plan_ok(req(2, 2, 0, 1, 2, false), 8, 6);
    assert_int_equal(l.n_rollout_groups, 2);
    assert_int_equal(l.n_user_sim, 2);
    assert_true(l.is_user_sim && !l.is_trainer && !l.is_rollout);
    assert_int_equal(l.rollout_rank, -1);
    l = plan_ok(req(2, 2, 0, 1, 2, false), 8, 5);
    assert_true(l.is_rollout && !l.is_user_sim);
    assert_int_equal(l.rollout_group, 1);
    check_all_ranks(req(2, 2, 0, 1, 2, false), 8);
    check_all_ranks(req(2, 0, 0, 1, 2, false), 8);
    check_all_ranks(req(1, 1, 1, 1, 1, false), 3);

    /* colocated: the user-sim ranks are not trainers */
    l = plan_ok(req(2, 0, 0, 1, 2, true), 8, 7);
    assert_int_equal(l.dp, 3);
    assert_int_equal(l.n_trainer, 6);
    assert_int_equal(l.n_rollout_groups, 6);
    assert_true(l.is_user_sim && !l.is_trainer && !l.is_rollout);
    check_all_ranks(req(2, 0, 0, 1, 2, true), 8);
    check_all_ranks(req(1, 0, 0, 1, 1, true), 2);
}

/* A count <= 0 is not checked; any other count tp does not divide is. */
static void test_model_counts(void **state) {
    (void)state;
    LayoutRequest r = req(3, 0, 0, 1, 0, true);
    RankLayout l;
    char err[512];
    assert_int_equal(layout_plan(&r, 6, 0, 0, 0, 0, 0, &l, err, sizeof err), 0);
    assert_int_equal(l.dp, 2);
    assert_int_equal(layout_plan(&r, 6, 0, 12, 6, 0, 0, &l, err, sizeof err), 0);
    assert_int_equal(layout_plan(&r, 6, 0, 12, 6, 30, 7, &l, err, sizeof err), -1);
    assert_string_equal(err, "tensor_parallel 3 does not divide vocab_size 7 (divisors: 1, 7); "
                             "tensor_parallel values that fit this model on 6 ranks: 1");
    assert_int_equal(layout_plan(&r, 6, 0, 16, 6, 30, 9, &l, err, sizeof err), -1);
    assert_string_equal(err, "tensor_parallel 3 does not divide num_attention_heads 16 (divisors: 1, 2, 4, 8, 16); "
                             "tensor_parallel values that fit this model on 6 ranks: 1");
    assert_int_equal(layout_plan(&r, 6, 0, 12, 6, 20, 9, &l, err, sizeof err), -1);
    assert_string_equal(err, "tensor_parallel 3 does not divide intermediate_size 20 (divisors: 1, 2, 4, 5, 10, 20); "
                             "tensor_parallel values that fit this model on 6 ranks: 1");
    assert_int_equal(layout_plan(&r, 6, 0, 12, 6, 30, 9, &l, err, sizeof err), 0);
}

static void test_errors(void **state) {
    (void)state;
    /* fields out of range */
    expect_err(req(0, 0, 0, 1, 0, true), 4, "tensor_parallel 0 must be at least 1");
    expect_err(req(1, -1, 0, 1, 0, true), 4, "data_parallel -1 must be at least 0 (0 = derive from the world size)");
    expect_err(req(1, 0, -2, 1, 0, false), 4,
               "rollout_groups -2 must be at least 0 (0 = derive from the world size)");
    expect_err(req(1, 0, 0, 0, 0, false), 4, "rollout_tensor_parallel 0 must be at least 1");
    /* an engine shards the model as training does; colocated it is one rank or the tp group */
    expect_err(req(1, 0, 0, 3, 0, false), 4,
               "rollout_tensor_parallel 3 does not divide num_key_value_heads 8 (divisors: 1, 2, 4, 8); "
               "rollout_tensor_parallel values that fit this model on 4 ranks: 1, 2, 4");
    expect_err(req(1, 0, 0, 2, 0, true), 4,
               "rollout_tensor_parallel 2 does not fit colocated tensor_parallel 1: a colocated engine is one "
               "rank (1) or the trainer's tp group (1)");
    expect_err(req(4, 0, 0, 2, 0, true), 8,
               "rollout_tensor_parallel 2 does not fit colocated tensor_parallel 4: a colocated engine is one "
               "rank (1) or the trainer's tp group (4)");
    expect_err(req(2, 0, 8, 2, 0, true), 8,
               "rollout_groups 8 does not fit: colocated, the 8 trainer ranks run 4 rollout engines of 2 ranks; "
               "set rollout_groups 4 (or 0)");
    expect_err(req(2, 1, 0, 4, 0, false), 8,
               "rollout_tensor_parallel 4 does not divide the 6 ranks left for rollout (world size 8 - 2 trainer "
               "ranks - user_sim_ranks 0); 8 ranks fit data_parallel 2 with 1 rollout group of 4 ranks");
    expect_err(req(1, 0, 0, 1, -1, false), 4, "user_sim_ranks -1 must be at least 0");

    RankLayout l;
    char err[512];
    LayoutRequest r = req(1, 0, 0, 1, 0, true);
    assert_int_equal(layout_plan(&r, 0, 0, NH, NKV, INTER, VOCAB, &l, err, sizeof err), -1);
    assert_string_equal(err, "world size 0: a job needs at least one rank");
    assert_int_equal(layout_plan(&r, 4, 4, NH, NKV, INTER, VOCAB, &l, err, sizeof err), -1);
    assert_string_equal(err, "world rank 4 is outside a world of 4 ranks");

    /* tp does not divide a model count: the count, its divisors, the tp values that fit */
    expect_err(req(3, 0, 0, 1, 0, true), 8,
               "tensor_parallel 3 does not divide num_key_value_heads 8 (divisors: 1, 2, 4, 8); "
               "tensor_parallel values that fit this model on 8 ranks: 1, 2, 4, 8");
    expect_err(req(16, 0, 0, 1, 0, false), 16,
               "tensor_parallel 16 does not divide num_key_value_heads 8 (divisors: 1, 2, 4, 8); "
               "tensor_parallel values that fit this model on 16 ranks: 1, 2, 4, 8");
    expect_err(req(8, 0, 0, 1, 0, true), 4,
               "tensor_parallel 8 does not divide the 4 trainer ranks (world size 4 - user_sim_ranks 0); "
               "world sizes that fit: 8");

    /* colocated: totals */
    expect_err(req(2, 0, 0, 1, 0, true), 7,
               "tensor_parallel 2 does not divide the 7 trainer ranks (world size 7 - user_sim_ranks 0); "
               "world sizes that fit: 6 or 8");
    expect_err(req(2, 0, 0, 1, 1, true), 4,
               "tensor_parallel 2 does not divide the 3 trainer ranks (world size 4 - user_sim_ranks 1); "
               "world sizes that fit: 3 or 5");
    expect_err(req(2, 3, 0, 1, 0, true), 8,
               "data_parallel 3 does not fit: 8 trainer ranks with tensor_parallel 2 make data_parallel 4; "
               "set data_parallel 4 (or 0), or run on 6 ranks");
    expect_err(req(2, 0, 3, 1, 0, true), 8,
               "rollout_groups 3 does not fit: colocated, every one of the 8 trainer ranks runs its own "
               "rollout engine; set rollout_groups 8 (or 0)");
    expect_err(req(1, 0, 0, 1, 8, true), 8,
               "user_sim_ranks 8 leaves no trainer ranks in a world of 8 ranks; at most 7 user-sim ranks fit");

    /* separate: totals, zero trainers, zero rollout ranks */
    expect_err(req(2, 3, 3, 1, 0, false), 8,
               "world size 8 does not fit tensor_parallel 2 x data_parallel 3 + 3 rollout groups x 1 rank + "
               "user_sim_ranks 0 = 9 ranks; 8 ranks fit data_parallel 3 with 2 rollout groups of 1 rank; "
               "the requested layout needs 9 ranks");
    expect_err(req(2, 1, 2, 1, 0, false), 8,
               "world size 8 does not fit tensor_parallel 2 x data_parallel 1 + 2 rollout groups x 1 rank + "
               "user_sim_ranks 0 = 4 ranks; 8 ranks fit data_parallel 1 with 6 rollout groups of 1 rank; "
               "or 8 ranks fit 2 rollout groups of 1 rank with data_parallel 3; the requested layout needs 4 ranks");
    expect_err(req(2, 4, 0, 1, 0, false), 8,
               "no ranks left for rollout: tensor_parallel 2 x data_parallel 4 = 8 trainer ranks "
               "(+ user_sim_ranks 0) leave 0 of 8 ranks, fewer than rollout_tensor_parallel 1; "
               "8 ranks fit data_parallel 3 with 2 rollout groups of 1 rank");
    expect_err(req(2, 0, 7, 1, 0, false), 8,
               "no ranks left for the trainer: 7 rollout groups x 1 rank (+ user_sim_ranks 0) leave 1 of 8 "
               "ranks, fewer than tensor_parallel 2; 8 ranks fit 6 rollout groups of 1 rank with data_parallel 1");
    expect_err(req(2, 0, 5, 1, 0, false), 8,
               "tensor_parallel 2 does not divide the 3 ranks left for the trainer (world size 8 - 5 rollout "
               "ranks - user_sim_ranks 0); 8 ranks fit 4 rollout groups of 1 rank with data_parallel 2");
    expect_err(req(2, 0, 0, 1, 0, false), 2,
               "no ranks left for rollout: tensor_parallel 2 x data_parallel 1 = 2 trainer ranks "
               "(+ user_sim_ranks 0) leave 0 of 2 ranks, fewer than rollout_tensor_parallel 1; separate mode needs at "
               "least tensor_parallel 2 + rollout_tensor_parallel 1 + user_sim_ranks 0 = 3 ranks: start more "
               "ranks or set colocate");
    expect_err(req(1, 0, 0, 1, 0, false), 1,
               "no ranks left for rollout: tensor_parallel 1 x data_parallel 1 = 1 trainer rank "
               "(+ user_sim_ranks 0) leave 0 of 1 rank, fewer than rollout_tensor_parallel 1; separate mode needs at "
               "least tensor_parallel 1 + rollout_tensor_parallel 1 + user_sim_ranks 0 = 2 ranks: start more "
               "ranks or set colocate");
    expect_err(req(1, 0, 0, 1, 8, false), 8,
               "user_sim_ranks 8 leaves no trainer or rollout ranks in a world of 8 ranks; separate mode needs at "
               "least tensor_parallel 1 + rollout_tensor_parallel 1 + user_sim_ranks 8 = 10 ranks: start more "
               "ranks or set colocate");
    expect_err(req(2, 2, 0, 1, 4, false), 8,
               "no ranks left for rollout: tensor_parallel 2 x data_parallel 2 = 4 trainer ranks "
               "(+ user_sim_ranks 4) leave 0 of 8 ranks, fewer than rollout_tensor_parallel 1; "
               "8 ranks fit data_parallel 1 with 2 rollout groups of 1 rank");
    check_all_ranks(req(2, 2, 0, 1, 3, false), 8); /* one rank fewer for user sim leaves one group */

    /* absurd counts give messages, not overflows (UBSan checks) */
    expect_err(req(2, INT_MAX, INT_MAX, 1, 0, false), 8,
               "world size 8 does not fit tensor_parallel 2 x data_parallel 2147483647 + 2147483647 rollout groups "
               "x 1 rank + user_sim_ranks 0 = 6442450941 ranks; 8 ranks fit data_parallel 3 with 2 rollout groups "
               "of 1 rank; or 8 ranks fit 6 rollout groups of 1 rank with data_parallel 1; the requested layout "
               "needs 6442450941 ranks");
    expect_err(req(2, INT_MAX, 0, 1, 0, false), 8,
               "no ranks left for rollout: tensor_parallel 2 x data_parallel 2147483647 = 4294967294 trainer ranks "
               "(+ user_sim_ranks 0) leave 0 of 8 ranks, fewer than rollout_tensor_parallel 1; "
               "8 ranks fit data_parallel 3 with 2 rollout groups of 1 rank");
    expect_err(req(1, 0, 0, 1, INT_MAX, false), 8,
               "user_sim_ranks 2147483647 leaves no trainer or rollout ranks in a world of 8 ranks; separate mode "
               "needs at least tensor_parallel 1 + rollout_tensor_parallel 1 + user_sim_ranks 2147483647 = "
               "2147483649 ranks: start more ranks or set colocate");
    RankLayout lb;
    LayoutRequest rb = req(INT_MAX, INT_MAX, 0, 1, 1, true);
    assert_int_equal(layout_plan(&rb, 8, 0, 0, 0, 0, 0, &lb, err, sizeof err), -1);
    assert_string_equal(err, "tensor_parallel 2147483647 does not divide the 7 trainer ranks (world size 8 - "
                             "user_sim_ranks 1); world sizes that fit: 2147483648");

    /* a short err buffer truncates, still terminated */
    char tiny[16];
    plan_err(req(3, 0, 0, 1, 0, true), 8, tiny, sizeof tiny);
    assert_string_equal(tiny, "tensor_parallel");
}

static void test_describe(void **state) {
    (void)state;
    char d[2048];
    RankLayout l = plan_ok(req(2, 2, 0, 1, 2, false), 8, 3);
    layout_describe(&l, d, sizeof d);
    assert_string_equal(d, "rank layout: 8 ranks, separate (trainer and rollout on their own ranks)\n"
                           "  trainer      ranks 0-3: data_parallel 2 x tensor_parallel 2\n"
                           "    tp groups: [0-1] [2-3]\n"
                           "  rollout      ranks 4-5: 2 groups of 1 rank\n"
                           "    groups: [4] [5]\n"
                           "  weight sync  rank 0 (trainer rank 0) + ranks 4-5\n"
                           "  user sim     ranks 6-7\n");

    l = plan_ok(req(2, 0, 0, 1, 0, true), 8, 0);
    layout_describe(&l, d, sizeof d);
    assert_string_equal(d, "rank layout: 8 ranks, colocated (every trainer rank also runs a rollout engine; the "
                           "phases alternate)\n"
                           "  trainer      ranks 0-7: data_parallel 4 x tensor_parallel 2\n"
                           "    tp groups: [0-1] [2-3] [4-5] [6-7]\n"
                           "  rollout      ranks 0-7: 8 engines of 1 rank with the full weights (all-gathered "
                           "over each tp group)\n"
                           "  user sim     none\n");

    l = plan_ok(req(1, 0, 0, 1, 0, true), 1, 0);
    layout_describe(&l, d, sizeof d);
    assert_string_equal(d, "rank layout: 1 rank, colocated (every trainer rank also runs a rollout engine; the "
                           "phases alternate)\n"
                           "  trainer      rank 0: data_parallel 1 x tensor_parallel 1\n"
                           "  rollout      rank 0: 1 engine of 1 rank with the full weights\n"
                           "  user sim     none\n");

    l = plan_ok(req(2, 0, 0, 2, 0, true), 4, 0);
    layout_describe(&l, d, sizeof d);
    assert_string_equal(d, "rank layout: 4 ranks, colocated (every trainer rank also runs a rollout engine; the "
                           "phases alternate)\n"
                           "  trainer      ranks 0-3: data_parallel 2 x tensor_parallel 2\n"
                           "    tp groups: [0-1] [2-3]\n"
                           "  rollout      ranks 0-3: 2 engines, each a tp group on the trainer's shards\n"
                           "  user sim     none\n");
    l = plan_ok(req(1, 1, 0, 2, 0, false), 5, 0);
    layout_describe(&l, d, sizeof d);
    assert_non_null(strstr(d, "  rollout      ranks 1-4: 2 groups of 2 ranks\n    groups: [1-2] [3-4]\n"));

    /* long lists stop; short buffers truncate */
    l = plan_ok(req(2, 0, 0, 1, 0, false), 40, 0);
    layout_describe(&l, d, sizeof d);
    assert_non_null(strstr(d, "  rollout      ranks 2-39: 38 groups of 1 rank\n    groups: [2] [3]"));
    assert_non_null(strstr(d, " [17] ... (22 more)\n"));
    char tiny[12];
    layout_describe(&l, tiny, sizeof tiny);
    assert_string_equal(tiny, "rank layout");
}

/* World size 1 on the SELF backend: every comm of the colocated layout, no MPI. */
static void test_self_comms(void **state) {
    (void)state;
    RankLayout l = plan_ok(req(1, 0, 0, 1, 0, true), 1, 0);
    Comm *world = comm_self();
    LayoutComms c;
    layout_create_comms(&l, world, &c);
    assert_ptr_equal(c.world, world);
    Comm *all[] = {c.trainer, c.tp, c.dp, c.rollout, c.rollout_group};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        assert_non_null(all[i]);
        assert_int_equal(all[i]->size, 1);
        assert_int_equal(all[i]->rank, 0);
        float v[2] = {1.5f, -2.0f};
        comm_allreduce_sum_f32(all[i], v, 2);
        assert_true(v[0] == 1.5f && v[1] == -2.0f);
    }
    assert_non_null(c.rollout_leaders);
    assert_int_equal(c.rollout_leaders->size, 1);
    assert_null(c.sync);
    assert_null(c.user_sim);
    layout_free_comms(&c);
    assert_null(c.trainer);
    assert_null(c.rollout);
    comm_free(world);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_colocated),
        cmocka_unit_test(test_separate),
        cmocka_unit_test(test_user_sim),
        cmocka_unit_test(test_model_counts),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_self_comms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
