/* job_memory.c — see job_memory.h. */
#include "rl/job_memory.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/sysmem.h"

/* What each rank sends: its four parts, the limit it reads, its micro-batch tokens. */
enum { PART_WEIGHTS, PART_TRAIN_STATE, PART_ACTIVATIONS, PART_KV, PART_LIMIT, PART_TOKENS, PARTS };

double job_memory_total(const JobMemory *m) { return m->weights + m->train_state + m->activations + m->kv_cache; }

/* "weights 1.2 GiB, training state 3.4 GiB, ...": the parts that are not
 * zero; tokens, the largest micro-batch the activations are for. */
static void describe_parts(const double *sum, double tokens, char *out, size_t n) {
    char act[64];
    snprintf(act, sizeof act, "activations of %.0f tokens", tokens);
    const char *const names[] = {"weights", "training state", act, "KV cache"};
    size_t used = 0;
    out[0] = '\0';
    for (int p = 0; p < PART_LIMIT && used < n; p++) {
        if (sum[p] <= 0) continue;
        char b[32];
        int k = snprintf(out + used, n - used, "%s%s %s", used ? ", " : "", names[p],
                         sysmem_format(sum[p], b, sizeof b));
        if (k < 0) break;
        used += (size_t)k;
    }
}

static bool same_node(const char *names, int a, int b) {
    return memcmp(names + (size_t)a * COMM_NODE_NAME_BYTES, names + (size_t)b * COMM_NODE_NAME_BYTES,
                  COMM_NODE_NAME_BYTES) == 0;
}

int job_memory_check(Comm *c, const JobMemory *mine, char *err, size_t errlen) {
    double me[PARTS] = {mine->weights,  mine->train_state,   mine->activations,
                        mine->kv_cache, sysmem_limit_bytes(), mine->activation_tokens};
    double *all = xmalloc((size_t)c->size * PARTS * sizeof(double));
    comm_allgather_f64(c, me, all, PARTS);
    char *names = comm_node_names(c);
    int rc = 0;
    char summary[512] = "";
    for (int first = 0; first < c->size; first++) {
        bool seen = false; /* a lower rank already stood for this node */
        for (int q = 0; q < first && !seen; q++) seen = same_node(names, q, first);
        if (seen) continue;
        double sum[PART_LIMIT] = {0}, limit = 0, tokens = 0;
        int n = 0;
        for (int r = first; r < c->size; r++) {
            if (!same_node(names, r, first)) continue;
            const double *p = all + (size_t)r * PARTS;
            for (int k = 0; k < PART_LIMIT; k++) sum[k] += p[k];
            if (p[PART_LIMIT] > 0 && (limit == 0 || p[PART_LIMIT] < limit)) limit = p[PART_LIMIT];
            if (p[PART_TOKENS] > tokens) tokens = p[PART_TOKENS];
            n++;
        }
        double total = sum[PART_WEIGHTS] + sum[PART_TRAIN_STATE] + sum[PART_ACTIVATIONS] + sum[PART_KV];
        const char *host = names + (size_t)first * COMM_NODE_NAME_BYTES;
        char parts[256], t[32], l[32];
        describe_parts(sum, tokens, parts, sizeof parts);
        if (first == 0 && c->rank == 0) { /* rank 0 prints its node's line */
            char of[64] = "";
            if (limit > 0) snprintf(of, sizeof of, " of %s", sysmem_format(limit, l, sizeof l));
            snprintf(summary, sizeof summary, "host memory: %d rank%s on %s plan %s%s (%s)%s", n, n > 1 ? "s" : "",
                     host, sysmem_format(total, t, sizeof t), of, parts,
                     limit > 0 ? "" : "; the node's limit is unknown");
        }
        if (rc == 0 && limit > 0 && total > limit) {
            if (n == 1)
                err_set(err, errlen, "the rank on %s would take %s (%s), more than the %s of memory it may use", host,
                        sysmem_format(total, t, sizeof t), parts, sysmem_format(limit, l, sizeof l));
            else
                err_set(err, errlen, "the %d ranks of this job on %s would take %s together (%s), more than the %s of "
                        "memory they may use there", n, host, sysmem_format(total, t, sizeof t), parts,
                        sysmem_format(limit, l, sizeof l));
            rc = -1;
        }
    }
    free(names);
    free(all);
    if (rc == 0 && c->rank == 0) {
        printf("%s\n", summary);
        fflush(stdout);
    }
    return rc;
}
