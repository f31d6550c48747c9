/* toolcall.c — Hermes-style <tool_call> blocks → τ²-bench tool calls (see toolcall.h). */
#include "text/toolcall.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"

/* The longest parse_error message kept; JSON errors are short anyway. */
#define TOOLCALL_ERR_MAX 512

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* Find needle in [s, s+n); NULL if absent. */
static const char *find_bytes(const char *s, size_t n, const char *needle) {
    return memmem(s, n, needle, strlen(needle));
}

static void trim(const char **s, size_t *n) {
    while (*n && is_space(**s)) (*s)++, (*n)--;
    while (*n && is_space((*s)[*n - 1])) (*n)--;
}

static const char *schema_name(const cJSON *t) {
    if (cJSON_IsString(t)) return t->valuestring;
    const cJSON *fn = json_get(t, "function");
    return json_get_str(fn ? fn : t, "name");
}

static bool tool_known(const cJSON *known, const char *name) {
    if (!known) return true;
    for (const cJSON *t = known->child; t; t = t->next) {
        const char *n = schema_name(t);
        if (n && !strcmp(n, name)) return true;
    }
    return false;
}

/* An unusable block. Its name stays empty whatever the model wrote, so the
 * evaluator can never count it as one of the task's gold actions. */
static void add_error_call(cJSON *calls, const char *fmt, const char *detail) {
    char msg[TOOLCALL_ERR_MAX];
    snprintf(msg, sizeof msg, fmt, detail);
    cJSON *tc = cJSON_CreateObject();
    cJSON_AddStringToObject(tc, "name", "");
    cJSON_AddItemToObject(tc, "arguments", cJSON_CreateObject());
    cJSON_AddStringToObject(tc, "parse_error", msg);
    cJSON_AddItemToArray(calls, tc);
}

/* One block's inner text → a call (or an error call) appended to calls. */
static void parse_block(const char *s, size_t n, const cJSON *known, cJSON *calls) {
    trim(&s, &n);
    char err[256];
    cJSON *obj = json_parse(s, n, "tool_call", err, sizeof err);
    if (!obj) {
        add_error_call(calls, "Error: the tool call is not valid JSON (%s). Write "
                       "{\"name\": <tool name>, \"arguments\": <JSON object>} inside <tool_call></tool_call>.", err);
        return;
    }
    const char *name = json_get_str(obj, "name");
    if (!cJSON_IsObject(obj) || !name) {
        add_error_call(calls, "Error: the tool call has no \"name\" string%s.", "");
        cJSON_Delete(obj);
        return;
    }
    if (!tool_known(known, name)) {
        add_error_call(calls, "Error: there is no tool named '%s'.", name);
        cJSON_Delete(obj);
        return;
    }
    cJSON *args = json_get(obj, "arguments");
    if (!args) args = json_get(obj, "parameters"); /* a common variant */
    cJSON *parsed = NULL;
    if (cJSON_IsString(args)) { /* arguments given as a JSON string, as OpenAI's API does */
        parsed = json_parse(args->valuestring, strlen(args->valuestring), "arguments", err, sizeof err);
        args = parsed;
    } else if (!args) {
        args = parsed = cJSON_CreateObject();
    }
    if (!cJSON_IsObject(args)) {
        add_error_call(calls, "Error: the arguments of '%s' must be a JSON object.", name);
    } else {
        cJSON *tc = cJSON_CreateObject();
        cJSON_AddStringToObject(tc, "name", name);
        cJSON_AddItemToObject(tc, "arguments", cJSON_Duplicate(args, 1));
        cJSON_AddItemToArray(calls, tc);
    }
    cJSON_Delete(parsed);
    cJSON_Delete(obj);
}

cJSON *toolcall_parse(const char *text, size_t len, const cJSON *known_tools) {
    cJSON *msg = cJSON_CreateObject();
    const char *first = find_bytes(text, len, TOOLCALL_OPEN);
    if (!first) { /* plain text: kept byte for byte, so it re-renders exactly */
        char *content = xstrndup(text, len);
        cJSON_AddStringToObject(msg, "content", content);
        free(content);
        cJSON_AddNullToObject(msg, "tool_calls");
        return msg;
    }
    /* The template writes "<content>\n<tool_call>...": drop that separator
     * (trailing whitespace of the text before the first block). */
    SBuf content;
    sbuf_init(&content);
    size_t head = (size_t)(first - text);
    while (head && is_space(text[head - 1])) head--;
    sbuf_put(&content, text, head);

    cJSON *calls = cJSON_CreateArray();
    const char *p = first, *end = text + len;
    while (p < end) {
        const char *open = find_bytes(p, (size_t)(end - p), TOOLCALL_OPEN);
        const char *seg_end = open ? open : end;
        if (p != first) { /* text between or after blocks: keep it, trimmed */
            const char *s = p;
            size_t n = (size_t)(seg_end - p);
            trim(&s, &n);
            if (n) {
                if (content.len) sbuf_putc(&content, '\n');
                sbuf_put(&content, s, n);
            }
        }
        if (!open) break;
        const char *body = open + strlen(TOOLCALL_OPEN);
        const char *close = find_bytes(body, (size_t)(end - body), TOOLCALL_CLOSE);
        const char *next_open = find_bytes(body, (size_t)(end - body), TOOLCALL_OPEN);
        if (!close || (next_open && next_open < close)) {
            add_error_call(calls, "Error: a <tool_call> block is not closed with </tool_call>%s.", "");
            p = next_open ? next_open : end;
            continue;
        }
        parse_block(body, (size_t)(close - body), known_tools, calls);
        p = close + strlen(TOOLCALL_CLOSE);
    }
    if (content.len) cJSON_AddStringToObject(msg, "content", content.data);
    else cJSON_AddNullToObject(msg, "content");
    sbuf_free(&content);
    cJSON_AddItemToObject(msg, "tool_calls", calls);
    return msg;
}

int toolcall_count_errors(const cJSON *msg) {
    const cJSON *calls = json_get(msg, "tool_calls");
    int n = 0;
    for (const cJSON *tc = cJSON_IsArray(calls) ? calls->child : NULL; tc; tc = tc->next)
        if (json_get(tc, "parse_error")) n++;
    return n;
}
