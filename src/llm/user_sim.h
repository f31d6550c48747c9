/* user_sim.h — τ²-bench's LLM user simulator as messages in and a message out.
 *
 * The user simulator is a chat model that plays the customer. This module
 * builds what that model is asked and reads what it answers; it does no I/O
 * besides reading the guidelines file, and knows nothing of HTTP:
 *
 *   system prompt   the data directory's user-simulator guidelines (the
 *                   tools variant when the user has tools) and the task's
 *                   user_scenario, rendered as τ²-bench's UserSimulator
 *                   renders them;
 *   request         the episode's trajectory as the user sees it, roles
 *                   flipped (the agent's text is "user", the simulator's own
 *                   turns are "assistant"), in OpenAI chat form;
 *   tools           the user's tool schemas (telecom, mock), or none;
 *   response        the model's OpenAI assistant message turned back into a
 *                   τ²-bench user message for episode_submit.
 *
 * Stop tokens (###STOP###, ###TRANSFER###, ###OUT-OF-SCOPE###) are left in
 * the content: episode_submit recognizes them and ends the episode.
 */
#ifndef TAU2_LLM_USER_SIM_H
#define TAU2_LLM_USER_SIM_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

#include "tau2/env.h"

/* Guideline files, relative to the τ²-bench data directory. */
#define USER_SIM_GUIDELINES "user_simulator/simulation_guidelines.md"
#define USER_SIM_GUIDELINES_TOOLS "user_simulator/simulation_guidelines_tools.md"

/* The user simulator's system prompt for a task: the guidelines file
 * (<data_dir>/user_simulator/simulation_guidelines[_tools].md), a blank
 * line, then the scenario in <scenario> tags. has_tools: the user has tools
 * (user_sim_tools returned non-NULL). A new string (free()), or NULL with
 * err naming the file that cannot be read or the task field that is
 * malformed. */
char *user_sim_system_prompt(const char *data_dir, const cJSON *task, bool has_tools, char *err, size_t errlen);

/* str(UserScenario) of τ²-bench: persona, then the instructions (a plain
 * string, or the structured domain / reason_for_call / known_info /
 * unknown_info / task_instructions form), tab-indented. A new string, or
 * NULL with err naming the field. */
char *user_sim_scenario_text(const cJSON *user_scenario, char *err, size_t errlen);

/* Python's textwrap.indent(text, prefix): prefix every line that is not
 * whitespace only (lines split as str.splitlines(keepends=True) does).
 * A new string. */
char *user_sim_indent(const char *text, const char *prefix);

/* The OpenAI chat messages the user model is sent: the system prompt, then
 * the trajectory filtered and flipped as τ²-bench's UserState.flip_roles
 * does it —
 *   user message        → {"role": "assistant", "content", "tool_calls"?}
 *   agent text message  → {"role": "user", "content"}
 *   tool result for the user → {"role": "tool", "content", "tool_call_id"}
 * while the agent's tool-call messages and their results are left out (the
 * customer never sees them). Tool calls are OpenAI's
 * {"id", "type": "function", "function": {"name", "arguments": "<JSON>"}}
 * with the arguments dumped as Python's json.dumps does. A new array. */
cJSON *user_sim_request_messages(const char *system_prompt, const cJSON *episode_messages);

/* The user's tools as an array of OpenAI tool schemas (a new array), or
 * NULL when the user has none: the domain has no user toolkit, or the
 * task's "user_tools" list selects none (an empty list, or a name the
 * toolkit lacks, which τ²-bench's runner also treats as no tools). */
cJSON *user_sim_tools(const Domain *d, const cJSON *task);

/* The user model's reply (an OpenAI assistant message: "content" and/or
 * "tool_calls" with function.arguments a JSON string) as a τ²-bench user
 * message for episode_submit: {"content": string or null} plus, when the
 * model called tools, "tool_calls": [{"id"?, "name", "arguments": {...}}].
 * A leading <think>...</think> block (a reasoning model served without a
 * reasoning parser) is dropped from the content; null if nothing is left.
 * Arguments that are not a JSON object (bad JSON included; an empty string
 * reads as {}) and calls without a function name are errors: NULL with err
 * saying which call and why. */
cJSON *user_sim_parse_response(const cJSON *openai_message, char *err, size_t errlen);

/* Model rotation within a GRPO group: sample i uses models[i % n]. models
 * is a JSON string (every sample uses it) or an array of strings. NULL when
 * models is neither or the array is empty or holds a non-string. The
 * returned string belongs to models. */
const char *user_sim_pick_model(const cJSON *models, int sample_index);

#endif
