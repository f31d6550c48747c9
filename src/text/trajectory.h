/* trajectory.h — token-in/token-out assembly of one agent's episode.
 *
 * The tokens trained on are the tokens sampled (DESIGN.md §3). A trajectory
 * is built as the episode runs and is never re-tokenized as a whole:
 *
 *   prompt        encode(render(system, first messages, generation prompt))  mask 0
 *   agent turn    the exact sampled ids, with their logprobs                 mask 1
 *   env turns     the template's delta for the new user/tool messages:       mask 0
 *                 the end-of-turn token if the model did not emit it, what
 *                 the template writes after it ("\n"), the new turns, and
 *                 the next generation prompt ("<|im_start|>assistant\n")
 *
 * Side by side it keeps the conversation in template form, so traj_drift
 * can render and encode it afresh and count the tokens where the two
 * disagree: zero when the model wrote its turns as the template would
 * have, and otherwise the size of the error that re-tokenizing (what the
 * recipes this replaces do) would have trained on.
 */
#ifndef TAU2_TEXT_TRAJECTORY_H
#define TAU2_TEXT_TRAJECTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "text/chat.h"
#include "text/tokenizer.h"

typedef struct {
    /* the token stream, n tokens */
    int32_t *ids;     /* [n] */
    uint8_t *mask;    /* [n] 1 = sampled by the policy (trained on), 0 = context */
    float *logprobs;  /* [n] rollout logprob of sampled tokens, 0 elsewhere */
    size_t n, cap;
    size_t n_prompt;  /* tokens of the initial prompt */
    int agent_turns;  /* sampled turns appended */
    int truncated_turns; /* agent turns that ended without the end-of-turn token */

    /* how to render */
    const ChatTemplate *ct;
    Tokenizer *tok;
    cJSON *tools;     /* OpenAI tool schemas (owned copy) or NULL */
    cJSON *kwargs;    /* extra template variables (owned copy) or NULL */
    cJSON *messages;  /* the conversation so far, template form (owned) */
    int32_t eos_id;   /* the end-of-turn token's id */
    char *after_eos;  /* what the template writes after the end-of-turn token */
    bool open_turn;   /* the last agent turn has not been closed yet */
    bool done;        /* traj_finish was called */
} Trajectory;

/* Start: messages (template form; typically system + the first turns) are
 * rendered with the generation prompt and encoded as the prompt. tools and
 * kwargs are copied. Returns 0, or -1 with err. */
int traj_begin(Trajectory *tr, const ChatTemplate *ct, Tokenizer *tok, const cJSON *messages, const cJSON *tools,
               const cJSON *kwargs, char *err, size_t errlen);
void traj_free(Trajectory *tr);

/* An agent turn: the sampled ids (n, logprobs may be NULL) and the message
 * parsed from them (template form, taken). The turn counts as closed when
 * its last id is the end-of-turn token. */
void traj_add_agent_turn(Trajectory *tr, const int32_t *ids, const float *logprobs, size_t n, cJSON *message);

/* New non-agent turns (template form array, taken; may be empty), then the
 * generation prompt for the next agent turn. Returns 0, or -1 with err. */
int traj_add_env_turns(Trajectory *tr, cJSON *messages, char *err, size_t errlen);

/* The episode ended: close an open agent turn and append final non-agent
 * turns (taken; may be NULL) without a generation prompt. */
int traj_finish(Trajectory *tr, cJSON *final_messages, char *err, size_t errlen);

/* Render the conversation afresh (with the generation prompt unless
 * finished), encode it, compare with the assembled ids. Returns the drift:
 * max(n_assembled, n_fresh) − (length of their common prefix); 0 when
 * identical. *first_diff (if given) gets the first differing position.
 * -1 with err if rendering fails. */
long traj_drift(const Trajectory *tr, size_t *first_diff, char *err, size_t errlen);

/* The trajectory as JSON: {"ids", "mask", "logprobs", "n_prompt", "agent_turns"}. */
cJSON *traj_to_json(const Trajectory *tr);

#endif
