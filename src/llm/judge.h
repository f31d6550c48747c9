/* judge.h — τ²-bench's NL-assertion judge as a request and a parsed reply.
 *
 * A task whose reward basis includes NL_ASSERTION is scored by an LLM that
 * reads the whole conversation and grades each natural-language assertion
 * of the task's evaluation_criteria. This module builds the judge's chat
 * messages exactly as τ²-bench's NLAssertionsEvaluator does (its system
 * prompt; a user message with the trajectory as "role: content" lines and
 * the assertions as a Python list) and reads its JSON verdict
 * {"results": [{"expectedOutcome", "reasoning", "metExpectation"}]}. The
 * HTTP call is the caller's.
 */
#ifndef TAU2_LLM_JUDGE_H
#define TAU2_LLM_JUDGE_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

typedef struct {
    bool met;
    char *justification; /* the judge's "reasoning" (owned) */
    char *nl_assertion;  /* the judge's "expectedOutcome" (owned) */
} JudgeVerdict;

/* The task's evaluation_criteria.nl_assertions, or NULL when it has none
 * (absent, null or empty): τ²-bench then scores NL_ASSERTION 1.0 without
 * asking the judge. */
const cJSON *judge_task_assertions(const cJSON *task);

/* The conversation as the judge reads it: one "role: content" line per
 * message of the trajectory (tool calls and tool results included, a null
 * content printed as Python's None), joined by newlines. A new string. */
char *judge_trajectory_text(const cJSON *episode_messages);

/* Python's repr() of a list of strings (['a', "it's"]). A new string. */
char *judge_py_repr_list(const cJSON *strings);

/* The judge's OpenAI chat messages: [{"role": "system", ...},
 * {"role": "user", ...}] for the full trajectory (history included) and the
 * task's nl_assertions (an array of strings). A new array. */
cJSON *judge_request_messages(const cJSON *episode_messages, const cJSON *nl_assertions);

/* Read the judge's reply text (plain JSON, or JSON in a ``` / ```json
 * fence, after a leading <think>...</think> block if any). Fills out[0..k) with the verdicts in the judge's order and
 * returns k, the number of results (τ²-bench takes them as given: fewer
 * results than assertions are not an error there, compare k with
 * n_assertions to be stricter). -1 with err when the text is not the JSON
 * object, a result lacks a field or has one of the wrong type, or there are
 * more than n_assertions results; nothing is left to free then. */
int judge_parse_response(const char *content, int n_assertions, JudgeVerdict *out, char *err, size_t errlen);
void judge_verdicts_free(JudgeVerdict *v, int n);

/* The verdicts as evaluate.h's NlJudgeFn returns them:
 * [{"nl_assertion", "met", "justification"}, ...]. A new array. */
cJSON *judge_checks_json(const JudgeVerdict *v, int n);

#endif
