/* sft_data.h — teacher traces for supervised fine-tuning: rows in, tokens out.
 *
 * A trace is one conversation as the agent saw it, one JSON object per line
 * (doc/files.md, "Teacher traces"): OpenAI chat messages, the tool schemas,
 * and metadata. It is the row format of the slime τ²-bench SFT recipes
 * (messages + tools, tool calls as {"id", "type": "function", "function":
 * {"name", "arguments"}}), with OpenAI's fine-tuning "weight": 0 on the
 * assistant turns the policy did not write (τ²-bench's greeting, a task's
 * message history).
 *
 * Loading turns each conversation into the tokens the policy generates and
 * sees at rollout: it is assembled with the trajectory API (text/
 * trajectory.h) exactly as an episode is — prompt, then each assistant turn
 * as the template writes it (mask 1, through its end-of-turn token; the
 * "<|im_start|>assistant\n" header is context), then the template's delta
 * for the user and tool turns that follow (mask 0). So the SFT tokens of a
 * turn are the tokens a sampled turn with the same message has, and a whole
 * conversation is never re-tokenized in one piece.
 */
#ifndef TAU2_RL_SFT_DATA_H
#define TAU2_RL_SFT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "tau2/env.h"
#include "text/chat.h"
#include "text/tokenizer.h"

/* One conversation's tokens; everything owned. */
typedef struct {
    int32_t *ids;     /* [n] */
    uint8_t *mask;    /* [n] 1 = an assistant turn's token (trained on) */
    size_t n;
    size_t n_prompt;  /* tokens before the first trained turn */
    size_t n_trained; /* tokens with mask 1 */
    int turns;        /* trained assistant turns */
    char *domain;     /* metadata.domain, "" when the row has none */
    char *task_id;    /* metadata.task_id (a number is printed), "" when none */
} SftConversation;

typedef struct {
    SftConversation *conv; /* [n] */
    int n, cap;
    size_t n_tokens, n_trained; /* totals over conv */
    size_t max_tokens;          /* a longer conversation is refused (the model's context); 0: no limit */
    /* how rows are rendered (borrowed, must outlive the set) */
    const ChatTemplate *ct;
    Tokenizer *tok;
    cJSON *kwargs; /* extra template variables (owned copy) or NULL */
} SftSet;

/* An empty set rendering with ct, tok and template variables kwargs (such
 * as {"enable_thinking": false}; NULL for none, copied), which must be
 * those the rollout uses. */
SftSet *sft_new(const ChatTemplate *ct, Tokenizer *tok, const cJSON *kwargs);

/* Read a JSONL file of traces (blank lines skipped). NULL with err naming
 * the file, the line and the field:
 *   "traces.jsonl:12: messages[3].tool_calls[0].function.arguments: expected
 *    a JSON object or a string holding one". */
SftSet *sft_load(const char *path, const ChatTemplate *ct, Tokenizer *tok, char *err, size_t errlen);

/* Read a JSONL file of traces into s (rendered with s's template
 * variables). Returns 0, or -1 with err as sft_load's; s is then as it was. */
int sft_read(SftSet *s, const char *path, char *err, size_t errlen);

/* Add one row (a parsed trace). where prefixes error messages ("file:line";
 * NULL for "row"). Returns 0, or -1 with err (the set is unchanged). */
int sft_add_row(SftSet *s, const cJSON *row, const char *where, char *err, size_t errlen);

void sft_free(SftSet *s);

/* A row's conversation in template form (text/chat.h: tool-call arguments
 * as objects, content null as ""), after checking it as sft_add_row does;
 * *tools (if given) gets the row's tool schemas (a new array, or NULL when
 * the row has none). NULL with err. */
cJSON *sft_row_conversation(const cJSON *row, const char *where, cJSON **tools, char *err, size_t errlen);

/* The trace row of a finished τ²-bench episode: system prompt
 * (episode_agent_system_prompt), then the messages the agent saw; the
 * greeting or the task's message history as weight 0; arguments as JSON
 * strings written the way the template's tojson writes them; "tools" = the
 * domain's agent schemas; "metadata": {"domain", "task_split", "task_id",
 * "reward"}. A new object. */
cJSON *sft_trace_from_episode(const Domain *d, const cJSON *task, const cJSON *tau2_messages, const char *split,
                              double reward);

#endif
