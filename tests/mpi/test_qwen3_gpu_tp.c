/* test_qwen3_gpu_tp.c — the GPU training step with tensor and data
 * parallelism (qwen3_gpu.h, its collectives over NCCL) against the CPU
 * model at TP = 1.
 *
 * The ranks form the trainer grid of comm_grid: TP = 2 when the world size
 * is even (else 1) times DP = size / TP, each rank on its own GPU. DP rank d
 * trains on its share of the fixture batch's sequences, with the loss
 * normalized over the whole batch, so the DP sum of the gradients is the
 * whole batch's gradient: what the CPU reference computes in one pass.
 *
 * Checked, in fp32 and bf16 products, and again with activation
 * recomputation: logprob and entropy of each rank's rows, every gradient
 * (gathered from the TP shards to full tensors), the gradient norm of 3
 * AdamW steps, the weights after them, replicated weights bit-identical
 * on the TP ranks and every weight bit-identical over the DP replicas; then
 * one step through the job's TrainDevice (bf16, its DP sum over a NCCL comm
 * made at the first call). Tolerances are test_cuda_qwen3.c's (doc/cuda.md):
 * fp32 1e-4 (outputs) and 1e-3 (gradients, norm), weights 0.25 lr per
 * step; bf16 1e-2, 5e-2 and 2.5 lr per step.
 *
 * Exits 77 (skipped) on every rank without the CUDA backend or without a
 * GPU for each rank. On a machine without GPUs the CUDA emulation runs it
 * (tests/cuda_emu, emu_test_qwen3_gpu_tp_np2/np4).
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "mpi_check.h"
#include "mpi_gpu.h"
#include "comm/comm.h"
#include "core/error.h"
#include "model/qwen3.h"

#ifdef TAU2_HAVE_CUDA
#include "kernels.h"
#include "model/qwen3_gpu.h"
#include "model/train_device.h"
#include "../unit/qwen3_fixture.h"

#define FIX_DIR TAU2_SOURCE_DIR "/tests/fixtures/qwen3"

static const Qwen3AdamW k_adamw = {0.9f, 0.98f, 1e-8f, 0.1f, 1.0f, true};
static const float k_lr = 1e-3f;

typedef struct {
    Comm *world, *tp, *dp; /* MPI */
    Comm *dp_nccl;         /* NCCL over dp; NULL when DP = 1 */
    int device;
} Grid;

/* This DP rank's share of the batch: sequences [s0, s1), rows [t0, t1). */
typedef struct {
    int t0, t1, n_seqs;
    int32_t seq_start[16];
    Qwen3Batch qb;
} Part;

static void part_of(Part *pp, const Qwen3FixtureBatch *b, const Comm *dp) {
    Part p;
    int s0 = dp->rank * b->n_seqs / dp->size, s1 = (dp->rank + 1) * b->n_seqs / dp->size;
    p.t0 = b->seq_start[s0];
    p.t1 = b->seq_start[s1];
    p.n_seqs = s1 - s0;
    for (int s = 0; s <= p.n_seqs; s++) p.seq_start[s] = b->seq_start[s0 + s] - p.t0;
    *pp = p;
    pp->qb = (Qwen3Batch){p.t1 - p.t0, p.n_seqs, b->tokens + p.t0, b->targets + p.t0, pp->seq_start, NULL};
}

/* The loss gradients of the fixture (SFT + 0.1 mean masked entropy), over
 * the whole batch. */
static void loss_grads(const Qwen3FixtureBatch *b, float *dlp, float *dent) {
    int n = 0;
    for (int t = 0; t < b->T; t++) n += b->mask[t] != 0;
    for (int t = 0; t < b->T; t++) {
        dlp[t] = b->mask[t] != 0 ? -1.0f / (float)n : 0.0f;
        dent[t] = b->mask[t] != 0 ? 0.1f / (float)n : 0.0f;
    }
}

/* max |got - want| / max |want|, printed on world rank 0. */
static bool close_rel(const char *what, const float *got, const float *want, size_t n, double tol) {
    double e = qfix_rel_err(NULL, got, want, n);
    bool ok = e <= tol;
    if (g_rank == 0 || !ok) printf("    %-4s %-44s rel err %.3e (tol %.0e)\n", ok ? "ok" : "FAIL", what, e, tol);
    return ok;
}

/* A buffer in m's (shard) layout, gathered to full tensors in ref's layout on TP rank 0. */
static float *gather_full(const Qwen3 *m, const float *memory, const Qwen3 *ref) {
    float *out = xcalloc(ref->num_parameters, sizeof(float));
    for (int i = 0; i < m->n_tensors; i++) qwen3_gather_tensor(m, memory, i, out + ref->tensors[i].offset, 0);
    return out;
}

/* Every replicated tensor of m has the same bits on the TP ranks. */
static void check_replicated_in_sync(const Qwen3 *m, Comm *tp) {
    for (int i = 0; i < m->n_tensors; i++) {
        const Qwen3Tensor *t = &m->tensors[i];
        if (t->split != QWEN3_REPLICATED || tp->size < 2) continue;
        float *all = xmalloc((size_t)tp->size * t->numel * sizeof(float));
        comm_allgather_f32(tp, m->params_memory + t->offset, all, t->numel);
        for (int r = 1; r < tp->size; r++) CHECK(memcmp(all, all + (size_t)r * t->numel, t->numel * sizeof(float)) == 0);
        free(all);
    }
}

/* Full weights (on TP rank 0) against the CPU's, in units of lr x steps. */
static void check_weights(const char *what, const float *full, const Qwen3 *ref, const float *w0, int steps,
                          double tol) {
    double worst = 0;
    for (size_t k = 0; k < ref->num_parameters; k++) {
        double d = fabs(((double)full[k] - w0[k]) - ((double)ref->params_memory[k] - w0[k]));
        if (!(d <= worst)) worst = d;
    }
    worst /= (double)k_lr * steps;
    bool ok = worst <= tol;
    if (g_rank == 0 || !ok) printf("    %-4s %-44s err %.3e lr (tol %.2g)\n", ok ? "ok" : "FAIL", what, worst, tol);
    CHECK(ok);
}

/* The loss gradients of one rank's rows, given chunk by chunk to
 * train_device_forward_head_grad: ctx is {dlogprob, dentropy} from the
 * rank's first token. */
static void rows_from(void *ctx, int n, const int32_t *rows, const float *logprob, const float *entropy, float *dlogprob,
                      float *dentropy) {
    const float *const *g = ctx;
    (void)logprob, (void)entropy;
    for (int r = 0; r < n; r++) {
        dlogprob[r] = g[0][rows[r]];
        if (dentropy) dentropy[r] = g[1][rows[r]];
    }
}

static void check_engine(const char *fixture, Qwen3GpuMath math, bool recompute, Grid *G) {
    bool f32 = math == QWEN3_GPU_F32;
    double tol_out = f32 ? 1e-4 : 1e-2, tol_grad = f32 ? 1e-3 : 5e-2, tol_w = f32 ? 0.25 : 2.5;
    char dir[1024], err[1024];
    snprintf(dir, sizeof dir, "%s/%s", FIX_DIR, fixture);
    if (g_rank == 0)
        printf("  %s, %s%s, TP = %d x DP = %d\n", fixture, f32 ? "fp32" : "bf16", recompute ? ", recompute" : "",
               G->tp->size, G->dp->size);
    Qwen3 *hm = qwen3_load_dir_tp(dir, G->tp, err, sizeof err);
    Qwen3 *ref = qwen3_load_dir(dir, err, sizeof err);
    if (!hm || !ref) die_runtime("%s", err);
    hm->vocab_chunk = 5; /* several head chunks, a short last one */
    hm->recompute = recompute;
    Qwen3FixtureBatch b = qfix_batch_load(dir);
    int T = b.T;
    Part p;
    part_of(&p, &b, G->dp);
    float *dlp = xmalloc((size_t)T * sizeof(float)), *dent = xmalloc((size_t)T * sizeof(float));
    loss_grads(&b, dlp, dent);
    float *lp_c = xmalloc((size_t)T * sizeof(float)), *ent_c = xmalloc((size_t)T * sizeof(float));
    float *lp_g = xmalloc((size_t)T * sizeof(float)), *ent_g = xmalloc((size_t)T * sizeof(float));
    float *w0 = xmalloc(ref->num_parameters * sizeof(float));
    memcpy(w0, ref->params_memory, ref->num_parameters * sizeof(float));
    Qwen3Batch whole = {T, b.n_seqs, b.tokens, b.targets, b.seq_start, NULL};

    Qwen3Gpu *g = qwen3_gpu_new(hm, G->device, math);
    float norm_g[3], norm_c[3];
    for (int s = 0; s < 3; s++) {
        qwen3_gpu_forward(g, &p.qb, lp_g, ent_g);
        qwen3_gpu_zero_grad(g);
        qwen3_gpu_backward(g, dlp + p.t0, dent + p.t0);
        if (G->dp_nccl) qwen3_gpu_allreduce_grads(g, G->dp_nccl);
        qwen3_forward(ref, &whole, lp_c, ent_c);
        qwen3_zero_grad(ref);
        qwen3_backward(ref, dlp, dent);
        if (s == 0) {
            CHECK(close_rel("logprob (this DP rank's rows)", lp_g, lp_c + p.t0, (size_t)p.qb.T, tol_out));
            CHECK(close_rel("entropy (this DP rank's rows)", ent_g, ent_c + p.t0, (size_t)p.qb.T, tol_out));
            float *gs = xmalloc(hm->num_parameters * sizeof(float));
            qwen3_gpu_download_grads(g, gs);
            float *full = gather_full(hm, gs, ref);
            if (G->tp->rank == 0) {
                bool all_ok = true;
                for (int i = 0; i < ref->n_tensors; i++) {
                    const Qwen3Tensor *t = &ref->tensors[i];
                    double e = qfix_rel_err(NULL, full + t->offset, ref->grads_memory + t->offset, t->numel);
                    if (!(e <= tol_grad)) {
                        printf("    FAIL grad %s: rel err %.3e (tol %.0e)\n", t->name, e, tol_grad);
                        all_ok = false;
                    }
                }
                if (g_rank == 0 && all_ok) printf("    ok   every gradient (DP sum, TP gathered) within %.0e\n", tol_grad);
                CHECK(all_ok);
            }
            free(full);
            /* the head's backward inside the forward: the same gradients, up
             * to the order in which the head's chunks add into its weight */
            const float *rank_grads[2] = {dlp + p.t0, dent + p.t0};
            qwen3_gpu_zero_grad(g);
            qwen3_gpu_forward_head_grad(g, &p.qb, lp_g, ent_g, rows_from, (void *)rank_grads, true);
            qwen3_gpu_backward(g, NULL, NULL);
            if (G->dp_nccl) qwen3_gpu_allreduce_grads(g, G->dp_nccl);
            float *gf = xmalloc(hm->num_parameters * sizeof(float));
            qwen3_gpu_download_grads(g, gf);
            CHECK(close_rel("shard grads, head's backward in the forward vs after", gf, gs, hm->num_parameters, 1e-6));
            free(gf);
            free(gs);
        }
        norm_g[s] = qwen3_gpu_adamw_step(g, &k_adamw, k_lr);
        norm_c[s] = qwen3_adamw_step(ref, &k_adamw, k_lr);
    }
    CHECK(close_rel("grad norm of 3 steps", norm_g, norm_c, 3, tol_grad));
    qwen3_gpu_download_params(g, hm->params_memory);
    check_replicated_in_sync(hm, G->tp);
    float *full = gather_full(hm, hm->params_memory, ref);
    if (G->tp->rank == 0) {
        check_weights("weights after 3 AdamW steps", full, ref, w0, 3, tol_w);
        /* the DP replicas hold the same bits (each took the same summed gradient) */
        float *first = xmalloc(ref->num_parameters * sizeof(float));
        memcpy(first, full, ref->num_parameters * sizeof(float));
        comm_broadcast(G->dp, first, ref->num_parameters * sizeof(float), 0);
        CHECK(memcmp(first, full, ref->num_parameters * sizeof(float)) == 0);
        free(first);
    }
    free(full);

    qwen3_gpu_free(g);
    free(w0);
    free(lp_c), free(ent_c), free(lp_g), free(ent_g), free(dlp), free(dent);
    qfix_batch_free(&b);
    qwen3_free(hm);
    qwen3_free(ref);
}

/* Two updates through TrainDevice, as the job runs them: bf16, the DP sum by
 * train_device_allreduce_grads (its NCCL comm made at the first call); the
 * first with forward then backward, the second with the head's backward
 * inside the forward (train_device_forward_head_grad). */
static void check_train_device(const char *fixture, Grid *G, int node_rank) {
    char dir[1024], err[1024];
    snprintf(dir, sizeof dir, "%s/%s", FIX_DIR, fixture);
    if (g_rank == 0) printf("  %s, TrainDevice cuda, TP = %d x DP = %d\n", fixture, G->tp->size, G->dp->size);
    char why[512];
    CHECK(train_device_check(TRAIN_DEVICE_CUDA, G->tp->size, why, sizeof why) == 0);
    Qwen3 *hm = qwen3_load_dir_tp(dir, G->tp, err, sizeof err);
    Qwen3 *ref = qwen3_load_dir(dir, err, sizeof err);
    if (!hm || !ref) die_runtime("%s", err);
    Qwen3FixtureBatch b = qfix_batch_load(dir);
    Part p;
    part_of(&p, &b, G->dp);
    float *dlp = xmalloc((size_t)b.T * sizeof(float)), *dent = xmalloc((size_t)b.T * sizeof(float));
    float *lp = xmalloc((size_t)b.T * sizeof(float)), *ent = xmalloc((size_t)b.T * sizeof(float));
    loss_grads(&b, dlp, dent);
    float *w0 = xmalloc(ref->num_parameters * sizeof(float));
    memcpy(w0, ref->params_memory, ref->num_parameters * sizeof(float));

    TrainDevice *d = train_device_new(hm, TRAIN_DEVICE_CUDA, node_rank);
    for (int s = 0; s < 2; s++) {
        train_device_zero_grad(d);
        if (s == 0) {
            train_device_forward(d, &p.qb, lp, ent);
            train_device_backward(d, dlp + p.t0, dent + p.t0);
        } else {
            const float *rank_grads[2] = {dlp + p.t0, dent + p.t0};
            train_device_forward_head_grad(d, &p.qb, lp, ent, rows_from, (void *)rank_grads, true);
            train_device_backward(d, NULL, NULL);
        }
        if (G->dp->size > 1) train_device_allreduce_grads(d, G->dp);
        train_device_adamw_step(d, &k_adamw, k_lr);
        Qwen3Batch whole = {b.T, b.n_seqs, b.tokens, b.targets, b.seq_start, NULL};
        qwen3_forward(ref, &whole, lp, ent);
        qwen3_zero_grad(ref);
        qwen3_backward(ref, dlp, dent);
        qwen3_adamw_step(ref, &k_adamw, k_lr);
    }
    CHECK(hm->adam_step == 2);
    check_replicated_in_sync(hm, G->tp);
    float *full = gather_full(hm, hm->params_memory, ref);
    if (G->tp->rank == 0) check_weights("host weights after 2 TrainDevice steps", full, ref, w0, 2, 2.5);
    free(full);
    train_device_free(d);
    free(w0), free(dlp), free(dent), free(lp), free(ent);
    qfix_batch_free(&b);
    qwen3_free(hm);
    qwen3_free(ref);
}
#endif

int main(int argc, char **argv) {
    int wr, ws;
    mpi_test_begin(&argc, &argv, &wr, &ws);
    Comm *world = comm_mpi_world();
    int device = mpi_test_gpu(world);
    if (device < 0) {
        comm_free(world);
        MPI_Finalize();
        return 77;
    }
#ifdef TAU2_HAVE_CUDA
    Grid G = {.world = world, .device = device};
    int tp = ws % 2 == 0 ? 2 : 1;
    char err[256];
    if (comm_grid(world, tp, &G.tp, &G.dp, err, sizeof err) != 0) die_runtime("%s", err);
    if (G.dp->size > 1) G.dp_nccl = comm_nccl_from_mpi(G.dp);

    for (int math = 0; math < 2; math++) {
        check_engine("tp4_gqa", math == 0 ? QWEN3_GPU_F32 : QWEN3_GPU_BF16, false, &G);
    }
    check_engine("tp4_tied", QWEN3_GPU_F32, true, &G);
    check_train_device("tp4_gqa", &G, device);

    comm_free(G.dp_nccl);
    comm_free(G.tp);
    comm_free(G.dp);
#endif
    comm_free(world);
    return mpi_test_end("test_qwen3_gpu_tp");
}
