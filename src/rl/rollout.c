/* rollout.c — see rollout.h. */
#include "rl/rollout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/json.h"
#include "core/rng.h"
#include "llm/judge.h"
#include "llm/user_sim.h"
#include "model/infer_gpu.h"
#include "tau2/oracle.h"
#include "tau2/task.h"
#include "text/toolcall.h"
#include "text/trajectory.h"

/* One episode in flight. */
typedef struct {
    const RolloutPrompt *prompt;
    int group;   /* index of its prompt in the call */
    int sample;
    Episode *ep;
    Oracle user; /* the gold user (its agent half is unused) */
    Trajectory tr;
    bool begun;  /* the trajectory has its prompt (the agent's first turn was reached) */
    int n_seen;  /* τ²-bench messages already in the trajectory */
    int seq;     /* engine sequence, -1 when released */
    int req;     /* running generation request, -1 when none */
    /* the policy or api user */
    char *user_system;  /* its system prompt */
    cJSON *user_tools;  /* its tool schemas (OpenAI form), or NULL */
    int user_seq;       /* policy user: the engine sequence of its turn, -1 */
    int user_req;       /* policy user: its generation request, -1 */
    bool user_waiting;  /* api user: a request in flight */
    int user_endpoint;  /* api user: the client endpoint of this sample's model */
    const char *user_model; /* api user: that model's name (recorded), or NULL */
    int user_turn;      /* user turns so far (seeds) */
    bool done;
    bool truncated;
    char began[CLOCK_ISO_LEN]; /* wall clock at the episode's start (τ²-bench's results file) */
    double began_s;            /* the monotonic clock then, for its duration */
} Slot;

/* A group's shared prompt: prefilled once, forked by every episode whose
 * prompt it is. */
typedef struct {
    int base_seq;    /* -1: none yet (or freed) */
    int32_t *ids;    /* (n) the prefilled tokens */
    int n;
    int live;        /* episodes not done */
} Group;

typedef struct {
    const RolloutPolicy *pol;
    const RolloutUser *user;
    const RolloutOptions *opt;
    InferEngine *cpu;  /* the engine: the CPU's, */
    InferGpu *gpu;     /* or the GPU's when the call owns it (CUDA build) */
    InferBackend eng;  /* whichever it is */
    InferGen *gen;
    int32_t stop_ids[2];
    int n_stop_ids;
    Group *groups;
    RolloutStats *st;
} Run;

int rollout_user_kind_parse(const char *name, RolloutUserKind *out) {
    static const char *const names[] = {"gold", "policy", "api"};
    for (int i = 0; i < 3; i++)
        if (strcmp(name, names[i]) == 0) return *out = (RolloutUserKind)i, 0;
    /* the user-simulator ranks' server, reached through the same client over MPI */
    if (strcmp(name, "local") == 0) return *out = ROLLOUT_USER_API, 0;
    return -1;
}

static const PartialCreditWeights *weights_for(const RolloutOptions *o, const Domain *d) {
    return strcmp(d->spec->name, "telecom") == 0 ? &o->telecom_weights : &o->weights;
}

/* Tokens of the episode beyond its prompt. */
static int64_t response_tokens(const Slot *s) { return (int64_t)(s->tr.n - s->tr.n_prompt); }

/* Queue the slot's next agent turn: the trajectory's tokens not yet in the
 * engine's cache, then sampling. */
static int queue_agent_turn(Run *r, Slot *s, char *err, size_t errlen) {
    int64_t left = r->opt->max_response_len - response_tokens(s);
    if (left <= 0) {
        s->truncated = true;
        episode_abort(s->ep, TERM_TRUNCATED);
        return 0;
    }
    int cached = r->eng.seq_len(r->eng.engine, s->seq);
    InferGenParams gp = {
        .sample = r->opt->sample,
        .seed = r->opt->seed,
        .stream = (uint64_t)s->prompt->index * (uint64_t)r->opt->n_samples + (uint64_t)s->sample,
        .max_new_tokens = (int)(left < r->opt->max_turn_len ? left : r->opt->max_turn_len),
        .stop_ids = r->stop_ids,
        .n_stop_ids = r->n_stop_ids,
    };
    s->req = infer_gen_add(r->gen, s->seq, s->tr.ids + cached, (int)s->tr.n - cached, &gp, err, errlen);
    return s->req < 0 ? -1 : 0;
}

/* The trajectory's prompt: the agent's system prompt and the turns so far. */
static int begin_trajectory(Run *r, Slot *s, char *err, size_t errlen) {
    const Domain *d = s->prompt->domain;
    char *system = episode_agent_system_prompt(d);
    cJSON *first = chat_messages_from_tau2(s->ep->messages, system);
    free(system);
    s->n_seen = cJSON_GetArraySize(s->ep->messages);
    int rc = traj_begin(&s->tr, r->pol->ct, r->pol->tok, first, d->agent_schemas, NULL, err, errlen);
    cJSON_Delete(first);
    s->begun = rc == 0;
    return rc;
}

/* The slot's engine sequence: a fork of its group's prefilled prompt when
 * the prompts agree, else a sequence of its own. The first episode of a
 * group to get here prefills the group's prompt (all but its last token,
 * which starts the first agent turn). */
static int acquire_sequence(Run *r, Slot *s, char *err, size_t errlen) {
    Group *g = &r->groups[s->group];
    int n_pre = (int)s->tr.n_prompt - 1;
    if (g->base_seq < 0 && !g->ids && n_pre > 0) {
        if ((g->base_seq = r->eng.seq_new(r->eng.engine, err, errlen)) < 0) return -1;
        if (infer_gen_prefill(r->gen, g->base_seq, s->tr.ids, n_pre, err, errlen) != 0) return -1;
        g->ids = xmalloc((size_t)n_pre * sizeof(int32_t));
        memcpy(g->ids, s->tr.ids, (size_t)n_pre * sizeof(int32_t));
        g->n = n_pre;
        r->st->prompt_tokens += n_pre;
    }
    if (g->base_seq >= 0 && n_pre == g->n && memcmp(s->tr.ids, g->ids, (size_t)n_pre * sizeof(int32_t)) == 0)
        s->seq = r->eng.seq_fork(r->eng.engine, g->base_seq, err, errlen);
    else
        s->seq = r->eng.seq_new(r->eng.engine, err, errlen);
    return s->seq < 0 ? -1 : 0;
}

/* The episode is over: close the trajectory with its last turns. */
static int finish_slot(Run *r, Slot *s, char *err, size_t errlen) {
    if (!s->begun && begin_trajectory(r, s, err, errlen) != 0) return -1;
    cJSON *rest = chat_messages_from_tau2_range(s->ep->messages, s->n_seen);
    s->n_seen = cJSON_GetArraySize(s->ep->messages);
    if (traj_finish(&s->tr, rest, err, errlen) != 0) return -1;
    if (s->seq >= 0) r->eng.seq_free(r->eng.engine, s->seq);
    s->seq = -1;
    s->done = true;
    r->st->infra_errors += s->ep->term == TERM_INFRASTRUCTURE_ERROR;
    Group *g = &r->groups[s->group];
    if (--g->live == 0 && g->base_seq >= 0) {
        r->eng.seq_free(r->eng.engine, g->base_seq);
        g->base_seq = -1;
    }
    return 0;
}

/* ---- the policy or api user ---- */

/* Ask the user for its next turn: an api request or a generation request
 * on the engine. */
static int request_user_turn(Run *r, Slot *s, char *err, size_t errlen) {
    const RolloutUser *u = r->user;
    cJSON *msgs = user_sim_request_messages(s->user_system, s->ep->messages);
    uint64_t stream = ((uint64_t)1 << 62) + ((uint64_t)s->prompt->index * (uint64_t)r->opt->n_samples +
                                             (uint64_t)s->sample) * 4096 + (uint64_t)s->user_turn;
    s->user_turn++;
    if (u->kind == ROLLOUT_USER_API) {
        cJSON *body = cJSON_CreateObject();
        cJSON_AddItemToObject(body, "messages", msgs);
        if (s->user_tools) {
            cJSON_AddItemToObject(body, "tools", cJSON_Duplicate(s->user_tools, 1));
            cJSON_AddStringToObject(body, "tool_choice", "auto");
        }
        cJSON_AddItemToObject(body, "temperature", json_float(u->temperature));
        /* OpenAI seeds are 32-bit integers: a hash of the run's seed and the turn's stream */
        cJSON_AddItemToObject(body, "seed", json_int((double)(int64_t)(rng_uniform(r->opt->seed, stream, 0) * 2147483647.0)));
        if (u->max_tokens > 0) cJSON_AddItemToObject(body, "max_tokens", json_int(u->max_tokens));
        llm_client_submit(u->client, s->user_endpoint, body, s);
        cJSON_Delete(body);
        s->user_waiting = true;
        return 0;
    }
    /* policy: the conversation as the user sees it, in the policy's template */
    size_t len;
    char *text = chat_render(r->pol->ct, msgs, s->user_tools, true, NULL, &len, err, errlen);
    cJSON_Delete(msgs);
    if (!text) return -1;
    int32_t *ids;
    size_t n;
    tok_encode(r->pol->tok, text, len, &ids, &n);
    free(text);
    int rc = -1;
    if ((s->user_seq = r->eng.seq_new(r->eng.engine, err, errlen)) >= 0) {
        InferGenParams gp = {.sample = u->sample, .seed = r->opt->seed, .stream = stream,
                             .max_new_tokens = u->max_tokens > 0 ? u->max_tokens : r->opt->max_turn_len,
                             .stop_ids = r->stop_ids, .n_stop_ids = r->n_stop_ids};
        s->user_req = infer_gen_add(r->gen, s->user_seq, ids, (int)n, &gp, err, errlen);
        rc = s->user_req < 0 ? -1 : 0;
    }
    free(ids);
    return rc;
}

static int advance(Run *r, Slot *s, char *err, size_t errlen);

/* A finished generation as a τ²-bench message: its text (the end-of-turn
 * token is not text) parsed for tool calls against tools. */
static cJSON *generated_message(Run *r, const InferGenResult *res, const cJSON *tools) {
    size_t n_text = (size_t)res->n;
    if (res->finish == INFER_FINISH_STOP_ID) n_text--;
    size_t len;
    char *text = tok_decode(r->pol->tok, res->ids, n_text, 0, &len);
    cJSON *msg = toolcall_parse(text, len, tools);
    free(text);
    return msg;
}

/* The user's answer (a τ²-bench user message, taken), or NULL when the user
 * failed: then the episode ends as infrastructure_error. */
static int take_user_turn(Run *r, Slot *s, cJSON *msg, char *err, size_t errlen) {
    if (!msg) {
        episode_abort(s->ep, TERM_INFRASTRUCTURE_ERROR);
    } else {
        r->st->user_turns++;
        episode_submit(s->ep, msg);
    }
    return advance(r, s, err, errlen);
}

/* A policy-user generation request finished. */
static int take_policy_user_turn(Run *r, Slot *s, char *err, size_t errlen) {
    InferGenResult res = infer_gen_result(r->gen, s->user_req);
    /* the user's tool calls are checked against the user's own tools */
    cJSON *msg = generated_message(r, &res, s->prompt->domain->user_schemas);
    infer_gen_release(r->gen, s->user_req);
    r->eng.seq_free(r->eng.engine, s->user_seq);
    s->user_req = s->user_seq = -1;
    return take_user_turn(r, s, msg, err, errlen);
}

/* An api reply arrived. */
static int take_api_user_turn(Run *r, Slot *s, LlmResult *res, char *err, size_t errlen) {
    s->user_waiting = false;
    cJSON *msg = NULL;
    if (res->ok) {
        char perr[256];
        msg = user_sim_parse_response(res->message, perr, sizeof perr);
    }
    return take_user_turn(r, s, msg, err, errlen);
}

/* After any turn (or at the start): let the user and the tools answer,
 * then queue the agent again or finish. Returns with the slot waiting (for
 * the agent or an asynchronous user) or done. */
static int advance(Run *r, Slot *s, char *err, size_t errlen) {
    while (s->ep->turn == TURN_USER) {
        if (r->user && r->user->kind != ROLLOUT_USER_GOLD) return request_user_turn(r, s, err, errlen);
        Termination fail = TERM_USER_ERROR;
        cJSON *msg = s->user.user.next(&s->user.user, s->ep, &fail);
        if (!msg) {
            episode_abort(s->ep, fail);
            break;
        }
        episode_submit(s->ep, msg);
    }
    if (s->ep->turn == TURN_DONE) return finish_slot(r, s, err, errlen);
    if (!s->begun) {
        if (begin_trajectory(r, s, err, errlen) != 0 || acquire_sequence(r, s, err, errlen) != 0) return -1;
    } else {
        cJSON *fresh = chat_messages_from_tau2_range(s->ep->messages, s->n_seen);
        s->n_seen = cJSON_GetArraySize(s->ep->messages);
        if (traj_add_env_turns(&s->tr, fresh, err, errlen) != 0) return -1;
    }
    if (queue_agent_turn(r, s, err, errlen) != 0) return -1;
    if (s->ep->turn == TURN_DONE) return finish_slot(r, s, err, errlen); /* truncated */
    return 0;
}

/* A generation request finished: the agent's message goes to the episode. */
static int take_agent_turn(Run *r, Slot *s, char *err, size_t errlen) {
    InferGenResult res = infer_gen_result(r->gen, s->req);
    cJSON *msg = generated_message(r, &res, s->prompt->domain->agent_schemas);
    r->st->parse_errors += toolcall_count_errors(msg);
    r->st->agent_turns++;
    episode_submit(s->ep, msg);
    /* The message as stored (ids given to its tool calls) in template form. */
    cJSON *tmpl = chat_message_from_tau2(cJSON_GetArrayItem(s->ep->messages, s->n_seen));
    s->n_seen++;
    traj_add_agent_turn(&s->tr, res.ids, res.logprobs, (size_t)res.n, tmpl);
    infer_gen_release(r->gen, s->req);
    s->req = -1;
    return advance(r, s, err, errlen);
}

/* Start a group: its episodes, each up to its first agent turn or its
 * first asynchronous user turn. */
static int start_group(Run *r, int gi, const RolloutPrompt *p, Slot *slots, char *err, size_t errlen) {
    const Domain *d = p->domain;
    bool llm_user = r->user && r->user->kind != ROLLOUT_USER_GOLD;
    r->groups[gi] = (Group){.base_seq = -1, .live = r->opt->n_samples};
    for (int k = 0; k < r->opt->n_samples; k++) {
        Slot *s = &slots[k];
        memset(s, 0, sizeof *s);
        s->prompt = p, s->group = gi, s->sample = k, s->seq = s->req = s->user_seq = s->user_req = -1;
        clock_wall_iso(s->began);
        s->began_s = clock_now_s();
        s->ep = episode_new(d, p->task, &r->opt->episode, err, errlen);
        if (!s->ep) return -1;
        oracle_init(&s->user, p->task);
        /* model rotation: sample k of the group talks to model k % n */
        s->user_endpoint = r->user ? r->user->endpoint : -1;
        s->user_model = r->user ? r->user->model : NULL;
        if (p->n_user_models > 0) {
            s->user_endpoint = p->user_models[k % p->n_user_models].endpoint;
            s->user_model = p->user_models[k % p->n_user_models].model;
        }
        if (llm_user) {
            s->user_tools = user_sim_tools(d, p->task);
            s->user_system = user_sim_system_prompt(r->user->data_dir, p->task, s->user_tools != NULL, err, errlen);
            if (!s->user_system) return -1;
        }
    }
    for (int k = 0; k < r->opt->n_samples; k++)
        if (advance(r, &slots[k], err, errlen) != 0) return -1;
    return 0;
}

/* Where the judge is asked: the api user's client and an endpoint. */
typedef struct {
    LlmClient *client;
    int endpoint;
} JudgeTarget;

/* The NL-assertion judge through the api user's client: τ²-bench's judge
 * prompt at temperature 0, blocking (other requests stay in flight). */
static int judge_with_client(void *ctx, const cJSON *task, const cJSON *messages, cJSON **checks, char *err,
                             size_t errlen) {
    const JudgeTarget *u = ctx;
    const cJSON *assertions = judge_task_assertions(task);
    if (!assertions) {
        *checks = cJSON_CreateArray();
        return 0;
    }
    int n = cJSON_GetArraySize(assertions);
    cJSON *body = cJSON_CreateObject();
    cJSON_AddItemToObject(body, "messages", judge_request_messages(messages, assertions));
    cJSON_AddItemToObject(body, "temperature", json_float(0.0));
    LlmResult res;
    int rc = llm_client_complete(u->client, u->endpoint, body, &res);
    cJSON_Delete(body);
    if (rc == 0) {
        const char *content = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(res.message, "content"));
        JudgeVerdict *v = xcalloc((size_t)n, sizeof *v);
        int k = content ? judge_parse_response(content, n, v, err, errlen) : -1;
        if (!content) snprintf(err, errlen, "judge: the reply has no content");
        if (k >= 0) {
            *checks = judge_checks_json(v, k);
            judge_verdicts_free(v, k);
        } else {
            rc = -1;
        }
        free(v);
    } else {
        snprintf(err, errlen, "judge: %s", res.error ? res.error : "the request failed");
    }
    llm_result_free(&res);
    return rc;
}

/* Evaluate a finished episode and append it to the buffer. */
static void emit_episode(Run *r, Slot *s, RolloutBuffer *rb, bool check_drift) {
    const RolloutPrompt *p = s->prompt;
    EvalOptions eo;
    eval_options_default(p->domain->spec->name, &eo);
    eo.weights = *weights_for(r->opt, p->domain);
    /* one judge for the whole group (its first model), so that a rotation
     * of user models does not grade the samples of a group differently */
    JudgeTarget jt = {r->user ? r->user->client : NULL,
                      p->n_user_models > 0 ? p->user_models[0].endpoint : (r->user ? r->user->endpoint : -1)};
    if (r->user && r->user->kind == ROLLOUT_USER_API && r->user->judge) {
        eo.judge = judge_with_client;
        eo.judge_ctx = &jt;
    }
    Evaluation ev;
    evaluate_episode(p->domain, p->task, s->ep->messages, s->ep->term, &eo, &ev);
    /* a judge that failed after its retries: not the policy's failure */
    if (ev.infrastructure_error && s->ep->term != TERM_INFRASTRUCTURE_ERROR) {
        s->ep->term = TERM_INFRASTRUCTURE_ERROR;
        r->st->infra_errors++;
    }
    if (check_drift) {
        char err[256];
        long drift = traj_drift(&s->tr, NULL, err, sizeof err);
        r->st->drift_checked++;
        r->st->drift_tokens += drift < 0 ? (long)s->tr.n : drift;
    }
    cJSON *ref = cJSON_CreateObject();
    cJSON_AddStringToObject(ref, "domain", p->domain->spec->name);
    cJSON_AddStringToObject(ref, "task_split", p->task_split);
    cJSON_AddStringToObject(ref, "task_id", task_id(p->task));
    cJSON_AddItemToObject(ref, "index", json_int((double)p->index));
    cJSON_AddItemToObject(ref, "sample", json_int(s->sample));
    if (r->user && r->user->kind == ROLLOUT_USER_API && s->user_model)
        cJSON_AddStringToObject(ref, "user_model", s->user_model);
    char ended[CLOCK_ISO_LEN];
    clock_wall_iso(ended);
    cJSON_AddStringToObject(ref, "start_time", s->began);
    cJSON_AddStringToObject(ref, "end_time", ended);
    cJSON_AddItemToObject(ref, "duration", json_float(clock_now_s() - s->began_s));
    char *ref_json = json_dumps(ref, JSON_DUMP_UTF8);
    char *info_json = json_dumps(ev.info, JSON_DUMP_UTF8);
    char *msgs_json = r->opt->keep_messages ? json_dumps(s->ep->messages, JSON_DUMP_UTF8) : NULL;
    uint8_t *mask = s->tr.mask;
    RolloutEpisode e = {
        .n_tokens = (int64_t)s->tr.n,
        .tokens = s->tr.ids,
        .loss_mask = mask,
        .logprobs = s->tr.logprobs,
        .reward_raw = ev.reward,
        .reward_partial = ev.partial,
        .reward_shaped = ev.shaped,
        .group_id = p->group_id,
        .turns = s->tr.agent_turns,
        .termination = termination_name(s->ep->term),
        .task_ref = ref_json,
        .reward_info = info_json,
        .messages = msgs_json,
    };
    rollout_buffer_add(rb, &e);
    RolloutStats *st = r->st;
    st->episodes++;
    st->tokens += (int64_t)s->tr.n;
    for (size_t i = 0; i < s->tr.n; i++) st->sampled += mask[i] != 0;
    st->truncated += s->truncated;
    st->reward_sum += ev.reward;
    st->shaped_sum += ev.shaped;
    free(ref_json);
    free(info_json);
    free(msgs_json);
    cJSON_Delete(ref);
    evaluation_free(&ev);
}

static void slot_free(Run *r, Slot *s) {
    if (s->req >= 0) infer_gen_release(r->gen, s->req);
    if (s->seq >= 0) r->eng.seq_free(r->eng.engine, s->seq);
    if (s->user_req >= 0) infer_gen_release(r->gen, s->user_req);
    if (s->user_seq >= 0) r->eng.seq_free(r->eng.engine, s->user_seq);
    free(s->user_system);
    cJSON_Delete(s->user_tools);
    if (s->ep) episode_free(s->ep);
    traj_free(&s->tr);
    memset(s, 0, sizeof *s);
    s->seq = s->req = s->user_seq = s->user_req = -1;
}

int rollout_kv_budget(const RolloutOptions *o, bool policy_user, int n_prompts) {
    int64_t per_group = 8192 + (int64_t)o->n_samples * o->max_response_len;
    /* the policy user's turns: the guidelines, the scenario, the conversation */
    if (policy_user) per_group += (int64_t)o->n_samples * (4096 + o->max_response_len);
    int64_t want = per_group * n_prompts;
    if (want > (int64_t)1 << 30) want = (int64_t)1 << 30;
    return (int)want;
}

InferOptions rollout_engine_options(const RolloutOptions *opt, bool policy_user, int n_prompts) {
    /* sequences: each episode's, each group's prompt, each policy-user turn */
    int n = n_prompts * opt->n_samples;
    return (InferOptions){.kv_tokens = opt->kv_cache_tokens > 0 ? opt->kv_cache_tokens
                                                                : rollout_kv_budget(opt, policy_user, n_prompts),
                          .max_seqs = 2 * n + n_prompts + 1};
}

int64_t rollout_opening_tokens(const ChatTemplate *ct, Tokenizer *tok, const Domain *d, int user_turn_tokens,
                               char *err, size_t errlen) {
    cJSON *opening = cJSON_CreateArray();
    const char *roles[2] = {"assistant", "user"}, *texts[2] = {GREETING, ""};
    for (int i = 0; i < 2; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", roles[i]);
        cJSON_AddStringToObject(m, "content", texts[i]);
        cJSON_AddItemToArray(opening, m);
    }
    char *system = episode_agent_system_prompt(d);
    cJSON *msgs = chat_messages_from_tau2(opening, system);
    free(system);
    cJSON_Delete(opening);
    size_t len;
    char *text = chat_render(ct, msgs, d->agent_schemas, true, NULL, &len, err, errlen);
    cJSON_Delete(msgs);
    if (!text) return -1;
    int32_t *ids;
    size_t n;
    tok_encode(tok, text, len, &ids, &n);
    free(text);
    free(ids);
    return (int64_t)n + user_turn_tokens;
}

/* The call's engine over the policy's weights: the CPU engine, or with
 * pol->on_gpu the GPU engine on pol->gpu_device: the caller's kept engine
 * when it fits (its weights refreshed by the caller), else a new one with
 * the weights uploaded now, so each call sees the latest update. */
static int rollout_engine_new(Run *r, const InferOptions *io, char *err, size_t errlen) {
    const RolloutPolicy *pol = r->pol;
    if (pol->on_gpu) {
#ifdef TAU2_HAVE_CUDA
        InferGpu **keep = pol->gpu_keep;
        if (keep && *keep && infer_gpu_fits(*keep, io)) {
            infer_gpu_reset(*keep);
            r->eng = infer_gpu_backend(*keep);
            return 0;
        }
        /* the kept engine goes first: the GPU holds one engine at a time */
        if (keep) {
            infer_gpu_free(*keep);
            *keep = NULL;
        }
        InferGpu *g = infer_gpu_new(pol->model, io, pol->gpu_device, err, errlen);
        if (!g) return -1;
        if (keep) {
            *keep = g;
        } else {
            r->gpu = g; /* this call's own */
        }
        r->eng = infer_gpu_backend(g);
        return 0;
#else
        snprintf(err, errlen, "rollout on the GPU: this build has no CUDA backend");
        return -1;
#endif
    }
    r->cpu = infer_new(pol->model, io, err, errlen);
    if (!r->cpu) return -1;
    r->eng = infer_backend(r->cpu);
    return 0;
}

int rollout_run(const RolloutPolicy *pol, const RolloutUser *user, const RolloutPrompt *prompts, int n_prompts,
                const RolloutOptions *opt, RolloutBuffer *rb, RolloutStats *stats, char *err, size_t errlen) {
    if (n_prompts == 0) return 0;
    if (user && user->kind == ROLLOUT_USER_API && !user->client) die_runtime("rollout: api user without a client");
    RolloutStats local = {0};
    Run r = {.pol = pol, .user = user, .opt = opt, .st = stats ? stats : &local};
    int n = n_prompts * opt->n_samples;
    bool policy_user = user && user->kind == ROLLOUT_USER_POLICY;
    InferOptions io = rollout_engine_options(opt, policy_user, n_prompts);
    io.group = pol->group;
    if (rollout_engine_new(&r, &io, err, errlen) != 0) return -1;
    r.gen = infer_gen_new_backend(&r.eng, pol->tok);
    infer_gen_set_step_tokens(r.gen, opt->step_tokens);
    r.stop_ids[r.n_stop_ids++] = tok_id_of(pol->tok, chat_eos_token(pol->ct));
    int32_t eot = tok_id_of(pol->tok, "<|endoftext|>");
    if (eot >= 0 && eot != r.stop_ids[0]) r.stop_ids[r.n_stop_ids++] = eot;
    r.groups = xcalloc((size_t)n_prompts, sizeof *r.groups);
    for (int g = 0; g < n_prompts; g++) r.groups[g].base_seq = -1;

    Slot *slots = xcalloc((size_t)n, sizeof *slots);
    for (int i = 0; i < n; i++) slots[i].seq = slots[i].req = slots[i].user_seq = slots[i].user_req = -1;
    bool api = user && user->kind == ROLLOUT_USER_API;
    enum { POLL_MAX = 64 };
    LlmResult results[POLL_MAX];
    int rc = -1;
    int next_group = 0, emitted = 0;
    while (emitted < n) {
        /* Start groups while the batch has room. */
        while (next_group < n_prompts) {
            int live = 0;
            for (int i = emitted; i < next_group * opt->n_samples; i++) live += !slots[i].done;
            if (opt->max_inflight > 0 && live + opt->n_samples > opt->max_inflight && live > 0) break;
            if (start_group(&r, next_group, &prompts[next_group], &slots[next_group * opt->n_samples], err,
                            errlen) != 0)
                goto out;
            next_group++;
        }
        int started = next_group * opt->n_samples;
        /* One decode step over every running request: agents and policy users. */
        if (infer_gen_running(r.gen) > 0) {
            if (infer_gen_step(r.gen, err, errlen) < 0) goto out;
            for (int i = emitted; i < started; i++) {
                Slot *s = &slots[i];
                if (s->done) continue;
                if (s->req >= 0 && infer_gen_result(r.gen, s->req).finish != INFER_RUNNING) {
                    if (take_agent_turn(&r, s, err, errlen) != 0) goto out;
                } else if (s->user_req >= 0 && infer_gen_result(r.gen, s->user_req).finish != INFER_RUNNING) {
                    if (take_policy_user_turn(&r, s, err, errlen) != 0) goto out;
                }
            }
        }
        /* Replies of the api user: wait for one only when the engine is idle. */
        if (api && llm_client_pending(user->client) > 0) {
            double wait = infer_gen_running(r.gen) > 0 ? 0.0 : 0.05;
            int k = llm_client_poll(user->client, wait, results, POLL_MAX);
            for (int i = 0; i < k; i++) {
                Slot *s = results[i].tag;
                int trc = take_api_user_turn(&r, s, &results[i], err, errlen);
                llm_result_free(&results[i]);
                if (trc != 0) {
                    for (int j = i + 1; j < k; j++) llm_result_free(&results[j]);
                    goto out;
                }
            }
        }
        /* Emit finished episodes in order (the buffer keeps prompt order). */
        while (emitted < started && slots[emitted].done) {
            emit_episode(&r, &slots[emitted], rb, slots[emitted].sample == 0);
            slot_free(&r, &slots[emitted]);
            emitted++;
        }
        if (infer_gen_running(r.gen) == 0 && !(api && llm_client_pending(user->client) > 0) && emitted < started &&
            next_group == n_prompts) {
            /* Nothing running yet episodes unfinished: a bug, not a user error. */
            die_runtime("rollout: %d episodes neither running nor finished", started - emitted);
        }
    }
    rc = 0;
out:
    for (int i = emitted; i < n; i++) slot_free(&r, &slots[i]);
    free(slots);
    /* on an error, api replies still in flight: drained and dropped */
    while (api && llm_client_pending(user->client) > 0) {
        int k = llm_client_poll(user->client, 0.05, results, POLL_MAX);
        for (int i = 0; i < k; i++) llm_result_free(&results[i]);
    }
    for (int g = 0; g < n_prompts; g++) free(r.groups[g].ids);
    free(r.groups);
    infer_gen_free(r.gen);
    infer_free(r.cpu);
#ifdef TAU2_HAVE_CUDA
    infer_gpu_free(r.gpu);
#endif
    return rc;
}

int rollout_load_text(const char *model, const char *tokenizer, int vocab_size, Tokenizer **tok, ChatTemplate **ct,
                      char *err, size_t errlen) {
    const char *tok_path = tokenizer ? tokenizer : model;
    char file[2048], e[1800];
    struct stat sb;
    if (stat(tok_path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(file, sizeof file, "%s/tokenizer.json", tok_path);
        tok_path = file;
    }
    *tok = tok_load(tok_path, e, sizeof e);
    if (!*tok) {
        snprintf(err, errlen, "field 'tokenizer': %s", e);
        return -1;
    }
    *ct = chat_load(model, e, sizeof e);
    if (!*ct) {
        snprintf(err, errlen, "field 'model': %s", e);
        tok_free(*tok), *tok = NULL;
        return -1;
    }
    if (tok_vocab_size(*tok) > vocab_size) {
        snprintf(err, errlen, "the tokenizer has %d ids but the model's vocab_size is %d", tok_vocab_size(*tok),
                 vocab_size);
        chat_free(*ct), *ct = NULL;
        tok_free(*tok), *tok = NULL;
        return -1;
    }
    return 0;
}
