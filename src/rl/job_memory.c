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

/* One rank's record: its parts (the limit slot holds the limit it read:
 * its node's memory limit, or its GPU's free memory) and where they live:
 * its host, and for the GPU check its GPU. */
typedef struct {
    double parts[PARTS];
    unsigned char counted; /* 0: a rank that takes no GPU (GPU check) */
    unsigned char uuid[16]; /* zeros for the host check */
    char name[64];
    char host[COMM_NODE_NAME_BYTES];
} Record;

/* Whose parts are added up: the ranks on one node (host check), or on one
 * GPU of one node (GPU check: the UUID too). */
static bool same_place(const Record *a, const Record *b) {
    return a->counted && b->counted && memcmp(a->uuid, b->uuid, sizeof a->uuid) == 0 &&
           strncmp(a->host, b->host, sizeof a->host) == 0;
}

/* "GPU-5f3c1a2b-..." as nvidia-smi writes a UUID. */
static void format_uuid(const unsigned char *u, char *out, size_t n) {
    char hex[33];
    for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", u[i]);
    snprintf(out, n, "GPU-%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

/* Rank 0's verdict over every rank's record: 0 with the first place's line
 * in summary, or -1 with err naming the first place over its limit. On the
 * host the limit is the least its ranks read (0: unknown, never over); on
 * a GPU the least free memory its ranks read, less JOB_GPU_RESERVE_BYTES
 * per rank. */
static int judge(const Record *all, int n_ranks, bool gpu, char *summary, size_t slen, char *err, size_t errlen) {
    for (int first = 0; first < n_ranks; first++) {
        const Record *f = &all[first];
        bool seen = !f->counted; /* a lower rank already stood for this place */
        for (int q = 0; q < first && !seen; q++) seen = same_place(&all[q], f);
        if (seen) continue;
        double sum[PART_LIMIT] = {0}, limit = -1, tokens = 0, total = 0;
        int n = 0;
        for (int r = first; r < n_ranks; r++) {
            if (!same_place(&all[r], f)) continue;
            const double *p = all[r].parts;
            for (int k = 0; k < PART_LIMIT; k++) sum[k] += p[k];
            if ((gpu || p[PART_LIMIT] > 0) && (limit < 0 || p[PART_LIMIT] < limit)) limit = p[PART_LIMIT];
            if (p[PART_TOKENS] > tokens) tokens = p[PART_TOKENS];
            n++;
        }
        for (int k = 0; k < PART_LIMIT; k++) total += sum[k];
        double reserve = gpu ? n * JOB_GPU_RESERVE_BYTES : 0;
        char place[384], parts[256], t[32], l[32], r[32], ranks[64];
        describe_parts(sum, tokens, parts, sizeof parts);
        sysmem_format(total, t, sizeof t);
        sysmem_format(limit, l, sizeof l);
        sysmem_format(reserve, r, sizeof r);
        if (gpu) {
            char uuid[48];
            format_uuid(f->uuid, uuid, sizeof uuid);
            snprintf(place, sizeof place, "%s (%s) of %s", uuid, f->name, f->host);
        } else {
            snprintf(place, sizeof place, "%s", f->host);
        }
        if (!summary[0]) { /* the first place's line */
            snprintf(ranks, sizeof ranks, "%d rank%s on", n, n > 1 ? "s" : "");
            if (gpu)
                snprintf(summary, slen, "GPU memory: %s %s plan %s (%s) + %s held back, of %s free", ranks, place, t,
                         parts, r, l);
            else
                snprintf(summary, slen, "host memory: %s %s plan %s%s%s (%s)%s", ranks, place, t, limit > 0 ? " of " : "",
                         limit > 0 ? l : "", parts, limit > 0 ? "" : "; the node's limit is unknown");
        }
        if (limit < 0 || total + reserve <= limit) continue;
        if (n == 1)
            snprintf(ranks, sizeof ranks, "the rank");
        else
            snprintf(ranks, sizeof ranks, "the %d ranks of this job", n);
        if (gpu)
            err_set(err, errlen, "%s on %s would take %s of its memory%s (%s) and hold back %s for NCCL and cuBLAS, "
                    "more than the %s free on it", ranks, place, t, n > 1 ? " together" : "", parts, r, l);
        else
            err_set(err, errlen, "%s on %s would take %s%s (%s), more than the %s of memory %s may use%s", ranks, place,
                    t, n > 1 ? " together" : "", parts, l, n > 1 ? "they" : "it", n > 1 ? " there" : "");
        return -1;
    }
    return 0;
}

/* Collective over c: every rank's record to rank 0, its verdict to every
 * rank; rank 0 prints the summary line when the plan fits. */
static int check_records(Comm *c, Record *me, bool gpu, char *err, size_t errlen) {
    char *names = comm_node_names(c);
    memcpy(me->host, names + (size_t)c->rank * COMM_NODE_NAME_BYTES, COMM_NODE_NAME_BYTES);
    free(names);
    char *all = NULL;
    size_t *counts = xcalloc((size_t)c->size, sizeof(size_t));
    comm_gatherv_bytes(c, me, sizeof *me, 0, &all, counts);
    struct {
        int rc;
        char text[1024];
    } verdict = {0, ""};
    char summary[768] = "";
    if (c->rank == 0)
        verdict.rc = judge((const Record *)all, c->size, gpu, summary, sizeof summary, verdict.text,
                           sizeof verdict.text);
    free(all);
    free(counts);
    comm_broadcast(c, &verdict, sizeof verdict, 0);
    if (verdict.rc != 0) return err_set(err, errlen, "%s", verdict.text);
    if (c->rank == 0 && summary[0]) {
        printf("%s\n", summary);
        fflush(stdout);
    }
    return 0;
}

int job_memory_check(Comm *c, const JobMemory *mine, char *err, size_t errlen) {
    Record me;
    memset(&me, 0, sizeof me);
    parts_of(mine, sysmem_limit_bytes(), me.parts);
    me.counted = 1;
    return check_records(c, &me, false, err, errlen);
}

/* ------------------------------------------------------------ GPU */

int job_gpu_memory_check(Comm *c, const JobMemory *mine, const JobGpu *gpu, char *err, size_t errlen) {
    Record me;
    memset(&me, 0, sizeof me);
    parts_of(mine, gpu->free_bytes, me.parts);
    me.counted = gpu->uses_gpu;
    memcpy(me.uuid, gpu->uuid, sizeof me.uuid);
    snprintf(me.name, sizeof me.name, "%s", gpu->name);
    return check_records(c, &me, true, err, errlen);
}

#ifdef TAU2_HAVE_CUDA
void job_memory_add_qwen3_gpu(JobMemory *m, const Qwen3GpuPlan *p) {
    m->weights += (double)p->weights;
    m->train_state += (double)p->train_state;
    m->activations += (double)p->activations;
    m->workspace += (double)(p->workspace + p->pool);
}

void job_memory_add_infer_gpu(JobMemory *m, const InferGpuPlan *p) {
    m->weights += (double)p->weights;
    m->kv_cache += (double)p->kv_cache;
    m->workspace += (double)(p->scratch + p->workspace + p->pool);
}

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
