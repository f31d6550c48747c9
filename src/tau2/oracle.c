#include "tau2/oracle.h"

#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/sbuf.h"
#include "tau2/task.h"

static const cJSON *action_at(const Oracle *o, int i) { return cJSON_GetArrayItem(o->actions, i); }

static bool is_user_action(const cJSON *a) {
    const char *r = json_get_str(a, "requestor");
    return r && strcmp(r, "user") == 0;
}

static cJSON *copy_args(const cJSON *a) {
    const cJSON *args = json_get(a, "arguments");
    return cJSON_IsObject(args) ? cJSON_Duplicate(args, 1) : cJSON_CreateObject();
}

static cJSON *gold_agent_next(Actor *self, const Episode *ep, Termination *fail) {
    Oracle *o = self->state;
    if (o->cursor < o->n_actions) {
        const cJSON *a = action_at(o, o->cursor);
        if (!is_user_action(a)) {
            o->cursor++;
            return message_tool_call(json_get_str(a, "name"), copy_args(a));
        }
        /* The user's turn to act: ask for every consecutive user action. */
        SBuf b;
        sbuf_init(&b);
        sbuf_puts(&b, "Please do the following on your phone:");
        for (int i = o->cursor; i < o->n_actions && is_user_action(action_at(o, i)); i++) {
            char *args = json_dumps(json_get(action_at(o, i), "arguments"), 0);
            sbuf_printf(&b, " %s(%s);", json_get_str(action_at(o, i), "name"), args);
            free(args);
        }
        cJSON *m = message_text(b.data);
        sbuf_free(&b);
        return m;
    }
    /* Everything done: say what must be communicated, in one message. */
    o->agent_done = true;
    const cJSON *infos = json_get(json_get(ep->task, "evaluation_criteria"), "communicate_info");
    SBuf b;
    sbuf_init(&b);
    sbuf_puts(&b, "Your request has been handled.");
    for (const cJSON *i = cJSON_IsArray(infos) ? infos->child : NULL; i; i = i->next)
        if (cJSON_IsString(i)) sbuf_printf(&b, " %s.", i->valuestring);
    cJSON *m = message_text(b.data);
    sbuf_free(&b);
    return m;
}

static cJSON *gold_user_next(Actor *self, const Episode *ep, Termination *fail) {
    Oracle *o = self->state;
    /* cJSON keeps an array's last item at child->prev. */
    const cJSON *last = ep->messages->child ? ep->messages->child->prev : NULL;
    const char *last_role = json_get_str(last, "role");
    /* First turn: the reason for the call. */
    if (!o->user_spoke) {
        o->user_spoke = true;
        return message_text(task_reason_for_call(ep->task));
    }
    if (o->agent_done) return message_text("Thank you. ###STOP###");
    /* After our own tool results: report back to the agent. */
    if (last_role && strcmp(last_role, "tool") == 0) return message_text("I did that.");
    /* The agent wrote to us: perform the next run of gold user actions, if
     * any remain (the gold agent asks exactly then); otherwise the agent has
     * had its say and the call ends. The second rule lets this user talk to
     * any agent, a policy model included. */
    int i = o->user_cursor;
    while (i < o->n_actions && !is_user_action(action_at(o, i))) i++;
    if (i == o->n_actions) return message_text("Thank you. ###STOP###");
    cJSON *m = NULL;
    for (; i < o->n_actions && is_user_action(action_at(o, i)); i++) {
        const cJSON *a = action_at(o, i);
        if (!m) m = message_tool_call(json_get_str(a, "name"), copy_args(a));
        else message_add_tool_call(m, json_get_str(a, "name"), copy_args(a));
    }
    o->user_cursor = i;
    if (o->cursor < i) o->cursor = i; /* the gold agent waits on these actions at its cursor */
    return m;
}

void oracle_init(Oracle *o, const cJSON *task) {
    memset(o, 0, sizeof *o);
    const cJSON *actions = json_get(json_get(task, "evaluation_criteria"), "actions");
    o->actions = cJSON_IsArray(actions) ? actions : NULL;
    o->n_actions = cJSON_GetArraySize(o->actions);
    o->agent.next = gold_agent_next;
    o->agent.state = o;
    o->user.next = gold_user_next;
    o->user.state = o;
}

Episode *oracle_play(const Domain *d, const cJSON *task, const EpisodeOptions *opt, char *err, size_t errlen) {
    Episode *ep = episode_new(d, task, opt, err, errlen);
    if (!ep) return NULL;
    Oracle o;
    oracle_init(&o, task);
    episode_run(ep, &o.agent, &o.user);
    return ep;
}
