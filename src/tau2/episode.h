/* episode.h — τ²-bench's half-duplex orchestrator as a state machine.
 *
 * An Episode owns its Env and its trajectory (messages in τ²-bench's JSON
 * form). It does not call its actors: it says whose turn it is
 * (episode_turn), the caller produces that actor's message however it likes
 * — a policy model batched with other episodes, an LLM user simulator
 * waiting on HTTP, a scripted oracle — and hands it in with episode_submit,
 * which runs the message's tool calls against the environment and applies
 * τ²-bench's step counting and termination rules. episode_run drives one
 * episode with two synchronous Actors. */
#ifndef TAU2_EPISODE_H
#define TAU2_EPISODE_H

#include <stdbool.h>

#include <cJSON.h>

#include "tau2/env.h"

typedef enum {
    TERM_NONE = 0,
    TERM_USER_STOP,
    TERM_AGENT_STOP,
    TERM_MAX_STEPS,
    TERM_TOO_MANY_ERRORS,
    TERM_AGENT_ERROR,
    TERM_USER_ERROR,
    TERM_INFRASTRUCTURE_ERROR,
    TERM_CONTEXT_WINDOW_EXCEEDED,
    TERM_TRUNCATED, /* tau2_hpc: the episode ran out of its token budget (rollout_max_response_len) */
} Termination;

/* τ²-bench's TerminationReason value ("user_stop", ...). */
const char *termination_name(Termination t);

typedef enum { TURN_AGENT, TURN_USER, TURN_DONE } Turn;

typedef struct {
    int max_steps;  /* default 200 */
    int max_errors; /* default 10: tool errors before too_many_errors */
} EpisodeOptions;

#define EPISODE_DEFAULT_MAX_STEPS 200
#define EPISODE_DEFAULT_MAX_ERRORS 10
#define GREETING "Hi! How can I help you today?"
#define AGENT_STOP_TOKEN "###STOP###"
#define USER_STOP_TOKEN "###STOP###"
#define USER_TRANSFER_TOKEN "###TRANSFER###"
#define USER_OUT_OF_SCOPE_TOKEN "###OUT-OF-SCOPE###"

typedef struct {
    const Domain *domain;
    const cJSON *task;
    EpisodeOptions opt;
    Env *env;
    cJSON *messages; /* the trajectory: array of τ²-bench messages */
    int n_history;   /* messages that came from the task's message_history */
    int step_count;
    int num_errors;
    int next_call_id;
    Termination term;
    Turn turn;
} Episode;

/* New episode for a task: environment initialized from the task's
 * initial_state, then τ²-bench's greeting (or the task's message history).
 * NULL with err set when the task's initial state cannot be applied. */
Episode *episode_new(const Domain *d, const cJSON *task, const EpisodeOptions *opt, char *err, size_t errlen);
void episode_free(Episode *ep);

/* The system prompt a model agent works under: an <instructions> section
 * (how to act: one message or tool calls per turn, follow the policy) and
 * the domain's policy in a <policy> section, the framing τ²-bench's LLM
 * agent uses. A new string (free()). */
char *episode_agent_system_prompt(const Domain *d);

/* Hand in the next message of whoever's turn it is: a JSON object with
 * "content" (string or null) and/or "tool_calls" ([{"name", "arguments",
 * optional "id", optional "parse_error"}]). A call with "parse_error" (a
 * malformed call from a model, see text/toolcall.h) is not run: its tool
 * result is that message, as an error. Takes ownership. Runs tool calls, counts steps, checks
 * termination; afterwards episode->turn says who is next. */
void episode_submit(Episode *ep, cJSON *msg);
/* The actor whose turn it is failed (model error, user simulator or judge
 * down after retries): end the episode with that reason. */
void episode_abort(Episode *ep, Termination reason);

/* Build a message: text only, or tool calls only. */
cJSON *message_text(const char *content);
cJSON *message_tool_call(const char *name, cJSON *arguments /* taken */);
/* Append another tool call to a tool-call message. */
void message_add_tool_call(cJSON *msg, const char *name, cJSON *arguments /* taken */);

/* A synchronous actor: produce the next message for the episode, or NULL
 * on failure (then *fail_reason says why). */
typedef struct Actor Actor;
struct Actor {
    cJSON *(*next)(Actor *self, const Episode *ep, Termination *fail_reason);
    void *state;
};
/* Drive the episode to the end. */
void episode_run(Episode *ep, Actor *agent, Actor *user);

#endif
