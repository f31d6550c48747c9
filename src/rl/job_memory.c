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

void job_memory_add(JobMemory *dst, const JobMemory *src) {
    dst->weights += src->weights;
    dst->train_state += src->train_state;
    dst->activations += src->activations;
    dst->kv_cache += src->kv_cache;
    dst->workspace += src->workspace;
    if (src->activation_tokens > dst->activation_tokens) dst->activation_tokens = src->activation_tokens;
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

/* One rank's record: its parts in each phase (the limit slot holds the
 * limit it read: its node's memory limit, or its GPU's free memory; the
 * host check has one phase) and where they live: its host, and for the GPU
 * check its GPU. */
typedef struct {
    double parts[JOB_PHASES][PARTS];
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

/* One place's sums in one phase: each part over its ranks, their total,
 * the largest micro-batch. */
typedef struct {
    double sum[PART_LIMIT], total, tokens;
} PhaseSum;

static const char *const PHASE_NAMES[JOB_PHASES] = {"training", "rolling out"};

/* Rank 0's verdict over every rank's record: 0 with the first place's line
 * in summary and each rank's room in each phase (room[r * JOB_PHASES + k]:
 * its place's limit less the reserve and the phase's sum; 0 for a rank
 * not counted), or -1 with err naming the first place over its limit in
 * its larger phase. On the host the limit is the least its ranks read (0:
 * unknown, never over); on a GPU the least free memory its ranks read,
 * less JOB_GPU_RESERVE_BYTES per rank. n_phases: 1 (host) or JOB_PHASES;
 * phases with the same parts are told as one. */
static int judge(const Record *all, int n_ranks, bool gpu, int n_phases, double *room, char *summary, size_t slen,
                 char *err, size_t errlen) {
    for (int first = 0; first < n_ranks; first++) {
        const Record *f = &all[first];
        bool seen = !f->counted; /* a lower rank already stood for this place */
        for (int q = 0; q < first && !seen; q++) seen = same_place(&all[q], f);
        if (seen) continue;
        PhaseSum ph[JOB_PHASES];
        memset(ph, 0, sizeof ph);
        double limit = -1;
        int n = 0;
        for (int r = first; r < n_ranks; r++) {
            if (!same_place(&all[r], f)) continue;
            for (int k = 0; k < n_phases; k++) {
                const double *p = all[r].parts[k];
                for (int i = 0; i < PART_LIMIT; i++) ph[k].sum[i] += p[i];
                if (p[PART_TOKENS] > ph[k].tokens) ph[k].tokens = p[PART_TOKENS];
            }
            const double *p = all[r].parts[0];
            if ((gpu || p[PART_LIMIT] > 0) && (limit < 0 || p[PART_LIMIT] < limit)) limit = p[PART_LIMIT];
            n++;
        }
        int worst = 0;
        bool phased = false;
        for (int k = 0; k < n_phases; k++) {
            for (int i = 0; i < PART_LIMIT; i++) ph[k].total += ph[k].sum[i];
            if (ph[k].total > ph[worst].total) worst = k;
            if (memcmp(ph[k].sum, ph[0].sum, sizeof ph[0].sum) != 0) phased = true;
        }
        double reserve = gpu ? n * JOB_GPU_RESERVE_BYTES : 0;
        char place[384], plan[640], t[32], l[32], r[32], ranks[64];
        sysmem_format(limit, l, sizeof l);
        sysmem_format(reserve, r, sizeof r);
        if (gpu) {
            char uuid[48];
            format_uuid(f->uuid, uuid, sizeof uuid);
            snprintf(place, sizeof place, "%s (%s) of %s", uuid, f->name, f->host);
        } else {
            snprintf(place, sizeof place, "%s", f->host);
        }
        if (!summary[0]) { /* the first place's line: "X (parts)", or "X training (parts), Y rolling out (parts)" */
            size_t used = 0;
            for (int k = 0; k < (phased ? n_phases : 1) && used < sizeof plan; k++) {
                char parts[256];
                describe_parts(ph[k].sum, ph[k].tokens, parts, sizeof parts);
                sysmem_format(ph[k].total, t, sizeof t);
                used += (size_t)snprintf(plan + used, sizeof plan - used, "%s%s%s%s (%s)", k ? ", " : "", t,
                                         phased ? " " : "", phased ? PHASE_NAMES[k] : "", parts);
            }
            snprintf(ranks, sizeof ranks, "%d rank%s on", n, n > 1 ? "s" : "");
            if (gpu)
                snprintf(summary, slen, "GPU memory: %s %s plan %s + %s held back, of %s free", ranks, place, plan, r,
                         l);
            else { /* one phase: "T of L (parts)" */
                char parts[256];
                describe_parts(ph[0].sum, ph[0].tokens, parts, sizeof parts);
                sysmem_format(ph[0].total, t, sizeof t);
                snprintf(summary, slen, "host memory: %s %s plan %s%s%s (%s)%s", ranks, place, t,
                         limit > 0 ? " of " : "", limit > 0 ? l : "", parts,
                         limit > 0 ? "" : "; the node's limit is unknown");
            }
        }
        const PhaseSum *w = &ph[worst];
        for (int r = first; r < n_ranks; r++)
            for (int k = 0; k < n_phases && same_place(&all[r], f); k++)
                room[r * JOB_PHASES + k] = limit - reserve - ph[k].total;
        if (limit < 0 || w->total + reserve <= limit) continue;
        char parts[256], when[64] = "";
        describe_parts(w->sum, w->tokens, parts, sizeof parts);
        sysmem_format(w->total, t, sizeof t);
        if (phased) snprintf(when, sizeof when, " while %s", PHASE_NAMES[worst]);
        if (n == 1)
            snprintf(ranks, sizeof ranks, "the rank");
        else
            snprintf(ranks, sizeof ranks, "the %d ranks of this job", n);
        if (gpu)
            err_set(err, errlen, "%s on %s would take %s of its memory%s%s (%s) and hold back %s for NCCL and cuBLAS, "
                    "more than the %s free on it", ranks, place, t, n > 1 ? " together" : "", when, parts, r, l);
        else
            err_set(err, errlen, "%s on %s would take %s%s (%s), more than the %s of memory %s may use%s", ranks, place,
                    t, n > 1 ? " together" : "", parts, l, n > 1 ? "they" : "it", n > 1 ? " there" : "");
        return -1;
    }
    return 0;
}

/* Collective over c: every rank's record to rank 0, its verdict to every
 * rank; rank 0 prints the summary line when the plan fits, and each rank
 * gets its room in each phase (my_room, when not NULL). */
static int check_records(Comm *c, Record *me, bool gpu, int n_phases, double *my_room, char *err, size_t errlen) {
    char *names = comm_node_names(c);
    memcpy(me->host, names + (size_t)c->rank * COMM_NODE_NAME_BYTES, COMM_NODE_NAME_BYTES);
    free(names);
    char *all = NULL;
    size_t *counts = xcalloc((size_t)c->size, sizeof(size_t));
    comm_gatherv_bytes(c, me, sizeof *me, 0, &all, counts);
    struct {
        int rc;
        char text[1280];
    } verdict = {0, ""};
    char summary[1280] = "";
    double *room = xcalloc((size_t)c->size * JOB_PHASES, sizeof(double));
    if (c->rank == 0)
        verdict.rc = judge((const Record *)all, c->size, gpu, n_phases, room, summary, sizeof summary, verdict.text,
                           sizeof verdict.text);
    free(all);
    free(counts);
    comm_broadcast(c, &verdict, sizeof verdict, 0);
    comm_broadcast(c, room, (size_t)c->size * JOB_PHASES * sizeof(double), 0);
    if (my_room) memcpy(my_room, room + (size_t)c->rank * JOB_PHASES, JOB_PHASES * sizeof(double));
    free(room);
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
    parts_of(mine, sysmem_limit_bytes(), me.parts[0]);
    me.counted = 1;
    return check_records(c, &me, false, 1, NULL, err, errlen);
}

/* ------------------------------------------------------------ GPU */

int job_gpu_memory_check(Comm *c, const JobMemory mine[JOB_PHASES], const JobGpu *gpu, double room[JOB_PHASES],
                         char *err, size_t errlen) {
    Record me;
    memset(&me, 0, sizeof me);
    for (int k = 0; k < JOB_PHASES; k++) parts_of(&mine[k], gpu->free_bytes, me.parts[k]);
    me.counted = gpu->uses_gpu;
    memcpy(me.uuid, gpu->uuid, sizeof me.uuid);
    snprintf(me.name, sizeof me.name, "%s", gpu->name);
    return check_records(c, &me, true, JOB_PHASES, room, err, errlen);
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
