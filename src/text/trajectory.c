/* trajectory.c — token-in/token-out assembly (see trajectory.h). */
#include "text/trajectory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"

static void push(Trajectory *tr, int32_t id, uint8_t mask, float logprob) {
    if (tr->n == tr->cap) {
        tr->cap = tr->cap ? 2 * tr->cap : 1024;
        tr->ids = xrealloc(tr->ids, tr->cap * sizeof *tr->ids);
        tr->mask = xrealloc(tr->mask, tr->cap * sizeof *tr->mask);
        tr->logprobs = xrealloc(tr->logprobs, tr->cap * sizeof *tr->logprobs);
    }
    tr->ids[tr->n] = id;
    tr->mask[tr->n] = mask;
    tr->logprobs[tr->n] = logprob;
    tr->n++;
}

/* Encode text (special tokens matched) and append it as context. */
static void push_text(Trajectory *tr, const char *text, size_t len) {
    TokIds ids = {0};
    tok_encode_append(tr->tok, text, len, TOK_ENCODE_SPECIAL, &ids);
    for (size_t i = 0; i < ids.n; i++) push(tr, ids.ids[i], 0, 0.0f);
    tok_ids_free(&ids);
}

static const cJSON *system_message(const Trajectory *tr) {
    const cJSON *first = tr->messages->child;
    const char *role = first ? json_get_str(first, "role") : NULL;
    return role && !strcmp(role, "system") ? first : NULL;
}

int traj_begin(Trajectory *tr, const ChatTemplate *ct, Tokenizer *tok, const cJSON *messages, const cJSON *tools,
               const cJSON *kwargs, char *err, size_t errlen) {
    memset(tr, 0, sizeof *tr);
    tr->ct = ct;
    tr->tok = tok;
    tr->tools = tools ? cJSON_Duplicate(tools, 1) : NULL;
    tr->kwargs = kwargs ? cJSON_Duplicate(kwargs, 1) : NULL;
    tr->messages = cJSON_Duplicate(messages, 1);
    tr->eos_id = tok_id_of(tok, chat_eos_token(ct));
    if (tr->eos_id < 0) {
        snprintf(err, errlen, "%s: the end-of-turn token '%s' is not in the tokenizer's vocabulary", chat_origin(ct),
                 chat_eos_token(ct));
        return -1;
    }
    /* What follows the end-of-turn token inside a conversation ("\n" for
     * Qwen3), learned from the template with a probe turn. */
    cJSON *probe = cJSON_CreateObject();
    cJSON_AddStringToObject(probe, "role", "assistant");
    cJSON_AddStringToObject(probe, "content", "probe");
    char *body = chat_render_assistant(ct, system_message(tr), probe, tr->tools, tr->kwargs, &tr->after_eos, err, errlen);
    cJSON_Delete(probe);
    if (!body) return -1;
    free(body);
    size_t len;
    char *prompt = chat_render(ct, tr->messages, tr->tools, true, tr->kwargs, &len, err, errlen);
    if (!prompt) return -1;
    push_text(tr, prompt, len);
    free(prompt);
    tr->n_prompt = tr->n;
    return 0;
}

void traj_free(Trajectory *tr) {
    free(tr->ids);
    free(tr->mask);
    free(tr->logprobs);
    cJSON_Delete(tr->tools);
    cJSON_Delete(tr->kwargs);
    cJSON_Delete(tr->messages);
    free(tr->after_eos);
    memset(tr, 0, sizeof *tr);
}

void traj_add_agent_turn(Trajectory *tr, const int32_t *ids, const float *logprobs, size_t n, cJSON *message) {
    for (size_t i = 0; i < n; i++) push(tr, ids[i], 1, logprobs ? logprobs[i] : 0.0f);
    cJSON_AddItemToArray(tr->messages, message);
    tr->agent_turns++;
    bool closed = n > 0 && ids[n - 1] == tr->eos_id;
    if (!closed) tr->truncated_turns++;
    /* An open turn still needs its end-of-turn token (context, mask 0). */
    if (!closed) push(tr, tr->eos_id, 0, 0.0f);
    tr->open_turn = true;
}

/* Close the last agent turn (what follows its end-of-turn token), then the
 * delta for the new messages. */
static int append_delta(Trajectory *tr, cJSON *messages, bool generation_prompt, char *err, size_t errlen) {
    SBuf text;
    sbuf_init(&text);
    if (tr->open_turn) sbuf_puts(&text, tr->after_eos);
    tr->open_turn = false;
    bool any = messages && messages->child;
    if (any || generation_prompt) {
        char *delta = chat_render_delta(tr->ct, system_message(tr), messages, tr->tools, generation_prompt, tr->kwargs,
                                        err, errlen);
        if (!delta) {
            sbuf_free(&text);
            cJSON_Delete(messages);
            return -1;
        }
        sbuf_puts(&text, delta);
        free(delta);
    }
    if (text.len) push_text(tr, text.data, text.len);
    sbuf_free(&text);
    while (messages && messages->child)
        cJSON_AddItemToArray(tr->messages, cJSON_DetachItemViaPointer(messages, messages->child));
    cJSON_Delete(messages);
    return 0;
}

int traj_add_env_turns(Trajectory *tr, cJSON *messages, char *err, size_t errlen) {
    return append_delta(tr, messages, true, err, errlen);
}

int traj_finish(Trajectory *tr, cJSON *final_messages, char *err, size_t errlen) {
    tr->done = true;
    return append_delta(tr, final_messages, false, err, errlen);
}

long traj_drift(const Trajectory *tr, size_t *first_diff, char *err, size_t errlen) {
    size_t len;
    char *text = chat_render(tr->ct, tr->messages, tr->tools, !tr->done, tr->kwargs, &len, err, errlen);
    if (!text) return -1;
    TokIds fresh = {0};
    tok_encode_append(tr->tok, text, len, TOK_ENCODE_SPECIAL, &fresh);
    free(text);
    size_t common = 0;
    while (common < fresh.n && common < tr->n && fresh.ids[common] == tr->ids[common]) common++;
    size_t longest = fresh.n > tr->n ? fresh.n : tr->n;
    if (first_diff) *first_diff = common;
    tok_ids_free(&fresh);
    return (long)(longest - common);
}

cJSON *traj_to_json(const Trajectory *tr) {
    cJSON *o = cJSON_CreateObject();
    cJSON *ids = cJSON_AddArrayToObject(o, "ids");
    cJSON *mask = cJSON_AddArrayToObject(o, "mask");
    cJSON *lp = cJSON_AddArrayToObject(o, "logprobs");
    for (size_t i = 0; i < tr->n; i++) {
        cJSON_AddItemToArray(ids, json_int(tr->ids[i]));
        cJSON_AddItemToArray(mask, json_int(tr->mask[i]));
        cJSON_AddItemToArray(lp, json_float(tr->logprobs[i]));
    }
    cJSON_AddItemToObject(o, "n_prompt", json_int((double)tr->n_prompt));
    cJSON_AddItemToObject(o, "agent_turns", json_int(tr->agent_turns));
    return o;
}
