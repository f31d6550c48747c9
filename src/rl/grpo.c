/* grpo.c — GRPO loss, advantages and group filter (see grpo.h). */
#include "rl/grpo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void grpo_loss_config_default(GrpoLossConfig *cfg) {
    cfg->eps_low = 0.2;
    cfg->eps_high = 0.28;
    cfg->kl_coef = 0.0;
    cfg->kl_type = GRPO_KL_LOW_VAR_KL;
    cfg->entropy_coef = 0.0;
    cfg->per_token = false;
}

static const char *const kl_names[] = {"k1", "k2", "k3", "low_var_kl"};

int grpo_kl_type_parse(const char *name, GrpoKlType *out) {
    for (int i = 0; i < (int)(sizeof kl_names / sizeof kl_names[0]); i++) {
        if (strcmp(name, kl_names[i]) == 0) {
            *out = (GrpoKlType)i;
            return 0;
        }
    }
    return -1;
}

const char *grpo_kl_type_name(GrpoKlType t) {
    return (t >= GRPO_KL_K1 && t <= GRPO_KL_LOW_VAR_KL) ? kl_names[t] : "?";
}

/* Agent tokens of trajectory s. */
static int64_t seq_tokens(const GrpoBatch *b, int s) {
    int64_t n = 0;
    for (int t = b->seq_start[s]; t < b->seq_start[s + 1]; t++) n += b->mask[t] != 0.0f;
    return n;
}

double grpo_loss_count(const GrpoLossConfig *cfg, const GrpoBatch *b) {
    if (!cfg->per_token) return (double)b->n_seqs;
    double n = 0.0;
    for (int s = 0; s < b->n_seqs; s++) {
        int64_t k = seq_tokens(b, s);
        n += (double)(k > 0 ? k : 1);
    }
    return n;
}

int grpo_check_batch(const GrpoLossConfig *cfg, const GrpoBatch *b, char *err, size_t errlen) {
    if (b->T < 0 || b->n_seqs < 0) {
        snprintf(err, errlen, "grpo batch: negative size (T %d, n_seqs %d)", b->T, b->n_seqs);
        return -1;
    }
    if (!b->seq_start || !b->logprob || !b->old_logprob || !b->mask || !b->advantage) {
        snprintf(err, errlen, "grpo batch: seq_start, logprob, old_logprob, mask and advantage are required");
        return -1;
    }
    if (b->seq_start[0] != 0 || b->seq_start[b->n_seqs] != b->T) {
        snprintf(err, errlen, "grpo batch: seq_start must run from 0 to T = %d (got %d .. %d)", b->T,
                 (int)b->seq_start[0], (int)b->seq_start[b->n_seqs]);
        return -1;
    }
    for (int s = 0; s < b->n_seqs; s++) {
        if (b->seq_start[s + 1] < b->seq_start[s]) {
            snprintf(err, errlen, "grpo batch: seq_start decreases at trajectory %d (%d > %d)", s,
                     (int)b->seq_start[s], (int)b->seq_start[s + 1]);
            return -1;
        }
    }
    if (cfg->kl_coef != 0.0 && !b->ref_logprob) {
        snprintf(err, errlen, "grpo batch: kl_coef %g needs reference logprobs", cfg->kl_coef);
        return -1;
    }
    if (cfg->entropy_coef != 0.0 && !b->entropy) {
        snprintf(err, errlen, "grpo batch: entropy_coef %g needs entropies", cfg->entropy_coef);
        return -1;
    }
    if (cfg->kl_type < GRPO_KL_K1 || cfg->kl_type > GRPO_KL_LOW_VAR_KL) {
        snprintf(err, errlen, "grpo config: unknown kl type %d", (int)cfg->kl_type);
        return -1;
    }
    return 0;
}

/* KL estimate of one token and its derivative in d = logπθ − logπref,
 * as slime's compute_approx_kl. */
static double kl_term(GrpoKlType type, double d, double *dkl_dd) {
    switch (type) {
    case GRPO_KL_K1:
        *dkl_dd = 1.0;
        return d;
    case GRPO_KL_K2:
        *dkl_dd = d;
        return d * d / 2.0;
    case GRPO_KL_K3:
    case GRPO_KL_LOW_VAR_KL: {
        double e = exp(-d);
        double kl = e - 1.0 + d;
        *dkl_dd = 1.0 - e;
        /* torch.clamp passes the gradient only inside [min, max] (inclusive). */
        if (type == GRPO_KL_LOW_VAR_KL && (kl > 10.0 || kl < -10.0)) {
            *dkl_dd = 0.0;
            kl = kl > 10.0 ? 10.0 : -10.0;
        }
        return kl;
    }
    }
    *dkl_dd = 0.0;
    return 0.0;
}

/* The weight of one agent token of a trajectory with n_s agent tokens in
 * the step's loss. */
static double seq_weight(const GrpoLossConfig *cfg, int64_t n_s, double count) {
    return cfg->per_token ? 1.0 / count : 1.0 / ((double)(n_s > 0 ? n_s : 1) * count);
}

/* One agent token t's terms of the loss (unweighted) and d(unweighted
 * loss)/dlogπθ at logπθ = lp; A is its trajectory's advantage. */
typedef struct {
    double pg, clip, ppo_kl, kl, g;
} TokenTerms;

static TokenTerms token_terms(const GrpoLossConfig *cfg, const GrpoBatch *b, int t, float lp, double A) {
    double lo = 1.0 - cfg->eps_low, hi = 1.0 + cfg->eps_high;
    TokenTerms r = {0};
    r.ppo_kl = (double)b->old_logprob[t] - (double)lp;
    double ratio = exp(-r.ppo_kl);
    double clipped = ratio < lo ? lo : (ratio > hi ? hi : ratio);
    double pg1 = -ratio * A, pg2 = -clipped * A;
    int clip_active = pg2 > pg1;
    r.pg = clip_active ? pg2 : pg1;
    r.clip = clip_active;
    /* d pg / d logπθ: through the ratio when the unclipped term wins,
     * nothing when the clip is active (ρ is then outside the range). */
    r.g = clip_active ? 0.0 : -ratio * A;
    if (b->ref_logprob) {
        double dkl;
        r.kl = kl_term(cfg->kl_type, (double)lp - (double)b->ref_logprob[t], &dkl);
        r.g += cfg->kl_coef * dkl;
    }
    return r;
}

double grpo_loss(const GrpoLossConfig *cfg, const GrpoBatch *b, double count, float *dlogprob, float *dentropy,
                 GrpoMetrics *metrics) {
    char err[256];
    if (grpo_check_batch(cfg, b, err, sizeof err) != 0) die_runtime("%s", err);
    if (count <= 0.0) count = grpo_loss_count(cfg, b);

    GrpoMetrics m = {0};
    for (int s = 0; s < b->n_seqs; s++) {
        int t0 = b->seq_start[s], t1 = b->seq_start[s + 1];
        int64_t n_s = seq_tokens(b, s);
        m.n_tokens += n_s;
        double w = seq_weight(cfg, n_s, count);
        double A = b->advantage[s];
        /* per-trajectory sums, scaled by w once at the end */
        double pg_sum = 0, clip_sum = 0, ppo_kl_sum = 0, kl_sum = 0, ent_sum = 0, diff_sum = 0;
        for (int t = t0; t < t1; t++) {
            if (b->mask[t] == 0.0f) {
                dlogprob[t] = 0.0f;
                if (dentropy) dentropy[t] = 0.0f;
                continue;
            }
            TokenTerms r = token_terms(cfg, b, t, b->logprob[t], A);
            pg_sum += r.pg;
            clip_sum += r.clip;
            ppo_kl_sum += r.ppo_kl;
            diff_sum += fabs(r.ppo_kl);
            kl_sum += r.kl;
            if (b->entropy) ent_sum += (double)b->entropy[t];
            dlogprob[t] = (float)(w * r.g);
            if (dentropy) dentropy[t] = (float)(-cfg->entropy_coef * w);
        }
        m.pg_loss += w * pg_sum;
        m.pg_clipfrac += w * clip_sum;
        m.ppo_kl += w * ppo_kl_sum;
        m.kl_loss += w * kl_sum;
        m.entropy += w * ent_sum;
        m.logprob_abs_diff += w * diff_sum;
    }
    m.loss = m.pg_loss + cfg->kl_coef * m.kl_loss - cfg->entropy_coef * m.entropy;
    if (metrics) *metrics = m;
    return m.loss;
}

GrpoRows *grpo_rows_new(const GrpoLossConfig *cfg, const GrpoBatch *b, double count) {
    char err[256];
    if (grpo_check_batch(cfg, b, err, sizeof err) != 0) die_runtime("%s", err);
    if (count <= 0.0) count = grpo_loss_count(cfg, b);
    GrpoRows *r = xmalloc(sizeof *r);
    r->cfg = *cfg;
    r->b = *b;
    r->weight = xmalloc((size_t)(b->n_seqs > 0 ? b->n_seqs : 1) * sizeof(double));
    r->seq_of = xmalloc((size_t)(b->T > 0 ? b->T : 1) * sizeof(int32_t));
    for (int s = 0; s < b->n_seqs; s++) {
        r->weight[s] = seq_weight(cfg, seq_tokens(b, s), count);
        for (int t = b->seq_start[s]; t < b->seq_start[s + 1]; t++) r->seq_of[t] = s;
    }
    return r;
}

void grpo_rows_free(GrpoRows *r) {
    if (!r) return;
    free(r->weight);
    free(r->seq_of);
    free(r);
}

void grpo_loss_rows(const GrpoRows *r, int n, const int32_t *rows, const float *logprob, float *dlogprob,
                    float *dentropy) {
    const GrpoBatch *b = &r->b;
    for (int i = 0; i < n; i++) {
        int t = rows[i];
        if (t < 0 || t >= b->T) die_runtime("grpo_loss_rows: row %d outside the batch (T %d)", t, b->T);
        if (b->mask[t] == 0.0f) {
            dlogprob[i] = 0.0f;
            if (dentropy) dentropy[i] = 0.0f;
            continue;
        }
        int s = r->seq_of[t];
        double w = r->weight[s];
        TokenTerms tt = token_terms(&r->cfg, b, t, logprob[i], b->advantage[s]);
        dlogprob[i] = (float)(w * tt.g);
        if (dentropy) dentropy[i] = (float)(-r->cfg.entropy_coef * w);
    }
}

/* ------------------------------------------------------------ advantages */

void grpo_group_advantages(const double *reward, const int32_t *group_start, int n_groups, bool divide_by_std,
                           double *advantage) {
    for (int g = 0; g < n_groups; g++) {
        int i0 = group_start[g], i1 = group_start[g + 1], n = i1 - i0;
        if (n <= 0) continue;
        if (n == 1) {
            advantage[i0] = 0.0;
            continue;
        }
        double mean = 0.0;
        for (int i = i0; i < i1; i++) mean += reward[i];
        mean /= n;
        double ss = 0.0;
        for (int i = i0; i < i1; i++) ss += (reward[i] - mean) * (reward[i] - mean);
        double std = sqrt(ss / (n - 1));
        for (int i = i0; i < i1; i++) {
            double a = reward[i] - mean;
            advantage[i] = divide_by_std ? a / (std + 1e-6) : a;
        }
    }
}

bool grpo_group_keep(const double *raw_reward, int n) {
    if (n < 2) return false;
    double mean = 0.0;
    for (int i = 0; i < n; i++) mean += raw_reward[i];
    mean /= n;
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (raw_reward[i] - mean) * (raw_reward[i] - mean);
    return sqrt(ss / (n - 1)) > 1e-6;
}
