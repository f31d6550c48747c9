/* fuzz_openai_request.c — libFuzzer target for the server's request parser.
 *
 * Any request body (arbitrary bytes) parses without crashing or leaking:
 * either into a request whose messages are all in template form (a role,
 * a string content, tool calls with a name) and whose sampling values are
 * in range, or into a 4xx error whose JSON is well formed. The same bytes
 * are also read as model output and turned into an OpenAI assistant
 * message and a whole chat.completion. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "llm/openai_req.h"

static void check_request(const OpenAIChatRequest *q) {
    if (!cJSON_IsArray(q->messages) || cJSON_GetArraySize(q->messages) == 0) abort();
    for (const cJSON *m = q->messages->child; m; m = m->next) {
        const char *role = json_get_str(m, "role");
        if (!role || !json_get_str(m, "content")) abort();
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "tool")) abort();
        for (const cJSON *tc = cJSON_IsArray(json_get(m, "tool_calls")) ? json_get(m, "tool_calls")->child : NULL; tc;
             tc = tc->next) {
            const char *name = json_get_str(json_get(tc, "function"), "name");
            if (!name || !name[0]) abort();
        }
    }
    if (q->tools && !cJSON_IsArray(q->tools)) abort();
    if (!(q->temperature >= 0 && q->temperature <= 2) || !(q->top_p > 0 && q->top_p <= 1) || q->top_k < 0) abort();
    if (q->max_tokens < 0 || q->n_stop < 0 || q->n_stop > OPENAI_MAX_STOP) abort();
    for (int i = 0; i < q->n_stop; i++) {
        if (!q->stop[i] || !q->stop[i][0]) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    OpenAIChatRequest q;
    OpenAIError e;
    if (openai_chat_request_parse((const char *)data, size, &q, &e) == 0) {
        check_request(&q);
        openai_chat_request_free(&q);
    } else {
        if (e.status != 400 || !e.message[0]) abort();
        char *s = openai_error_json(&e);
        cJSON *j = cJSON_Parse(s);
        if (!cJSON_IsObject(json_get(j, "error"))) abort();
        cJSON_Delete(j);
        free(s);
    }

    /* the bytes as model output */
    int n_calls = -1;
    cJSON *m = openai_assistant_message((const char *)data, size, true, 7, &n_calls);
    if (n_calls < 0 || (n_calls > 0) != cJSON_IsArray(json_get(m, "tool_calls"))) abort();
    cJSON_Delete(m);
    OpenAIChatResult r = {.id = "chatcmpl-f", .model = "m", .text = (const char *)data, .text_len = size,
                          .parse_tool_calls = true, .finish = "stop"};
    char *s = openai_chat_response_json(&r);
    if (!s) abort();
    free(s);
    return 0;
}
