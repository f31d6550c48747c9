/* bench_train.c — Qwen3 training steps per second on the CPU backend.
 *
 * One step = forward over a packed batch, the SFT loss, backward, AdamW
 * (as qwen3.h's loop). Random weights, a fixed batch of equal-length
 * sequences. Prints tokens/s (median step time after one warm-up step) and
 * peak memory (max RSS), and each phase's median time (zero_grad, forward
 * with the loss, backward, AdamW). bench_train_torch.py runs the same configs in
 * PyTorch and prints the ratio; it parses the RESULT lines.
 *
 * The output head's backward runs inside the forward
 * (qwen3_forward_head_grad), as in the job's updates; --two-pass runs
 * qwen3_forward, the loss, then qwen3_backward instead (the head's logits
 * computed again in the backward when they take more than one chunk).
 *
 * usage: bench_train [--config tiny|100m|4b] [--seqs N] [--seq-len N] [--steps N] [--recompute] [--two-pass] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "model/qwen3.h"

#include "bench_train_common.h"
#include "bench_util.h"

int main(int argc, char **argv) {
    const char *name = "tiny";
    int n_seqs = 4, seq_len = 256, steps = 5;
    bool recompute = false, fused = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--recompute")) recompute = true;
        else if (!strcmp(argv[i], "--two-pass")) fused = false;
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
    if (bench_config_named(name, &cfg) != 0 || n_seqs < 1 || seq_len < 2 || steps < 1) {
        fprintf(stderr, "bench_train: bad arguments (configs: tiny, 100m, 4b)\n");
        return 2;
    }
    Qwen3 *m = qwen3_new(&cfg);
    m->recompute = recompute;
    bench_init_weights(m);
    BenchBatch bb = bench_batch_new(n_seqs, seq_len, cfg.vocab_size);
    int T = bb.T;
    float *lp = bb.logprob, *ent = bb.entropy, *mask = bb.mask, *dlp = bb.dlogprob;
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
        if (fused) {
            Qwen3SftRows sg = qwen3_sft_rows_for(mask, T);
            qwen3_forward_head_grad(m, &bb.batch, lp, ent, qwen3_sft_rows, &sg, false);
            loss = qwen3_sft_loss(lp, mask, T, NULL);
        } else {
            qwen3_forward(m, &bb.batch, lp, ent);
            loss = qwen3_sft_loss(lp, mask, T, dlp);
        }
        double t2 = now();
        if (fused) {
            qwen3_backward(m, NULL, NULL);
        } else {
            qwen3_backward(m, dlp, NULL);
        }
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
    bench_batch_free(&bb);
    qwen3_free(m);
    return 0;
}
