/* bench_train.c — Qwen3 training steps per second on the CPU backend.
 *
 * One step = forward over a packed batch, the SFT loss, backward, AdamW
 * (as qwen3.h's loop). Random weights, a fixed batch of equal-length
 * sequences. Prints tokens/s (median step time after one warm-up step) and
 * peak memory (max RSS), and each phase's median time (zero_grad, forward
 * with the loss, backward, AdamW). bench_train_torch.py runs the same configs in
 * PyTorch and prints the ratio; it parses the RESULT lines.
 *
 * usage: bench_train [--config tiny|100m] [--seqs N] [--seq-len N] [--steps N] [--recompute] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "model/qwen3.h"

#include "bench_util.h"

/* The benchmark configs; bench_train_torch.py has the same table. */
static int config_named(const char *name, Qwen3Config *c) {
    memset(c, 0, sizeof *c);
    c->rms_norm_eps = 1e-6f;
    c->rope_theta = 1e6;
    c->max_position_embeddings = 32768;
    c->bos_token_id = c->eos_token_id = -1;
    if (!strcmp(name, "tiny")) { /* a CI-sized model: ~1.2M parameters */
        c->vocab_size = 4096, c->hidden_size = 128, c->intermediate_size = 384, c->num_layers = 4;
        c->num_heads = 4, c->num_kv_heads = 2, c->head_dim = 32, c->tie_word_embeddings = true;
        return 0;
    }
    if (!strcmp(name, "100m")) { /* ~100M parameters, Qwen3 proportions */
        c->vocab_size = 32000, c->hidden_size = 768, c->intermediate_size = 2048, c->num_layers = 12;
        c->num_heads = 12, c->num_kv_heads = 4, c->head_dim = 64, c->tie_word_embeddings = true;
        return 0;
    }
    return -1;
}

/* Small uniform weights (norm weights 1) from a fixed LCG: the speed does not
 * depend on the values. */
static void init_weights(Qwen3 *m) {
    uint64_t s = 42;
    for (size_t i = 0; i < m->num_parameters; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        m->params_memory[i] = ((float)(s >> 40) / (float)(1 << 24) - 0.5f) * 0.04f;
    }
    const Qwen3Config *c = &m->config;
    for (size_t i = 0; i < (size_t)c->num_layers * c->hidden_size; i++) m->params.ln1_w[i] = m->params.ln2_w[i] = 1.0f;
    for (size_t i = 0; i < (size_t)c->num_layers * c->head_dim; i++) m->params.q_norm_w[i] = m->params.k_norm_w[i] = 1.0f;
    for (int i = 0; i < c->hidden_size; i++) m->params.norm_w[i] = 1.0f;
}

int main(int argc, char **argv) {
    const char *name = "tiny";
    int n_seqs = 4, seq_len = 256, steps = 5;
    bool recompute = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--recompute")) recompute = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--config")) name = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--seqs")) n_seqs = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--seq-len")) seq_len = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--steps")) steps = atoi(argv[++i]);
        else {
            fprintf(stderr, "bench_train: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    Qwen3Config cfg;
    if (config_named(name, &cfg) != 0 || n_seqs < 1 || seq_len < 2 || steps < 1) {
        fprintf(stderr, "bench_train: bad arguments (configs: tiny, 100m)\n");
        return 2;
    }
    Qwen3 *m = qwen3_new(&cfg);
    m->recompute = recompute;
    init_weights(m);
    int T = n_seqs * seq_len;
    int32_t *tokens = malloc(T * sizeof *tokens), *targets = malloc(T * sizeof *targets);
    int32_t *seq_start = malloc((n_seqs + 1) * sizeof *seq_start);
    float *lp = malloc(T * sizeof *lp), *ent = malloc(T * sizeof *ent), *mask = malloc(T * sizeof *mask);
    float *dlp = malloc(T * sizeof *dlp);
    for (int t = 0; t < T; t++) {
        tokens[t] = (int32_t)((t * 7919u + 13u) % (unsigned)cfg.vocab_size);
        mask[t] = 1.0f;
    }
    for (int s = 0; s <= n_seqs; s++) seq_start[s] = s * seq_len;
    qwen3_next_token_targets(tokens, seq_start, n_seqs, targets);
    Qwen3Batch b = {T, n_seqs, tokens, targets, seq_start, NULL};
    Qwen3AdamW opt = {0.9f, 0.98f, 1e-8f, 0.1f, 1.0f, true};

    /* times[phase][step]: the whole step, then zero_grad, forward (with the
     * loss), backward, optimizer; each phase's median is printed too */
    enum { PH_STEP, PH_ZERO, PH_FORWARD, PH_BACKWARD, PH_ADAMW, N_PH };
    static const char *phase_name[N_PH] = {"step", "zero_grad", "forward", "backward", "adamw"};
    double *times[N_PH];
    for (int ph = 0; ph < N_PH; ph++) times[ph] = malloc((steps + 1) * sizeof(double));
    float loss = 0;
    for (int step = 0; step <= steps; step++) { /* step 0 warms up */
        double t0 = now();
        qwen3_zero_grad(m);
        double t1 = now();
        qwen3_forward(m, &b, lp, ent);
        loss = qwen3_sft_loss(lp, mask, T, dlp);
        double t2 = now();
        qwen3_backward(m, dlp, NULL);
        double t3 = now();
        qwen3_adamw_step(m, &opt, 1e-4f);
        double t4 = now();
        times[PH_STEP][step] = t4 - t0;
        times[PH_ZERO][step] = t1 - t0;
        times[PH_FORWARD][step] = t2 - t1;
        times[PH_BACKWARD][step] = t3 - t2;
        times[PH_ADAMW][step] = t4 - t3;
    }
    double median[N_PH];
    for (int ph = 0; ph < N_PH; ph++) {
        qsort(times[ph] + 1, steps, sizeof(double), cmp_double);
        median[ph] = times[ph][1 + steps / 2];
    }
    double med = median[PH_STEP];
    double peak_mib = peak_rss_mib();
    printf("config %s: %zu parameters, %d sequences x %d tokens, %d threads%s\n", name, m->num_parameters, n_seqs,
           seq_len, omp_get_max_threads(), recompute ? ", recompute" : "");
    printf("RESULT train %s %d %.4f %.1f %.1f %.4f\n", name, T, med, T / med, peak_mib, loss);
    printf("step %.3f s (median of %d), %.1f tokens/s, peak RSS %.1f MiB, last loss %.4f\n", med, steps, T / med,
           peak_mib, loss);
    printf("phases (median ms):");
    for (int ph = PH_ZERO; ph < N_PH; ph++) printf(" %s %.1f", phase_name[ph], 1e3 * median[ph]);
    printf("\n");
    /* the first step also maps the gradient, activation and moment memory */
    printf("first step %.3f s:", times[PH_STEP][0]);
    for (int ph = PH_ZERO; ph < N_PH; ph++) printf(" %s %.1f", phase_name[ph], 1e3 * times[ph][0]);
    printf("\n");
    for (int ph = 0; ph < N_PH; ph++) free(times[ph]);
    free(tokens), free(targets), free(seq_start), free(lp), free(ent), free(mask), free(dlp);
    qwen3_free(m);
    return 0;
}
