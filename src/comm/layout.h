/* layout.h — the MPI rank layout of a job: which world ranks train (a DP × TP
 * grid), which run rollout engines, which serve the user simulator, and the
 * communicators between them (DESIGN.md §1, doc/layout.md).
 *
 * Two modes:
 *
 *   separate   world ranks [0, n_trainer) train, the next
 *              n_rollout_groups * rollout_tp ranks run rollout engines, the
 *              last n_user_sim ranks serve the user simulator
 *   colocated  every rank that is not a user-sim rank trains and rolls out,
 *              alternating phases on the same ranks
 *
 * Planning (layout_plan) is pure arithmetic with no MPI, so the app layer
 * validates the whole layout on every rank before any work starts and names
 * the field that does not fit together with a layout that would.
 * layout_create_comms then builds the communicators (collective over world).
 *
 * The trainer grid follows comm_grid: trainer rank r has tp rank r % tp and
 * dp rank r / tp, so a TP group is tp consecutive ranks (one node).
 */
#ifndef TAU2_COMM_LAYOUT_H
#define TAU2_COMM_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>

#include "comm/comm.h"

typedef struct {
    int tensor_parallel;         /* trainer TP (>= 1) */
    int data_parallel;           /* trainer DP, 0 = derive from the world size */
    int rollout_groups;          /* 0 = derive */
    int rollout_tensor_parallel; /* ranks per rollout engine (>= 1; colocated: 1 or tensor_parallel) */
    int user_sim_ranks;          /* >= 0 */
    bool colocate;
} LayoutRequest;

typedef struct {
    int world_size, world_rank;
    int tp, dp, n_trainer;            /* trainer ranks = dp * tp, world ranks [0, n_trainer) */
    int n_rollout_groups, rollout_tp; /* separate mode: world ranks [n_trainer, n_trainer + groups*rollout_tp) */
    int n_user_sim;                   /* the last n_user_sim world ranks */
    bool colocate;
    /* this rank */
    bool is_trainer, is_rollout, is_user_sim;
    int trainer_rank, dp_rank, tp_rank;    /* -1 when not a trainer */
    int rollout_group, rollout_group_rank; /* -1 when not a rollout rank */
    int rollout_rank;                      /* rank among all rollout ranks, -1 if none */
} RankLayout;

/* Plan the layout of world_size ranks as seen from world_rank (pure: no MPI).
 *
 * num_heads, num_kv_heads, intermediate_size and vocab_size are the policy
 * model's counts; tensor_parallel and rollout_tensor_parallel must each divide
 * all of them (the same rule as qwen3_tp_check, repeated here because comm
 * sits below model).
 * A count <= 0 is not checked, for planning before a model is known.
 *
 * Derived counts:
 *   colocated  dp = (world_size - user_sim_ranks) / tp; rollout_tp 1: every
 *              trainer rank is its own rollout group (n_rollout_groups =
 *              n_trainer, full weights); rollout_tp = tp: each trainer TP
 *              group is one engine on its shards (n_rollout_groups = dp);
 *              a given data_parallel or rollout_groups must match
 *   separate   data_parallel 0: the ranks left after the rollout groups;
 *              rollout_groups 0: the ranks left after the trainer;
 *              both 0: data_parallel 1 and every other rank rolls out
 *              (rollout dominates wall-clock, DESIGN.md §1)
 *
 * Returns 0, or -1 with err naming the field that does not fit and a layout
 * (or world size) that would. *out is filled in either case; after an error
 * it gives this rank no role. */
int layout_plan(const LayoutRequest *req, int world_size, int world_rank, int num_heads, int num_kv_heads,
                int intermediate_size, int vocab_size, RankLayout *out, char *err, size_t errlen);

/* The communicators of a planned layout. Each is owned by the LayoutComms
 * (layout_free_comms) except world; a comm this rank is not part of is NULL. */
typedef struct {
    Comm *world;         /* borrowed */
    Comm *trainer;       /* all trainer ranks, rank = trainer_rank */
    Comm *tp, *dp;       /* this trainer's TP group and DP group (comm_grid) */
    Comm *rollout;       /* all rollout ranks, rank = rollout_rank */
    Comm *rollout_group; /* this rank's rollout engine group, rank = rollout_group_rank */
    Comm *rollout_leaders; /* rank 0 of every rollout group (the engines' leaders), rank = rollout_group */
    Comm *sync;          /* separate mode: trainer rank 0 (its rank 0) + every rollout rank; the weight broadcast */
    Comm *user_sim;      /* the user-sim ranks */
} LayoutComms;

/* Collective over world: every world rank calls it with its own layout
 * (planned with world's size and rank; die_runtime if not). With the SELF
 * backend at world size 1 it needs no MPI. */
void layout_create_comms(const RankLayout *l, Comm *world, LayoutComms *out);
void layout_free_comms(LayoutComms *c);

/* A block of text describing the layout (rank 0 prints it at start): world
 * size, mode, the trainer grid and rollout groups with their rank ranges,
 * the weight-sync group and the user-sim ranks. Truncated to outlen. */
void layout_describe(const RankLayout *l, char *out, size_t outlen);

#endif
