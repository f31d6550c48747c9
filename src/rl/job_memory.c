/* job_memory.c — see job_memory.h. */
#include "rl/job_memory.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/sysmem.h"
#ifdef TAU2_HAVE_CUDA
#include "model/gpu_check.h"
#endif

/* What each rank sends: its five parts, the limit it reads (the GPU's free
 * memory), its micro-batch tokens. */
enum { PART_WEIGHTS, PART_TRAIN_STATE, PART_ACTIVATIONS, PART_KV, PART_WORKSPACE, PART_LIMIT, PART_TOKENS, PARTS };

double job_memory_total(const JobMemory *m) {
    return m->weights + m->train_state + m->activations + m->kv_cache + m->workspace;
}

static void parts_of(const JobMemory *m, double limit, double *out) {
    double p[PARTS] = {m->weights, m->train_state, m->activations, m->kv_cache, m->workspace, limit,
                       m->activation_tokens};
    memcpy(out, p, sizeof p);
}

/* "weights 1.2 GiB, training state 3.4 GiB, ...": the parts that are not
 * zero; tokens, the largest micro-batch the activations are for. */
static void describe_parts(const double *sum, double tokens, char *out, size_t n) {
    char act[64];
    snprintf(act, sizeof act, "activations of %.0f tokens", tokens);
    const char *const names[] = {"weights", "training state", act, "KV cache", "scratch and workspaces"};
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
    double me[PARTS];
    parts_of(mine, sysmem_limit_bytes(), me);
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
        double total = 0;
        for (int k = 0; k < PART_LIMIT; k++) total += sum[k];
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

/* ------------------------------------------------------------ GPU */

/* One rank's record for the GPU check: its parts (the limit slot holds the
 * free memory it read), its GPU and its host. */
typedef struct {
    double parts[PARTS];
    unsigned char uses_gpu;
    unsigned char uuid[16];
    char name[64];
    char host[COMM_NODE_NAME_BYTES];
} GpuRecord;

static bool same_gpu(const GpuRecord *a, const GpuRecord *b) {
    return a->uses_gpu && b->uses_gpu && memcmp(a->uuid, b->uuid, sizeof a->uuid) == 0 &&
           strncmp(a->host, b->host, sizeof a->host) == 0;
}

/* "GPU-5f3c1a2b-..." as nvidia-smi writes a UUID. */
static void format_uuid(const unsigned char *u, char *out, size_t n) {
    char hex[33];
    for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", u[i]);
    snprintf(out, n, "GPU-%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

/* Rank 0's verdict over every rank's record: 0 with the first GPU's line
 * in summary, or -1 with err. */
static int judge_gpus(const GpuRecord *all, int n_ranks, char *summary, size_t slen, char *err, size_t errlen) {
    bool printed = false;
    for (int first = 0; first < n_ranks; first++) {
        const GpuRecord *f = &all[first];
        bool seen = !f->uses_gpu; /* a lower rank already stood for this GPU */
        for (int q = 0; q < first && !seen; q++) seen = same_gpu(&all[q], f);
        if (seen) continue;
        double sum[PART_LIMIT] = {0}, free_b = -1, tokens = 0, total = 0;
        int n = 0;
        for (int r = first; r < n_ranks; r++) {
            if (!same_gpu(&all[r], f)) continue;
            for (int k = 0; k < PART_LIMIT; k++) sum[k] += all[r].parts[k];
            if (free_b < 0 || all[r].parts[PART_LIMIT] < free_b) free_b = all[r].parts[PART_LIMIT];
            if (all[r].parts[PART_TOKENS] > tokens) tokens = all[r].parts[PART_TOKENS];
            n++;
        }
        for (int k = 0; k < PART_LIMIT; k++) total += sum[k];
        double reserve = n * JOB_GPU_RESERVE_BYTES;
        char parts[256], uuid[48], t[32], r[32], fr[32];
        describe_parts(sum, tokens, parts, sizeof parts);
        format_uuid(f->uuid, uuid, sizeof uuid);
        sysmem_format(total, t, sizeof t);
        sysmem_format(reserve, r, sizeof r);
        sysmem_format(free_b, fr, sizeof fr);
        if (!printed) {
            snprintf(summary, slen, "GPU memory: %d rank%s on %s (%s) of %s plan %s (%s) + %s held back, of %s free",
                     n, n > 1 ? "s" : "", uuid, f->name, f->host, t, parts, r, fr);
            printed = true;
        }
        if (total + reserve > free_b) {
            if (n == 1)
                err_set(err, errlen, "the rank on %s (%s) of %s would take %s of its memory (%s) and hold back %s "
                        "for NCCL and cuBLAS, more than the %s free on it", uuid, f->name, f->host, t, parts, r, fr);
            else
                err_set(err, errlen, "the %d ranks of this job on %s (%s) of %s would take %s of its memory "
                        "together (%s) and hold back %s for NCCL and cuBLAS, more than the %s free on it", n, uuid,
                        f->name, f->host, t, parts, r, fr);
            return -1;
        }
    }
    return 0;
}

int job_gpu_memory_check(Comm *c, const JobMemory *mine, const JobGpu *gpu, char *err, size_t errlen) {
    GpuRecord me;
    memset(&me, 0, sizeof me);
    parts_of(mine, gpu->free_bytes, me.parts);
    me.uses_gpu = gpu->uses_gpu;
    memcpy(me.uuid, gpu->uuid, sizeof me.uuid);
    snprintf(me.name, sizeof me.name, "%s", gpu->name);
    char *names = comm_node_names(c);
    memcpy(me.host, names + (size_t)c->rank * COMM_NODE_NAME_BYTES, COMM_NODE_NAME_BYTES);
    free(names);
    char *all = NULL;
    size_t *counts = xcalloc((size_t)c->size, sizeof(size_t));
    comm_gatherv_bytes(c, &me, sizeof me, 0, &all, counts);
    /* rank 0 judges; every rank learns the answer and the message */
    struct {
        int rc;
        char text[1024];
    } verdict = {0, ""};
    char summary[768] = "";
    if (c->rank == 0)
        verdict.rc = judge_gpus((const GpuRecord *)all, c->size, summary, sizeof summary, verdict.text,
                                sizeof verdict.text);
    free(all);
    free(counts);
    comm_broadcast(c, &verdict, sizeof verdict, 0);
    if (verdict.rc != 0) {
        err_set(err, errlen, "%s", verdict.text);
        return -1;
    }
    if (c->rank == 0 && summary[0]) {
        printf("%s\n", summary);
        fflush(stdout);
    }
    return 0;
}

#ifdef TAU2_HAVE_CUDA
void job_gpu_read(Comm *c, bool uses_gpu, int node_rank, JobGpu *out) {
    memset(out, 0, sizeof *out);
    out->uses_gpu = uses_gpu;
    if (uses_gpu) gpu_select(node_rank);
    comm_barrier(c);
    if (!uses_gpu) return;
    GpuMemInfo info;
    gpu_memory_info(node_rank, &info);
    memcpy(out->uuid, info.uuid, sizeof out->uuid);
    snprintf(out->name, sizeof out->name, "%.63s", info.name);
    out->free_bytes = (double)info.free_bytes;
}
#endif
