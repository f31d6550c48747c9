/* fuzz_initial_state.c — arbitrary task initial states, then a tool call.
 *
 * Input: "<domain byte><tool byte><JSON [initial_state, arguments]>". The
 * initial state (initialization_data, initialization_actions,
 * message_history) is set as a task's is. When it is accepted, what it
 * merged fits the domain's models, so every tool must run on the result:
 * one tool, picked by the second byte among the agent's and then the
 * user's, is called with the arguments, and both DBs are dumped. A refused
 * state must say why. Nothing may crash or leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "fuzz_domains.h"
#include "tau2/env.h"

static Domain *g_domains[4];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_load_domains(g_domains, "fuzz_initial_state");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    const Domain *d = g_domains[data[0] % 4];
    const DomainSpec *s = d->spec;
    char err[1024];
    cJSON *input = json_parse((const char *)data + 2, size - 2, "fuzz", err, sizeof err);
    if (!cJSON_IsArray(input)) {
        cJSON_Delete(input);
        return 0;
    }
    Env *env = env_new(d);
    err[0] = '\0';
    if (env_set_initial_state(env, cJSON_GetArrayItem(input, 0), err, sizeof err) != 0) {
        if (!err[0]) abort();
    } else {
        int pick = data[1] % (s->n_agent_tools + s->n_user_tools);
        bool user = pick >= s->n_agent_tools;
        const ToolDef *t = user ? &s->user_tools[pick - s->n_agent_tools] : &s->agent_tools[pick];
        ToolResult r = env_tool_call(env, user ? "user" : "assistant", t->name, cJSON_GetArrayItem(input, 1));
        if (!r.content) abort();
        tool_result_free(&r);
        cJSON_Delete(db_to_json(env->db));
        if (env->user_db) cJSON_Delete(db_to_json(env->user_db));
    }
    env_free(env);
    cJSON_Delete(input);
    return 0;
}
