/* fuzz_jinja.c — the chat-template interpreter on arbitrary templates.
 *
 * Input: template source, optionally followed by a NUL byte and a JSON
 * context (which, when it does not parse, is replaced by a small fixed
 * chat context). Parsing and rendering must never crash, leak or run away;
 * every failure must come back as an error message with a position. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "text/jinja.h"

static const char FIXED_CONTEXT[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \"hi \\u00e9\"},"
    " {\"role\": \"assistant\", \"content\": \"<think>r</think>ok\", \"tool_calls\": [{\"function\": {\"name\": \"f\","
    " \"arguments\": {\"a\": 1, \"b\": [1.5, null, true]}}}]}, {\"role\": \"tool\", \"content\": \"{}\"}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"x\": 2.0}}}],"
    " \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"n\": 3, \"s\": \"abc\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static cJSON *fixed;
    char err[512];
    if (!fixed) fixed = json_parse(FIXED_CONTEXT, strlen(FIXED_CONTEXT), "fixed", err, sizeof err);
    if (!fixed) abort();
    const char *src = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t tlen = nul ? (size_t)(nul - data) : size;
    cJSON *ctx = NULL;
    if (nul) {
        ctx = json_parse((const char *)nul + 1, size - tlen - 1, "ctx", err, sizeof err);
        if (ctx && !cJSON_IsObject(ctx)) cJSON_Delete(ctx), ctx = NULL;
    }
    JinjaTemplate *t = jinja_parse(src, tlen, "fuzz", err, sizeof err);
    if (!t) {
        if (strncmp(err, "fuzz:", 5) != 0) abort(); /* errors always carry a position */
    } else {
        size_t len;
        char *out = jinja_render(t, ctx ? ctx : fixed, &len, err, sizeof err);
        if (!out && strncmp(err, "fuzz:", 5) != 0) abort();
        if (out && strlen(out) != len && !memchr(out, 0, len)) abort();
        free(out);
        jinja_free(t);
    }
    cJSON_Delete(ctx);
    return 0;
}
