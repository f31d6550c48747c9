/* chat.h — a model's chat template: render conversations as the model saw them.
 *
 * The template is the model's own Jinja `chat_template` from its
 * tokenizer_config.json (or chat_template.jinja beside it), run by the Jinja
 * interpreter in text/jinja.h with Hugging Face transformers' settings, so
 * the hybrid Qwen3 template and the non-thinking instruct-2507 one (and any
 * other) render exactly as apply_chat_template renders them.
 *
 * Template messages are the OpenAI-style dicts templates expect:
 *   {"role": "system"|"user"|"assistant"|"tool", "content": "...",
 *    "tool_calls": [{"type": "function", "id": "...",
 *                    "function": {"name": "...", "arguments": {...}}}],
 *    "tool_call_id": "..."}
 * chat_messages_from_tau2 turns a τ²-bench trajectory into them, as the
 * agent sees it; toolcall_parse (text/toolcall.h) goes the other way.
 *
 * Token-in/token-out needs pieces of the rendering rather than whole
 * conversations: the text a template adds for new user/tool messages up to
 * the next generation prompt (chat_render_delta), and the text of one
 * assistant turn as the model writes it (chat_render_assistant). Both come
 * from rendering probe conversations and cutting at their common prefix; a
 * template for which that prefix does not hold is reported, not guessed.
 */
#ifndef TAU2_TEXT_CHAT_H
#define TAU2_TEXT_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

typedef struct ChatTemplate ChatTemplate;

/* Load from a model directory (its tokenizer_config.json, or
 * chat_template.jinja when the config has no template) or from a path to a
 * tokenizer_config.json or a .jinja file. NULL with err naming the file. */
ChatTemplate *chat_load(const char *path, char *err, size_t errlen);
void chat_free(ChatTemplate *ct);

/* The end-of-turn token the template closes assistant turns with
 * (eos_token of tokenizer_config.json, "<|im_end|>" for Qwen3). */
const char *chat_eos_token(const ChatTemplate *ct);
/* Where the template came from ("…/tokenizer_config.json"). */
const char *chat_origin(const ChatTemplate *ct);

/* Render messages (template form) with tools (OpenAI schemas, or NULL) and
 * extra template variables kwargs (an object such as {"enable_thinking":
 * false}, or NULL). Returns a new string (free()), *len_out its length, or
 * NULL with err filled. */
char *chat_render(const ChatTemplate *ct, const cJSON *messages, const cJSON *tools, bool add_generation_prompt,
                  const cJSON *kwargs, size_t *len_out, char *err, size_t errlen);

/* The text the template adds after a conversation whose last turn was the
 * model's for the new (user or tool) messages, up to and including the next
 * generation prompt when add_generation_prompt: for Qwen3,
 *   "<|im_start|>user\n<tool_response>\n...\n</tool_response><|im_end|>\n<|im_start|>assistant\n".
 * It does not include what closes the model's turn (see
 * chat_render_assistant's after_eos). system: the conversation's system
 * message (template form) or NULL; the rendering depends on it only through
 * the prefix. NULL with err on failure. */
char *chat_render_delta(const ChatTemplate *ct, const cJSON *system, const cJSON *new_messages, const cJSON *tools,
                        bool add_generation_prompt, const cJSON *kwargs, char *err, size_t errlen);

/* The generation prompt alone ("<|im_start|>assistant\n"). */
char *chat_render_generation_prompt(const ChatTemplate *ct, const cJSON *system, const cJSON *tools,
                                    const cJSON *kwargs, char *err, size_t errlen);

/* One assistant turn as the model writes it after the generation prompt,
 * through the end-of-turn token: "Let me check.\n<tool_call>\n{...}\n</tool_call><|im_end|>"
 * (a new string). *after_eos (if given) gets what the template writes after
 * that token before the next turn ("\n"; a new string). NULL with err. */
char *chat_render_assistant(const ChatTemplate *ct, const cJSON *system, const cJSON *message, const cJSON *tools,
                            const cJSON *kwargs, char **after_eos, char *err, size_t errlen);

/* A τ²-bench trajectory (array of its messages) as the agent sees it, in
 * template form: assistant turns with their tool calls, the user's text
 * turns, the results of the agent's tool calls. The user's own tool calls
 * (telecom's phone) and their results are the user's business and are left
 * out, as τ²-bench leaves them out of the agent's context. system_prompt
 * (may be NULL) becomes the first message. */
cJSON *chat_messages_from_tau2(const cJSON *tau2_messages, const char *system_prompt);
/* The same for messages [from, n) of a trajectory, without a system message. */
cJSON *chat_messages_from_tau2_range(const cJSON *tau2_messages, int from);
/* One τ²-bench message in template form, or NULL when the agent does not see it. */
cJSON *chat_message_from_tau2(const cJSON *m);

#endif
