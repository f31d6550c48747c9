/* job.c — see job.h. The job reads top to bottom: job_run sets up the
 * layout, the model copies and the data, then runs the SFT phase and the
 * GRPO phase; everything else is a step of those. */
#include "rl/job.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "comm/layout.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/sbuf.h"
#include "core/stop_signal.h"
#include "core/sysmem.h"
#include "io/checkpoint.h"
#include "io/metrics.h"
#include "io/rollout_buffer.h"
#include "io/run_lock.h"
#include "io/tb_events.h"
#include "llm/llm_client.h"
#include "llm/mpi_server.h"
#include "model/gpu_check.h"
#include "model/infer.h"
#include "model/infer_gpu.h"
#include "model/qwen3.h"
#include "model/qwen3_gpu.h"
#include "model/train_device.h"
#include "rl/eval.h"
#include "rl/grpo.h"
#include "rl/job_memory.h"
#include "rl/prompts.h"
#include "rl/rollout.h"
#include "rl/schedule.h"
#include "rl/sft_data.h"
#include "rl/train.h"
#include "rl/user_routes.h"
#include "tau2/oracle.h"

/* Weights travel from trainer to rollout engines as one flat buffer in
 * buckets of this many bytes, not tensor by tensor (bench_broadcast
 * measures the choice). */
#define WEIGHT_BUCKET_BYTES ((size_t)64 << 20)

/* The name the user-simulator ranks serve their model under ("local" user). */
#define LOCAL_USER_MODEL_NAME "user"

/* What the rollout side reports for one step (a fixed array of doubles, so
 * it can ride on the "buffer ready" broadcast). Per-domain entries are in
 * the order of DOMAINS. */
static const char *const DOMAINS[] = {"airline", "retail", "telecom", "mock"};
#define N_DOMAINS 4
enum {
    RS_STEP, RS_CURSOR, RS_EPISODES, RS_GROUPS, RS_KEPT_GROUPS, RS_ROUNDS, RS_RAW, RS_SHAPED, RS_PARTIAL,
    RS_TRUNCATED, RS_TOKENS, RS_SAMPLED, RS_TURNS, RS_PARSE_ERRORS, RS_DRIFT_CHECKED, RS_DRIFT, RS_TIME,
    RS_VERSION, RS_INFRA, RS_USER_TURNS, RS_DOMAIN_N, RS_DOMAIN_PASS = RS_DOMAIN_N + N_DOMAINS, RS_COUNT = RS_DOMAIN_PASS + N_DOMAINS
};

typedef struct {
    const JobConfig *cfg;
    const char *data_dir;
    RankLayout lay;
    LayoutComms comms;
    Comm *world;         /* every rank: the user-simulator ranks join the job for the host memory check and
                          * local_user_ready only */
    Comm *work;          /* every rank but the user-simulator ranks (which serve, outside the job's collectives) */
    bool root; /* world rank 0: trainer rank 0, prints, writes */
    Qwen3Config mcfg;
    cJSON *model_config_json;
    Tokenizer *tok;
    ChatTemplate *ct;
    Qwen3 *policy;       /* this trainer rank's shard (trainers) */
    Qwen3 *ref;          /* frozen reference, when kl_coef > 0 */
    TrainDevice *policy_dev; /* where the policy's updates run (trainers, from the resume on) */
    TrainDevice *ref_dev;    /* where the reference's forward passes run (trainers, GRPO with kl_coef > 0) */
    struct InferGpu *roll_gpu; /* rollout_device "cuda": the training rollouts' GPU engine, kept across steps */
    bool roll_gpu_fresh;       /* roll_gpu holds the weights the last broadcast brought */
    bool offloaded;            /* this step moved memory between the phases (offload_train, offload_rollout) */
    double offload_s;          /* ... taking this long (reported and reset with the step) */
    Comm *sync_nccl;           /* separate mode, both devices "cuda": the weight broadcast over NCCL */
    TrainDeviceKind train_device;
    int node_rank;       /* this rank's index on its node: its GPU for train_device / rollout_device "cuda" */
    bool rollout_on_gpu; /* rollout_device "cuda": episodes on the GPU engine */
    int64_t checked_tokens; /* the micro-batch tokens whose activations setup_memory counted (every trainer kind) */
    double planned_bytes;   /* this rank's host memory as setup_memory counted it */
    double gpu_room;        /* what this rank's GPU has to spare, beyond the plan, in the tighter phase that holds
                             * the trainer's activations (gpu_room_phase) */
    const char *gpu_room_phase; /* "training" or "rolling out" */
    Qwen3 *engine_model; /* the rollout engine's weights (rollout ranks): full, or this rank's shard of a
                          * rollout group of several ranks; may be policy */
    PromptSet *prompts;
    SftSet *sft;
    MetricsLog *metrics;
    RunLock *lock;       /* the run directory's (rank 0) */
    TbWriter *tb;        /* the same scalars as TensorBoard events (run_dir/tb), rank 0 */
    char run_dir[1024], ckpt_dir[1040], rollout_dir[1040];
    /* progress */
    int64_t step;        /* job steps done: SFT updates, then GRPO rollouts */
    int64_t data_cursor; /* next position in the prompt stream */
    int64_t opt_steps;   /* optimizer updates done (the LR schedule's clock) */
    int n_sft_steps;
    int64_t total_updates; /* of the whole run, for the LR schedule */
    LrSchedule sft_sched, grpo_sched;
    TrainOptions train;
    RolloutOptions rollout;
    RolloutUser user;    /* who plays the customer (rollout ranks) */
    LlmClient *client;   /* the api user's client (rollout ranks), or NULL */
    UserEndpoints user_eps; /* the api user's endpoints: one per distinct (base_url, model, key var) */
    UserRoutes routes;   /* the api user's models of each prompt row */
    EvalSet *eval;       /* periodic evaluation's datasets (eval_interval > 0), or NULL */
    double t_start;
    int64_t saved_step; /* the step of the last checkpoint written, or -1 */
    int stopped_by;     /* the signal that stopped the job early, or 0 */
} Job;

/* A directory of the run: its failure is the config's output_dir's. */
static void mkdir_run(const JobConfig *c, const char *path) {
    char err[1024];
    if (dir_create_all(path, err, sizeof err) != 0)
        die_input("%s: %s: %s", c->path, job_config_output_dir_origin(c), err);
}

void job_check_run_outputs(const JobConfig *c, const char *run_dir, const char *const *dirs,
                           const char *const *files) {
    for (int kind = 0; kind < 2; kind++) {
        for (const char *const *name = kind == 0 ? dirs : files; *name; name++) {
            char path[2100], err[2400];
            snprintf(path, sizeof path, "%s/%s", run_dir, *name);
            if (path_check_output(path, kind == 0, err, sizeof err) != 0)
                die_input("%s: %s: %s", c->path, job_config_output_dir_origin(c), err);
        }
    }
}

/* dir + "/" + name (name may be NULL) into out; paths too long for out
 * are an input error. */
static void path_join(char *out, size_t outlen, const char *dir, const char *name) {
    size_t a = strlen(dir), b = name ? strlen(name) + 1 : 0;
    if (a + b + 1 > outlen) die_input("path too long: %s%s%s", dir, name ? "/" : "", name ? name : "");
    memcpy(out, dir, a);
    if (name) {
        out[a] = '/';
        memcpy(out + a + 1, name, b - 1);
    }
    out[a + b] = '\0';
}

/* ================================================================ setup */

static void setup_layout(Job *j, Comm *world) {
    const JobConfig *c = j->cfg;
    char err[2048];
    LayoutRequest req = {.tensor_parallel = c->tensor_parallel, .data_parallel = c->data_parallel,
                         .rollout_groups = c->rollout_groups, .rollout_tensor_parallel = c->rollout_tensor_parallel,
                         .user_sim_ranks = c->user_sim_ranks, .colocate = c->colocate};
    if (layout_plan(&req, world->size, world->rank, j->mcfg.num_heads, j->mcfg.num_kv_heads,
                    j->mcfg.intermediate_size, j->mcfg.vocab_size, &j->lay, err, sizeof err) != 0)
        die_input("%s: rank layout: %s", c->path, err);
    if (!c->colocate && c->max_staleness > 0 && j->lay.n_rollout_groups == 0)
        die_input("%s: field 'max_staleness': asynchronous mode needs separate rollout ranks", c->path);
    layout_create_comms(&j->lay, world, &j->comms);
    if (j->root) {
        char text[4096];
        layout_describe(&j->lay, text, sizeof text);
        printf("%s", text);
        fflush(stdout);
    }
}

/* Which devices train and roll out, checked against the GPUs the ranks see. */
static void setup_devices(Job *j) {
    const JobConfig *c = j->cfg;
    char err[2048];
    if (train_device_kind_parse(c->train_device, &j->train_device) != 0)
        die_input("%s: field 'train_device': unknown device '%s'", c->path, c->train_device);
    j->rollout_on_gpu = strcmp(c->rollout_device, "cuda") == 0;
    /* collective over the job's ranks, so every rank asks */
    j->node_rank = j->train_device == TRAIN_DEVICE_CUDA || j->rollout_on_gpu ? comm_node_rank(j->work) : 0;
    if (j->lay.is_trainer &&
        train_device_check(j->train_device, c->tensor_parallel, err, sizeof err) != 0)
        die_input("%s: field 'train_device': %s", c->path, err);
#ifdef TAU2_HAVE_CUDA
    if (j->lay.is_trainer && j->train_device == TRAIN_DEVICE_CUDA && j->lay.n_trainer > 1 &&
        gpu_distinct_devices_check(j->comms.trainer, j->node_rank, err, sizeof err) != 0)
        die_input("%s: field 'train_device': %s", c->path, err);
#endif
    if (j->rollout_on_gpu && j->lay.is_rollout &&
        gpu_check(c->rollout_tensor_parallel, 1, "rollout_tensor_parallel", "the GPU inference engine", err,
                  sizeof err) != 0)
        die_input("%s: field 'rollout_device': %s", c->path, err);
}

/* The policy's tokenizer and chat template (every rank renders). */
static void setup_text(Job *j) {
    const JobConfig *c = j->cfg;
    char err[2048];
    if (rollout_load_text(c->model, c->tokenizer, j->mcfg.vocab_size, &j->tok, &j->ct, err, sizeof err) != 0)
        die_input("%s: %s", c->path, err);
}

/* The longest sequence this trainer rank may train on: the SFT data's
 * longest, and in a GRPO job the longest opening of the prompt set's
 * domains plus the episode budget (rollout_opening_tokens). *why names the
 * field that sets it. */
static int64_t longest_train_sequence(Job *j, const char **why) {
    const JobConfig *c = j->cfg;
    char err[2048];
    int64_t longest = 0;
    *why = NULL;
    for (int i = 0; j->sft && i < j->sft->n; i++) {
        const SftConversation *cv = &j->sft->conv[i];
        TrainSeq s = {.ids = cv->ids, .mask = cv->mask, .n = (int64_t)cv->n};
        int64_t n = train_seq_tokens(&s);
        if (n > longest) longest = n, *why = "sft_data";
    }
    if (strcmp(c->job, "grpo") != 0 || !j->prompts) return longest;
    int user_turn = c->user_max_tokens > 0 ? c->user_max_tokens : c->rollout_max_turn_len;
    for (int d = 0; d < j->prompts->n_domains; d++) {
        int64_t open = rollout_opening_tokens(j->ct, j->tok, j->prompts->domains[d], user_turn, err, sizeof err);
        if (open < 0) die_input("%s: field 'model': chat template: %s", c->path, err);
        if (open + c->rollout_max_response_len > longest)
            longest = open + c->rollout_max_response_len, *why = "rollout_max_response_len";
    }
    return longest;
}

/* The CPU trainer's activations for micro-batches of T tokens: the
 * policy's, and the KL reference's forward passes in the one-slot layout
 * (setup_models). */
static double train_acts_bytes(const Job *j, int64_t T) {
    const JobConfig *c = j->cfg;
    double bytes = qwen3_acts_bytes(&j->mcfg, j->lay.tp, (int)T, c->recompute_activations);
    if (c->kl_coef != 0.0) bytes += qwen3_acts_bytes(&j->mcfg, j->lay.tp, (int)T, true);
    return bytes;
}

/* The micro-batch size the trainer's activations are planned for: the
 * longest sequence the job can train on when longer than
 * max_tokens_per_gpu; *field names the setting behind it. */
static int64_t planned_train_tokens(Job *j, const char **field) {
    const char *why;
    int64_t longest = longest_train_sequence(j, &why), T = j->cfg->max_tokens_per_gpu;
    *field = "max_tokens_per_gpu";
    if (longest > T) T = longest, *field = why;
    return T;
}

/* The options of the largest engine a rollout rank makes: one call of the
 * training rollouts (its share of rollout_batch_size) or of the periodic
 * evaluation (a kept GPU engine is replaced by a larger one, never joined
 * by it). */
static InferOptions planned_engine(const Job *j) {
    const JobConfig *c = j->cfg;
    RolloutUserKind kind = ROLLOUT_USER_GOLD;
    rollout_user_kind_parse(c->user, &kind);
    int engines = j->lay.n_rollout_groups > 0 ? j->lay.n_rollout_groups : 1;
    int per_engine = (c->rollout_batch_size + engines - 1) / engines;
    InferOptions io = rollout_engine_options(&j->rollout, kind == ROLLOUT_USER_POLICY, per_engine);
    if (j->eval) {
        InferOptions ev = eval_set_engine_options(j->eval);
        if (ev.kv_tokens > io.kv_tokens) io.kv_tokens = ev.kv_tokens;
        if (ev.max_seqs > io.max_seqs) io.max_seqs = ev.max_seqs;
    }
    return io;
}

#ifdef TAU2_HAVE_CUDA
/* The GPU trainer's engines, the policy's and the KL reference's, at
 * micro-batches of T tokens: all of their memory added to *whole, and to
 * *offloaded (when not NULL) what they keep when offloaded, their
 * workspaces. */
static void gpu_trainer_plan(const Job *j, int64_t T, JobMemory *whole, JobMemory *offloaded) {
    const JobConfig *c = j->cfg;
    Qwen3GpuPlan p;
    qwen3_gpu_plan(&j->mcfg, j->lay.tp, (int)T, c->recompute_activations, QWEN3_GPU_BF16, true, &p);
    job_memory_add_qwen3_gpu(whole, &p);
    if (offloaded) offloaded->workspace += (double)p.workspace;
    if (c->kl_coef != 0.0) {
        qwen3_gpu_plan(&j->mcfg, j->lay.tp, (int)T, true, QWEN3_GPU_BF16, false, &p);
        job_memory_add_qwen3_gpu(whole, &p);
        if (offloaded) offloaded->workspace += (double)p.workspace;
    }
    whole->activation_tokens = (double)T;
}
#endif

/* "field 'a'", "fields 'a' and 'b'", "fields 'a', 'b' and 'c'", and the
 * evaluation's datasets when the job evaluates (their sizes may set the
 * engine's cache). */
static void name_fields(const Job *j, const char *const *fields, int n, char *out, size_t len) {
    size_t used = (size_t)snprintf(out, len, "field%s ", n > 1 ? "s" : "");
    for (int i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, "%s'%s'", i == 0 ? "" : i == n - 1 ? " and " : ", ",
                                 fields[i]);
    if (j->cfg->eval_interval > 0 && used < len) snprintf(out + used, len - used, " (or the eval datasets' sizes)");
}

#ifdef TAU2_HAVE_CUDA
/* This rank's device memory, from the config alone: the trainer's engine
 * (and the KL reference's) at the planned micro-batch, the rollout engine
 * at its largest call, the broadcast's staging; in each phase of the job
 * (colocated, offload_train leaves only the trainer's workspaces through
 * a rollout phase and offload_rollout frees the engine for a training
 * phase), summed per GPU over the job's ranks and checked against the
 * memory free once every rank's context exists. Collective over the job's
 * ranks. */
static void setup_gpu_memory(Job *j, int64_t T, const char *t_field) {
    const JobConfig *c = j->cfg;
    bool train_gpu = j->lay.is_trainer && j->train_device == TRAIN_DEVICE_CUDA;
    bool roll_gpu = j->lay.is_rollout && j->rollout_on_gpu;
    JobMemory trainer = {0}, trainer_offloaded = {0}, engine = {0};
    const char *fields[6] = {"model"};
    int n_fields = 1;
    if (train_gpu) gpu_trainer_plan(j, T, &trainer, &trainer_offloaded);
    if (j->train_device == TRAIN_DEVICE_CUDA) fields[n_fields++] = t_field;
    if (roll_gpu) {
        InferOptions io = planned_engine(j);
        InferGpuPlan p;
        infer_gpu_plan(&j->mcfg, &io, c->chunked_prefill_size, &p);
        job_memory_add_infer_gpu(&engine, &p);
    }
    /* separate mode on GPUs: the NCCL broadcast's staging bucket, on
     * trainer rank 0 and every rollout rank (sync_nccl_setup) */
    if (!c->colocate && j->rollout_on_gpu && j->train_device == TRAIN_DEVICE_CUDA &&
        ((train_gpu && j->lay.trainer_rank == 0) || roll_gpu)) {
        size_t bytes = qwen3_shard_num_parameters(&j->mcfg, 1) * sizeof(float);
        engine.workspace += (double)(bytes < WEIGHT_BUCKET_BYTES ? bytes : WEIGHT_BUCKET_BYTES);
    }
    if (j->rollout_on_gpu) {
        fields[n_fields++] = c->kv_cache_tokens > 0 ? "kv_cache_tokens" : "rollout_batch_size";
        fields[n_fields++] = "chunked_prefill_size";
    }
    /* the phases: each side whole in its own, and in the other what its
     * offload leaves (without one, all of it) */
    JobMemory phase[JOB_PHASES] = {trainer, engine};
    job_memory_add(&phase[JOB_PHASE_TRAIN], c->colocate && c->offload_rollout ? &(JobMemory){0} : &engine);
    job_memory_add(&phase[JOB_PHASE_ROLLOUT], c->colocate && c->offload_train ? &trainer_offloaded : &trainer);
    if (c->colocate && j->rollout_on_gpu && j->train_device == TRAIN_DEVICE_CUDA) {
        if (!c->offload_train) fields[n_fields++] = "offload_train";
        if (!c->offload_rollout) fields[n_fields++] = "offload_rollout";
    }
    JobGpu gpu;
    job_gpu_read(j->work, train_gpu || roll_gpu, j->node_rank, &gpu);
    char err[2048], names[256];
    double room[JOB_PHASES];
    if (job_gpu_memory_check(j->work, phase, &gpu, room, err, sizeof err) != 0) {
        name_fields(j, fields, n_fields, names, sizeof names);
        die_input("%s: %s: %s", c->path, names, err);
    }
    /* the trainer's activations are held while training, and while rolling
     * out too unless offload_train frees them: a longer trajectory's growth
     * must fit the tighter of those phases */
    if (train_gpu) {
        bool held_in_rollout = !(c->colocate && c->offload_train);
        bool rollout_tighter = held_in_rollout && room[JOB_PHASE_ROLLOUT] < room[JOB_PHASE_TRAIN];
        j->checked_tokens = T;
        j->gpu_room = room[rollout_tighter ? JOB_PHASE_ROLLOUT : JOB_PHASE_TRAIN];
        j->gpu_room_phase = rollout_tighter ? "rolling out" : "training";
    }
}
#endif

/* This rank's host memory, from the config alone (nothing large is loaded
 * yet), then summed per node over the job's ranks, the user-simulator
 * ranks' too (local_user_serve): a plan that cannot fit is refused now.
 * Only rank 0 (a trainer) prints the message, so the fields named are the
 * whole job's (the engines' and the user's too), not this rank's. Then,
 * when the job uses GPUs, their device memory the same way. */
static void setup_memory(Job *j) {
    const JobConfig *c = j->cfg;
    char err[2048];
    JobMemory mem = {0};
    const char *fields[4] = {"model"};
    int n_fields = 1;
    const char *t_field = "max_tokens_per_gpu";
    int64_t T = j->lay.is_trainer ? planned_train_tokens(j, &t_field) : 0;
    if (j->lay.is_trainer) {
        double n = (double)qwen3_shard_num_parameters(&j->mcfg, j->lay.tp);
        int models = c->kl_coef != 0.0 ? 2 : 1;
        mem.weights += n * sizeof(float) * models;
        if (j->train_device == TRAIN_DEVICE_CPU) {
            j->checked_tokens = T;
            mem.train_state = n * sizeof(float) * 3; /* gradients, AdamW's two moments */
            mem.activations = train_acts_bytes(j, T);
            mem.activation_tokens = T;
        } else {
            /* a device's moments come to the host for each checkpoint (and
             * stay there through offload_train's rollout phases) */
            mem.train_state = n * sizeof(float) * 2;
        }
        if (j->train_device == TRAIN_DEVICE_CPU_MIRROR) { /* the stand-in device is host memory too */
            j->checked_tokens = T;
            mem.weights += n * sizeof(float) * models;
            mem.train_state += n * sizeof(float) * 3;
            mem.activations = train_acts_bytes(j, T);
            mem.activation_tokens = T;
        }
    }
    if (j->train_device == TRAIN_DEVICE_CPU) fields[n_fields++] = t_field;
    if (j->lay.is_rollout && !(j->lay.is_trainer && j->lay.rollout_tp == j->lay.tp)) /* an engine's own weights */
        mem.weights += (double)qwen3_shard_num_parameters(&j->mcfg, j->lay.rollout_tp) * sizeof(float);
    if (!j->rollout_on_gpu) {
        /* one CPU engine at a time: a call's, freed when it returns */
        if (j->lay.is_rollout)
            mem.kv_cache = infer_kv_cache_bytes(&j->mcfg, j->lay.rollout_tp, planned_engine(j).kv_tokens, 0);
        fields[n_fields++] = c->kv_cache_tokens > 0 ? "kv_cache_tokens" : "rollout_batch_size";
    }
    if (j->lay.n_user_sim > 0 && c->user_models) fields[n_fields++] = "user_model";
    j->planned_bytes = job_memory_total(&mem);
    if (job_memory_check(j->world, &mem, err, sizeof err) != 0) {
        char names[256];
        name_fields(j, fields, n_fields, names, sizeof names);
        die_input("%s: %s: %s", c->path, names, err);
    }
#ifdef TAU2_HAVE_CUDA
    if (j->train_device == TRAIN_DEVICE_CUDA || j->rollout_on_gpu) setup_gpu_memory(j, T, t_field);
#endif
}

/* The weights: the policy's shard and the KL reference (trainers), the
 * engine's own copy (rollout ranks that do not share the trainer's). */
static void setup_models(Job *j) {
    const JobConfig *c = j->cfg;
    char err[2048];
    if (j->lay.is_trainer) {
        j->policy = qwen3_load_dir_tp(c->model, j->comms.tp, err, sizeof err);
        if (!j->policy) die_input("%s: field 'model': %s", c->path, err);
        j->policy->recompute = c->recompute_activations;
        if (c->kl_coef != 0.0) {
            j->ref = qwen3_load_dir_tp(c->model, j->comms.tp, err, sizeof err);
            if (!j->ref) die_input("%s: field 'model': %s", c->path, err);
            /* The reference only runs forward passes: the recomputation's
             * layout keeps one slot of layer activations instead of one per
             * layer, and gives the same logprobs. */
            j->ref->recompute = true;
        }
    }
    if (j->lay.is_rollout) {
        if (j->lay.is_trainer && j->lay.rollout_tp == j->lay.tp) {
            /* colocated, unsharded or one engine per TP group: the engine reads the trainer's weights */
            j->engine_model = j->policy;
        } else if (j->lay.rollout_tp > 1) {
            j->engine_model = qwen3_load_dir_tp(c->model, j->comms.rollout_group, err, sizeof err);
            if (!j->engine_model) die_input("%s: field 'model': %s", c->path, err);
        } else {
            j->engine_model = qwen3_load_dir(c->model, err, sizeof err);
            if (!j->engine_model) die_input("%s: field 'model': %s", c->path, err);
        }
    }
}

/* Oracle episodes of every distinct task of the prompt set, as traces. */
static void sft_from_oracle(Job *j) {
    const JobConfig *c = j->cfg;
    j->sft = sft_new(j->ct, j->tok, NULL);
    j->sft->max_tokens = (size_t)j->mcfg.max_position_embeddings;
    PromptSet *ps = j->prompts;
    char err[1024];
    for (int i = 0; i < ps->n_rows; i++) {
        const PromptRow *r = &ps->rows[i];
        bool seen = false;
        for (int k = 0; k < i && !seen; k++) seen = ps->rows[k].task == r->task;
        if (seen) continue;
        const Domain *d = ps->domains[r->domain];
        EpisodeOptions eo = {c->max_steps, c->max_errors};
        Episode *ep = oracle_play(d, r->task, &eo, err, sizeof err);
        if (!ep) die_runtime("sft_data oracle: task %s: %s", task_id(r->task), err);
        EvalOptions opt;
        eval_options_default(d->spec->name, &opt);
        Evaluation ev;
        evaluate_episode(d, r->task, ep->messages, ep->term, &opt, &ev);
        if (ev.reward == 1.0) {
            cJSON *row = sft_trace_from_episode(d, r->task, ep->messages, r->task_split, ev.reward);
            /* (a trace longer than the model's context is the input's fault) */
            char where[256];
            snprintf(where, sizeof where, "the oracle trace of task %s", task_id(r->task));
            if (sft_add_row(j->sft, row, where, err, sizeof err) != 0)
                die_input("%s: field 'sft_data': %s", c->path, err);
            cJSON_Delete(row);
        }
        evaluation_free(&ev);
        episode_free(ep);
    }
    if (j->sft->n == 0) die_input("%s: field 'sft_data': no oracle episode of prompt_data's tasks scores 1.0", c->path);
}

static void setup_data(Job *j) {
    const JobConfig *c = j->cfg;
    char err[2048];
    if (c->prompt_data) {
        j->prompts = prompts_load(c->prompt_data, j->data_dir, c->default_domain, c->default_task_split, c->seed,
                                  c->rollout_shuffle, c->balance_data, err, sizeof err);
        if (!j->prompts) die_input("%s: field 'prompt_data': %s", c->path, err);
    }
    if (c->sft_data && j->lay.is_trainer) {
        if (strcmp(c->sft_data, "oracle") == 0) {
            if (!j->prompts) die_input("%s: field 'sft_data': \"oracle\" needs prompt_data (its tasks)", c->path);
            sft_from_oracle(j);
        } else {
            j->sft = sft_new(j->ct, j->tok, NULL);
            j->sft->max_tokens = (size_t)j->mcfg.max_position_embeddings;
            if (sft_read(j->sft, c->sft_data, err, sizeof err) != 0)
                die_input("%s: field 'sft_data': %s", c->path, err);
        }
    }
    /* Every rank needs the SFT step count (the GRPO phase starts after it):
     * trainer rank 0 tells the others. */
    int64_t n_sft_steps = 0;
    if (j->sft) {
        int64_t convs = (int64_t)j->sft->n * c->sft_num_epoch;
        n_sft_steps = (convs + c->sft_global_batch_size - 1) / c->sft_global_batch_size;
    }
    comm_broadcast(j->work, &n_sft_steps, sizeof n_sft_steps, 0);
    j->n_sft_steps = (int)n_sft_steps;
}

static void setup_schedules(Job *j) {
    const JobConfig *c = j->cfg;
    char err[512];
    LrDecayStyle style;
    if (lr_decay_style_parse(c->lr_decay_style, &style) != 0)
        die_input("%s: field 'lr_decay_style': unknown style '%s'", c->path, c->lr_decay_style);
    int64_t per_rollout = 0;
    if (strcmp(c->job, "grpo") == 0)
        per_rollout = ((int64_t)c->rollout_batch_size * c->n_samples_per_prompt) / c->global_batch_size;
    int64_t grpo_updates = per_rollout * c->num_rollout;
    if (j->n_sft_steps > 0 &&
        lr_schedule_init(&j->sft_sched, style, c->sft_lr, c->min_lr, 0.0, c->lr_warmup_fraction, 0, j->n_sft_steps,
                         err, sizeof err) != 0)
        die_input("%s: SFT learning-rate schedule: %s", c->path, err);
    if (grpo_updates > 0 &&
        lr_schedule_init(&j->grpo_sched, style, c->lr, c->min_lr, 0.0, c->lr_warmup_fraction, 0, grpo_updates, err,
                         sizeof err) != 0)
        die_input("%s: learning-rate schedule: %s", c->path, err);
    j->total_updates = j->n_sft_steps + grpo_updates;

    TrainOptions *t = &j->train;
    grpo_loss_config_default(&t->loss);
    t->loss.eps_low = c->eps_clip;
    t->loss.eps_high = c->eps_clip_high;
    t->loss.kl_coef = c->kl_coef;
    if (grpo_kl_type_parse(c->kl_loss_type, &t->loss.kl_type) != 0)
        die_input("%s: field 'kl_loss_type': unknown type '%s'", c->path, c->kl_loss_type);
    t->loss.entropy_coef = c->entropy_coef;
    t->loss.per_token = c->calculate_per_token_loss;
    t->adam = (Qwen3AdamW){.beta1 = (float)c->adam_beta1, .beta2 = (float)c->adam_beta2, .eps = (float)c->adam_eps,
                           .weight_decay = (float)c->weight_decay, .max_grad_norm = (float)c->clip_grad,
                           .decay_1d = false};
    t->max_tokens_per_gpu = c->max_tokens_per_gpu;

    job_rollout_options(c, &j->rollout);
}

void job_rollout_options(const JobConfig *c, RolloutOptions *r) {
    memset(r, 0, sizeof *r);
    r->sample = (SampleParams){.temperature = (float)c->rollout_temperature, .top_p = (float)c->rollout_top_p,
                               .top_k = c->rollout_top_k};
    r->seed = c->seed;
    r->n_samples = c->n_samples_per_prompt;
    r->max_response_len = c->rollout_max_response_len;
    r->max_turn_len = c->rollout_max_turn_len;
    r->episode = (EpisodeOptions){c->max_steps, c->max_errors};
    r->weights = (PartialCreditWeights){c->w_action, c->w_comm, c->w_env, c->partial_alpha};
    r->telecom_weights = (PartialCreditWeights){c->telecom_w_action, c->telecom_w_comm, c->telecom_w_env,
                                                c->partial_alpha * c->telecom_alpha_scale};
    r->kv_cache_tokens = c->kv_cache_tokens;
    r->step_tokens = c->chunked_prefill_size;
}

void job_rollout_user(const JobConfig *c, const char *data_dir, RolloutUser *u) {
    memset(u, 0, sizeof *u);
    if (rollout_user_kind_parse(c->user, &u->kind) != 0) die_input("%s: field 'user': unknown user '%s'", c->path, c->user);
    u->data_dir = data_dir;
    u->sample = (SampleParams){.temperature = (float)c->user_temperature, .top_p = 1.0f, .top_k = 0};
    u->temperature = c->user_temperature;
    u->max_tokens = c->user_max_tokens;
    u->judge = c->nl_judge;
    /* the local user's one model (recorded with each episode); an api
     * user's models come with each prompt (rl/user_routes.h) */
    if (strcmp(c->user, "local") == 0) u->model = c->user_models ? c->user_models[0] : c->model;
}

/* Collective over world: every rank gives a message, empty when it has
 * nothing to report (a server rank: its model loaded). Rank 0 gathers
 * them; when any is not empty, every rank ends with exit 2 and rank 0
 * says the first. */
static void local_user_meet(Comm *world, const char *failed) {
    char *all = NULL;
    size_t *counts = xcalloc((size_t)world->size, sizeof *counts);
    comm_gatherv_bytes(world, failed, strlen(failed) + 1, 0, &all, counts);
    int first = -1;
    size_t at = 0;
    for (int r = 0; all && r < world->size; at += counts[r], r++)
        if (first < 0 && all[at]) first = (int)at;
    char said[2400] = "";
    if (first >= 0) snprintf(said, sizeof said, "%s", all + first);
    free(all);
    free(counts);
    comm_broadcast(world, said, sizeof said, 0);
    if (said[0]) die_input("%s", said);
}

void local_user_serve(const JobConfig *c, Comm *world, int n_engines) {
    int n_us = c->user_sim_ranks, us = world->rank - (world->size - n_us);
    ServerOptions so = {.model_dir = c->user_models ? c->user_models[0] : c->model,
                        .served_model_name = LOCAL_USER_MODEL_NAME,
                        .kv_tokens = c->kv_cache_tokens,
                        .chunked_prefill_size = c->chunked_prefill_size};
    char err[2048], path[2100], failed[2400] = "";
    /* A model that does not load is told to rank 0 (local_user_meet), which
     * says it: this rank's own message could race rank 0's abort, or say
     * again what rank 0 says of the same directory (the policy's model). */
    const char *field = c->user_models ? "user_model" : "model";
    Qwen3Config ucfg;
    snprintf(path, sizeof path, "%s/config.json", so.model_dir);
    bool have_config = qwen3_config_load(path, &ucfg, err, sizeof err) == 0;
    if (!have_config)
        snprintf(failed, sizeof failed, "%s: field '%s' (the local user's model): %s", c->path, field, err);
    /* the plan, from the model's config.json before the weights load */
    JobMemory mem = {0};
    if (have_config) {
        mem.weights = (double)qwen3_shard_num_parameters(&ucfg, 1) * sizeof(float);
        mem.kv_cache = infer_kv_cache_bytes(&ucfg, 1, server_kv_tokens(&so), 0);
    }
    if (job_memory_check(world, &mem, err, sizeof err) != 0) die_input("%s: %s", c->path, err);
    /* the model loads while the job's ranks load theirs; they wait for it
     * before writing anything */
    Server *s = have_config ? server_open(&so, NULL, NULL, NULL, err, sizeof err) : NULL;
    if (have_config && !s)
        snprintf(failed, sizeof failed, "%s: field '%s' (the local user's model): %s", c->path, field, err);
    local_user_meet(world, failed);
    if (server_mpi_serve(s, MPI_COMM_WORLD, n_engines / n_us + (us < n_engines % n_us), err, sizeof err) != 0)
        die_runtime("%s: the local user's server: %s", c->path, err);
    server_stop(s);
}

void local_user_ready(const JobConfig *c, Comm *world) {
    if (c->user_sim_ranks > 0) local_user_meet(world, "");
}

LlmClient *local_user_client(const JobConfig *c, int world_size, int engine, const char *cache_dir, int *endpoint) {
    LlmClientOptions lo = {.cache_dir = cache_dir, .seed = c->seed};
    char err[1024];
    LlmClient *client = llm_client_new(NULL, 0, &lo, err, sizeof err);
    if (!client) die_input("%s: the local user: %s", c->path, err);
    int n_us = c->user_sim_ranks;
    *endpoint = llm_client_add_mpi_endpoint(client, MPI_COMM_WORLD, world_size - n_us + engine % n_us,
                                            LOCAL_USER_MODEL_NAME, c->user_max_concurrency);
    return client;
}

/* The user of the rollouts; for "api", one client per rollout rank (its
 * requests stay in flight while the rank's engine decodes) with an
 * endpoint per distinct model of the prompt rows. */
static void setup_user(Job *j) {
    const JobConfig *c = j->cfg;
    RolloutUser *u = &j->user;
    job_rollout_user(c, j->data_dir, u);
    /* every rank checks the rows: an input error must reach rank 0 */
    if (j->prompts) {
        char where[1100];
        snprintf(where, sizeof where, "%s: field 'prompt_data'", c->path);
        user_routes_build(&j->routes, &j->user_eps, c, NULL, j->prompts, where);
    }
    if (u->kind != ROLLOUT_USER_API || !j->lay.is_rollout) return;
    if (strcmp(c->user, "local") == 0) {
        j->client = local_user_client(c, j->lay.world_size, j->lay.rollout_rank, c->llm_cache_dir, &u->endpoint);
        u->client = j->client;
        return;
    }
    j->client = user_endpoints_client(&j->user_eps, c, c->llm_cache_dir);
    u->client = j->client;
    u->endpoint = 0;
}

/* A user-simulator rank: serve the user model to the rollout ranks until
 * each has shut down. */
static void serve_user_sim(Job *j) {
    int n_roll = j->lay.colocate ? j->lay.n_trainer : j->lay.n_rollout_groups * j->lay.rollout_tp;
    local_user_serve(j->cfg, j->world, n_roll);
}

/* ================================================================ checkpoints */

/* The full tensors of buffer `memory` (params, m or v) gathered on trainer
 * rank 0 (collective over the TP group of DP rank 0). Returns a new array
 * of full-size buffers on trainer rank 0, NULL elsewhere. */
static float **gather_full(Job *j, const float *memory) {
    Qwen3 *m = j->policy;
    bool root = j->lay.trainer_rank == 0;
    float **out = root ? xcalloc((size_t)m->n_tensors, sizeof *out) : NULL;
    for (int i = 0; i < m->n_tensors; i++) {
        const Qwen3Tensor *t = &m->tensors[i];
        size_t full = (size_t)t->full_shape[0] * (size_t)(t->ndim > 1 ? t->full_shape[1] : 1);
        if (root) out[i] = xmalloc(full * sizeof(float));
        qwen3_gather_tensor(m, memory, i, root ? out[i] : NULL, 0);
    }
    return out;
}

static void free_full(float **bufs, int n) {
    if (!bufs) return;
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
}

static void describe_tensors(const Qwen3 *m, float **data, CkptTensor *out) {
    for (int i = 0; i < m->n_tensors; i++) {
        const Qwen3Tensor *t = &m->tensors[i];
        out[i] = (CkptTensor){.name = t->name, .ndim = t->ndim, .data = data ? data[i] : NULL};
        for (int d = 0; d < t->ndim; d++) out[i].shape[d] = t->full_shape[d];
    }
}

/* Consumed prompts: the rows of the current epoch before the cursor. */
static int64_t *consumed_rows(Job *j, int64_t *n_out) {
    *n_out = 0;
    if (!j->prompts) return NULL;
    int64_t n = j->prompts->n_rows, epoch_start = j->data_cursor / n * n;
    int64_t k = j->data_cursor - epoch_start;
    int64_t *rows = xmalloc((size_t)(k > 0 ? k : 1) * sizeof *rows);
    for (int64_t p = epoch_start; p < j->data_cursor; p++) rows[p - epoch_start] = prompts_at(j->prompts, p)->row_index;
    *n_out = k;
    return rows;
}

static char *checkpoint_config_json(Job *j) {
    cJSON *o = cJSON_CreateObject();
    char err[256];
    cJSON *job = json_parse(j->cfg->json, strlen(j->cfg->json), "config", err, sizeof err);
    cJSON_AddItemToObject(o, "job", job ? job : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "model_config", cJSON_Duplicate(j->model_config_json, 1));
    char *s = json_dumps(o, 0);
    cJSON_Delete(o);
    return s;
}

/* Collective over the trainer ranks (the TP group of DP rank 0 gathers). */
static void save_checkpoint(Job *j) {
    if (!j->lay.is_trainer) return;
    j->saved_step = j->step;
    if (j->lay.dp_rank != 0) return;
    Qwen3 *m = j->policy;
    train_device_pull_moments(j->policy_dev);
    bool have_moments = m->m_memory != NULL;
    float **w = gather_full(j, m->params_memory);
    float **mm = have_moments ? gather_full(j, m->m_memory) : NULL;
    float **vv = have_moments ? gather_full(j, m->v_memory) : NULL;
    if (j->lay.trainer_rank == 0) {
        int n = m->n_tensors;
        CkptTensor *tw = xcalloc((size_t)n, sizeof *tw), *tm = xcalloc((size_t)n, sizeof *tm),
                   *tv = xcalloc((size_t)n, sizeof *tv);
        describe_tensors(m, w, tw);
        describe_tensors(m, mm, tm);
        describe_tensors(m, vv, tv);
        uint64_t rng[1] = {j->cfg->seed};
        int64_t n_consumed;
        int64_t *consumed = consumed_rows(j, &n_consumed);
        char *config = checkpoint_config_json(j);
        CkptState st = {.step = j->step, .adam_step = m->adam_step, .data_cursor = j->data_cursor, .rng = rng,
                        .n_rng = 1, .consumed_prompts = consumed, .n_consumed = n_consumed, .config_json = config};
        char err[1024];
        if (ckpt_save(j->ckpt_dir, &st, tw, have_moments ? tm : NULL, have_moments ? tv : NULL, n,
                      j->cfg->keep_checkpoints, err, sizeof err) != 0)
            die_runtime("checkpoint: %s", err);
        free(config);
        free(consumed);
        free(tw), free(tm), free(tv);
    }
    free_full(w, m->n_tensors);
    free_full(mm, m->n_tensors);
    free_full(vv, m->n_tensors);
}

/* The top-level keys in which the job config a checkpoint was saved with
 * (its config attribute's "job") and the one running now differ, into out
 * as "a, b" (empty when none). A resumed run may change its config, as
 * slime's may; this says so rather than letting it pass unseen. */
static void config_changes(const char *saved, const char *now, char *out, size_t n) {
    out[0] = '\0';
    char err[256];
    cJSON *ck = json_parse(saved, strlen(saved), "checkpoint config", err, sizeof err);
    cJSON *cur = json_parse(now, strlen(now), "config", err, sizeof err);
    const cJSON *old = ck ? cJSON_GetObjectItemCaseSensitive(ck, "job") : NULL;
    if (cJSON_IsObject(old) && cJSON_IsObject(cur)) {
        const cJSON *sides[2] = {old, cur};
        for (int s = 0; s < 2; s++) {
            const cJSON *it;
            cJSON_ArrayForEach(it, sides[s]) {
                const cJSON *other = cJSON_GetObjectItemCaseSensitive(sides[1 - s], it->string);
                if (s == 1 && other) continue; /* keys in both: compared once, from the saved side */
                if (other && cJSON_Compare(it, other, true)) continue;
                size_t used = strlen(out);
                snprintf(out + used, n - used, "%s%s", used ? ", " : "", it->string);
            }
        }
    }
    cJSON_Delete(ck);
    cJSON_Delete(cur);
}

/* Resume from ckpt/latest when there is one. Every trainer rank loads it and
 * keeps its shard. Returns true when resumed. The step and cursor reach the
 * other ranks from world rank 0. */
static bool load_checkpoint(Job *j) {
    char path[2048], err[2048];
    int64_t state[4] = {-1, 0, 0, 0}; /* step, cursor, adam_step, opt_steps */
    bool have = false;
    if (j->lay.is_trainer) {
        have = ckpt_latest(j->ckpt_dir, path, sizeof path, err, sizeof err) == 0;
        /* a marker that names no readable checkpoint is a run that cannot
         * be resumed as it stands; starting over would overwrite its
         * metrics and checkpoints */
        char marker[2048];
        snprintf(marker, sizeof marker, "%s/%s", j->ckpt_dir, CKPT_LATEST);
        if (!have && access(marker, F_OK) == 0)
            die_input("resume: %s (point it at a checkpoint of %s, or remove it to start the run over)", err,
                      j->ckpt_dir);
    }
    if (have) {
        Qwen3 *m = j->policy;
        int n = m->n_tensors;
        float **w = xcalloc((size_t)n, sizeof *w), **mm = xcalloc((size_t)n, sizeof *mm),
              **vv = xcalloc((size_t)n, sizeof *vv);
        for (int i = 0; i < n; i++) {
            const Qwen3Tensor *t = &m->tensors[i];
            size_t full = (size_t)t->full_shape[0] * (size_t)(t->ndim > 1 ? t->full_shape[1] : 1);
            w[i] = xmalloc(full * sizeof(float));
            mm[i] = xmalloc(full * sizeof(float));
            vv[i] = xmalloc(full * sizeof(float));
        }
        CkptTensor *tw = xcalloc((size_t)n, sizeof *tw), *tm = xcalloc((size_t)n, sizeof *tm),
                   *tv = xcalloc((size_t)n, sizeof *tv);
        describe_tensors(m, w, tw);
        describe_tensors(m, mm, tm);
        describe_tensors(m, vv, tv);
        CkptState st;
        if (ckpt_load(path, &st, tw, tm, tv, n, err, sizeof err) != 0)
            die_input("%s: %s and field 'model': resume: %s (a damaged checkpoint, or a model of another shape "
                      "than the run's: point %s/%s at a checkpoint that loads, or remove it to start the run over)",
                      j->cfg->path, job_config_output_dir_origin(j->cfg), err, j->ckpt_dir, CKPT_LATEST);
        /* the moments exist from the first update on: allocate them */
        qwen3_alloc_moments(m);
        for (int i = 0; i < n; i++) {
            qwen3_set_tensor(m, m->params_memory, i, w[i]);
            qwen3_set_tensor(m, m->m_memory, i, mm[i]);
            qwen3_set_tensor(m, m->v_memory, i, vv[i]);
        }
        m->adam_step = (int)st.adam_step;
        state[0] = st.step, state[1] = st.data_cursor, state[2] = st.adam_step, state[3] = st.adam_step;
        if (j->lay.world_rank == 0 && st.config_json) {
            char changed[1024];
            config_changes(st.config_json, j->cfg->json, changed, sizeof changed);
            if (changed[0])
                fprintf(stderr, "warning: resuming from %s with a config that differs from the one it was saved "
                        "with, in: %s\n", path, changed);
        }
        ckpt_state_free(&st);
        free(tw), free(tm), free(tv);
        free_full(w, n), free_full(mm, n), free_full(vv, n);
    }
    comm_broadcast(j->work, state, sizeof state, 0);
    if (state[0] < 0) return false;
    j->step = state[0];
    j->saved_step = state[0];
    j->data_cursor = state[1];
    j->opt_steps = state[3];
    if (j->policy) j->policy->adam_step = (int)state[2];
    return true;
}

/* The KL term's reference is the policy GRPO starts from: the SFT
 * warm-up's result when this job warms up (what slime's --ref-load of the
 * SFT checkpoint gives), else `model`, loaded at setup. The warm-up's result
 * is exported to ckpt/reference when GRPO starts, so a run resumed in its
 * GRPO phase finds the same reference; a run stopped before that export
 * resumes at or before the SFT's last step and exports it then. Trainer
 * ranks only. */
static void setup_reference(Job *j) {
    if (!j->ref || j->n_sft_steps == 0 || !j->lay.is_trainer) return;
    char dir[1100], err[2048];
    path_join(dir, sizeof dir, j->ckpt_dir, "reference");
    if (j->step == j->n_sft_steps) {
        memcpy(j->ref->params_memory, j->policy->params_memory, j->policy->num_parameters * sizeof(float));
        /* every DP rank holds the same weights: the TP group of DP rank 0 writes them */
        if (j->lay.dp_rank == 0 && qwen3_export_dir(j->policy, dir, ST_F32, err, sizeof err) != 0)
            die_runtime("the KL reference: %s", err);
        return;
    }
    Qwen3 *ref = qwen3_load_dir_tp(dir, j->comms.tp, err, sizeof err);
    if (!ref) die_runtime("resume: the KL reference (the SFT warm-up's result): %s", err);
    qwen3_free(j->ref);
    j->ref = ref;
}

/* On resume, drop metrics lines of steps after the checkpoint (the killed
 * run's last steps are run again). */
static void trim_metrics(Job *j, const char *path) {
    size_t len;
    char *text = file_read_all(path, &len, NULL, 0);
    if (!text) return;
    SBuf out;
    sbuf_init(&out);
    for (char *p = text, *nl; p < text + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl) break; /* a partial last line is dropped too */
        cJSON *o = cJSON_ParseWithLength(p, (size_t)(nl - p));
        const cJSON *s = o ? cJSON_GetObjectItemCaseSensitive(o, "step") : NULL;
        /* an evaluation of the checkpoint's step runs again (its finished tasks are on disk) */
        bool eval_row = o && json_get_str(o, "phase") && strcmp(json_get_str(o, "phase"), "eval") == 0;
        if (o && cJSON_IsNumber(s) && (s->valuedouble < (double)j->step || (s->valuedouble == (double)j->step && !eval_row)))
            sbuf_put(&out, p, (size_t)(nl - p + 1));
        cJSON_Delete(o);
    }
    char err[1024];
    if (file_write_atomic(path, out.data ? out.data : "", out.len, err, sizeof err) != 0) die_runtime("%s", err);
    sbuf_free(&out);
    free(text);
}

/* ================================================================ weights to the engines */

/* The policy's full weights into the engine model (a TP = 1 layout). */
static void gather_into(Job *j, Qwen3 *full, int root) {
    Qwen3 *m = j->policy;
    for (int i = 0; i < m->n_tensors; i++)
        qwen3_gather_tensor(m, m->params_memory, i,
                            m->shard.rank == root ? full->params_memory + full->tensors[i].offset : NULL, root);
}

/* Colocated: after an update, every rank's engine gets the new weights.
 * Unsharded, the engine reads the policy itself; sharded, the TP group
 * gathers on its rank 0 and broadcasts the flat buffer. */
static void colocated_sync(Job *j) {
    if (j->engine_model == j->policy) return;
    gather_into(j, j->engine_model, 0);
    Qwen3 *e = j->engine_model;
    comm_broadcast_buckets(j->comms.tp, e->params_memory, e->num_parameters * sizeof(float), WEIGHT_BUCKET_BYTES, 0);
}

#ifdef TAU2_HAVE_CUDA
/* One bucket of the NCCL weight broadcast, still on this rank's GPU, into
 * the kept rollout engine (offsets in bytes of the flat fp32 weights). */
static void bucket_to_engine(void *ctx, const void *dev, size_t off, size_t len) {
    Job *j = ctx;
    infer_gpu_load_weights_device(j->roll_gpu, dev, off / sizeof(float), len / sizeof(float));
}
#endif

/* Separate mode with train_device and rollout_device "cuda": the weight
 * broadcast goes over NCCL when trainer rank 0 and every rollout rank have
 * GPUs of their own (else over MPI, as on the CPU, with a note). Collective
 * over the sync comm. */
static void sync_nccl_setup(Job *j) {
#ifdef TAU2_HAVE_CUDA
    Comm *sync = j->comms.sync;
    if (!sync || !j->rollout_on_gpu || j->train_device != TRAIN_DEVICE_CUDA) return;
    char err[1024];
    gpu_select(j->node_rank);
    if (gpu_distinct_devices_check(sync, j->node_rank, err, sizeof err) != 0) {
        if (sync->rank == 0) printf("weight sync over MPI through host memory: %s\n", err);
        return;
    }
    j->sync_nccl = comm_nccl_from_mpi(sync);
    if (sync->rank == 0) printf("weight sync over NCCL (%d ranks, buckets of %d MiB)\n", sync->size,
                                (int)(WEIGHT_BUCKET_BYTES >> 20));
    fflush(stdout);
#else
    (void)j;
#endif
}

/* Separate mode: trainer rank 0 sends the full weights to every rollout
 * rank over the sync comm, in flattened buckets. At TP > 1 the trainer
 * ranks of DP rank 0 first gather the shards into a full copy on trainer
 * rank 0. Collective over those trainer ranks and the sync comm. */
static void broadcast_weights(Job *j) {
    Qwen3 *full = NULL;
    float *buf;
    size_t n_params;
    if (j->lay.is_trainer) {
        if (j->lay.dp_rank != 0) return;
        if (j->lay.tp > 1) {
            full = j->lay.trainer_rank == 0 ? qwen3_new(&j->mcfg) : NULL;
            gather_into(j, full, 0);
        }
        if (j->lay.trainer_rank != 0) return;
        const Qwen3 *src = full ? full : j->policy;
        buf = src->params_memory;
        n_params = src->num_parameters;
    } else {
        /* a sharded engine receives the full buffer, then takes its slices */
        if (j->lay.rollout_tp > 1) full = qwen3_new(&j->mcfg);
        const Qwen3 *dst = full ? full : j->engine_model;
        buf = dst->params_memory;
        n_params = dst->num_parameters;
    }
#ifdef TAU2_HAVE_CUDA
    if (j->sync_nccl) {
        /* an unsharded engine on the GPU takes each bucket where it lands */
        bool direct = j->lay.is_rollout && !full && j->roll_gpu;
        comm_nccl_broadcast_staged(j->sync_nccl, buf, n_params * sizeof(float), WEIGHT_BUCKET_BYTES, 0,
                                   direct ? bucket_to_engine : NULL, j);
        j->roll_gpu_fresh = direct;
    } else
#endif
        comm_broadcast_buckets(j->comms.sync, buf, n_params * sizeof(float), WEIGHT_BUCKET_BYTES, 0);
    if (full && j->lay.is_rollout) {
        Qwen3 *e = j->engine_model;
        for (int i = 0; i < e->n_tensors; i++)
            qwen3_set_tensor(e, e->params_memory, i, full->params_memory + full->tensors[i].offset);
    }
    qwen3_free(full);
}

/* ================================================================ engine groups */

/* The rollout engine's TP group, NULL when engines are one rank. */
static Comm *engine_group(const Job *j) {
    return j->lay.is_rollout && j->lay.rollout_tp > 1 ? j->comms.rollout_group : NULL;
}

/* A rollout rank other than its group's rank 0: it runs no episodes, it
 * replays the leader's engine. */
static bool engine_follower(const Job *j) { return j->lay.is_rollout && j->lay.rollout_group_rank > 0; }

/* Follower: replay the leader's engines until it ends this phase. */
static void follow_engine(Job *j) {
    char err[512];
    if (infer_follow(j->engine_model, j->comms.rollout_group, err, sizeof err) != 0) die_runtime("rollout: %s", err);
}

/* ================================================================ SFT phase */

static void sft_epoch_order(Job *j, int64_t epoch, int *order) {
    int n = j->sft->n;
    for (int i = 0; i < n; i++) order[i] = i;
    uint64_t s = rng_derive(rng_derive(j->cfg->seed, 0x5f7), (uint64_t)epoch);
    for (int i = n - 1; i > 0; i--) {
        int k = (int)(rng_uniform(s, 0, (uint64_t)i) * (double)(i + 1));
        int t = order[i];
        order[i] = order[k];
        order[k] = t;
    }
}

static void write_metrics(Job *j, cJSON *row) {
    char err[1024];
    if (j->metrics && metrics_write(j->metrics, row, err, sizeof err) != 0) die_runtime("%s", err);
    if (j->tb && tb_write_row(j->tb, row, (double)time(NULL), err, sizeof err) != 0) die_runtime("%s", err);
    cJSON_Delete(row);
}

static void maybe_checkpoint(Job *j, bool last) {
    int every = j->cfg->save_interval;
    if (last || (every > 0 && j->step % every == 0)) save_checkpoint(j);
}

/* ---- clean stop on SIGUSR1/SIGTERM (core/stop_signal.h) ----
 * A signal reaches some ranks or all of them, at any moment. Ranks agree on
 * it at step boundaries, with a max over a comm every rank of it reaches at
 * the same point; then the trainers write a checkpoint of the finished step
 * (unless that step has one) and every rank leaves its loop. */
static int stop_agree_value(Comm *c, int mine) {
    float f = (float)mine;
    if (c && c->size > 1) comm_allreduce_max_f32(c, &f, 1);
    return (int)f;
}

static int stop_agree(Comm *c, int mine) { return stop_agree_value(c, mine ? mine : stop_signal_pending()); }

static void stop_checkpoint(Job *j) {
    if (j->saved_step != j->step) save_checkpoint(j);
}

static void run_sft_phase(Job *j) {
    const JobConfig *c = j->cfg;
    if (j->step >= j->n_sft_steps || !j->lay.is_trainer) return;
    int n = j->sft->n, B = c->sft_global_batch_size;
    int64_t total = (int64_t)n * c->sft_num_epoch;
    int *order = xmalloc((size_t)n * sizeof(int));
    int64_t order_epoch = -1;
    TrainSeq *seqs = xmalloc((size_t)B * sizeof *seqs);
    for (; j->step < j->n_sft_steps; ) {
        double t0 = clock_now_s();
        int k = 0;
        for (int64_t p = j->step * B; p < total && k < B; p++, k++) {
            int64_t epoch = p / n;
            if (epoch != order_epoch) sft_epoch_order(j, epoch, order), order_epoch = epoch;
            const SftConversation *cv = &j->sft->conv[order[p % n]];
            seqs[k] = (TrainSeq){.ids = cv->ids, .mask = cv->mask, .n = (int64_t)cv->n};
        }
        float lr = (float)lr_schedule_at(&j->sft_sched, j->step);
        TrainReport rep;
        train_sft_update(j->policy_dev, j->comms.dp, seqs, k, &j->train, lr, &rep);
        j->opt_steps++;
        j->step++;
        double dt = clock_now_s() - t0;
        if (j->root) {
            printf("step %" PRId64 "/%d [sft] loss %.4f entropy %.3f grad_norm %.3f lr %.3g | %d conversations, "
                   "%" PRId64 " tokens, %.2f s, %.0f tok/s\n",
                   j->step, j->n_sft_steps, rep.loss, rep.entropy, rep.grad_norm, lr, k, rep.tokens, dt,
                   dt > 0 ? rep.tokens / dt : 0.0);
            fflush(stdout);
            cJSON *row = cJSON_CreateObject();
            cJSON_AddNumberToObject(row, "step", (double)j->step);
            cJSON_AddStringToObject(row, "phase", "sft");
            cJSON_AddNumberToObject(row, "train/loss", rep.loss);
            cJSON_AddNumberToObject(row, "train/entropy", rep.entropy);
            cJSON_AddNumberToObject(row, "train/grad_norm", rep.grad_norm);
            cJSON_AddNumberToObject(row, "train/lr", lr);
            cJSON_AddNumberToObject(row, "train/tokens", (double)rep.tokens);
            cJSON_AddNumberToObject(row, "train/trained_tokens", (double)rep.trained_tokens);
            cJSON_AddNumberToObject(row, "perf/train_time", dt);
            cJSON_AddNumberToObject(row, "perf/tokens_per_s", dt > 0 ? rep.tokens / dt : 0.0);
            write_metrics(j, row);
        }
        maybe_checkpoint(j, j->step == j->n_sft_steps);
        if ((j->stopped_by = stop_agree(j->comms.trainer, 0)) != 0) {
            stop_checkpoint(j);
            break;
        }
    }
    free(seqs);
    free(order);
}

/* ================================================================ GRPO: rollout side */

static int domain_slot(const char *name) {
    for (int i = 0; i < N_DOMAINS; i++)
        if (strcmp(DOMAINS[i], name) == 0) return i;
    return -1;
}

/* The kept GPU rollout engine (if any) gets the policy's current weights:
 * from the trainer's fp32 copy when both engines sit on the same GPU and
 * the rollout reads the trainer's model (colocated at TP 1), a conversion
 * on the device; else from the host copy. */
static void refresh_rollout_gpu(Job *j) {
#ifdef TAU2_HAVE_CUDA
    InferGpu *e = j->roll_gpu;
    if (!e) return;
    if (j->roll_gpu_fresh) { /* the NCCL broadcast loaded it already */
        j->roll_gpu_fresh = false;
        return;
    }
    int dev = -1;
    const float *w = j->policy_dev ? train_device_gpu_params(j->policy_dev, &dev) : NULL;
    if (w && dev == infer_gpu_device(e) && j->engine_model == j->policy) {
        infer_gpu_load_weights_device(e, w, 0, j->engine_model->num_parameters);
    } else {
        infer_gpu_load_weights(e, j->engine_model->params_memory);
    }
#else
    (void)j;
#endif
}

/* Colocated, the phases take turns with the GPU's memory (offload_train,
 * offload_rollout). Before a rollout phase (the training rollouts or the
 * periodic evaluation) the trainer's devices give theirs back, on every
 * rank (an engine group's followers train too); begin_train_phase takes it
 * back. The time goes to the step's perf/offload_time. */
static void begin_rollout_phase(Job *j) {
    if (!j->lay.colocate || !j->cfg->offload_train) return;
    double t0 = clock_now_s();
    bool moved = j->policy_dev && train_device_offload(j->policy_dev);
    if (j->ref_dev) moved = train_device_offload(j->ref_dev) || moved;
    if (moved) j->offload_s += clock_now_s() - t0, j->offloaded = true;
}

/* Before a training phase the kept GPU engine is freed (the next rollout
 * makes it again, with the weights of that time) and the trainer's
 * devices take back what they offloaded. */
static void begin_train_phase(Job *j) {
    if (!j->lay.colocate) return;
    double t0 = clock_now_s();
    bool moved = false;
#ifdef TAU2_HAVE_CUDA
    if (j->cfg->offload_rollout && j->roll_gpu) {
        infer_gpu_free(j->roll_gpu);
        j->roll_gpu = NULL;
        moved = true;
    }
#endif
    if (j->cfg->offload_train) {
        if (j->policy_dev) train_device_onload(j->policy_dev);
        if (j->ref_dev) train_device_onload(j->ref_dev);
    }
    if (moved || j->offloaded) j->offload_s += clock_now_s() - t0, j->offloaded = true;
}

/* One step's rollout, collective over the rollout ranks. The rollout root
 * (rollout rank 0) writes rollouts/step_NNNNNN.h5 with the kept groups and
 * fills summary (RS_*); the cursor advances on every rollout rank. */
static void rollout_step(Job *j, int64_t grpo_step, int64_t version, double *summary) {
    const JobConfig *c = j->cfg;
    memset(summary, 0, RS_COUNT * sizeof(double));
    begin_rollout_phase(j);
    if (engine_follower(j)) { /* the prompts, buffers and summary are the leaders' */
        follow_engine(j);
        return;
    }
    Comm *rc = j->comms.rollout_leaders;
    bool root = rc->rank == 0;
    double t0 = clock_now_s();
    int n_engines = rc->size, engine = rc->rank;
    RolloutPolicy pol = {.model = j->engine_model, .tok = j->tok, .ct = j->ct, .group = engine_group(j),
                         .on_gpu = j->rollout_on_gpu, .gpu_device = j->node_rank, .gpu_keep = &j->roll_gpu};
    refresh_rollout_gpu(j);
    RolloutBuffer *kept = root ? rollout_buffer_new(j->step + 1, version, c->hash) : NULL;
    int need = c->rollout_batch_size, round = 0, next_group = 0;
    bool filter = c->dynamic_sampling_filter != NULL;
    while (need > 0 && round <= (filter ? c->max_sampling_rounds : 0)) {
        int n_take = need;
        /* this engine's prompts of the round: j % n_engines == engine */
        int mine = 0;
        RolloutPrompt *ps = xcalloc((size_t)n_take, sizeof *ps);
        for (int k = engine; k < n_take; k += n_engines) {
            const PromptRow *row = prompts_at(j->prompts, j->data_cursor + k);
            ps[mine++] = (RolloutPrompt){.domain = j->prompts->domains[row->domain], .task = row->task,
                                         .task_split = row->task_split, .index = j->data_cursor + k,
                                         .group_id = next_group + k};
            user_routes_apply(&j->routes, (int)(row - j->prompts->rows), &ps[mine - 1]);
        }
        RolloutBuffer *part = rollout_buffer_new(0, version, c->hash);
        RolloutStats st = {0};
        char err[2048];
        if (rollout_run(&pol, &j->user, ps, mine, &j->rollout, part, &st, err, sizeof err) != 0)
            die_runtime("rollout: %s", err);
        free(ps);
        /* everything to the root */
        size_t len;
        char *bytes = rollout_buffer_pack(part, 0, part->n_episodes, &len);
        char *all = NULL;
        size_t *counts = xcalloc((size_t)rc->size, sizeof *counts);
        comm_gatherv_bytes(rc, bytes, len, 0, &all, counts);
        free(bytes);
        double sv[7] = {(double)st.agent_turns, (double)st.parse_errors, (double)st.drift_checked,
                        (double)st.drift_tokens, (double)st.sampled, (double)st.tokens, (double)st.user_turns};
        comm_allreduce_sum_f64(rc, sv, 7);
        rollout_buffer_free(part);
        int kept_now = 0;
        if (root) {
            summary[RS_TURNS] += sv[0], summary[RS_PARSE_ERRORS] += sv[1], summary[RS_DRIFT_CHECKED] += sv[2];
            summary[RS_DRIFT] += sv[3], summary[RS_SAMPLED] += sv[4], summary[RS_TOKENS] += sv[5];
            summary[RS_USER_TURNS] += sv[6];
            /* engine pieces, in prompt order: prompt k is piece k % n_engines */
            RolloutBuffer *merged = rollout_buffer_new(0, version, c->hash);
            RolloutBuffer **pieces = xcalloc((size_t)n_engines, sizeof *pieces);
            size_t off = 0;
            for (int r = 0; r < n_engines; r++) {
                pieces[r] = rollout_buffer_new(0, version, c->hash);
                rollout_buffer_unpack(pieces[r], all + off, counts[r]);
                off += counts[r];
            }
            int ns = c->n_samples_per_prompt;
            for (int k = 0; k < n_take; k++) {
                RolloutBuffer *p = pieces[k % n_engines];
                int first = (k / n_engines) * ns;
                for (int s = 0; s < ns; s++) {
                    RolloutEpisode e = rollout_buffer_episode(p, first + s);
                    rollout_buffer_add(merged, &e);
                }
            }
            for (int r = 0; r < n_engines; r++) rollout_buffer_free(pieces[r]);
            free(pieces);
            /* statistics over every episode rolled, then the filter; an
             * infrastructure error (the user simulator failed) is neither a
             * reward nor a sample: counted, and left out of its group */
            double *raw = xmalloc((size_t)ns * sizeof *raw);
            bool *infra = xmalloc((size_t)(n_take * ns > 0 ? n_take * ns : 1) * sizeof *infra);
            for (int i = 0; i < n_take * ns; i++)
                infra[i] = strcmp(merged->termination[i], termination_name(TERM_INFRASTRUCTURE_ERROR)) == 0;
            for (int k = 0; k < n_take; k++) {
                int n_ok = 0;
                for (int s = 0; s < ns; s++) {
                    int i = k * ns + s;
                    if (infra[i]) {
                        summary[RS_INFRA]++;
                        continue;
                    }
                    raw[n_ok++] = merged->reward_raw[i];
                    summary[RS_EPISODES]++;
                    summary[RS_RAW] += merged->reward_raw[i];
                    summary[RS_SHAPED] += merged->reward_shaped[i];
                    summary[RS_PARTIAL] += merged->reward_partial[i];
                    summary[RS_TRUNCATED] += strcmp(merged->termination[i], "truncated") == 0;
                    cJSON *ref = cJSON_Parse(merged->task_ref[i]);
                    int d = domain_slot(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ref, "domain")));
                    cJSON_Delete(ref);
                    if (d >= 0) summary[RS_DOMAIN_N + d]++, summary[RS_DOMAIN_PASS + d] += merged->reward_raw[i];
                }
                summary[RS_GROUPS]++;
                bool keep = n_ok > 0 && (!filter || grpo_group_keep(raw, n_ok));
                if (keep && kept_now < need) {
                    for (int s = 0; s < ns; s++) {
                        if (infra[k * ns + s]) continue;
                        RolloutEpisode e = rollout_buffer_episode(merged, k * ns + s);
                        e.group_id = (int32_t)summary[RS_KEPT_GROUPS];
                        rollout_buffer_add(kept, &e);
                    }
                    summary[RS_KEPT_GROUPS]++;
                    kept_now++;
                }
            }
            free(raw);
            free(infra);
            rollout_buffer_free(merged);
        }
        free(all);
        free(counts);
        int64_t v = kept_now;
        comm_broadcast(rc, &v, sizeof v, 0);
        need -= (int)v;
        j->data_cursor += n_take;
        next_group += n_take;
        round++;
    }
    infer_follow_end(engine_group(j));
    if (root) {
        char path[2048], err[2048];
        snprintf(path, sizeof path, "%s/step_%06" PRId64 ".h5", j->rollout_dir, grpo_step);
        if (rollout_buffer_write(kept, path, err, sizeof err) != 0) die_runtime("rollout buffer: %s", err);
        rollout_buffer_free(kept);
        summary[RS_STEP] = (double)grpo_step;
        summary[RS_CURSOR] = (double)j->data_cursor;
        summary[RS_ROUNDS] = round;
        summary[RS_TIME] = clock_now_s() - t0;
        summary[RS_VERSION] = (double)version;
    }
}

/* ================================================================ GRPO: trainer side */

typedef struct {
    TrainReport rep;
    int updates;
    double lr_last;
    double time;
} GrpoTrainResult;

/* A step's longest trajectory, when longer than what setup_memory counted
 * (a task whose initial state holds messages, a long opening user turn):
 * the trainer's memory with its activations checked again before the
 * arena grows for it, so that running out ends with a message naming the
 * sizes rather than an allocation failure. On the host the rank's plan
 * against the node's limit; on the GPU the growth against what the check
 * at start found the rank's GPU to spare while training (each rank on its
 * own: ranks sharing a GPU each count the whole of it). */
static void check_train_tokens(Job *j, const TrainSeq *seqs, int n, const char *buffer_path) {
    const JobConfig *c = j->cfg;
    int64_t longest = 0;
    for (int i = 0; i < n; i++) {
        int64_t k = train_seq_tokens(&seqs[i]);
        if (k > longest) longest = k;
    }
    if (longest <= j->checked_tokens) return;
#ifdef TAU2_HAVE_CUDA
    if (j->train_device == TRAIN_DEVICE_CUDA) {
        JobMemory now = {0}, then = {0};
        gpu_trainer_plan(j, longest, &now, NULL);
        gpu_trainer_plan(j, j->checked_tokens, &then, NULL);
        double more = job_memory_total(&now) - job_memory_total(&then);
        char m[32], r[32];
        if (more > j->gpu_room)
            die_runtime("%s: a trajectory of %" PRId64 " tokens in %s is longer than the %" PRId64 " the GPU memory "
                        "check at start counted: its activations take %s more on this rank's GPU, which had %s to "
                        "spare while %s; lower 'rollout_max_response_len' and rerun to resume from the last "
                        "checkpoint", c->path, longest, buffer_path, j->checked_tokens,
                        sysmem_format(more, m, sizeof m), sysmem_format(j->gpu_room, r, sizeof r), j->gpu_room_phase);
        j->gpu_room -= more;
        j->checked_tokens = longest;
        return;
    }
#endif
    if (j->train_device == TRAIN_DEVICE_CUDA) return; /* checked above (a CUDA build's only) */
    double bytes = j->planned_bytes - train_acts_bytes(j, j->checked_tokens) + train_acts_bytes(j, longest);
    char what[160], err[512];
    snprintf(what, sizeof what, "this rank's plan with the activations of %" PRId64 " tokens", longest);
    if (sysmem_check(bytes, what, err, sizeof err) != 0)
        die_runtime("%s: a trajectory of %" PRId64 " tokens in %s is longer than the %" PRId64 " the memory check "
                    "at start counted: %s; lower 'rollout_max_response_len' and rerun to resume from the last "
                    "checkpoint", c->path, longest, buffer_path, j->checked_tokens, err);
    j->checked_tokens = longest;
    j->planned_bytes = bytes;
}

/* Train on step grpo_step's buffer (every trainer rank reads the file). */
static void train_step(Job *j, int64_t grpo_step, GrpoTrainResult *res) {
    const JobConfig *c = j->cfg;
    begin_train_phase(j); /* perf/offload_time, not train_time */
    double t0 = clock_now_s();
    char path[2048], err[2048];
    snprintf(path, sizeof path, "%s/step_%06" PRId64 ".h5", j->rollout_dir, grpo_step);
    RolloutBuffer *rb = rollout_buffer_read(path, err, sizeof err);
    if (!rb) die_runtime("%s", err);
    int n = rb->n_episodes;
    /* advantages within groups, from the shaped rewards */
    int32_t *group_start = xmalloc((size_t)(n + 1) * sizeof(int32_t));
    int n_groups = 0;
    for (int i = 0; i < n; i++)
        if (i == 0 || rb->group_id[i] != rb->group_id[i - 1]) group_start[n_groups++] = i;
    group_start[n_groups] = n;
    double *adv = xmalloc((size_t)(n ? n : 1) * sizeof(double));
    grpo_group_advantages(rb->reward_shaped, group_start, n_groups, true, adv);
    TrainSeq *seqs = xmalloc((size_t)(n ? n : 1) * sizeof *seqs);
    for (int i = 0; i < n; i++) {
        RolloutEpisode e = rollout_buffer_episode(rb, i);
        seqs[i] = (TrainSeq){.ids = e.tokens, .mask = e.loss_mask, .old_logprob = e.logprobs, .n = e.n_tokens,
                             .advantage = adv[i]};
    }
    check_train_tokens(j, seqs, n, path);
    memset(res, 0, sizeof *res);
    int G = c->global_batch_size;
    for (int b = 0; b < n; b += G) {
        int k = n - b < G ? n - b : G;
        float lr = (float)lr_schedule_at(&j->grpo_sched, j->opt_steps - j->n_sft_steps);
        TrainReport rep;
        train_grpo_update(j->policy_dev, j->ref_dev, j->comms.dp, seqs + b, k, &j->train, lr, &rep);
        j->opt_steps++;
        res->updates++;
        res->lr_last = lr;
        /* sums over updates; divided below */
        res->rep.loss += rep.loss, res->rep.grpo.pg_loss += rep.grpo.pg_loss;
        res->rep.grpo.pg_clipfrac += rep.grpo.pg_clipfrac, res->rep.grpo.ppo_kl += rep.grpo.ppo_kl;
        res->rep.grpo.kl_loss += rep.grpo.kl_loss, res->rep.entropy += rep.entropy;
        res->rep.grpo.logprob_abs_diff += rep.grpo.logprob_abs_diff;
        res->rep.grad_norm += rep.grad_norm, res->rep.tokens += rep.tokens;
        res->rep.trained_tokens += rep.trained_tokens;
    }
    if (res->updates > 1) {
        double u = res->updates;
        res->rep.loss /= u, res->rep.grpo.pg_loss /= u, res->rep.grpo.pg_clipfrac /= u, res->rep.grpo.ppo_kl /= u;
        res->rep.grpo.kl_loss /= u, res->rep.entropy /= u, res->rep.grpo.logprob_abs_diff /= u;
        res->rep.grad_norm /= u;
    }
    free(seqs), free(adv), free(group_start);
    rollout_buffer_free(rb);
    if (!c->save_rollouts && j->lay.trainer_rank == 0) unlink(path);
    res->time = clock_now_s() - t0;
}

static void report_grpo_step(Job *j, const double *s, const GrpoTrainResult *tr, double wait, int64_t staleness) {
    const JobConfig *c = j->cfg;
    double eps = s[RS_EPISODES] > 0 ? s[RS_EPISODES] : 1;
    int64_t gstep = (int64_t)s[RS_STEP];
    printf("step %" PRId64 "/%d [grpo %" PRId64 "/%d] reward %.3f shaped %.3f | groups kept %d/%d | loss %.4f "
           "clipfrac %.3f kl %.4f entropy %.3f grad_norm %.3f lr %.3g | rollout %.1f s train %.1f s wait %.1f s\n",
           j->step, j->n_sft_steps + c->num_rollout, gstep + 1, c->num_rollout, s[RS_RAW] / eps, s[RS_SHAPED] / eps,
           (int)s[RS_KEPT_GROUPS], (int)s[RS_GROUPS], tr->rep.loss, tr->rep.grpo.pg_clipfrac, tr->rep.grpo.ppo_kl,
           tr->rep.entropy, tr->rep.grad_norm, tr->lr_last, s[RS_TIME], tr->time, wait);
    fflush(stdout);
    cJSON *row = cJSON_CreateObject();
    cJSON_AddNumberToObject(row, "step", (double)j->step);
    cJSON_AddStringToObject(row, "phase", "grpo");
    cJSON_AddNumberToObject(row, "rollout/step", (double)gstep);
    cJSON_AddNumberToObject(row, "rollout/raw_reward", s[RS_RAW] / eps);
    cJSON_AddNumberToObject(row, "rollout/shaped_reward", s[RS_SHAPED] / eps);
    cJSON_AddNumberToObject(row, "rollout/partial_credit", s[RS_PARTIAL] / eps);
    for (int d = 0; d < N_DOMAINS; d++) {
        if (s[RS_DOMAIN_N + d] == 0) continue;
        char key[64];
        snprintf(key, sizeof key, "rollout/pass_rate/%s", DOMAINS[d]);
        cJSON_AddNumberToObject(row, key, s[RS_DOMAIN_PASS + d] / s[RS_DOMAIN_N + d]);
    }
    cJSON_AddNumberToObject(row, "rollout/episodes", s[RS_EPISODES]);
    cJSON_AddNumberToObject(row, "rollout/groups", s[RS_GROUPS]);
    cJSON_AddNumberToObject(row, "rollout/kept_groups", s[RS_KEPT_GROUPS]);
    cJSON_AddNumberToObject(row, "rollout/filtered_groups", s[RS_GROUPS] - s[RS_KEPT_GROUPS]);
    cJSON_AddNumberToObject(row, "rollout/sampling_rounds", s[RS_ROUNDS]);
    cJSON_AddNumberToObject(row, "rollout/truncated", s[RS_TRUNCATED]);
    cJSON_AddNumberToObject(row, "rollout/tokens", s[RS_TOKENS]);
    cJSON_AddNumberToObject(row, "rollout/sampled_tokens", s[RS_SAMPLED]);
    cJSON_AddNumberToObject(row, "rollout/agent_turns", s[RS_TURNS]);
    cJSON_AddNumberToObject(row, "rollout/tool_parse_errors", s[RS_PARSE_ERRORS]);
    cJSON_AddNumberToObject(row, "rollout/user_turns", s[RS_USER_TURNS]);
    cJSON_AddNumberToObject(row, "rollout/infrastructure_errors", s[RS_INFRA]);
    cJSON_AddNumberToObject(row, "rollout/drift_tokens", s[RS_DRIFT]);
    cJSON_AddNumberToObject(row, "rollout/policy_version", s[RS_VERSION]);
    cJSON_AddNumberToObject(row, "rollout/staleness", (double)staleness);
    cJSON_AddNumberToObject(row, "train/loss", tr->rep.loss);
    cJSON_AddNumberToObject(row, "train/pg_loss", tr->rep.grpo.pg_loss);
    cJSON_AddNumberToObject(row, "train/pg_clipfrac", tr->rep.grpo.pg_clipfrac);
    cJSON_AddNumberToObject(row, "train/ppo_kl", tr->rep.grpo.ppo_kl);
    cJSON_AddNumberToObject(row, "train/kl_loss", tr->rep.grpo.kl_loss);
    cJSON_AddNumberToObject(row, "train/entropy", tr->rep.entropy);
    cJSON_AddNumberToObject(row, "train/logprob_abs_diff", tr->rep.grpo.logprob_abs_diff);
    cJSON_AddNumberToObject(row, "train/grad_norm", tr->rep.grad_norm);
    cJSON_AddNumberToObject(row, "train/lr", tr->lr_last);
    cJSON_AddNumberToObject(row, "train/updates", tr->updates);
    cJSON_AddNumberToObject(row, "train/tokens", (double)tr->rep.tokens);
    cJSON_AddNumberToObject(row, "train/trained_tokens", (double)tr->rep.trained_tokens);
    cJSON_AddNumberToObject(row, "perf/rollout_time", s[RS_TIME]);
    cJSON_AddNumberToObject(row, "perf/train_time", tr->time);
    cJSON_AddNumberToObject(row, "perf/trainer_wait_time", wait);
    if (j->offloaded) cJSON_AddNumberToObject(row, "perf/offload_time", j->offload_s);
    cJSON_AddNumberToObject(row, "perf/rollout_tokens_per_s", s[RS_TIME] > 0 ? s[RS_TOKENS] / s[RS_TIME] : 0.0);
    cJSON_AddNumberToObject(row, "perf/train_tokens_per_s", tr->time > 0 ? tr->rep.tokens / tr->time : 0.0);
    cJSON_AddNumberToObject(row, "perf/elapsed", clock_now_s() - j->t_start);
    write_metrics(j, row);
}

/* ================================================================ GRPO phase */

/* Train the oldest rolled-out step not yet trained and report it. */
static void train_and_report(Job *j, int64_t gstep, const double *summary, double wait, int64_t staleness) {
    GrpoTrainResult tr;
    j->data_cursor = (int64_t)summary[RS_CURSOR]; /* the cursor after this step's rollout, for its checkpoint */
    train_step(j, gstep, &tr);
    j->step = j->n_sft_steps + gstep + 1;
    if (j->root) report_grpo_step(j, summary, &tr, wait, staleness);
    j->offloaded = false, j->offload_s = 0;
}

/* The periodic evaluation before GRPO step g (g = num_rollout: after the
 * last), every eval_interval steps and after the last; collective over the
 * rollout ranks (colocated: every rank). Returns a stop signal or 0. */
static int maybe_evaluate(Job *j, int64_t g) {
    const JobConfig *c = j->cfg;
    if (!j->eval || (g % c->eval_interval != 0 && g != c->num_rollout)) return 0;
    char tag[64];
    snprintf(tag, sizeof tag, "step_%06" PRId64, j->step);
    int stop = 0;
    begin_rollout_phase(j);
    if (engine_follower(j)) {
        follow_engine(j);
    } else {
        /* the kept GPU engine serves the evaluation too (replaced by a larger
         * one when its cache is too small): one engine per GPU at a time */
        RolloutPolicy pol = {.model = j->engine_model, .tok = j->tok, .ct = j->ct, .group = engine_group(j),
                             .on_gpu = j->rollout_on_gpu, .gpu_device = j->node_rank, .gpu_keep = &j->roll_gpu};
        refresh_rollout_gpu(j);
        EvalRunInfo info = {.run_dir = j->run_dir, .tag = tag, .step = j->step, .checkpoint = tag};
        cJSON *row = NULL;
        stop = eval_run(j->eval, &pol, j->comms.rollout_leaders, &info, &row);
        infer_follow_end(engine_group(j));
        if (row) write_metrics(j, row);
    }
    /* the leaders agreed on a stop; their followers learn it */
    if (engine_group(j)) comm_broadcast(j->comms.rollout_group, &stop, sizeof stop, 0);
    return stop;
}

/* Colocated (synchronous): every rank rolls out, then trains. */
static void run_grpo_colocated(Job *j) {
    const JobConfig *c = j->cfg;
    colocated_sync(j);
    int64_t g = j->step - j->n_sft_steps;
    for (; g < c->num_rollout; g++) {
        if ((j->stopped_by = maybe_evaluate(j, g)) != 0) {
            stop_checkpoint(j);
            return;
        }
        double summary[RS_COUNT];
        rollout_step(j, g, j->step, summary);
        comm_broadcast(j->work, summary, sizeof summary, 0);
        train_and_report(j, g, summary, 0.0, 0);
        colocated_sync(j);
        maybe_checkpoint(j, g + 1 == c->num_rollout);
        if ((j->stopped_by = stop_agree(j->work, 0)) != 0) {
            stop_checkpoint(j);
            return;
        }
    }
    if ((j->stopped_by = maybe_evaluate(j, g)) != 0) stop_checkpoint(j);
}

/* Separate ranks. The sync comm carries two kinds of collective, in an
 * order both sides derive from the step numbers:
 *   W(v)  weights of version v (after v job steps), from trainer rank 0
 *   R(t)  "step t's buffer is written" with its summary, from the first
 *         rollout rank (sync rank 1)
 * for t = t0 .. T-1:  [W(t - s) if t - s > t0]  R(t)
 * where s = max_staleness: the rollout of step t runs on weights at most s
 * versions old, and trainer rank 0 trains step t - 1 while step t rolls
 * out. Other trainer ranks follow trainer rank 0 over the trainer comm. */
static void run_grpo_separate(Job *j) {
    const JobConfig *c = j->cfg;
    int64_t t0 = j->step - j->n_sft_steps, T = c->num_rollout, s = c->max_staleness;
    Comm *sync = j->comms.sync;
    bool leader = j->lay.is_trainer && j->lay.trainer_rank == 0;
    sync_nccl_setup(j);
    /* Initial weights (SFT-trained or resumed) to the engines. */
    if (j->lay.is_trainer || j->lay.is_rollout) broadcast_weights(j);
    if (j->lay.is_rollout) {
        for (int64_t t = t0; t < T; t++) {
            int64_t v = t - s > t0 ? t - s : t0; /* the weight version (in GRPO steps) this rollout uses */
            if (t - s > t0) {
                if ((j->stopped_by = stop_agree(sync, 0)) != 0) return;
                broadcast_weights(j);
            }
            double summary[RS_COUNT];
            rollout_step(j, t, j->n_sft_steps + v, summary);
            comm_broadcast(sync, summary, sizeof summary, 1);
        }
        return;
    }
    if (!j->lay.is_trainer) return;
    /* Trainers: summaries of rolled-out steps wait here until trained. */
    double (*ready)[RS_COUNT] = xcalloc((size_t)(T > 0 ? T : 1), sizeof *ready);
    double *waits = xcalloc((size_t)(T > 0 ? T : 1), sizeof *waits);
    int64_t trained = t0, announced = t0;
    for (int64_t t = t0; t < T; t++) {
        if (t - s > t0) {
            /* W(t - s): train every announced step up to t - s - 1 first */
            int64_t want = t - s;
            while (trained < want) {
                train_and_report(j, trained, ready[trained], waits[trained], trained - (int64_t)ready[trained][RS_VERSION] + j->n_sft_steps);
                maybe_checkpoint(j, false);
                trained++;
            }
            /* the stop check rides on the W point, which both sides reach */
            int stop = stop_agree(j->comms.trainer, 0);
            if (leader) stop = stop_agree(sync, stop);
            float f = (float)stop;
            comm_broadcast(j->comms.trainer, &f, sizeof f, 0);
            if ((j->stopped_by = (int)f) != 0) {
                stop_checkpoint(j);
                break;
            }
            broadcast_weights(j);
        }
        /* R(t) */
        double w0 = clock_now_s();
        double summary[RS_COUNT];
        if (leader) comm_broadcast(sync, summary, sizeof summary, 1);
        comm_broadcast(j->comms.trainer, summary, sizeof summary, 0);
        memcpy(ready[t], summary, sizeof summary);
        waits[t] = clock_now_s() - w0;
        announced = t + 1;
    }
    while (!j->stopped_by && trained < announced) {
        train_and_report(j, trained, ready[trained], waits[trained], trained - (int64_t)ready[trained][RS_VERSION] + j->n_sft_steps);
        trained++;
        maybe_checkpoint(j, trained == T);
    }
    free(ready);
    free(waits);
}

/* ================================================================ the job */

static Comm *g_world_for_hook;
static void abort_all(int code) {
    /* Input errors are found by every rank alike: give rank 0 a moment to
     * print before the abort ends it. */
    if (code == EXIT_BAD_INPUT && g_world_for_hook->rank != 0) sleep(2);
    comm_abort(g_world_for_hook, code);
}

int job_run(const JobConfig *cfg, const char *data_dir, Comm *world) {
    Job job = {.cfg = cfg, .data_dir = data_dir, .world = world, .root = world->rank == 0, .saved_step = -1};
    Job *j = &job;
    stop_signal_install();
    j->t_start = clock_now_s();
    if (world->size > 1) {
        g_world_for_hook = world;
        error_set_exit_hook(abort_all);
        error_set_quiet_input(world->rank != 0);
    }
    if (strcmp(cfg->job, "eval") == 0) {
        eval_job_run(cfg, data_dir, world);
        error_set_exit_hook(NULL);
        error_set_quiet_input(0);
        stop_signal_reset();
        return 0;
    }
    /* The model's shape decides which layouts fit. */
    char err[2048], path[2048];
    snprintf(path, sizeof path, "%s/config.json", cfg->model);
    if (qwen3_config_load(path, &j->mcfg, err, sizeof err) != 0) die_input("%s: field 'model': %s", cfg->path, err);
    j->model_config_json = qwen3_config_to_json(&j->mcfg);
    setup_layout(j, world);

    if (strlen(cfg->output_dir) >= sizeof j->run_dir - 16)
        die_input("%s: %s: longer than %zu characters", cfg->path, job_config_output_dir_origin(cfg),
                  sizeof j->run_dir - 16);
    path_join(j->run_dir, sizeof j->run_dir, cfg->output_dir, NULL);
    path_join(j->ckpt_dir, sizeof j->ckpt_dir, j->run_dir, "ckpt");
    path_join(j->rollout_dir, sizeof j->rollout_dir, j->run_dir, "rollouts");
    /* the run directory is made once the rest of the input holds (a config
     * refused below leaves nothing behind); whether it can be made, now */
    if (j->root && dir_check_creatable(j->run_dir, err, sizeof err) != 0)
        die_input("%s: %s: %s", cfg->path, job_config_output_dir_origin(cfg), err);
    if (j->root && cfg->llm_cache_dir && dir_check_creatable(cfg->llm_cache_dir, err, sizeof err) != 0)
        die_input("%s: field 'llm_cache_dir': %s", cfg->path, err);
    j->work = comm_split(world, j->lay.is_user_sim, world->rank);
    if (j->lay.is_user_sim) {
        serve_user_sim(j);
        goto done;
    }

    setup_devices(j);
    setup_text(j);
    setup_data(j);
    setup_schedules(j);
    setup_user(j);
    if (cfg->eval_interval > 0 && j->lay.is_rollout) {
        char cache[1100];
        path_join(cache, sizeof cache, j->run_dir, "llm_cache");
        j->eval = eval_set_load(cfg, data_dir, &j->rollout, &j->user, true,
                                cfg->llm_cache_dir ? cfg->llm_cache_dir : cache);
    }
    /* the memory plans count the evaluation's engine too; then the weights */
    setup_memory(j);
    setup_models(j);
    local_user_ready(cfg, world);
    if (j->root) {
        char what[1200];
        snprintf(what, sizeof what, "%s job %s", cfg->job, cfg->path);
        j->lock = run_lock_acquire(j->run_dir, what, run_lock_wait_s(), err, sizeof err);
        if (!j->lock) die_input("%s: %s: %s", cfg->path, job_config_output_dir_origin(cfg), err);
        const char *dirs[] = {"ckpt", "rollouts", "tb", cfg->eval_interval > 0 ? "eval" : NULL, NULL};
        const char *files[] = {"metrics.jsonl", NULL};
        job_check_run_outputs(cfg, j->run_dir, dirs, files);
        mkdir_run(cfg, j->ckpt_dir);
        mkdir_run(cfg, j->rollout_dir);
    }
    comm_barrier(j->work);
    bool resumed = load_checkpoint(j);
    /* the device starts from the host's weights and optimizer state, resumed or not */
    if (j->lay.is_trainer) j->policy_dev = train_device_new(j->policy, j->train_device, j->node_rank);

    if (j->root) {
        char mpath[1100];
        path_join(mpath, sizeof mpath, j->run_dir, "metrics.jsonl");
        if (resumed) trim_metrics(j, mpath);
        j->metrics = metrics_open(mpath, !resumed, err, sizeof err);
        if (!j->metrics) die_runtime("%s", err);
        /* a new events file per start: TensorBoard reads them all, the later value winning for a step */
        path_join(mpath, sizeof mpath, j->run_dir, "tb");
        j->tb = tb_open(mpath, err, sizeof err);
        if (!j->tb) die_runtime("%s", err);
        int total = j->n_sft_steps + (strcmp(cfg->job, "grpo") == 0 ? cfg->num_rollout : 0);
        if (resumed) printf("resumed from %s/latest at step %" PRId64 " of %d\n", j->ckpt_dir, j->step, total);
        printf("run directory %s: %d SFT steps%s, %d GRPO steps\n", j->run_dir, j->n_sft_steps,
               j->sft ? "" : " (no sft_data)", strcmp(cfg->job, "grpo") == 0 ? cfg->num_rollout : 0);
        fflush(stdout);
    }

    run_sft_phase(j);
    /* a stop during SFT reaches the ranks that do not train here, and so
     * does the step (rollout-only ranks of separate mode skip the SFT) */
    j->stopped_by = stop_agree(j->work, j->stopped_by);
    comm_broadcast(j->work, &j->step, sizeof j->step, 0);
    if (j->stopped_by) stop_checkpoint(j);
    if (strcmp(cfg->job, "sft") == 0 && !j->stopped_by && j->eval) {
        colocated_sync(j);
        if ((j->stopped_by = maybe_evaluate(j, cfg->num_rollout)) != 0) stop_checkpoint(j);
    }
    if (strcmp(cfg->job, "grpo") == 0 && !j->stopped_by) {
        setup_reference(j);
        if (j->ref) j->ref_dev = train_device_new(j->ref, j->train_device, j->node_rank);
        if (j->lay.colocate) run_grpo_colocated(j);
        else run_grpo_separate(j);
    }
    /* a stop seen by the trainers of separate mode reaches every rank */
    j->stopped_by = stop_agree_value(j->work, j->stopped_by);
    if (j->root) {
        if (j->stopped_by)
            printf("stopped by signal %d at step %" PRId64 "; checkpoint written to %s (rerun the same command to "
                   "resume)\n", j->stopped_by, j->saved_step, j->ckpt_dir);
        else
            printf("done: %" PRId64 " steps in %.1f s; checkpoints in %s\n", j->step, clock_now_s() - j->t_start,
                   j->ckpt_dir);
        fflush(stdout);
    }

    /* the local user's server rank waits for this before it ends */
    if (j->client && strcmp(cfg->user, "local") == 0) llm_client_mpi_shutdown(j->client, j->user.endpoint);
done:
    metrics_close(j->metrics);
    tb_close(j->tb);
    llm_client_free(j->client);
    user_routes_free(&j->routes);
    user_endpoints_free(&j->user_eps);
    eval_set_free(j->eval);
    train_device_free(j->policy_dev);
    train_device_free(j->ref_dev);
#ifdef TAU2_HAVE_CUDA
    infer_gpu_free(j->roll_gpu);
    comm_free(j->sync_nccl);
#endif
    if (j->engine_model && j->engine_model != j->policy) qwen3_free(j->engine_model);
    qwen3_free(j->policy);
    qwen3_free(j->ref);
    sft_free(j->sft);
    prompts_free(j->prompts);
    chat_free(j->ct);
    tok_free(j->tok);
    cJSON_Delete(j->model_config_json);
    layout_free_comms(&j->comms);
    comm_free(j->work);
    run_lock_release(j->lock);
    error_set_exit_hook(NULL);
    error_set_quiet_input(0);
    stop_signal_reset();
    return 0;
}
