/* cmd_text.c — the text-layer subcommands: tokenize and render. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"
#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "text/chat.h"
#include "text/tokenizer.h"

/* --tokenizer names a model directory or its tokenizer.json; the
 * tokenizer_config.json (chat template) is looked for beside it. */
static void tokenizer_paths(const char *arg, char *tok_json, char *config_dir, size_t n) {
    if (cli_is_dir(arg)) {
        snprintf(tok_json, n, "%s/tokenizer.json", arg);
        snprintf(config_dir, n, "%s", arg);
        return;
    }
    snprintf(tok_json, n, "%s", arg);
    const char *slash = strrchr(arg, '/');
    if (slash) snprintf(config_dir, n, "%.*s", (int)(slash - arg), arg);
    else snprintf(config_dir, n, ".");
}

static Tokenizer *load_tokenizer_or_die(const char *path) {
    char err[1024];
    Tokenizer *tok = tok_load(path, err, sizeof err);
    if (!tok) die_input("%s", err);
    return tok;
}

static void print_ids(const int32_t *ids, size_t n) {
    SBuf out;
    sbuf_init(&out);
    sbuf_putc(&out, '[');
    for (size_t i = 0; i < n; i++) sbuf_printf(&out, i ? ", %d" : "%d", ids[i]);
    sbuf_puts(&out, "]\n");
    fwrite(out.data, 1, out.len, stdout);
    sbuf_free(&out);
}

/* ---------------------------------------------------------------- tokenize */

int cmd_tokenize(int argc, char **argv) {
    static const CliOption known[] = {{"--tokenizer", CLI_VALUE}, {"--decode", CLI_FLAG},
                                      {"--skip-special", CLI_FLAG}, {NULL, 0}};
    cli_check_args("tokenize", argc, argv, known, 0, NULL, NULL);
    const char *path = cli_opt(argc, argv, "--tokenizer");
    if (!path) die_input("tokenize: --tokenizer is required (a model directory or its tokenizer.json)");
    if (cli_flag(argc, argv, "--skip-special") && !cli_flag(argc, argv, "--decode"))
        die_input("tokenize: --skip-special applies to --decode only (ids -> text)");
    char tok_json[4096], config_dir[4096];
    tokenizer_paths(path, tok_json, config_dir, sizeof tok_json);
    Tokenizer *tok = load_tokenizer_or_die(tok_json);
    size_t len;
    char *in = cli_read_stdin(&len);
    if (cli_flag(argc, argv, "--decode")) {
        char err[512];
        cJSON *arr = json_parse(in, len, "<stdin>", err, sizeof err);
        if (!arr) die_input("tokenize --decode: %s (expected a JSON list of token ids)", err);
        if (!cJSON_IsArray(arr)) die_input("tokenize --decode: <stdin>: expected a JSON list of token ids");
        size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;
        int32_t *ids = xmalloc((n ? n : 1) * sizeof *ids);
        for (const cJSON *v = arr->child; v; v = v->next, i++) {
            if (!json_is_int(v) || v->valuedouble < 0 || v->valuedouble >= tok_vocab_size(tok))
                die_input("tokenize --decode: <stdin>: item %zu: expected a token id in [0, %d)", i,
                          tok_vocab_size(tok));
            ids[i] = (int32_t)v->valuedouble;
        }
        int flags = cli_flag(argc, argv, "--skip-special") ? TOK_DECODE_SKIP_SPECIAL : 0;
        size_t out_len;
        char *text = tok_decode(tok, ids, n, flags, &out_len);
        fwrite(text, 1, out_len, stdout);
        free(text);
        free(ids);
        cJSON_Delete(arr);
    } else {
        int32_t *ids;
        size_t n;
        tok_encode(tok, in, len, &ids, &n);
        print_ids(ids, n);
        free(ids);
    }
    free(in);
    tok_free(tok);
    return EXIT_OK;
}

/* ---------------------------------------------------------------- render */

/* A message's tool calls as the chat templates read them: a list of
 * {"function": {"name", "arguments"}} (OpenAI) or {"name", "arguments"}
 * (τ²-bench), arguments an object or a JSON string. */
static void check_tool_calls(const cJSON *calls, const char *path, int i) {
    if (!calls || cJSON_IsNull(calls)) return;
    if (!cJSON_IsArray(calls)) die_input("%s: messages[%d].tool_calls: expected a list or null", path, i);
    int k = 0;
    for (const cJSON *tc = calls->child; tc; tc = tc->next, k++) {
        if (!cJSON_IsObject(tc)) die_input("%s: messages[%d].tool_calls[%d]: expected an object", path, i, k);
        const cJSON *fn = json_get(tc, "function");
        if (fn && !cJSON_IsObject(fn))
            die_input("%s: messages[%d].tool_calls[%d].function: expected an object", path, i, k);
        const cJSON *call = fn ? fn : tc;
        const char *where = fn ? ".function" : "";
        if (!json_get_str(call, "name"))
            die_input("%s: messages[%d].tool_calls[%d]%s.name: expected a string", path, i, k, where);
        const cJSON *a = json_get(call, "arguments");
        if (a && !cJSON_IsObject(a) && !cJSON_IsString(a))
            die_input("%s: messages[%d].tool_calls[%d]%s.arguments: expected an object or a JSON string", path, i,
                      k, where);
    }
}

/* A conversation file: a list of messages, or {"messages": [...], "tools": [...]}. */
static cJSON *load_conversation(const char *path, cJSON **tools_out) {
    char err[1024];
    cJSON *v = json_load_file(path, err, sizeof err);
    if (!v) die_input("%s", err);
    cJSON *messages = v;
    *tools_out = NULL;
    if (cJSON_IsObject(v)) {
        messages = cJSON_DetachItemFromObjectCaseSensitive(v, "messages");
        cJSON *tools = cJSON_DetachItemFromObjectCaseSensitive(v, "tools");
        cJSON_Delete(v);
        if (!messages) die_input("%s: field 'messages': expected a list of messages", path);
        *tools_out = tools;
    }
    if (!cJSON_IsArray(messages)) die_input("%s: expected a list of messages (or an object with 'messages')", path);
    /* (Qwen3's template reads messages[0]: an empty list would fail inside it) */
    if (!messages->child) die_input("%s: expected a non-empty list of messages, got an empty one", path);
    int i = 0;
    for (const cJSON *m = messages->child; m; m = m->next, i++) {
        if (!cJSON_IsObject(m) || !json_get_str(m, "role"))
            die_input("%s: messages[%d]: expected an object with a 'role' string", path, i);
        const cJSON *c = json_get(m, "content");
        if (c && !cJSON_IsString(c) && !cJSON_IsNull(c) && !cJSON_IsArray(c))
            die_input("%s: messages[%d].content: expected a string", path, i);
        const cJSON *r = json_get(m, "reasoning_content");
        if (r && !cJSON_IsString(r) && !cJSON_IsNull(r))
            die_input("%s: messages[%d].reasoning_content: expected a string or null", path, i);
        check_tool_calls(json_get(m, "tool_calls"), path, i);
    }
    const cJSON *tools = *tools_out;
    if (tools && !cJSON_IsNull(tools) && !cJSON_IsArray(tools))
        die_input("%s: field 'tools': expected a list of tool schemas", path);
    i = 0;
    for (const cJSON *t = cJSON_IsArray(tools) ? tools->child : NULL; t; t = t->next, i++)
        if (!cJSON_IsObject(t)) die_input("%s: tools[%d]: expected an object (a tool schema)", path, i);
    return messages;
}

int cmd_render(int argc, char **argv) {
    static const CliOption known[] = {{"--tokenizer", CLI_VALUE}, {"--conversation", CLI_VALUE},
                                      {"--tools", CLI_VALUE}, {"--generation-prompt", CLI_FLAG},
                                      {"--ids", CLI_FLAG}, {"--template-kwargs", CLI_VALUE}, {NULL, 0}};
    cli_check_args("render", argc, argv, known, 0, NULL, NULL);
    const char *path = cli_opt(argc, argv, "--tokenizer");
    const char *conv_path = cli_opt(argc, argv, "--conversation");
    if (!path) die_input("render: --tokenizer is required (a model directory or its tokenizer.json)");
    if (!conv_path) die_input("render: --conversation is required (a JSON list of chat messages)");
    char tok_json[4096], config_dir[4096], err[2048];
    tokenizer_paths(path, tok_json, config_dir, sizeof tok_json);
    ChatTemplate *ct = chat_load(config_dir, err, sizeof err);
    if (!ct) die_input("%s", err);
    cJSON *tools = NULL;
    cJSON *messages = load_conversation(conv_path, &tools);
    const char *tools_path = cli_opt(argc, argv, "--tools");
    if (tools_path) {
        cJSON_Delete(tools);
        tools = json_load_file(tools_path, err, sizeof err);
        if (!tools) die_input("%s", err);
        if (!cJSON_IsArray(tools)) die_input("%s: expected a list of tool schemas", tools_path);
    }
    cJSON *kwargs = NULL;
    const char *kw = cli_opt(argc, argv, "--template-kwargs");
    if (kw) {
        kwargs = json_parse(kw, strlen(kw), "--template-kwargs", err, sizeof err);
        if (!kwargs) die_input("%s", err);
        if (!cJSON_IsObject(kwargs))
            die_input("--template-kwargs: expected a JSON object such as {\"enable_thinking\": false}");
    }
    size_t len;
    char *text = chat_render(ct, messages, tools, cli_flag(argc, argv, "--generation-prompt"), kwargs, &len, err,
                             sizeof err);
    if (!text) die_input("render: %s", err);
    if (cli_flag(argc, argv, "--ids")) {
        Tokenizer *tok = load_tokenizer_or_die(tok_json);
        int32_t *ids;
        size_t n;
        tok_encode(tok, text, len, &ids, &n);
        print_ids(ids, n);
        free(ids);
        tok_free(tok);
    } else {
        fwrite(text, 1, len, stdout);
    }
    free(text);
    cJSON_Delete(kwargs);
    cJSON_Delete(tools);
    cJSON_Delete(messages);
    chat_free(ct);
    return EXIT_OK;
}
