/* fuzz_tool_dispatch.c — arbitrary tool calls against every domain.
 *
 * Input: "<domain byte><requestor byte><tool index byte><JSON arguments>".
 * Every tool (and every non-tool function) of the chosen domain is called
 * with whatever arguments the fuzzer makes, twice in a row on the same
 * episode, then the episode is compared with a clone of itself. Nothing may
 * crash or leak; results are never NULL. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "fuzz_domains.h"
#include "tau2/env.h"

static Domain *g_domains[4];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_load_domains(g_domains, "fuzz_tool_dispatch");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    const Domain *d = g_domains[data[0] % 4];
    const DomainSpec *s = d->spec;
    int kind = data[1] % 4; /* 0 agent tool, 1 user tool, 2 agent function, 3 user function */
    const ToolDef *defs[4] = {s->agent_tools, s->user_tools, s->agent_funcs, s->user_funcs};
    int counts[4] = {s->n_agent_tools, s->n_user_tools, s->n_agent_funcs, s->n_user_funcs};
    if (!defs[kind] || counts[kind] == 0) return 0;
    const ToolDef *t = &defs[kind][data[2] % counts[kind]];
    char err[512];
    cJSON *args = json_parse((const char *)data + 3, size - 3, "fuzz", err, sizeof err);
    Env *env = env_new(d);
    for (int round = 0; round < 2; round++) {
        if (kind < 2) {
            ToolResult r = env_tool_call(env, kind == 0 ? "assistant" : "user", t->name, args);
            if (!r.content) abort();
            tool_result_free(&r);
        } else {
            cJSON *res = env_run_function(env, kind == 2 ? "assistant" : "user", t->name, args, err, sizeof err);
            cJSON_Delete(res);
        }
    }
    Env *copy = env_new(d);
    db_free(copy->db);
    copy->db = db_clone(env->db);
    if (!db_equal(env->db, copy->db)) abort();
    env_free(copy);
    env_free(env);
    cJSON_Delete(args);
    return 0;
}
