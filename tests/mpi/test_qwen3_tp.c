/* test_qwen3_tp.c — tensor-parallel Qwen3 (every rank of MPI_COMM_WORLD in
 * one TP group) against the same model at TP = 1 on each rank and against
 * the float64 PyTorch reference (tests/fixtures/qwen3/tp4_*: head counts,
 * kv heads, MLP and vocab divide by 4). Returns nonzero on any failure.
 *
 * Tolerances (max |tp - ref| / max |ref| over each tensor, as test_qwen3.c):
 *   against TP = 1 (fp32 vs fp32; only the all-reduce summation order differs)
 *     logprob, entropy, losses, logits, grad norm   2e-6
 *     every gradient (gathered to full tensors)      1e-5
 *     weights after 3 AdamW steps                    2e-6 absolute (lr 1e-3)
 *   against PyTorch: the unit test's 1e-5 (values, gradients) and 5e-6
 *   (AdamW update). Bit-exact: recomputation, replicated weights on every
 *   rank after AdamW, export (gathered) reloaded at TP = 1 and at TP = size.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>

#include "mpi_check.h"
#include "comm/comm.h"
#include "core/error.h"
#include "core/json.h"
#include "model/qwen3.h"
#include "model/safetensors.h"
#include "../unit/qwen3_fixture.h"

#define FIX_DIR TAU2_SOURCE_DIR "/tests/fixtures/qwen3"


/* max |got - want| / max |want|; printed on rank 0 when label is set. */
static double rel_err(const char *label, const float *got, const float *want, size_t n) {
    return qfix_rel_err(g_rank == 0 ? label : NULL, got, want, n);
}

/* The fixture's loss (SFT + 0.1 mean masked entropy) and its gradients. */
static float loss_grads(const Qwen3FixtureBatch *b, const float *lp, const float *ent, float *dlp, float *dent, float *sft) {
    *sft = qwen3_sft_loss(lp, b->mask, b->T, dlp);
    int n = 0;
    double e = 0;
    for (int t = 0; t < b->T; t++) n += b->mask[t] != 0;
    for (int t = 0; t < b->T; t++) {
        dent[t] = b->mask[t] != 0 ? 0.1f / (float)n : 0.0f;
        if (b->mask[t] != 0) e += ent[t];
    }
    return (float)(*sft + 0.1 * e / n);
}

typedef struct {
    float *lp, *ent; /* (T) */
    float sft, loss;
} StepOut;

static StepOut step(Qwen3 *m, const Qwen3FixtureBatch *b) {
    StepOut o;
    o.lp = xmalloc((size_t)b->T * sizeof(float));
    o.ent = xmalloc((size_t)b->T * sizeof(float));
    float *dlp = xmalloc((size_t)b->T * sizeof(float)), *dent = xmalloc((size_t)b->T * sizeof(float));
    Qwen3Batch qb = {b->T, b->n_seqs, b->tokens, b->targets, b->seq_start, NULL};
    qwen3_forward(m, &qb, o.lp, o.ent);
    o.loss = loss_grads(b, o.lp, o.ent, dlp, dent, &o.sft);
    qwen3_zero_grad(m);
    qwen3_backward(m, dlp, dent);
    free(dlp);
    free(dent);
    return o;
}

/* loss_grads' gradients row by row, for qwen3_forward_head_grad */
typedef struct {
    const Qwen3FixtureBatch *b;
    int rows;
} HeadGrads;

static void head_grads(void *ctx, int n, const int32_t *rows, const float *logprob, const float *entropy,
                       float *dlogprob, float *dentropy) {
    HeadGrads *h = ctx;
    int m = 0;
    for (int t = 0; t < h->b->T; t++) m += h->b->mask[t] != 0;
    for (int i = 0; i < n; i++) {
        bool on = h->b->mask[rows[i]] != 0;
        dlogprob[i] = on && m ? -1.0f / (float)m : 0.0f;
        dentropy[i] = on ? 0.1f / (float)m : 0.0f;
    }
    h->rows += n;
}

static Qwen3Batch qb_of(const Qwen3FixtureBatch *b) {
    return (Qwen3Batch){b->T, b->n_seqs, b->tokens, b->targets, b->seq_start, NULL};
}

static void step_free(StepOut *o) {
    free(o->lp);
    free(o->ent);
}

static size_t full_numel(const Qwen3Tensor *t) {
    return (size_t)t->full_shape[0] * (size_t)(t->ndim == 2 ? t->full_shape[1] : 1);
}

/* A buffer laid out like m's parameters, gathered into ref's (full) layout on rank 0. */
static float *gather_all(const Qwen3 *m, const float *memory, const Qwen3 *ref) {
    float *out = xcalloc(ref->num_parameters, sizeof(float));
    for (int i = 0; i < m->n_tensors; i++) {
        qwen3_gather_tensor(m, memory, i, out + ref->tensors[i].offset, 0);
        CHECK(full_numel(&m->tensors[i]) == ref->tensors[i].numel);
    }
    return out;
}

static const Qwen3AdamW k_adamw = {0.9f, 0.98f, 1e-8f, 0.1f, 1.0f, true};

/* Every replicated tensor has the same bits on every rank. */
static void check_replicated_in_sync(const Qwen3 *m, Comm *world) {
    for (int i = 0; i < m->n_tensors; i++) {
        const Qwen3Tensor *t = &m->tensors[i];
        if (t->split != QWEN3_REPLICATED) continue;
        float *all = xmalloc((size_t)world->size * t->numel * sizeof(float));
        comm_allgather_f32(world, m->params_memory + t->offset, all, t->numel);
        for (int r = 1; r < world->size; r++) {
            CHECK(memcmp(all, all + (size_t)r * t->numel, t->numel * sizeof(float)) == 0);
        }
        free(all);
    }
}

static void check_fixture(const char *name, Comm *world) {
    char dir[1024], err[1024];
    snprintf(dir, sizeof dir, "%s/%s", FIX_DIR, name);
    if (g_rank == 0) printf("  %s, TP = %d\n", name, world->size);
    Qwen3 *tp = qwen3_load_dir_tp(dir, world, err, sizeof err);
    if (!tp) die_runtime("%s", err);
    Qwen3 *ref = qwen3_load_dir(dir, err, sizeof err);
    if (!ref) die_runtime("%s", err);
    CHECK(tp->shard.size == world->size && tp->shard.rank == world->rank);
    CHECK((tp->tp != NULL) == (world->size > 1));
    CHECK(ref->shard.size == 1 && ref->tp == NULL);
    /* the count the memory checks use before loading is what the shard holds */
    CHECK(qwen3_shard_num_parameters(&tp->config, world->size) == tp->num_parameters);
    CHECK(qwen3_shard_num_parameters(&ref->config, 1) == ref->num_parameters);
    Qwen3FixtureBatch b = qfix_batch_load(dir);
    int T = b.T, V = ref->config.vocab_size;
    tp->vocab_chunk = 7; /* several chunks, a short last one */

    StepOut st = step(tp, &b), sr = step(ref, &b);
    CHECK(rel_err("logprob vs TP=1", st.lp, sr.lp, (size_t)T) < 2e-6);
    CHECK(rel_err("entropy vs TP=1", st.ent, sr.ent, (size_t)T) < 2e-6);
    CHECK(rel_err("loss vs TP=1", &st.loss, &sr.loss, 1) < 2e-6);
    float *w = qfix_expected(&b, "logprob", (size_t)T);
    CHECK(rel_err("logprob vs PyTorch", st.lp, w, (size_t)T) < 1e-5);
    free(w);
    w = qfix_expected(&b, "entropy", (size_t)T);
    CHECK(rel_err("entropy vs PyTorch", st.ent, w, (size_t)T) < 1e-5);
    free(w);
    w = qfix_expected(&b, "loss_sft", 1);
    CHECK(rel_err("loss_sft vs PyTorch", &st.sft, w, 1) < 1e-5);
    free(w);
    w = qfix_expected(&b, "loss", 1);
    CHECK(rel_err("loss vs PyTorch", &st.loss, w, 1) < 1e-5);
    free(w);

    /* logprob and entropy have the same bits on every rank */
    float *all = xmalloc((size_t)world->size * T * sizeof(float));
    comm_allgather_f32(world, st.lp, all, (size_t)T);
    for (int r = 1; r < world->size; r++) CHECK(memcmp(all, all + (size_t)r * T, (size_t)T * sizeof(float)) == 0);
    comm_allgather_f32(world, st.ent, all, (size_t)T);
    for (int r = 1; r < world->size; r++) CHECK(memcmp(all, all + (size_t)r * T, (size_t)T * sizeof(float)) == 0);
    free(all);

    /* logits gathered over the vocab shards */
    float *lt = xmalloc((size_t)T * V * sizeof(float)), *lr = xmalloc((size_t)T * V * sizeof(float));
    qwen3_logits(tp, 0, T, lt);
    qwen3_logits(ref, 0, T, lr);
    CHECK(rel_err("logits vs TP=1", lt, lr, (size_t)T * V) < 2e-6);
    w = qfix_expected(&b, "logits", (size_t)T * V);
    CHECK(rel_err("logits vs PyTorch", lt, w, (size_t)T * V) < 1e-5);
    free(w);
    free(lt);
    free(lr);

    /* gradients, gathered to full tensors on rank 0 */
    float *g = gather_all(tp, tp->grads_memory, ref);
    if (g_rank == 0) {
        double worst_ref = 0, worst_pt = 0;
        for (int i = 0; i < ref->n_tensors; i++) {
            const Qwen3Tensor *t = &ref->tensors[i];
            double e = rel_err(NULL, g + t->offset, ref->grads_memory + t->offset, t->numel);
            if (!(e <= worst_ref)) worst_ref = e;
            char key[128];
            snprintf(key, sizeof key, "grad.%s", t->name);
            w = qfix_expected(&b, key, t->numel);
            double ep = rel_err(NULL, g + t->offset, w, t->numel);
            if (!(ep <= worst_pt)) worst_pt = ep;
            if (!(e < 1e-5) || !(ep < 1e-5)) printf("    %s: rel err %.3e vs TP=1, %.3e vs PyTorch\n", t->name, e, ep);
            CHECK(e < 1e-5 && ep < 1e-5);
            free(w);
        }
        printf("    %-34s worst rel %.3e\n", "gradients vs TP=1", worst_ref);
        printf("    %-34s worst rel %.3e\n", "gradients vs PyTorch", worst_pt);
    }
    free(g);

    /* recomputation gives the same bits at TP too */
    float *g0 = xmalloc(tp->num_parameters * sizeof(float));
    memcpy(g0, tp->grads_memory, tp->num_parameters * sizeof(float));
    tp->recompute = true;
    StepOut sc = step(tp, &b);
    CHECK(memcmp(sc.lp, st.lp, (size_t)T * sizeof(float)) == 0);
    CHECK(memcmp(sc.ent, st.ent, (size_t)T * sizeof(float)) == 0);
    CHECK(memcmp(g0, tp->grads_memory, tp->num_parameters * sizeof(float)) == 0);
    step_free(&sc);
    tp->recompute = false;

    /* the head's backward inside the forward (qwen3_forward_head_grad)
     * gives the two-call step's values at TP: the vocab-parallel statistics
     * are reduced before the gradient function sees a row, and every rank
     * gets the same rows. The logprobs are the same bits; the gradients add
     * the head's chunks (of 7 rows here) in another order. */
    {
        HeadGrads h = {&b, 0};
        Qwen3Batch qb = qb_of(&b);
        float *lp = xmalloc((size_t)T * sizeof(float)), *ent = xmalloc((size_t)T * sizeof(float));
        qwen3_zero_grad(tp);
        qwen3_forward_head_grad(tp, &qb, lp, ent, head_grads, &h, true);
        qwen3_backward(tp, NULL, NULL);
        CHECK(h.rows == T);
        CHECK(memcmp(lp, st.lp, (size_t)T * sizeof(float)) == 0);
        CHECK(memcmp(ent, st.ent, (size_t)T * sizeof(float)) == 0);
        CHECK(rel_err("fused head grads (local shard)", tp->grads_memory, g0, tp->num_parameters) < 1e-6);
        free(lp);
        free(ent);
    }

    /* two micro-batches (sequence 0, then the rest) add up to the whole
     * batch's gradient: the partial q/k-norm gradients reduce per backward */
    {
        int n = 0;
        for (int t = 0; t < T; t++) n += b.mask[t] != 0;
        float *dlp = xmalloc((size_t)T * sizeof(float)), *dent = xmalloc((size_t)T * sizeof(float));
        float *lp = xmalloc((size_t)T * sizeof(float)), *ent = xmalloc((size_t)T * sizeof(float));
        for (int t = 0; t < T; t++) {
            dlp[t] = b.mask[t] != 0 ? -1.0f / n : 0.0f;
            dent[t] = b.mask[t] != 0 ? 0.1f / n : 0.0f;
        }
        qwen3_zero_grad(tp);
        int cut = b.seq_start[1];
        int32_t s1[2] = {0, cut}, s2[8];
        Qwen3Batch b1 = {cut, 1, b.tokens, b.targets, s1, NULL};
        qwen3_forward(tp, &b1, lp, ent);
        qwen3_backward(tp, dlp, dent);
        for (int s = 1; s <= b.n_seqs; s++) s2[s - 1] = b.seq_start[s] - cut;
        Qwen3Batch b2 = {T - cut, b.n_seqs - 1, b.tokens + cut, b.targets + cut, s2, NULL};
        qwen3_forward(tp, &b2, lp + cut, ent + cut);
        qwen3_backward(tp, dlp + cut, dent + cut);
        CHECK(rel_err("micro-batch logprob", lp, st.lp, (size_t)T) < 1e-6);
        CHECK(rel_err("micro-batch grads (local shard)", tp->grads_memory, g0, tp->num_parameters) < 1e-5);
        free(dlp);
        free(dent);
        free(lp);
        free(ent);
    }
    free(g0);

    /* grad norm and 3 AdamW steps, each a fresh forward/backward */
    float *w0 = xmalloc(ref->num_parameters * sizeof(float));
    memcpy(w0, ref->params_memory, ref->num_parameters * sizeof(float));
    float nt[3], nr[3];
    for (int s = 0; s < 3; s++) {
        StepOut a = step(tp, &b), c = step(ref, &b);
        step_free(&a);
        step_free(&c);
        nt[s] = qwen3_adamw_step(tp, &k_adamw, 1e-3f);
        nr[s] = qwen3_adamw_step(ref, &k_adamw, 1e-3f);
    }
    CHECK(rel_err("grad norm (3 steps) vs TP=1", nt, nr, 3) < 2e-6);
    w = qfix_expected(&b, "grad_norm", 3);
    CHECK(rel_err("grad norm (3 steps) vs PyTorch", nt, w, 3) < 1e-5);
    free(w);
    check_replicated_in_sync(tp, world);
    float *p = gather_all(tp, tp->params_memory, ref);
    if (g_rank == 0) {
        double e_ref = 0, e_pt = 0;
        for (int i = 0; i < ref->n_tensors; i++) {
            const Qwen3Tensor *t = &ref->tensors[i];
            char key[128];
            snprintf(key, sizeof key, "step3.%s", t->name);
            w = qfix_expected(&b, key, t->numel);
            for (size_t k = 0; k < t->numel; k++) {
                size_t o = t->offset + k;
                double d = fabs((double)p[o] - ref->params_memory[o]);
                double dp = fabs(((double)p[o] - w0[o]) - ((double)w[k] - w0[o]));
                if (d > e_ref) e_ref = d;
                if (dp > e_pt) e_pt = dp;
            }
            free(w);
        }
        printf("    %-34s max abs err %.3e (lr 1e-3)\n", "AdamW x3 weights vs TP=1", e_ref);
        printf("    %-34s max abs err %.3e (lr 1e-3)\n", "AdamW x3 update vs PyTorch", e_pt);
        CHECK(e_ref < 2e-6);
        CHECK(e_pt < 5e-6);
    }

    /* export writes full tensors from rank 0; reload at TP = 1 and at TP = size */
    char tmp[64] = "/tmp/test_qwen3_tp_XXXXXX";
    if (g_rank == 0 && !mkdtemp(tmp)) die_runtime("mkdtemp failed");
    comm_broadcast(world, tmp, sizeof tmp, 0);
    CHECK(qwen3_export_dir(tp, tmp, ST_F32, err, sizeof err) == 0);
    comm_barrier(world); /* the files are complete before anyone reads them */
    if (g_rank == 0) {
        Qwen3 *r1 = qwen3_load_dir(tmp, err, sizeof err);
        CHECK(r1 != NULL);
        if (r1) CHECK(memcmp(r1->params_memory, p, r1->num_parameters * sizeof(float)) == 0);
        qwen3_free(r1);
    }
    Qwen3 *rt = qwen3_load_dir_tp(tmp, world, err, sizeof err);
    CHECK(rt != NULL);
    if (rt) CHECK(memcmp(rt->params_memory, tp->params_memory, tp->num_parameters * sizeof(float)) == 0);
    qwen3_free(rt);
    comm_barrier(world);
    if (g_rank == 0) {
        char f[128];
        snprintf(f, sizeof f, "%s/config.json", tmp);
        unlink(f);
        snprintf(f, sizeof f, "%s/model.safetensors", tmp);
        unlink(f);
        rmdir(tmp);
    }
    /* an export error reaches every rank */
    CHECK(qwen3_export_dir(tp, "/nonexistent/dir/x", ST_F32, err, sizeof err) == -1);
    CHECK(strstr(err, "/nonexistent/dir/x") != NULL);

    free(p);
    free(w0);
    step_free(&st);
    step_free(&sr);
    qfix_batch_free(&b);
    qwen3_free(tp);
    qwen3_free(ref);
}

/* TP that does not divide the model is a clear error. */
static void check_errors(Comm *world) {
    char err[1024], dir[1024];
    Qwen3Config c;
    snprintf(dir, sizeof dir, "%s/untied_gqa/config.json", FIX_DIR);
    if (qwen3_config_load(dir, &c, err, sizeof err) != 0) die_runtime("%s", err);
    /* 4 query heads, 2 kv heads: TP 4 does not divide the kv heads */
    CHECK(qwen3_tp_check(&c, 2, err, sizeof err) == -1); /* vocab 97 */
    CHECK(strstr(err, "vocab_size (97)") != NULL);
    c.vocab_size = 96;
    CHECK(qwen3_tp_check(&c, 2, err, sizeof err) == 0);
    CHECK(qwen3_tp_check(&c, 4, err, sizeof err) == -1);
    if (g_rank == 0) printf("  error: %s\n", err);
    CHECK(strstr(err, "tensor parallel size 4 does not divide num_key_value_heads (2)") != NULL);
    Qwen3 *one = qwen3_new_tp(&c, NULL, err, sizeof err); /* no comm: TP = 1 */
    CHECK(one != NULL && one->shard.size == 1 && one->tp == NULL);
    qwen3_free(one);
    c.intermediate_size = 50;
    CHECK(qwen3_tp_check(&c, 4, err, sizeof err) == -1 && strstr(err, "num_key_value_heads"));
    CHECK(qwen3_tp_check(&c, 0, err, sizeof err) == -1);

    /* loading: one kv head (tied_mqa) splits over no TP > 1 */
    snprintf(dir, sizeof dir, "%s/tied_mqa", FIX_DIR);
    Qwen3 *m = qwen3_load_dir_tp(dir, world, err, sizeof err);
    if (world->size > 1) {
        CHECK(m == NULL);
        CHECK(strstr(err, "tied_mqa/config.json") != NULL && strstr(err, "num_key_value_heads (1)") != NULL);
        if (g_rank == 0) printf("  error: %s\n", err);
    } else {
        CHECK(m != NULL);
    }
    qwen3_free(m);
    /* and qwen3_new_tp on it */
    if (qwen3_config_load(strcat(dir, "/config.json"), &c, err, sizeof err) != 0) die_runtime("%s", err);
    m = qwen3_new_tp(&c, world, err, sizeof err);
    CHECK((m == NULL) == (world->size > 1));
    qwen3_free(m);
}

int main(int argc, char **argv) {
    int wr, ws;
    mpi_test_begin(&argc, &argv, &wr, &ws);
    Comm *world = comm_mpi_world();
    check_errors(world);
    check_fixture("tp4_gqa", world);
    check_fixture("tp4_tied", world);
    comm_free(world);
    return mpi_test_end("test_qwen3_tp");
}
