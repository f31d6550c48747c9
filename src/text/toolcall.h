/* toolcall.h — parse a Qwen3 (Hermes-style) model turn into text and tool calls.
 *
 * The model writes tool calls as
 *
 *     Some text.
 *     <tool_call>
 *     {"name": "get_user_details", "arguments": {"user_id": "mia_li_3668"}}
 *     </tool_call>
 *
 * and may write several blocks in one turn. The parser is tolerant of
 * whitespace around and inside the blocks, and never fails: a block it
 * cannot use (bad JSON, no name, arguments that are not an object, a tool
 * the domain does not have, a block without its closing tag) becomes a call
 * that carries "parse_error", a message for the model. The orchestrator
 * answers such a call with that message as an error tool result instead of
 * running it, so the policy sees what it got wrong and can try again.
 */
#ifndef TAU2_TEXT_TOOLCALL_H
#define TAU2_TEXT_TOOLCALL_H

#include <stddef.h>

#include <cJSON.h>

#define TOOLCALL_OPEN "<tool_call>"
#define TOOLCALL_CLOSE "</tool_call>"

/* Parse len bytes of decoded model output (without the end-of-turn token).
 * known_tools: an array of OpenAI tool schemas ({"type": "function",
 * "function": {"name": ...}}) or of plain names; NULL accepts any name.
 * Returns a τ²-bench message object: {"content": string or null,
 * "tool_calls": [{"name", "arguments"}, ...] or null}. A malformed block adds
 * {"name": "", "arguments": {}, "parse_error": "..."}.
 * content is the text outside the blocks with surrounding blank lines
 * removed (null when nothing but whitespace is left). */
cJSON *toolcall_parse(const char *text, size_t len, const cJSON *known_tools);

/* Number of calls in a parsed message that carry a parse_error. */
int toolcall_count_errors(const cJSON *msg);

#endif
