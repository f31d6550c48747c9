/* episode.c — the orchestrator loop (see episode.h). Step counting and the
 * order of termination checks follow τ²-bench's Orchestrator.step and
 * _check_termination exactly: a message and an environment response are one
 * step each, limits are checked after every step that does not hand over to
 * the environment, and a limit hit overrides a stop in the same step. */
#include "tau2/episode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"

const char *termination_name(Termination t) {
    switch (t) {
    case TERM_USER_STOP: return "user_stop";
    case TERM_AGENT_STOP: return "agent_stop";
    case TERM_MAX_STEPS: return "max_steps";
    case TERM_TOO_MANY_ERRORS: return "too_many_errors";
    case TERM_AGENT_ERROR: return "agent_error";
    case TERM_USER_ERROR: return "user_error";
    case TERM_INFRASTRUCTURE_ERROR: return "infrastructure_error";
    case TERM_CONTEXT_WINDOW_EXCEEDED: return "context_window_exceeded";
    case TERM_TRUNCATED: return "truncated";
    default: return "none";
    }
}

cJSON *message_text(const char *content) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "content", content);
    return m;
}

void message_add_tool_call(cJSON *msg, const char *name, cJSON *arguments) {
    cJSON *calls = json_get(msg, "tool_calls");
    if (!cJSON_IsArray(calls)) {
        calls = cJSON_CreateArray();
        json_set(msg, "tool_calls", calls);
    }
    cJSON *tc = cJSON_CreateObject();
    cJSON_AddStringToObject(tc, "name", name);
    cJSON_AddItemToObject(tc, "arguments", arguments ? arguments : cJSON_CreateObject());
    cJSON_AddItemToArray(calls, tc);
}

cJSON *message_tool_call(const char *name, cJSON *arguments) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddNullToObject(m, "content");
    message_add_tool_call(m, name, arguments);
    return m;
}

static bool has_tool_calls(const cJSON *m) {
    const cJSON *c = json_get(m, "tool_calls");
    return cJSON_IsArray(c) && c->child;
}

/* Non-blank content (τ²-bench's has_text_content strips whitespace). */
static bool has_text(const cJSON *m) {
    const char *c = json_get_str(m, "content");
    for (; c && *c; c++)
        if (*c != ' ' && *c != '\t' && *c != '\n' && *c != '\r' && *c != '\f' && *c != '\v') return true;
    return false;
}

static bool user_is_stop(const cJSON *m) {
    if (has_tool_calls(m)) return false;
    const char *c = json_get_str(m, "content");
    return c && (strstr(c, USER_STOP_TOKEN) || strstr(c, USER_TRANSFER_TOKEN) || strstr(c, USER_OUT_OF_SCOPE_TOKEN));
}

static bool agent_is_stop(const cJSON *m) {
    const char *c = json_get_str(m, "content");
    return c && strstr(c, AGENT_STOP_TOKEN);
}

static void end(Episode *ep, Termination t) {
    ep->term = t;
    ep->turn = TURN_DONE;
}

/* _check_termination: never while a tool call awaits its response. */
static void check_limits(Episode *ep) {
    if (ep->step_count >= ep->opt.max_steps) end(ep, TERM_MAX_STEPS);
    if (ep->num_errors >= ep->opt.max_errors) end(ep, TERM_TOO_MANY_ERRORS);
}

/* Give every tool call an id and a requestor, as τ²-bench's ToolCall has. */
static void stamp_tool_calls(Episode *ep, cJSON *msg, const char *requestor) {
    cJSON *calls = json_get(msg, "tool_calls");
    for (cJSON *tc = cJSON_IsArray(calls) ? calls->child : NULL; tc; tc = tc->next) {
        if (!json_get_str(tc, "id")) {
            char id[32];
            snprintf(id, sizeof id, "call_%d", ep->next_call_id++);
            json_set(tc, "id", cJSON_CreateString(id));
        }
        json_set(tc, "requestor", cJSON_CreateString(requestor));
        if (!json_get(tc, "arguments")) json_set(tc, "arguments", cJSON_CreateObject());
    }
}

/* The environment step: every tool call in order, results appended. */
static void run_tool_calls(Episode *ep, const cJSON *msg, const char *requestor) {
    const cJSON *calls = json_get(msg, "tool_calls");
    for (const cJSON *tc = calls->child; tc; tc = tc->next) {
        const char *name = json_get_str(tc, "name");
        const char *parse_error = json_get_str(tc, "parse_error");
        ToolResult r;
        if (parse_error) { /* a call the model wrote but the parser could not use */
            r.content = xstrdup(parse_error);
            r.error = true;
        } else if (!name) {
            r.content = xstrdup("Error: tool call without a name");
            r.error = true;
        } else {
            r = env_tool_call(ep->env, requestor, name, json_get(tc, "arguments"));
        }
        if (r.error) ep->num_errors++;
        cJSON *tm = cJSON_CreateObject();
        cJSON_AddStringToObject(tm, "role", "tool");
        cJSON_AddStringToObject(tm, "id", json_get_str(tc, "id"));
        cJSON_AddStringToObject(tm, "content", r.content);
        cJSON_AddStringToObject(tm, "requestor", requestor);
        cJSON_AddBoolToObject(tm, "error", r.error);
        cJSON_AddItemToArray(ep->messages, tm);
        tool_result_free(&r);
    }
    ep->step_count++;
    env_sync(ep->env);
}

void episode_submit(Episode *ep, cJSON *msg) {
    if (ep->turn == TURN_DONE) {
        cJSON_Delete(msg);
        return;
    }
    bool from_user = ep->turn == TURN_USER;
    const char *role = from_user ? "user" : "assistant";
    json_set(msg, "role", cJSON_CreateString(role));
    if (!json_get(msg, "content")) json_set(msg, "content", cJSON_CreateNull());
    if (!has_tool_calls(msg)) json_set(msg, "tool_calls", cJSON_CreateNull());
    stamp_tool_calls(ep, msg, role);
    cJSON_AddItemToArray(ep->messages, msg);
    bool tools = has_tool_calls(msg);

    if (from_user ? user_is_stop(msg) : agent_is_stop(msg)) end(ep, from_user ? TERM_USER_STOP : TERM_AGENT_STOP);
    else ep->turn = tools ? (from_user ? TURN_USER : TURN_AGENT) : (from_user ? TURN_AGENT : TURN_USER);
    /* A message with neither text nor tool calls is invalid in τ²-bench
     * (Message.validate); here it ends the episode as the sender's error.
     * Text together with tool calls is allowed, as by τ²-bench's default. */
    if (!tools && !has_text(msg)) end(ep, from_user ? TERM_USER_ERROR : TERM_AGENT_ERROR);
    ep->step_count++;
    env_sync(ep->env);
    if (!tools) {
        check_limits(ep);
        return;
    }
    if (ep->turn == TURN_DONE) return; /* a stop never reaches the environment */
    run_tool_calls(ep, msg, role);
    check_limits(ep);
}

void episode_abort(Episode *ep, Termination reason) { end(ep, reason); }

/* Continue from a task's message history (Orchestrator.initialize). */
static void resume_history(Episode *ep, const cJSON *history) {
    for (const cJSON *m = history->child; m; m = m->next) {
        cJSON_AddItemToArray(ep->messages, cJSON_Duplicate(m, 1));
        const char *role = json_get_str(m, "role");
        if (role && !strcmp(role, "tool") && json_get(m, "error") && cJSON_IsTrue(json_get(m, "error"))) ep->num_errors++;
    }
    ep->n_history = cJSON_GetArraySize(history);
    const cJSON *last = cJSON_GetArrayItem(history, ep->n_history - 1);
    const char *role = json_get_str(last, "role");
    if (role && !strcmp(role, "assistant")) {
        ep->turn = TURN_USER;
        if (agent_is_stop(last)) end(ep, TERM_AGENT_STOP);
    } else if (role && !strcmp(role, "user")) {
        ep->turn = TURN_AGENT;
        if (user_is_stop(last)) end(ep, TERM_USER_STOP);
    } else {
        const char *req = json_get_str(last, "requestor");
        ep->turn = (req && !strcmp(req, "user")) ? TURN_USER : TURN_AGENT;
    }
}

char *episode_agent_system_prompt(const Domain *d) {
    static const char instructions[] =
        "You are a customer service agent. Help the user as the policy below allows.\n"
        "Each turn, either write one message to the user or make tool calls, not both.\n"
        "Follow the policy exactly, and write tool arguments as valid JSON.";
    SBuf b;
    sbuf_init(&b);
    sbuf_printf(&b, "<instructions>\n%s\n</instructions>\n<policy>\n%s\n</policy>", instructions, d->policy);
    return sbuf_take(&b);
}

Episode *episode_new(const Domain *d, const cJSON *task, const EpisodeOptions *opt, char *err, size_t errlen) {
    Episode *ep = xcalloc(1, sizeof *ep);
    ep->domain = d;
    ep->task = task;
    ep->opt.max_steps = opt && opt->max_steps > 0 ? opt->max_steps : EPISODE_DEFAULT_MAX_STEPS;
    ep->opt.max_errors = opt && opt->max_errors > 0 ? opt->max_errors : EPISODE_DEFAULT_MAX_ERRORS;
    ep->env = env_new(d);
    ep->messages = cJSON_CreateArray();
    const cJSON *init = json_get(task, "initial_state");
    if (env_set_initial_state(ep->env, init, err, errlen) != 0) {
        episode_free(ep);
        return NULL;
    }
    const cJSON *history = json_get(init, "message_history");
    if (cJSON_IsArray(history) && history->child) {
        resume_history(ep, history);
    } else {
        cJSON *greet = cJSON_CreateObject();
        cJSON_AddStringToObject(greet, "role", "assistant");
        cJSON_AddStringToObject(greet, "content", GREETING);
        cJSON_AddNullToObject(greet, "tool_calls");
        cJSON_AddItemToArray(ep->messages, greet);
        ep->turn = TURN_USER;
    }
    env_sync(ep->env);
    return ep;
}

void episode_free(Episode *ep) {
    if (!ep) return;
    env_free(ep->env);
    cJSON_Delete(ep->messages);
    free(ep);
}

void episode_run(Episode *ep, Actor *agent, Actor *user) {
    while (ep->turn != TURN_DONE) {
        Actor *a = ep->turn == TURN_AGENT ? agent : user;
        Termination why = ep->turn == TURN_AGENT ? TERM_AGENT_ERROR : TERM_USER_ERROR;
        cJSON *msg = a->next(a, ep, &why);
        if (!msg) {
            episode_abort(ep, why);
            break;
        }
        episode_submit(ep, msg);
    }
}
