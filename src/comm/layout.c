/* layout.c — planning the rank layout of a job, building its communicators
 * and describing it (layout.h). */
#include "comm/layout.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

/* Lists of divisors or group ranges stop after this many entries. */
#define LIST_MAX 16

/* Append to the NUL-terminated string in buf (truncating at len). */
__attribute__((format(printf, 3, 4))) static void cat(char *buf, size_t len, const char *fmt, ...) {
    if (len == 0) return;
    size_t used = strnlen(buf, len);
    if (used >= len - 1) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
}

static const char *plural(long long n, const char *one, const char *many) { return n == 1 ? one : many; }

/* "rank 4" or "ranks 4-7" for world ranks [first, first + n). */
static void cat_ranks(char *buf, size_t len, int first, int n) {
    if (n == 1) cat(buf, len, "rank %d", first);
    else cat(buf, len, "ranks %d-%d", first, first + n - 1);
}

/* ", " separated divisors of n up to limit, "..." past LIST_MAX of them. */
static void cat_divisors(char *buf, size_t len, int n, int limit) {
    int listed = 0;
    for (int d = 1; d <= n && d <= limit; d++) {
        if (n % d != 0) continue;
        if (listed == LIST_MAX) {
            cat(buf, len, ", ...");
            return;
        }
        cat(buf, len, "%s%d", listed ? ", " : "", d);
        listed++;
    }
}

static int gcd(int a, int b) {
    while (b) {
        int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* ------------------------------------------------------------ planning */

typedef struct {
    const char *key;
    int n;
} ModelCount;

/* tp must divide every model count (> 0) so each TP rank holds whole heads
 * and equal slices of the MLP and vocabulary (qwen3_tp_check's rule). The
 * message names the count, its divisors, and the TP values that fit all
 * counts and the ranks there are. */
static int check_model(const char *field, int tp, const ModelCount *counts, int n_counts, int max_tp, char *err,
                       size_t errlen) {
    int common = 0;
    for (int i = 0; i < n_counts; i++) {
        if (counts[i].n > 0) common = gcd(common, counts[i].n);
    }
    for (int i = 0; i < n_counts; i++) {
        if (counts[i].n <= 0 || counts[i].n % tp == 0) continue;
        snprintf(err, errlen, "%s %d does not divide %s %d (divisors: ", field, tp, counts[i].key, counts[i].n);
        cat_divisors(err, errlen, counts[i].n, counts[i].n);
        cat(err, errlen, "); %s values that fit this model on %d %s: ", field, max_tp,
            plural(max_tp, "rank", "ranks"));
        cat_divisors(err, errlen, common, max_tp);
        return -1;
    }
    return 0;
}

/* Colocated: every rank that is not a user-sim rank trains and rolls out. */
static int plan_colocated(const LayoutRequest *req, int world_size, RankLayout *l, char *err, size_t errlen) {
    int tp = req->tensor_parallel, us = req->user_sim_ranks;
    int avail = world_size - us;
    if (avail < 1) {
        snprintf(err, errlen,
                 "user_sim_ranks %d leaves no trainer ranks in a world of %d %s; at most %d user-sim %s fit",
                 us, world_size, plural(world_size, "rank", "ranks"), world_size - 1,
                 plural(world_size - 1, "rank", "ranks"));
        return -1;
    }
    if (avail % tp != 0) {
        snprintf(err, errlen,
                 "tensor_parallel %d does not divide the %d trainer %s (world size %d - user_sim_ranks %d); "
                 "world sizes that fit: ",
                 tp, avail, plural(avail, "rank", "ranks"), world_size, us);
        long long below = avail / tp * tp;
        if (below > 0) cat(err, errlen, "%lld or ", below + us);
        cat(err, errlen, "%lld", below + tp + us);
        return -1;
    }
    int dp = avail / tp;
    if (req->data_parallel != 0 && req->data_parallel != dp) {
        snprintf(err, errlen,
                 "data_parallel %d does not fit: %d trainer %s with tensor_parallel %d make data_parallel %d; "
                 "set data_parallel %d (or 0), or run on %lld ranks",
                 req->data_parallel, avail, plural(avail, "rank", "ranks"), tp, dp, dp,
                 (long long)req->data_parallel * tp + us);
        return -1;
    }
    /* An engine is either one rank with the full weights (gathered over the
     * TP group after each update) or the TP group itself, reading the
     * trainer's shards in place. */
    int rtp = req->rollout_tensor_parallel;
    if (rtp != 1 && rtp != tp) {
        snprintf(err, errlen,
                 "rollout_tensor_parallel %d does not fit colocated tensor_parallel %d: a colocated engine is one "
                 "rank (1) or the trainer's tp group (%d)",
                 rtp, tp, tp);
        return -1;
    }
    if (req->rollout_groups != 0 && req->rollout_groups != avail / rtp && rtp == 1) {
        snprintf(err, errlen,
                 "rollout_groups %d does not fit: colocated, every one of the %d trainer %s runs its own "
                 "rollout engine; set rollout_groups %d (or 0)",
                 req->rollout_groups, avail, plural(avail, "rank", "ranks"), avail);
        return -1;
    }
    if (req->rollout_groups != 0 && req->rollout_groups != avail / rtp) {
        snprintf(err, errlen,
                 "rollout_groups %d does not fit: colocated, the %d trainer %s run %d rollout %s of %d %s; set "
                 "rollout_groups %d (or 0)",
                 req->rollout_groups, avail, plural(avail, "rank", "ranks"), avail / rtp,
                 plural(avail / rtp, "engine", "engines"), rtp, plural(rtp, "rank", "ranks"), avail / rtp);
        return -1;
    }
    l->tp = tp;
    l->dp = dp;
    l->n_trainer = avail;
    l->rollout_tp = rtp;
    l->n_rollout_groups = avail / rtp;
    return 0;
}

/* One fitting pair (dp, groups) for avail ranks: trainer dp*tp + rollout groups*rtp. */
static bool separate_fits(int avail, int tp, int rtp, int dp, int *groups) {
    long long rest = avail - (long long)dp * tp;
    if (dp < 1 || rest < rtp || rest % rtp != 0) return false;
    *groups = (int)(rest / rtp);
    return true;
}

/* What fits in separate mode with tp, rtp and us kept, closest to the
 * request: the requested dp (else the largest dp below it that leaves a
 * rollout group), the requested groups (else fewer), else data_parallel 1;
 * and the world size the request itself needs when both counts were given. */
static void suggest_separate(char *err, size_t errlen, int world_size, int tp, int rtp, int us, int dp_req,
                             int g_req) {
    int avail = world_size - us;
    int found = 0, found_dp = 0, g;
    /* counts above avail never fit; starting below them keeps the loops short */
    for (int dp = dp_req < avail ? dp_req : avail; dp >= 1; dp--) {
        if (!separate_fits(avail, tp, rtp, dp, &g)) continue;
        found_dp = dp;
        cat(err, errlen, "; %d ranks fit data_parallel %d with %d rollout %s of %d %s", world_size, dp, g,
            plural(g, "group", "groups"), rtp, plural(rtp, "rank", "ranks"));
        found = 1;
        break;
    }
    for (int gg = g_req < avail ? g_req : avail; gg >= 1; gg--) {
        long long rest = avail - (long long)gg * rtp;
        if (rest < tp || rest % tp != 0) continue;
        if (rest / tp == found_dp) break; /* the same layout as above */
        cat(err, errlen, "%s %d ranks fit %d rollout %s of %d %s with data_parallel %d", found ? "; or" : ";",
            world_size, gg, plural(gg, "group", "groups"), rtp, plural(rtp, "rank", "ranks"), (int)(rest / tp));
        found = 1;
        break;
    }
    /* else the smallest trainer that leaves whole rollout groups */
    for (int dp = 1; !found && (long long)dp * tp < avail; dp++) {
        if (!separate_fits(avail, tp, rtp, dp, &g)) continue;
        cat(err, errlen, "; %d ranks fit data_parallel %d with %d rollout %s of %d %s", world_size, dp, g,
            plural(g, "group", "groups"), rtp, plural(rtp, "rank", "ranks"));
        found = 1;
    }
    if (!found) {
        cat(err, errlen,
            "; separate mode needs at least tensor_parallel %d + rollout_tensor_parallel %d + user_sim_ranks %d "
            "= %lld ranks: start more ranks or set colocate",
            tp, rtp, us, (long long)tp + rtp + us);
    }
    if (dp_req > 0 && g_req > 0) {
        cat(err, errlen, "; the requested layout needs %lld ranks",
            (long long)dp_req * tp + (long long)g_req * rtp + us);
    }
}

/* Separate: trainer ranks, then rollout groups, then user-sim ranks. */
static int plan_separate(const LayoutRequest *req, int world_size, RankLayout *l, char *err, size_t errlen) {
    int tp = req->tensor_parallel, rtp = req->rollout_tensor_parallel, us = req->user_sim_ranks;
    int dp = req->data_parallel, g = req->rollout_groups;
    int avail = world_size - us;
    if (avail < 1) {
        snprintf(err, errlen, "user_sim_ranks %d leaves no trainer or rollout ranks in a world of %d %s", us,
                 world_size, plural(world_size, "rank", "ranks"));
        suggest_separate(err, errlen, world_size, tp, rtp, us, dp, g);
        return -1;
    }
    if (dp == 0 && g == 0) dp = 1; /* rollout dominates wall-clock: give it every rank but one TP group */
    /* long long: counts come from the config and may be absurd */
    long long n_train = (long long)dp * tp, n_roll = (long long)g * rtp;
    if (g == 0) {
        long long rest = avail - n_train;
        if (rest < rtp) {
            snprintf(err, errlen,
                     "no ranks left for rollout: tensor_parallel %d x data_parallel %d = %lld trainer %s "
                     "(+ user_sim_ranks %d) leave %lld of %d %s, fewer than rollout_tensor_parallel %d",
                     tp, dp, n_train, plural(n_train, "rank", "ranks"), us, rest > 0 ? rest : 0, world_size,
                     plural(world_size, "rank", "ranks"), rtp);
            suggest_separate(err, errlen, world_size, tp, rtp, us, req->data_parallel, req->rollout_groups);
            return -1;
        }
        if (rest % rtp != 0) {
            snprintf(err, errlen,
                     "rollout_tensor_parallel %d does not divide the %lld ranks left for rollout (world size %d - "
                     "%lld trainer ranks - user_sim_ranks %d)",
                     rtp, rest, world_size, n_train, us);
            suggest_separate(err, errlen, world_size, tp, rtp, us, req->data_parallel, req->rollout_groups);
            return -1;
        }
        g = (int)(rest / rtp);
    } else if (dp == 0) {
        long long rest = avail - n_roll;
        if (rest < tp) {
            snprintf(err, errlen,
                     "no ranks left for the trainer: %d rollout %s x %d %s (+ user_sim_ranks %d) leave %lld of %d "
                     "%s, fewer than tensor_parallel %d",
                     g, plural(g, "group", "groups"), rtp, plural(rtp, "rank", "ranks"), us, rest > 0 ? rest : 0,
                     world_size, plural(world_size, "rank", "ranks"), tp);
            suggest_separate(err, errlen, world_size, tp, rtp, us, req->data_parallel, req->rollout_groups);
            return -1;
        }
        if (rest % tp != 0) {
            snprintf(err, errlen,
                     "tensor_parallel %d does not divide the %lld ranks left for the trainer (world size %d - %lld "
                     "rollout ranks - user_sim_ranks %d)",
                     tp, rest, world_size, n_roll, us);
            suggest_separate(err, errlen, world_size, tp, rtp, us, req->data_parallel, req->rollout_groups);
            return -1;
        }
        dp = (int)(rest / tp);
    } else if (n_train + n_roll != avail) {
        snprintf(err, errlen,
                 "world size %d does not fit tensor_parallel %d x data_parallel %d + %d rollout %s x %d %s + "
                 "user_sim_ranks %d = %lld ranks",
                 world_size, tp, dp, g, plural(g, "group", "groups"), rtp, plural(rtp, "rank", "ranks"), us,
                 n_train + n_roll + us);
        suggest_separate(err, errlen, world_size, tp, rtp, us, dp, g);
        return -1;
    }
    l->tp = tp;
    l->dp = dp;
    l->n_trainer = dp * tp;
    l->rollout_tp = rtp;
    l->n_rollout_groups = g;
    return 0;
}

/* This rank's role and ranks within it, from the planned counts. */
static void place_rank(RankLayout *l) {
    int r = l->world_rank;
    if (r < l->n_trainer) {
        l->is_trainer = true;
        l->trainer_rank = r;
        l->dp_rank = r / l->tp;
        l->tp_rank = r % l->tp;
    }
    if (l->colocate) {
        if (l->is_trainer) {
            l->is_rollout = true;
            l->rollout_rank = r;
            l->rollout_group = r / l->rollout_tp;
            l->rollout_group_rank = r % l->rollout_tp;
        }
    } else {
        int q = r - l->n_trainer;
        if (q >= 0 && q < l->n_rollout_groups * l->rollout_tp) {
            l->is_rollout = true;
            l->rollout_rank = q;
            l->rollout_group = q / l->rollout_tp;
            l->rollout_group_rank = q % l->rollout_tp;
        }
    }
    if (r >= l->world_size - l->n_user_sim) l->is_user_sim = true;
}

int layout_plan(const LayoutRequest *req, int world_size, int world_rank, int num_heads, int num_kv_heads,
                int intermediate_size, int vocab_size, RankLayout *out, char *err, size_t errlen) {
    RankLayout l = {
        .world_size = world_size,
        .world_rank = world_rank,
        .colocate = req->colocate,
        .trainer_rank = -1,
        .dp_rank = -1,
        .tp_rank = -1,
        .rollout_group = -1,
        .rollout_group_rank = -1,
        .rollout_rank = -1,
    };
    *out = l;
    if (errlen) err[0] = '\0';

    if (world_size < 1) {
        snprintf(err, errlen, "world size %d: a job needs at least one rank", world_size);
        return -1;
    }
    if (world_rank < 0 || world_rank >= world_size) {
        snprintf(err, errlen, "world rank %d is outside a world of %d ranks", world_rank, world_size);
        return -1;
    }
    if (req->tensor_parallel < 1) {
        snprintf(err, errlen, "tensor_parallel %d must be at least 1", req->tensor_parallel);
        return -1;
    }
    if (req->data_parallel < 0) {
        snprintf(err, errlen, "data_parallel %d must be at least 0 (0 = derive from the world size)",
                 req->data_parallel);
        return -1;
    }
    if (req->rollout_groups < 0) {
        snprintf(err, errlen, "rollout_groups %d must be at least 0 (0 = derive from the world size)",
                 req->rollout_groups);
        return -1;
    }
    if (req->rollout_tensor_parallel < 1) {
        snprintf(err, errlen, "rollout_tensor_parallel %d must be at least 1", req->rollout_tensor_parallel);
        return -1;
    }
    if (req->user_sim_ranks < 0) {
        snprintf(err, errlen, "user_sim_ranks %d must be at least 0", req->user_sim_ranks);
        return -1;
    }
    ModelCount counts[] = {
        {"num_key_value_heads", num_kv_heads},
        {"num_attention_heads", num_heads},
        {"intermediate_size", intermediate_size},
        {"vocab_size", vocab_size},
    };
    int max_tp = world_size - req->user_sim_ranks;
    if (max_tp < 1) max_tp = 1;
    if (check_model("tensor_parallel", req->tensor_parallel, counts, 4, max_tp, err, errlen) != 0) return -1;
    /* an engine shards the model as training does */
    if (check_model("rollout_tensor_parallel", req->rollout_tensor_parallel, counts, 4, max_tp, err, errlen) != 0)
        return -1;

    l.n_user_sim = req->user_sim_ranks;
    int rc = req->colocate ? plan_colocated(req, world_size, &l, err, errlen)
                           : plan_separate(req, world_size, &l, err, errlen);
    if (rc != 0) return -1;
    place_rank(&l);
    *out = l;
    return 0;
}

/* ------------------------------------------------------------ communicators */

void layout_create_comms(const RankLayout *l, Comm *world, LayoutComms *out) {
    memset(out, 0, sizeof *out);
    if (world->size != l->world_size || world->rank != l->world_rank) {
        die_runtime("layout_create_comms: layout planned for rank %d of %d, called on rank %d of %d",
                    l->world_rank, l->world_size, world->rank, world->size);
    }
    if (!l->is_trainer && !l->is_rollout && !l->is_user_sim) {
        die_runtime("layout_create_comms: world rank %d has no role (layout not planned?)", l->world_rank);
    }
    out->world = world;

    /* One split by role gives each rank the comm of its role: trainer (in
     * colocated mode also the rollout ranks), rollout, user simulator. Keys
     * are world ranks, so a comm's rank is the rank within its role. */
    int role = l->is_trainer ? 0 : l->is_rollout ? 1 : 2;
    Comm *mine = comm_split(world, role, l->world_rank);
    if (role == 0) out->trainer = mine;
    else if (role == 1) out->rollout = mine;
    else out->user_sim = mine;

    if (out->trainer) {
        char err[256];
        if (comm_grid(out->trainer, l->tp, &out->tp, &out->dp, err, sizeof err) != 0) {
            die_runtime("layout_create_comms: %s", err);
        }
        /* Colocated rollout gets its own communicator (same ranks), so the
         * engine's collectives never match the trainer's. */
        if (l->colocate) out->rollout = comm_split(out->trainer, 0, l->trainer_rank);
    }
    if (out->rollout) {
        out->rollout_group = comm_split(out->rollout, l->rollout_group, l->rollout_group_rank);
        /* the engines' leaders, which run the episodes */
        bool lead = l->rollout_group_rank == 0;
        Comm *s = comm_split(out->rollout, lead ? 0 : 1, l->rollout_group);
        if (lead) out->rollout_leaders = s;
        else comm_free(s);
    }

    /* The weight broadcast: trainer rank 0 (world rank 0, so rank 0 of sync)
     * and every rollout rank. Collective over world; the other ranks free
     * what they get. */
    if (!l->colocate) {
        bool in_sync = l->trainer_rank == 0 || l->is_rollout;
        Comm *s = comm_split(world, in_sync ? 0 : 1, l->world_rank);
        if (in_sync) out->sync = s;
        else comm_free(s);
    }
}

void layout_free_comms(LayoutComms *c) {
    comm_free(c->trainer);
    comm_free(c->tp);
    comm_free(c->dp);
    comm_free(c->rollout);
    comm_free(c->rollout_group);
    comm_free(c->rollout_leaders);
    comm_free(c->sync);
    comm_free(c->user_sim);
    memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------ description */

/* " [0-1] [2-3] ..." for n groups of size ranks from world rank first. */
static void cat_groups(char *out, size_t outlen, int first, int n, int size) {
    for (int i = 0; i < n; i++) {
        if (i == LIST_MAX) {
            cat(out, outlen, " ... (%d more)", n - i);
            return;
        }
        int a = first + i * size;
        if (size == 1) cat(out, outlen, " [%d]", a);
        else cat(out, outlen, " [%d-%d]", a, a + size - 1);
    }
}

void layout_describe(const RankLayout *l, char *out, size_t outlen) {
    if (outlen == 0) return;
    out[0] = '\0';
    cat(out, outlen, "rank layout: %d %s, %s\n", l->world_size, plural(l->world_size, "rank", "ranks"),
        l->colocate ? "colocated (every trainer rank also runs a rollout engine; the phases alternate)"
                    : "separate (trainer and rollout on their own ranks)");

    cat(out, outlen, "  trainer      ");
    cat_ranks(out, outlen, 0, l->n_trainer);
    cat(out, outlen, ": data_parallel %d x tensor_parallel %d\n", l->dp, l->tp);
    if (l->tp > 1) {
        cat(out, outlen, "    tp groups:");
        cat_groups(out, outlen, 0, l->dp, l->tp);
        cat(out, outlen, "\n");
    }

    if (l->colocate) {
        cat(out, outlen, "  rollout      ");
        cat_ranks(out, outlen, 0, l->n_trainer);
        if (l->rollout_tp > 1) {
            cat(out, outlen, ": %d %s, each a tp group on the trainer's shards\n", l->n_rollout_groups,
                plural(l->n_rollout_groups, "engine", "engines"));
        } else {
            cat(out, outlen, ": %d %s of 1 rank with the full weights%s\n", l->n_rollout_groups,
                plural(l->n_rollout_groups, "engine", "engines"),
                l->tp > 1 ? " (all-gathered over each tp group)" : "");
        }
    } else {
        int n = l->n_rollout_groups * l->rollout_tp;
        cat(out, outlen, "  rollout      ");
        cat_ranks(out, outlen, l->n_trainer, n);
        cat(out, outlen, ": %d %s of %d %s\n    groups:", l->n_rollout_groups,
            plural(l->n_rollout_groups, "group", "groups"), l->rollout_tp, plural(l->rollout_tp, "rank", "ranks"));
        cat_groups(out, outlen, l->n_trainer, l->n_rollout_groups, l->rollout_tp);
        cat(out, outlen, "\n  weight sync  rank 0 (trainer rank 0) + ");
        cat_ranks(out, outlen, l->n_trainer, n);
        cat(out, outlen, "\n");
    }

    cat(out, outlen, "  user sim     ");
    if (l->n_user_sim == 0) cat(out, outlen, "none\n");
    else {
        cat_ranks(out, outlen, l->world_size - l->n_user_sim, l->n_user_sim);
        cat(out, outlen, "\n");
    }
}
