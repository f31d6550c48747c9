/* chat.c — chat templates: loading, rendering, probe-based deltas (see chat.h). */
#include "text/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "text/jinja.h"

struct ChatTemplate {
    JinjaTemplate *tmpl;
    char *origin;
    cJSON *special; /* {"bos_token": "...", "eos_token": "<|im_end|>", ...}: template variables */
    char *eos;
};

/* Content of the user message used to probe a template. Templates only
 * pass user text through, so its value does not matter. */
#define PROBE_TEXT "probe"

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* A special token in tokenizer_config.json: a string, or an AddedToken
 * object {"content": "..."}; NULL when absent or null. */
static const char *token_text(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) return json_get_str(v, "content");
    return NULL;
}

/* chat_template is a string, or a list of {"name", "template"} of which
 * transformers uses "default" when no tools are given; tau2_hpc always
 * passes tools, so it prefers "tool_use" and falls back to "default". */
static const char *pick_template(const cJSON *ct, const char *origin, char *err, size_t errlen) {
    if (cJSON_IsString(ct)) return ct->valuestring;
    if (cJSON_IsArray(ct)) {
        const char *fallback = NULL;
        for (const cJSON *e = ct->child; e; e = e->next) {
            const char *name = json_get_str(e, "name"), *t = json_get_str(e, "template");
            if (!name || !t) continue;
            if (!strcmp(name, "tool_use")) return t;
            if (!strcmp(name, "default")) fallback = t;
        }
        if (fallback) return fallback;
    }
    snprintf(err, errlen, "%s: field 'chat_template': expected a template string or a list of "
             "{\"name\", \"template\"} with a \"default\" entry", origin);
    return NULL;
}

ChatTemplate *chat_load(const char *path, char *err, size_t errlen) {
    char config_path[4096], jinja_path[4096];
    const char *dir_jinja = NULL;
    if (is_dir(path)) {
        snprintf(config_path, sizeof config_path, "%s/tokenizer_config.json", path);
        snprintf(jinja_path, sizeof jinja_path, "%s/chat_template.jinja", path);
        dir_jinja = jinja_path;
    } else {
        snprintf(config_path, sizeof config_path, "%s", path);
    }
    cJSON *config = NULL;
    char *source = NULL;
    const char *origin = config_path;
    if (ends_with(path, ".jinja")) {
        source = file_read_all(path, NULL, err, errlen);
        if (!source) return NULL;
    } else {
        config = json_load_file(config_path, err, errlen);
        if (!config) return NULL;
        const cJSON *t = json_get(config, "chat_template");
        struct stat st;
        if (!t && dir_jinja && stat(dir_jinja, &st) == 0) {
            source = file_read_all(dir_jinja, NULL, err, errlen);
            if (!source) {
                cJSON_Delete(config);
                return NULL;
            }
            origin = dir_jinja;
        } else if (!t) {
            snprintf(err, errlen, "%s: no 'chat_template' field (and no chat_template.jinja beside it)", config_path);
            cJSON_Delete(config);
            return NULL;
        } else {
            const char *s = pick_template(t, config_path, err, errlen);
            if (!s) {
                cJSON_Delete(config);
                return NULL;
            }
            source = xstrdup(s);
        }
    }
    if (ends_with(path, ".jinja")) origin = path;
    JinjaTemplate *tmpl = jinja_parse(source, strlen(source), origin, err, errlen);
    free(source);
    if (!tmpl) {
        cJSON_Delete(config);
        return NULL;
    }
    ChatTemplate *ct = xcalloc(1, sizeof *ct);
    ct->tmpl = tmpl;
    ct->origin = xstrdup(origin);
    ct->special = cJSON_CreateObject();
    /* transformers passes the special-tokens map to the template */
    static const char *const keys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                       "pad_token", "cls_token", "mask_token"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = config ? token_text(json_get(config, keys[i])) : NULL;
        if (v) cJSON_AddStringToObject(ct->special, keys[i], v);
    }
    const cJSON *extra = config ? json_get(config, "additional_special_tokens") : NULL;
    if (cJSON_IsArray(extra)) {
        cJSON *list = cJSON_CreateArray();
        for (const cJSON *e = extra->child; e; e = e->next)
            if (token_text(e)) cJSON_AddItemToArray(list, cJSON_CreateString(token_text(e)));
        cJSON_AddItemToObject(ct->special, "additional_special_tokens", list);
    }
    const char *eos = json_get_str(ct->special, "eos_token");
    ct->eos = xstrdup(eos ? eos : "<|im_end|>");
    cJSON_Delete(config);
    return ct;
}

void chat_free(ChatTemplate *ct) {
    if (!ct) return;
    jinja_free(ct->tmpl);
    cJSON_Delete(ct->special);
    free(ct->origin);
    free(ct->eos);
    free(ct);
}

const char *chat_eos_token(const ChatTemplate *ct) { return ct->eos; }
const char *chat_origin(const ChatTemplate *ct) { return ct->origin; }

char *chat_render(const ChatTemplate *ct, const cJSON *messages, const cJSON *tools, bool add_generation_prompt,
                  const cJSON *kwargs, size_t *len_out, char *err, size_t errlen) {
    /* The context borrows the caller's messages and tools: build it from
     * references so a 200-turn conversation is not copied per render. */
    cJSON *ctx = cJSON_CreateObject();
    for (const cJSON *s = ct->special->child; s; s = s->next)
        cJSON_AddItemReferenceToObject(ctx, s->string, (cJSON *)s);
    if (kwargs)
        for (const cJSON *k = kwargs->child; k; k = k->next) cJSON_AddItemReferenceToObject(ctx, k->string, (cJSON *)k);
    cJSON_AddItemReferenceToObject(ctx, "messages", (cJSON *)messages);
    /* as transformers: tools and documents are None when not given */
    if (tools) cJSON_AddItemReferenceToObject(ctx, "tools", (cJSON *)tools);
    else cJSON_AddNullToObject(ctx, "tools");
    cJSON_AddNullToObject(ctx, "documents");
    cJSON_AddBoolToObject(ctx, "add_generation_prompt", add_generation_prompt);
    char *out = jinja_render(ct->tmpl, ctx, len_out, err, errlen);
    cJSON_Delete(ctx);
    return out;
}

/* [system?] + a probe user message: a conversation whose rendering is a
 * prefix of any continuation. */
static cJSON *probe_base(const cJSON *system) {
    cJSON *msgs = cJSON_CreateArray();
    if (system) cJSON_AddItemToArray(msgs, cJSON_Duplicate(system, 1));
    cJSON *u = cJSON_CreateObject();
    cJSON_AddStringToObject(u, "role", "user");
    cJSON_AddStringToObject(u, "content", PROBE_TEXT);
    cJSON_AddItemToArray(msgs, u);
    return msgs;
}

/* render(base + extra, gen) with render(base, false) cut off its front. */
static char *render_suffix(const ChatTemplate *ct, const cJSON *base, const cJSON *extra, const cJSON *tools,
                           bool gen, const cJSON *kwargs, char *err, size_t errlen) {
    size_t n0, n1;
    char *r0 = chat_render(ct, base, tools, false, kwargs, &n0, err, errlen);
    if (!r0) return NULL;
    cJSON *all = cJSON_Duplicate(base, 1);
    for (const cJSON *m = extra ? extra->child : NULL; m; m = m->next) cJSON_AddItemToArray(all, cJSON_Duplicate(m, 1));
    char *r1 = chat_render(ct, all, tools, gen, kwargs, &n1, err, errlen);
    cJSON_Delete(all);
    char *out = NULL;
    if (r1 && (n1 < n0 || memcmp(r0, r1, n0) != 0)) {
        snprintf(err, errlen, "%s: the chat template re-renders earlier turns when a turn is added, so "
                 "token-in/token-out deltas are not defined for it", ct->origin);
    } else if (r1) {
        out = xstrndup(r1 + n0, n1 - n0);
    }
    free(r0);
    free(r1);
    return out;
}

char *chat_render_delta(const ChatTemplate *ct, const cJSON *system, const cJSON *new_messages, const cJSON *tools,
                        bool add_generation_prompt, const cJSON *kwargs, char *err, size_t errlen) {
    cJSON *base = probe_base(system);
    char *out = render_suffix(ct, base, new_messages, tools, add_generation_prompt, kwargs, err, errlen);
    cJSON_Delete(base);
    return out;
}

char *chat_render_generation_prompt(const ChatTemplate *ct, const cJSON *system, const cJSON *tools,
                                    const cJSON *kwargs, char *err, size_t errlen) {
    cJSON *none = cJSON_CreateArray();
    char *out = chat_render_delta(ct, system, none, tools, true, kwargs, err, errlen);
    cJSON_Delete(none);
    return out;
}

/* The assistant turn is rendered between a probe user message before it and
 * another after it: templates such as the hybrid Qwen3 one render the last
 * turn of a conversation differently (an empty think block), and the turn
 * is wanted as it appears inside a conversation. */
char *chat_render_assistant(const ChatTemplate *ct, const cJSON *system, const cJSON *message, const cJSON *tools,
                            const cJSON *kwargs, char **after_eos, char *err, size_t errlen) {
    if (after_eos) *after_eos = NULL;
    char *header = chat_render_generation_prompt(ct, system, tools, kwargs, err, errlen);
    if (!header) return NULL;
    cJSON *probe_user = cJSON_CreateObject();
    cJSON_AddStringToObject(probe_user, "role", "user");
    cJSON_AddStringToObject(probe_user, "content", PROBE_TEXT);
    cJSON *tail = cJSON_CreateArray();
    cJSON_AddItemToArray(tail, cJSON_Duplicate(probe_user, 1));
    cJSON *both = cJSON_CreateArray();
    cJSON_AddItemToArray(both, cJSON_Duplicate(message, 1));
    cJSON_AddItemToArray(both, probe_user);
    char *turn = chat_render_delta(ct, system, both, tools, false, kwargs, err, errlen); /* header body eos after user */
    char *user = turn ? chat_render_delta(ct, system, tail, tools, false, kwargs, err, errlen) : NULL;
    cJSON_Delete(tail);
    cJSON_Delete(both);
    char *out = NULL;
    if (turn && user) {
        size_t nt = strlen(turn), nh = strlen(header), nu = strlen(user);
        const char *eos = NULL;
        /* the last end-of-turn token before the probe user's turn */
        for (const char *p = turn; (p = strstr(p, ct->eos)) && (size_t)(p - turn) + strlen(ct->eos) <= nt - nu; p++) eos = p;
        if (nt < nh + nu || memcmp(turn, header, nh) != 0 || memcmp(turn + nt - nu, user, nu) != 0 || !eos ||
            (size_t)(eos - turn) < nh) {
            snprintf(err, errlen, "%s: cannot find the assistant turn between the generation prompt and '%s' "
                     "in the template's output", ct->origin, ct->eos);
        } else {
            size_t body_end = (size_t)(eos - turn) + strlen(ct->eos);
            out = xstrndup(turn + nh, body_end - nh);
            if (after_eos) *after_eos = xstrndup(turn + body_end, nt - nu - body_end);
        }
    }
    free(header);
    free(turn);
    free(user);
    return out;
}

/* ---- τ²-bench messages → template messages ---- */

static bool has_calls(const cJSON *m) {
    const cJSON *c = json_get(m, "tool_calls");
    return cJSON_IsArray(c) && c->child;
}

cJSON *chat_message_from_tau2(const cJSON *m) {
    const char *role = json_get_str(m, "role");
    const char *content = json_get_str(m, "content");
    if (!role) return NULL;
    cJSON *out = cJSON_CreateObject();
    if (!strcmp(role, "assistant")) {
        cJSON_AddStringToObject(out, "role", "assistant");
        cJSON_AddStringToObject(out, "content", content ? content : "");
        if (has_calls(m)) {
            cJSON *calls = cJSON_AddArrayToObject(out, "tool_calls");
            for (const cJSON *tc = json_get(m, "tool_calls")->child; tc; tc = tc->next) {
                cJSON *c = cJSON_CreateObject();
                cJSON_AddStringToObject(c, "type", "function");
                const char *id = json_get_str(tc, "id");
                if (id) cJSON_AddStringToObject(c, "id", id);
                cJSON *fn = cJSON_AddObjectToObject(c, "function");
                const char *name = json_get_str(tc, "name");
                cJSON_AddStringToObject(fn, "name", name ? name : "");
                const cJSON *args = json_get(tc, "arguments");
                cJSON_AddItemToObject(fn, "arguments", args ? cJSON_Duplicate(args, 1) : cJSON_CreateObject());
                cJSON_AddItemToArray(calls, c);
            }
        }
    } else if (!strcmp(role, "user")) {
        if (has_calls(m)) { /* the user operating their own device */
            cJSON_Delete(out);
            return NULL;
        }
        cJSON_AddStringToObject(out, "role", "user");
        cJSON_AddStringToObject(out, "content", content ? content : "");
    } else if (!strcmp(role, "tool")) {
        const char *req = json_get_str(m, "requestor");
        if (req && !strcmp(req, "user")) {
            cJSON_Delete(out);
            return NULL;
        }
        cJSON_AddStringToObject(out, "role", "tool");
        const char *id = json_get_str(m, "id");
        if (id) cJSON_AddStringToObject(out, "tool_call_id", id);
        cJSON_AddStringToObject(out, "content", content ? content : "");
    } else if (!strcmp(role, "system")) {
        cJSON_AddStringToObject(out, "role", "system");
        cJSON_AddStringToObject(out, "content", content ? content : "");
    } else {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

cJSON *chat_messages_from_tau2_range(const cJSON *tau2_messages, int from) {
    cJSON *out = cJSON_CreateArray();
    int i = 0;
    for (const cJSON *m = tau2_messages ? tau2_messages->child : NULL; m; m = m->next, i++) {
        if (i < from) continue;
        cJSON *t = chat_message_from_tau2(m);
        if (t) cJSON_AddItemToArray(out, t);
    }
    return out;
}

cJSON *chat_messages_from_tau2(const cJSON *tau2_messages, const char *system_prompt) {
    cJSON *rest = chat_messages_from_tau2_range(tau2_messages, 0);
    if (!system_prompt) return rest;
    cJSON *out = cJSON_CreateArray();
    cJSON *sys = cJSON_CreateObject();
    cJSON_AddStringToObject(sys, "role", "system");
    cJSON_AddStringToObject(sys, "content", system_prompt);
    cJSON_AddItemToArray(out, sys);
    while (rest->child) cJSON_AddItemToArray(out, cJSON_DetachItemViaPointer(rest, rest->child));
    cJSON_Delete(rest);
    return out;
}
