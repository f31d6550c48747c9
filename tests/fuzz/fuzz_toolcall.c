/* fuzz_toolcall.c — libFuzzer target for the tool-call parser.
 *
 * Any model output (arbitrary bytes) parses without crashing or leaking;
 * the result is a message object whose tool calls each have a name and an
 * object of arguments, and whose errors are counted consistently. The
 * parsed message also converts to the chat-template form. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "text/chat.h"
#include "text/toolcall.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *known = cJSON_CreateArray();
    cJSON_AddItemToArray(known, cJSON_CreateString("get_user_details"));
    cJSON_AddItemToArray(known, cJSON_CreateString("a"));
    for (int pass = 0; pass < 2; pass++) {
        cJSON *msg = toolcall_parse((const char *)data, size, pass ? known : NULL);
        const cJSON *calls = json_get(msg, "tool_calls");
        int errors = 0;
        for (const cJSON *tc = cJSON_IsArray(calls) ? calls->child : NULL; tc; tc = tc->next) {
            if (!json_get_str(tc, "name") || !cJSON_IsObject(json_get(tc, "arguments"))) abort();
            if (json_get(tc, "parse_error")) errors++;
        }
        if (errors != toolcall_count_errors(msg)) abort();
        cJSON_AddStringToObject(msg, "role", "assistant");
        cJSON *t = chat_message_from_tau2(msg);
        cJSON_Delete(t);
        cJSON_Delete(msg);
    }
    cJSON_Delete(known);
    return 0;
}
