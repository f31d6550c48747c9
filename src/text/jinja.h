/* jinja.h — a Jinja2 subset for Hugging Face chat templates.
 *
 * A model's tokenizer_config.json carries its prompt format as a Jinja2
 * template ("chat_template"). Training and serving must build prompts byte
 * for byte the way transformers' apply_chat_template does, so this module
 * interprets those templates with the semantics of the environment
 * transformers sets up:
 *
 *   ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
 *                                 extensions=[loopcontrols, generation])
 *   filters["tojson"]  = json.dumps(x, ensure_ascii=False, indent=None,
 *                                   separators=None, sort_keys=False)
 *   globals: raise_exception(msg), strftime_now(fmt), dict(...), namespace(...)
 *
 * Values behave like Python's (str() printing, int/float distinction,
 * truthiness, == across int/float/bool, code-point string indexing).
 * Templates are parsed once and rendered many times; a JinjaTemplate is
 * read-only after parsing, so one may be rendered from several threads.
 *
 * Not supported (an error at parse time): template inheritance and
 * includes (extends, block, include, import), recursive for loops, line
 * statements, autoescaping. Integers are 64-bit (overflow is an error
 * rather than Python's big ints). */
#ifndef TAU2_TEXT_JINJA_H
#define TAU2_TEXT_JINJA_H

#include <stddef.h>

#include <cJSON.h>

typedef struct JinjaTemplate JinjaTemplate;

/* Guards against runaway templates; exceeding one is a render error. */
#define JINJA_MAX_OUTPUT (64u << 20)  /* bytes of rendered text */
#define JINJA_MAX_MEMORY (256u << 20) /* bytes of values made while rendering */
#define JINJA_MAX_STEPS 4000000L      /* loop iterations + calls per render */
#define JINJA_MAX_DEPTH 64            /* nested macro calls / blocks */

/* Parse template source; NULL with err filled as "<origin>:<line>:<col>: <problem>". */
JinjaTemplate *jinja_parse(const char *source, size_t len, const char *origin, char *err, size_t errlen);

/* Render with a context object (messages, tools, add_generation_prompt,
 * bos_token, ...). JSON numbers flagged JSON_FLOAT_FLAG (core/json.h) are
 * Python floats, others ints. Returns a malloc'd NUL-terminated string
 * (free() it) and its length in *len_out (may be NULL); NULL with err
 * filled on a render error ("<origin>:<line>:<col>: <problem>"; for
 * raise_exception('msg') the problem is msg). */
char *jinja_render(const JinjaTemplate *t, const cJSON *context, size_t *len_out, char *err, size_t errlen);

void jinja_free(JinjaTemplate *t);

#endif
