/* sft_data.c — teacher traces: writing rows from episodes, reading them into
 * token/mask arrays (see sft_data.h). */
#include "rl/sft_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "tau2/episode.h"
#include "tau2/task.h"
#include "text/trajectory.h"

/* ---------------------------------------------------------------- writing */

/* The number of leading τ²-bench messages the agent did not write in the
 * episode: the task's message history, else the greeting. */
static int context_messages(const cJSON *task, const cJSON *tau2_messages) {
    const cJSON *history = json_get(json_get(task, "initial_state"), "message_history");
    if (cJSON_IsArray(history) && history->child) return cJSON_GetArraySize(history);
    const cJSON *first = tau2_messages ? tau2_messages->child : NULL;
    const char *role = first ? json_get_str(first, "role") : NULL;
    return role && !strcmp(role, "assistant") ? 1 : 0;
}

/* One template-form message (text/chat.h) in OpenAI form: arguments as a
 * JSON string, printed as the template's tojson prints the object, so a
 * Python apply_chat_template that writes string arguments verbatim renders
 * the same text. */
static cJSON *openai_message(const cJSON *t, bool weight0) {
    const char *role = json_get_str(t, "role");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    if (strcmp(role, "assistant") != 0) {
        const char *id = json_get_str(t, "tool_call_id");
        if (id) cJSON_AddStringToObject(m, "tool_call_id", id);
        cJSON_AddStringToObject(m, "content", json_get_str(t, "content"));
        return m;
    }
    /* "" (as template form has it) rather than OpenAI's null for a turn of
     * tool calls alone: the Qwen3 template applies `in` to the content,
     * which fails on None in Python */
    cJSON_AddStringToObject(m, "content", json_get_str(t, "content"));
    const cJSON *calls = json_get(t, "tool_calls");
    if (cJSON_IsArray(calls) && calls->child) {
        cJSON *out = cJSON_AddArrayToObject(m, "tool_calls");
        for (const cJSON *tc = calls->child; tc; tc = tc->next) {
            const cJSON *fn = json_get(tc, "function");
            cJSON *c = cJSON_CreateObject();
            const char *id = json_get_str(tc, "id");
            if (id) cJSON_AddStringToObject(c, "id", id);
            cJSON_AddStringToObject(c, "type", "function");
            cJSON *f = cJSON_AddObjectToObject(c, "function");
            cJSON_AddStringToObject(f, "name", json_get_str(fn, "name"));
            char *args = json_dumps(json_get(fn, "arguments"), JSON_DUMP_UTF8);
            cJSON_AddStringToObject(f, "arguments", args);
            free(args);
            cJSON_AddItemToArray(out, c);
        }
    }
    if (weight0) cJSON_AddItemToObject(m, "weight", json_int(0));
    return m;
}

cJSON *sft_trace_from_episode(const Domain *d, const cJSON *task, const cJSON *tau2_messages, const char *split,
                              double reward) {
    cJSON *row = cJSON_CreateObject();
    cJSON *messages = cJSON_AddArrayToObject(row, "messages");
    char *system = episode_agent_system_prompt(d);
    cJSON *sys = cJSON_CreateObject();
    cJSON_AddStringToObject(sys, "role", "system");
    cJSON_AddStringToObject(sys, "content", system);
    cJSON_AddItemToArray(messages, sys);
    free(system);
    int n_context = context_messages(task, tau2_messages);
    int i = 0;
    for (const cJSON *m = tau2_messages ? tau2_messages->child : NULL; m; m = m->next, i++) {
        /* what the agent sees, as chat_messages_from_tau2 gives it at rollout */
        cJSON *t = chat_message_from_tau2(m);
        if (!t) continue;
        cJSON_AddItemToArray(messages, openai_message(t, i < n_context));
        cJSON_Delete(t);
    }
    cJSON_AddItemToObject(row, "tools", cJSON_Duplicate(d->agent_schemas, 1));
    cJSON *md = cJSON_AddObjectToObject(row, "metadata");
    cJSON_AddStringToObject(md, "domain", d->spec->name);
    cJSON_AddStringToObject(md, "task_split", split ? split : "base");
    cJSON_AddStringToObject(md, "task_id", task_id(task));
    cJSON_AddItemToObject(md, "reward", json_float(reward));
    return row;
}

/* ---------------------------------------------------------------- checking rows */

/* A JSON value that may be given as a string holding it (OpenAI's
 * arguments, a tools column stored as text). Returns a new value, or NULL
 * when v is neither of the wanted type nor a string that parses to one. */
static cJSON *value_or_json_string(const cJSON *v, int want_type) {
    if (v && (v->type & 0xFF) == want_type) return cJSON_Duplicate(v, 1);
    if (!cJSON_IsString(v)) return NULL;
    char e[8];
    cJSON *p = json_parse(v->valuestring, strlen(v->valuestring), "", e, sizeof e);
    if (p && (p->type & 0xFF) == want_type) return p;
    cJSON_Delete(p);
    return NULL;
}

/* content: a string, null or absent (""). Returns 0, or -1 when it is
 * something else. */
static int content_text(const cJSON *m, const char **out) {
    const cJSON *c = json_get(m, "content");
    *out = "";
    if (!c || cJSON_IsNull(c)) return 0;
    if (!cJSON_IsString(c)) return -1;
    *out = c->valuestring;
    return 0;
}

/* An assistant message in template form; NULL with err (prefix W). */
static cJSON *assistant_message(const cJSON *m, const char *key, int i, const char *W, char *err, size_t errlen) {
    const char *content;
    if (content_text(m, &content) != 0) {
        snprintf(err, errlen, "%s: %s[%d].content: expected a string or null", W, key, i);
        return NULL;
    }
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "role", "assistant");
    cJSON_AddStringToObject(t, "content", content);
    const cJSON *rc = json_get(m, "reasoning_content");
    if (cJSON_IsString(rc)) cJSON_AddStringToObject(t, "reasoning_content", rc->valuestring);
    const cJSON *calls = json_get(m, "tool_calls");
    if (calls && !cJSON_IsNull(calls) && !cJSON_IsArray(calls)) {
        snprintf(err, errlen, "%s: %s[%d].tool_calls: expected a list or null", W, key, i);
        cJSON_Delete(t);
        return NULL;
    }
    if (!cJSON_IsArray(calls) || !calls->child) return t;
    cJSON *out = cJSON_AddArrayToObject(t, "tool_calls");
    int k = 0;
    for (const cJSON *tc = calls->child; tc; tc = tc->next, k++) {
        const cJSON *fn = json_get(tc, "function");
        const char *name = json_get_str(fn, "name");
        const char *id = json_get_str(tc, "id");
        const char *type = json_get_str(tc, "type");
        const char *bad = NULL;
        if (!cJSON_IsObject(tc))
            bad = ": expected an object {\"id\", \"type\": \"function\", \"function\"}";
        else if (json_get(tc, "type") && (!type || strcmp(type, "function") != 0))
            bad = ".type: expected \"function\"";
        else if (json_get(tc, "id") && !id)
            bad = ".id: expected a string";
        else if (!cJSON_IsObject(fn))
            bad = ".function: expected an object {\"name\", \"arguments\"}";
        else if (!name)
            bad = ".function.name: expected a string";
        if (bad) {
            snprintf(err, errlen, "%s: %s[%d].tool_calls[%d]%s", W, key, i, k, bad);
            cJSON_Delete(t);
            return NULL;
        }
        const cJSON *a = json_get(fn, "arguments");
        cJSON *args = a ? value_or_json_string(a, cJSON_Object) : cJSON_CreateObject();
        if (!args) {
            snprintf(err, errlen,
                     "%s: %s[%d].tool_calls[%d].function.arguments: expected a JSON object or a string holding one", W,
                     key, i, k);
            cJSON_Delete(t);
            return NULL;
        }
        /* the shape chat_message_from_tau2 gives, so turns render as at rollout */
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "type", "function");
        if (id) cJSON_AddStringToObject(c, "id", id);
        cJSON *f = cJSON_AddObjectToObject(c, "function");
        cJSON_AddStringToObject(f, "name", name);
        cJSON_AddItemToObject(f, "arguments", args);
        cJSON_AddItemToArray(out, c);
    }
    return t;
}

/* Is assistant message i trained on? Its "weight" (OpenAI's fine-tuning
 * field): absent or 1 yes, 0 no. -1 when malformed. */
static int message_weight(const cJSON *m) {
    const cJSON *w = json_get(m, "weight");
    if (!w) return 1;
    if (cJSON_IsNumber(w) && (w->valuedouble == 0 || w->valuedouble == 1)) return (int)w->valuedouble;
    return -1;
}

/* Check a row and convert it: template-form messages, *tools, and the
 * index of the first trained assistant turn. NULL with err. */
static cJSON *convert_row(const cJSON *row, const char *where, cJSON **tools_out, int *first_trained, char *err,
                          size_t errlen) {
    const char *W = where ? where : "row";
    if (tools_out) *tools_out = NULL;
    if (!cJSON_IsObject(row)) {
        snprintf(err, errlen, "%s: expected a JSON object with \"messages\", \"tools\" and \"metadata\"", W);
        return NULL;
    }
    /* "prompt" is what the slime recipes name the same list (--input-key prompt) */
    const char *key = json_get(row, "messages") ? "messages" : json_get(row, "prompt") ? "prompt" : NULL;
    const cJSON *msgs = key ? json_get(row, key) : NULL;
    if (!key) {
        snprintf(err, errlen, "%s: messages: missing (expected a list of chat messages)", W);
        return NULL;
    }
    if (!cJSON_IsArray(msgs) || !msgs->child) {
        snprintf(err, errlen, "%s: %s: expected a non-empty list of chat messages", W, key);
        return NULL;
    }
    const cJSON *md = json_get(row, "metadata");
    if (md && !cJSON_IsNull(md) && !cJSON_IsObject(md)) {
        snprintf(err, errlen, "%s: metadata: expected an object", W);
        return NULL;
    }
    /* tools at the top level, or in metadata where slime's SFT rollout looks */
    const char *tkey = json_get(row, "tools") ? "tools" : json_get(md, "tools") ? "metadata.tools" : NULL;
    const cJSON *tv = !tkey ? NULL : tkey[0] == 't' ? json_get(row, "tools") : json_get(md, "tools");
    cJSON *tools = NULL;
    if (tv && !cJSON_IsNull(tv)) {
        tools = value_or_json_string(tv, cJSON_Array);
        if (!tools) {
            snprintf(err, errlen, "%s: %s: expected a list of tool schemas or a string holding one", W, tkey);
            return NULL;
        }
    }

    cJSON *out = cJSON_CreateArray();
    int i = 0, first = -1;
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        const char *role = json_get_str(m, "role");
        if (!cJSON_IsObject(m) || !role ||
            (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "tool"))) {
            snprintf(err, errlen, "%s: %s[%d].role: expected \"system\", \"user\", \"assistant\" or \"tool\"", W, key,
                     i);
            goto fail;
        }
        if (!strcmp(role, "system") && i > 0) {
            snprintf(err, errlen, "%s: %s[%d].role: \"system\" is only allowed as the first message", W, key, i);
            goto fail;
        }
        if (strcmp(role, "assistant") != 0) {
            if (json_get(m, "weight")) {
                snprintf(err, errlen, "%s: %s[%d].weight: only assistant messages have a weight", W, key, i);
                goto fail;
            }
            const char *content;
            if (content_text(m, &content) != 0) {
                snprintf(err, errlen, "%s: %s[%d].content: expected a string or null", W, key, i);
                goto fail;
            }
            cJSON *t = cJSON_CreateObject();
            cJSON_AddStringToObject(t, "role", role);
            if (!strcmp(role, "tool")) {
                const cJSON *id = json_get(m, "tool_call_id");
                if (id && !cJSON_IsNull(id) && !cJSON_IsString(id)) {
                    snprintf(err, errlen, "%s: %s[%d].tool_call_id: expected a string", W, key, i);
                    cJSON_Delete(t);
                    goto fail;
                }
                if (cJSON_IsString(id)) cJSON_AddStringToObject(t, "tool_call_id", id->valuestring);
            }
            cJSON_AddStringToObject(t, "content", content);
            cJSON_AddItemToArray(out, t);
            continue;
        }
        int w = message_weight(m);
        if (w < 0) {
            snprintf(err, errlen, "%s: %s[%d].weight: expected 0 or 1", W, key, i);
            goto fail;
        }
        /* Context turns after the first trained one would need the
         * assistant's own text rendered as context mid-episode, which the
         * rollout never does. */
        if (w == 0 && first >= 0) {
            snprintf(err, errlen, "%s: %s[%d].weight: 0 is only supported before the first trained assistant turn", W,
                     key, i);
            goto fail;
        }
        if (w == 1 && first < 0) first = i;
        cJSON *t = assistant_message(m, key, i, W, err, errlen);
        if (!t) goto fail;
        cJSON_AddItemToArray(out, t);
    }
    if (first < 0) {
        snprintf(err, errlen,
                 "%s: %s: no assistant turn to train on (every assistant message has weight 0, or there is none)", W,
                 key);
        goto fail;
    }
    if (first_trained) *first_trained = first;
    if (tools_out)
        *tools_out = tools;
    else
        cJSON_Delete(tools);
    return out;
fail:
    cJSON_Delete(out);
    cJSON_Delete(tools);
    return NULL;
}

cJSON *sft_row_conversation(const cJSON *row, const char *where, cJSON **tools, char *err, size_t errlen) {
    return convert_row(row, where, tools, NULL, err, errlen);
}

/* ---------------------------------------------------------------- tokens */

SftSet *sft_new(const ChatTemplate *ct, Tokenizer *tok, const cJSON *kwargs) {
    SftSet *s = xcalloc(1, sizeof *s);
    s->ct = ct;
    s->tok = tok;
    s->kwargs = kwargs ? cJSON_Duplicate(kwargs, 1) : NULL;
    return s;
}

/* Drop conversations [from, n) of a set. */
static void truncate_set(SftSet *s, int from) {
    while (s->n > from) {
        SftConversation *c = &s->conv[--s->n];
        s->n_tokens -= c->n;
        s->n_trained -= c->n_trained;
        free(c->ids);
        free(c->mask);
        free(c->domain);
        free(c->task_id);
    }
}

void sft_free(SftSet *s) {
    if (!s) return;
    truncate_set(s, 0);
    free(s->conv);
    cJSON_Delete(s->kwargs);
    free(s);
}

static char *metadata_text(const cJSON *md, const char *key) {
    const cJSON *v = json_get(md, key);
    if (cJSON_IsString(v)) return xstrdup(v->valuestring);
    if (cJSON_IsNumber(v)) {
        char buf[JSON_NUMBER_BUFSIZE];
        json_format_number(buf, v);
        return xstrdup(buf);
    }
    return xstrdup("");
}

/* Messages [from, to) of a template-form list, copied into a new array. */
static cJSON *slice(const cJSON *msgs, int from, int to) {
    cJSON *out = cJSON_CreateArray();
    int i = 0;
    for (const cJSON *m = msgs->child; m && i < to; m = m->next, i++)
        if (i >= from) cJSON_AddItemToArray(out, cJSON_Duplicate(m, 1));
    return out;
}

static bool is_assistant(const cJSON *m) { return !strcmp(json_get_str(m, "role"), "assistant"); }

/* Assemble the conversation's tokens as an episode is assembled: prompt
 * through the generation prompt, each trained turn as the template writes
 * it, the delta of the turns that follow. */
static int assemble(SftSet *s, const cJSON *msgs, const cJSON *tools, int first, Trajectory *tr, const char *W,
                    char *err, size_t errlen) {
    char e[1024];
    cJSON *prompt = slice(msgs, 0, first);
    int rc = traj_begin(tr, s->ct, s->tok, prompt, tools, s->kwargs, e, sizeof e);
    cJSON_Delete(prompt);
    if (rc != 0) goto fail;
    const cJSON *first_msg = tr->messages->child;
    const cJSON *system = first_msg && !strcmp(json_get_str(first_msg, "role"), "system") ? first_msg : NULL;
    int n = cJSON_GetArraySize(msgs);
    int i = first;
    while (i < n) {
        const cJSON *m = cJSON_GetArrayItem(msgs, i);
        char *body = chat_render_assistant(s->ct, system, m, tr->tools, tr->kwargs, NULL, e, sizeof e);
        if (!body) goto fail;
        int32_t *ids;
        size_t k;
        tok_encode(s->tok, body, strlen(body), &ids, &k);
        free(body);
        traj_add_agent_turn(tr, ids, NULL, k, cJSON_Duplicate(m, 1));
        free(ids);
        int j = i + 1;
        while (j < n && !is_assistant(cJSON_GetArrayItem(msgs, j))) j++;
        cJSON *env = slice(msgs, i + 1, j);
        rc = j < n ? traj_add_env_turns(tr, env, e, sizeof e) : traj_finish(tr, env, e, sizeof e);
        if (rc != 0) goto fail;
        i = j;
    }
    return 0;
fail:
    snprintf(err, errlen, "%s: cannot render the conversation with the chat template: %s", W, e);
    return -1;
}

int sft_add_row(SftSet *s, const cJSON *row, const char *where, char *err, size_t errlen) {
    const char *W = where ? where : "row";
    cJSON *tools = NULL;
    int first = 0;
    cJSON *msgs = convert_row(row, where, &tools, &first, err, errlen);
    if (!msgs) return -1;
    Trajectory tr;
    int rc = assemble(s, msgs, tools, first, &tr, W, err, errlen);
    cJSON_Delete(msgs);
    cJSON_Delete(tools);
    if (rc == 0 && s->max_tokens > 0 && tr.n > s->max_tokens) {
        snprintf(err, errlen, "%s: %zu tokens, longer than the model's context (max_position_embeddings %zu)", W,
                 tr.n, s->max_tokens);
        rc = -1;
    }
    if (rc != 0) {
        traj_free(&tr);
        return -1;
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->conv = xrealloc(s->conv, (size_t)s->cap * sizeof *s->conv);
    }
    SftConversation *c = &s->conv[s->n++];
    memset(c, 0, sizeof *c);
    /* the trajectory's arrays become the conversation's */
    c->ids = tr.ids;
    c->mask = tr.mask;
    c->n = tr.n;
    c->n_prompt = tr.n_prompt;
    c->turns = tr.agent_turns;
    tr.ids = NULL;
    tr.mask = NULL;
    traj_free(&tr);
    for (size_t i = 0; i < c->n; i++) c->n_trained += c->mask[i];
    const cJSON *md = json_get(row, "metadata");
    c->domain = metadata_text(md, "domain");
    c->task_id = metadata_text(md, "task_id");
    s->n_tokens += c->n;
    s->n_trained += c->n_trained;
    return 0;
}

/* json_parse's message for text parsed under the name "" is
 * ":LINE:COL: what"; a row is one line, so keep the column and the what. */
static void json_error(char *err, size_t errlen, const char *path, int lineno, const char *e) {
    int line = 0, col = 0, used = 0;
    if (sscanf(e, ":%d:%d: %n", &line, &col, &used) >= 2 && used > 0)
        snprintf(err, errlen, "%s:%d: not valid JSON (column %d: %s)", path, lineno, col, e + used);
    else
        snprintf(err, errlen, "%s:%d: not valid JSON (%s)", path, lineno, e);
}

int sft_read(SftSet *s, const char *path, char *err, size_t errlen) {
    size_t len;
    char *text = file_read_all(path, &len, err, errlen);
    if (!text) return -1;
    int before = s->n;
    size_t pos = 0;
    int lineno = 0;
    while (pos < len) {
        lineno++;
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + (nl ? 1 : 0);
        size_t k = 0;
        while (k < n && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k == n) continue; /* blank line */
        char e[512];
        cJSON *row = json_parse(line, n, "", e, sizeof e);
        if (!row) {
            json_error(err, errlen, path, lineno, e);
            goto fail;
        }
        char where[1024];
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        int rc = sft_add_row(s, row, where, err, errlen);
        cJSON_Delete(row);
        if (rc != 0) goto fail;
    }
    if (s->n == before) {
        snprintf(err, errlen, "%s: no traces (expected one JSON object per line)", path);
        goto fail;
    }
    free(text);
    return 0;
fail:
    free(text);
    truncate_set(s, before);
    return -1;
}

SftSet *sft_load(const char *path, const ChatTemplate *ct, Tokenizer *tok, char *err, size_t errlen) {
    SftSet *s = sft_new(ct, tok, NULL);
    if (sft_read(s, path, err, errlen) != 0) {
        sft_free(s);
        return NULL;
    }
    return s;
}
