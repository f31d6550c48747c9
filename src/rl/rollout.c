/* rollout.c — see rollout.h. */
#include "rl/rollout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
#include "tau2/oracle.h"
#include "tau2/task.h"
#include "text/toolcall.h"
#include "text/trajectory.h"

/* One episode in flight. */
typedef struct {
    const RolloutPrompt *prompt;
    int sample;
    Episode *ep;
    Oracle user; /* the gold user (its agent half is unused) */
    Trajectory tr;
    int n_seen;  /* τ²-bench messages already in the trajectory */
    int seq;     /* engine sequence, -1 when released */
    int req;     /* running generation request, -1 when none */
    bool done;
    bool truncated;
} Slot;

typedef struct {
    const RolloutPolicy *pol;
    const RolloutOptions *opt;
    InferEngine *eng;
    InferGen *gen;
    int32_t stop_ids[2];
    int n_stop_ids;
    RolloutStats *st;
} Run;

static const PartialCreditWeights *weights_for(const RolloutOptions *o, const Domain *d) {
    return strcmp(d->spec->name, "telecom") == 0 ? &o->telecom_weights : &o->weights;
}

/* Let the gold user speak until it is the agent's turn or the episode ends. */
static void run_user_turns(Slot *s) {
    while (s->ep->turn == TURN_USER) {
        Termination fail = TERM_USER_ERROR;
        cJSON *msg = s->user.user.next(&s->user.user, s->ep, &fail);
        if (!msg) {
            episode_abort(s->ep, fail);
            return;
        }
        episode_submit(s->ep, msg);
    }
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
    int cached = infer_seq_len(r->eng, s->seq);
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

/* The episode is over: close the trajectory with its last turns. */
static int finish_slot(Run *r, Slot *s, char *err, size_t errlen) {
    cJSON *rest = chat_messages_from_tau2_range(s->ep->messages, s->n_seen);
    s->n_seen = cJSON_GetArraySize(s->ep->messages);
    if (traj_finish(&s->tr, rest, err, errlen) != 0) return -1;
    if (s->seq >= 0) infer_seq_free(r->eng, s->seq);
    s->seq = -1;
    s->done = true;
    return 0;
}

/* After the agent's turn (or at the start): let the user and the tools
 * answer, then queue the agent again or finish. */
static int advance(Run *r, Slot *s, char *err, size_t errlen) {
    run_user_turns(s);
    if (s->ep->turn == TURN_DONE) return finish_slot(r, s, err, errlen);
    cJSON *fresh = chat_messages_from_tau2_range(s->ep->messages, s->n_seen);
    s->n_seen = cJSON_GetArraySize(s->ep->messages);
    if (traj_add_env_turns(&s->tr, fresh, err, errlen) != 0) return -1;
    if (queue_agent_turn(r, s, err, errlen) != 0) return -1;
    if (s->ep->turn == TURN_DONE) return finish_slot(r, s, err, errlen); /* truncated */
    return 0;
}

/* A generation request finished: the agent's message goes to the episode. */
static int take_agent_turn(Run *r, Slot *s, char *err, size_t errlen) {
    InferGenResult res = infer_gen_result(r->gen, s->req);
    size_t n_text = (size_t)res.n;
    if (res.finish == INFER_FINISH_STOP_ID) n_text--; /* the end-of-turn token is not text */
    size_t len;
    char *text = tok_decode(r->pol->tok, res.ids, n_text, 0, &len);
    cJSON *msg = toolcall_parse(text, len, s->prompt->domain->agent_schemas);
    free(text);
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

/* Start a group: its episodes up to the first agent turn, the shared
 * prompt prefilled once, one forked sequence per sample. */
static int start_group(Run *r, const RolloutPrompt *p, Slot *slots, char *err, size_t errlen) {
    const Domain *d = p->domain;
    char *system = episode_agent_system_prompt(d);
    int rc = -1;
    for (int k = 0; k < r->opt->n_samples; k++) {
        Slot *s = &slots[k];
        memset(s, 0, sizeof *s);
        s->prompt = p, s->sample = k, s->seq = -1, s->req = -1;
        s->ep = episode_new(d, p->task, &r->opt->episode, err, errlen);
        if (!s->ep) goto out;
        oracle_init(&s->user, p->task);
        run_user_turns(s);
        cJSON *first = chat_messages_from_tau2(s->ep->messages, system);
        s->n_seen = cJSON_GetArraySize(s->ep->messages);
        int trc = traj_begin(&s->tr, r->pol->ct, r->pol->tok, first, d->agent_schemas, NULL, err, errlen);
        cJSON_Delete(first);
        if (trc != 0) goto out;
    }
    /* Every sample's prompt is the same (the gold user opens the same way):
     * prefill all but its last token once, fork the cache. */
    Slot *s0 = &slots[0];
    int n_pre = (int)s0->tr.n_prompt - 1;
    if ((s0->seq = infer_seq_new(r->eng, err, errlen)) < 0) goto out;
    if (n_pre > 0) {
        InferChunk c = {s0->seq, s0->tr.ids, n_pre};
        if (infer_forward(r->eng, &c, 1, NULL, err, errlen) != 0) goto out;
        r->st->prompt_tokens += n_pre;
    }
    for (int k = 1; k < r->opt->n_samples; k++) {
        Slot *s = &slots[k];
        if (s->tr.n_prompt != s0->tr.n_prompt || memcmp(s->tr.ids, s0->tr.ids, s0->tr.n_prompt * sizeof(int32_t))) {
            /* Not the same prompt after all: its own sequence. */
            if ((s->seq = infer_seq_new(r->eng, err, errlen)) < 0) goto out;
        } else if ((s->seq = infer_seq_fork(r->eng, s0->seq, err, errlen)) < 0) {
            goto out;
        }
    }
    for (int k = 0; k < r->opt->n_samples; k++) {
        Slot *s = &slots[k];
        if (s->ep->turn == TURN_DONE) {
            if (finish_slot(r, s, err, errlen) != 0) goto out;
        } else if (queue_agent_turn(r, s, err, errlen) != 0) {
            goto out;
        }
    }
    rc = 0;
out:
    free(system);
    return rc;
}

/* Evaluate a finished episode and append it to the buffer. */
static void emit_episode(Run *r, Slot *s, RolloutBuffer *rb, bool check_drift) {
    const RolloutPrompt *p = s->prompt;
    EvalOptions eo;
    eval_options_default(p->domain->spec->name, &eo);
    eo.weights = *weights_for(r->opt, p->domain);
    Evaluation ev;
    evaluate_episode(p->domain, p->task, s->ep->messages, s->ep->term, &eo, &ev);
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
    char *ref_json = json_dumps(ref, JSON_DUMP_UTF8);
    char *info_json = json_dumps(ev.info, JSON_DUMP_UTF8);
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
    cJSON_Delete(ref);
    evaluation_free(&ev);
}

static void slot_free(Run *r, Slot *s) {
    if (s->req >= 0) infer_gen_release(r->gen, s->req);
    if (s->seq >= 0) infer_seq_free(r->eng, s->seq);
    if (s->ep) {
        traj_free(&s->tr);
        episode_free(s->ep);
    }
    memset(s, 0, sizeof *s);
}

/* KV tokens that cover every episode of the call at full length (prompts
 * counted once per group; an estimate, the engine checks exactly). */
static int default_kv_budget(const RolloutOptions *o, int n_prompts) {
    int64_t per_group = 8192 + (int64_t)o->n_samples * o->max_response_len;
    int64_t want = per_group * n_prompts;
    if (want > (int64_t)1 << 30) want = (int64_t)1 << 30;
    return (int)want;
}

int rollout_run(const RolloutPolicy *pol, const RolloutPrompt *prompts, int n_prompts, const RolloutOptions *opt,
                RolloutBuffer *rb, RolloutStats *stats, char *err, size_t errlen) {
    if (n_prompts == 0) return 0;
    RolloutStats local = {0};
    Run r = {.pol = pol, .opt = opt, .st = stats ? stats : &local};
    InferOptions io = {.kv_tokens = opt->kv_cache_tokens > 0 ? opt->kv_cache_tokens : default_kv_budget(opt, n_prompts),
                       .max_seqs = n_prompts * opt->n_samples + 1};
    r.eng = infer_new(pol->model, &io, err, errlen);
    if (!r.eng) return -1;
    r.gen = infer_gen_new(r.eng, pol->tok);
    r.stop_ids[r.n_stop_ids++] = tok_id_of(pol->tok, chat_eos_token(pol->ct));
    int32_t eot = tok_id_of(pol->tok, "<|endoftext|>");
    if (eot >= 0 && eot != r.stop_ids[0]) r.stop_ids[r.n_stop_ids++] = eot;

    int n = n_prompts * opt->n_samples;
    Slot *slots = xcalloc((size_t)n, sizeof *slots);
    for (int i = 0; i < n; i++) slots[i].seq = slots[i].req = -1;
    int rc = -1;
    int next_group = 0, emitted = 0;
    while (emitted < n) {
        /* Start groups while the batch has room. */
        while (next_group < n_prompts) {
            int live = 0;
            for (int i = emitted; i < next_group * opt->n_samples; i++) live += !slots[i].done;
            if (opt->max_inflight > 0 && live + opt->n_samples > opt->max_inflight && live > 0) break;
            if (start_group(&r, &prompts[next_group], &slots[next_group * opt->n_samples], err, errlen) != 0)
                goto out;
            next_group++;
        }
        /* One decode step over every running request. */
        if (infer_gen_running(r.gen) > 0) {
            if (infer_gen_step(r.gen, err, errlen) < 0) goto out;
            for (int i = emitted; i < next_group * opt->n_samples; i++) {
                Slot *s = &slots[i];
                if (s->done || s->req < 0) continue;
                if (infer_gen_result(r.gen, s->req).finish == INFER_RUNNING) continue;
                if (take_agent_turn(&r, s, err, errlen) != 0) goto out;
            }
        }
        /* Emit finished episodes in order (the buffer keeps prompt order). */
        while (emitted < next_group * opt->n_samples && slots[emitted].done) {
            emit_episode(&r, &slots[emitted], rb, slots[emitted].sample == 0);
            slot_free(&r, &slots[emitted]);
            emitted++;
        }
        if (infer_gen_running(r.gen) == 0 && emitted < next_group * opt->n_samples && next_group == n_prompts) {
            /* Nothing running yet episodes unfinished: a bug, not a user error. */
            die_runtime("rollout: %d episodes neither running nor finished", next_group * opt->n_samples - emitted);
        }
    }
    rc = 0;
out:
    for (int i = emitted; i < n; i++) slot_free(&r, &slots[i]);
    free(slots);
    infer_gen_free(r.gen);
    infer_free(r.eng);
    return rc;
}
