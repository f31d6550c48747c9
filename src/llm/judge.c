/* judge.c — NL-assertion judge prompt and verdict (see judge.h). The prompt
 * texts reproduce NLAssertionsEvaluator.evaluate_nl_assertions of τ²-bench,
 * indentation included: they are triple-quoted strings inside a method
 * there, and the judge model has always seen them that way. */
#include "llm/judge.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <utf8proc.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"

static const char JUDGE_SYSTEM_PROMPT[] =
    "\n"
    "        TASK\n"
    "        - You will be given a list of expected outcomes and a conversation that was collected during a test "
    "case run.\n"
    "        - The conversation is between an agent and a customer.\n"
    "        - Your job is to evaluate whether the agent satisfies each of the expected outcomes.\n"
    "        - Grade each expected outcome individually.\n"
    "\n"
    "        FORMAT\n"
    "        - Your response should be a JSON object with the following fields:\n"
    "        - `reasoning`: a short explanation for your classification\n"
    "        - `metExpectation`: `true` if the agent satisfies the expected outcomes, `false` otherwise\n"
    "        - `expectedOutcome`: repeat the expectation from the input that you are grading\n"
    "        \n"
    "        Example response structure:\n"
    "        {\n"
    "            \"results\": [\n"
    "                {\n"
    "                    \"expectedOutcome\": \"<one of the expected outcomes from the input>\",\n"
    "                    \"reasoning\": \"<reasoning trace>\",\n"
    "                    \"metExpectation\": <false or true>,\n"
    "                }\n"
    "            ]\n"
    "        }\n"
    "        ";

const cJSON *judge_task_assertions(const cJSON *task) {
    const cJSON *a = json_get(json_get(task, "evaluation_criteria"), "nl_assertions");
    return cJSON_IsArray(a) && a->child ? a : NULL;
}

char *judge_trajectory_text(const cJSON *messages) {
    SBuf b;
    sbuf_init(&b);
    sbuf_puts(&b, "");
    const cJSON *m;
    bool first = true;
    cJSON_ArrayForEach(m, messages) {
        const char *role = json_get_str(m, "role");
        const char *content = json_get_str(m, "content");
        sbuf_printf(&b, "%s%s: %s", first ? "" : "\n", role ? role : "None", content ? content : "None");
        first = false;
    }
    return sbuf_take(&b);
}

/* Python's str.isprintable() for one code point: everything but the
 * categories Cc, Cf, Cs, Co, Cn, Zl, Zp and Zs, except the space. */
static bool py_isprintable(utf8proc_int32_t c) {
    if (c == ' ') return true;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS: return false;
    default: return true;
    }
}

/* Python repr() of a str, quotes chosen as Python chooses them. */
static void py_repr_str(SBuf *b, const char *s) {
    char q = (strchr(s, '\'') && !strchr(s, '"')) ? '"' : '\'';
    sbuf_putc(b, q);
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    while (*p) {
        utf8proc_int32_t c;
        utf8proc_ssize_t n = utf8proc_iterate(p, -1, &c);
        if (n <= 0) { /* not UTF-8: show the byte as Python shows a surrogate escape */
            sbuf_printf(b, "\\udc%02x", *p);
            p++;
            continue;
        }
        if (c == '\\' || c == q) {
            sbuf_putc(b, '\\');
            sbuf_putc(b, (char)c);
        } else if (c == '\n') {
            sbuf_puts(b, "\\n");
        } else if (c == '\r') {
            sbuf_puts(b, "\\r");
        } else if (c == '\t') {
            sbuf_puts(b, "\\t");
        } else if (!py_isprintable(c)) {
            if (c < 0x100) sbuf_printf(b, "\\x%02x", (unsigned)c);
            else if (c < 0x10000) sbuf_printf(b, "\\u%04x", (unsigned)c);
            else sbuf_printf(b, "\\U%08x", (unsigned)c);
        } else {
            sbuf_put(b, (const char *)p, (size_t)n);
        }
        p += n;
    }
    sbuf_putc(b, q);
}

char *judge_py_repr_list(const cJSON *strings) {
    SBuf b;
    sbuf_init(&b);
    sbuf_putc(&b, '[');
    const cJSON *s;
    bool first = true;
    cJSON_ArrayForEach(s, strings) {
        if (!first) sbuf_puts(&b, ", ");
        first = false;
        if (cJSON_IsString(s)) {
            py_repr_str(&b, s->valuestring);
        } else { /* not what a task holds; shown, never dropped */
            char *j = json_dumps(s, 0);
            sbuf_puts(&b, j);
            free(j);
        }
    }
    sbuf_putc(&b, ']');
    return sbuf_take(&b);
}

cJSON *judge_request_messages(const cJSON *episode_messages, const cJSON *nl_assertions) {
    char *traj = judge_trajectory_text(episode_messages);
    char *list = judge_py_repr_list(nl_assertions);
    SBuf u;
    sbuf_init(&u);
    sbuf_printf(&u,
                "\n        conversation:\n        %s\n        \n        expectedOutcomes:\n        %s\n        ",
                traj, list);
    free(traj);
    free(list);
    cJSON *out = cJSON_CreateArray();
    cJSON *sys = cJSON_CreateObject();
    cJSON_AddStringToObject(sys, "role", "system");
    cJSON_AddStringToObject(sys, "content", JUDGE_SYSTEM_PROMPT);
    cJSON_AddItemToArray(out, sys);
    cJSON *user = cJSON_CreateObject();
    cJSON_AddStringToObject(user, "role", "user");
    cJSON_AddStringToObject(user, "content", u.data);
    cJSON_AddItemToArray(out, user);
    sbuf_free(&u);
    return out;
}

/* ---------------------------------------------------------------- verdict */

/* The JSON text of a reply: surrounding whitespace and a ``` fence (with
 * or without a language tag) removed. Sets *start and *len within text. */
static void unfence(const char *text, const char **start, size_t *len) {
    const char *s = text, *e = text + strlen(text);
    while (s < e && isspace((unsigned char)*s)) s++;
    /* A reasoning judge's thoughts, when the server left them in the content. */
    if (e - s >= 7 && memcmp(s, "<think>", 7) == 0) {
        const char *end = strstr(s, "</think>");
        if (end) s = end + 8;
        while (s < e && isspace((unsigned char)*s)) s++;
    }
    while (e > s && isspace((unsigned char)e[-1])) e--;
    if (e - s >= 3 && !strncmp(s, "```", 3)) {
        const char *nl = memchr(s, '\n', (size_t)(e - s));
        s = nl ? nl + 1 : e;
        if (e - s >= 3 && !strncmp(e - 3, "```", 3)) e -= 3;
    }
    *start = s;
    *len = (size_t)(e - s);
}

/* pydantic's lax bool: true/false, 0/1, and their usual spellings as strings. */
static int read_bool(const cJSON *v, bool *out) {
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v);
        return 0;
    }
    if (json_is_int(v) && (v->valuedouble == 0 || v->valuedouble == 1)) {
        *out = v->valuedouble == 1;
        return 0;
    }
    if (cJSON_IsString(v)) {
        static const char *yes[] = {"true", "1", "yes", "y", "t", "on"}, *no[] = {"false", "0", "no", "n", "f", "off"};
        for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
            if (!strcasecmp(v->valuestring, yes[i])) return *out = true, 0;
            if (!strcasecmp(v->valuestring, no[i])) return *out = false, 0;
        }
    }
    return -1;
}

/* Parse the reply's JSON object, tolerating prose around it. */
static cJSON *reply_json(const char *content, char *err, size_t errlen) {
    const char *s;
    size_t n;
    unfence(content, &s, &n);
    char perr[256];
    cJSON *root = json_parse(s, n, "<judge reply>", perr, sizeof perr);
    if (root) return root;
    /* A model that wrote a sentence before or after the object. */
    const char *open = memchr(s, '{', n);
    const char *close = NULL;
    for (const char *p = s + n; p > s; p--)
        if (p[-1] == '}') {
            close = p;
            break;
        }
    if (open && close && close > open) {
        char ignored[64];
        root = json_parse(open, (size_t)(close - open), "<judge reply>", ignored, sizeof ignored);
        if (root) return root;
    }
    snprintf(err, errlen, "judge reply is not JSON: %s", perr);
    return NULL;
}

int judge_parse_response(const char *content, int n_assertions, JudgeVerdict *out, char *err, size_t errlen) {
    if (!content) {
        snprintf(err, errlen, "judge reply has no content");
        return -1;
    }
    cJSON *root = reply_json(content, err, errlen);
    if (!root) return -1;
    int k = -1;
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "judge reply: expected a JSON object with \"results\"");
        goto done;
    }
    const cJSON *results = json_get(root, "results");
    if (!results || cJSON_IsNull(results)) { /* τ²-bench's .get("results", []) */
        k = 0;
        goto done;
    }
    if (!cJSON_IsArray(results)) {
        snprintf(err, errlen, "judge reply: results: expected an array");
        goto done;
    }
    int n = cJSON_GetArraySize(results);
    if (n > n_assertions) {
        snprintf(err, errlen, "judge reply: %d results for %d assertions", n, n_assertions);
        goto done;
    }
    int i = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, results) {
        const char *outcome = json_get_str(r, "expectedOutcome");
        const char *reasoning = json_get_str(r, "reasoning");
        bool met = false;
        const char *bad = !cJSON_IsObject(r) ? "expected an object"
                          : !outcome         ? "expectedOutcome: expected a string"
                          : !reasoning       ? "reasoning: expected a string"
                          : read_bool(json_get(r, "metExpectation"), &met) ? "metExpectation: expected true or false"
                                                                            : NULL;
        if (bad) {
            snprintf(err, errlen, "judge reply: results[%d]: %s", i, bad);
            judge_verdicts_free(out, i);
            goto done;
        }
        out[i].met = met;
        out[i].justification = xstrdup(reasoning);
        out[i].nl_assertion = xstrdup(outcome);
        i++;
    }
    k = i;
done:
    cJSON_Delete(root);
    return k;
}

void judge_verdicts_free(JudgeVerdict *v, int n) {
    for (int i = 0; i < n; i++) {
        free(v[i].justification);
        free(v[i].nl_assertion);
        v[i].justification = v[i].nl_assertion = NULL;
    }
}

cJSON *judge_checks_json(const JudgeVerdict *v, int n) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "nl_assertion", v[i].nl_assertion ? v[i].nl_assertion : "");
        cJSON_AddBoolToObject(c, "met", v[i].met);
        cJSON_AddStringToObject(c, "justification", v[i].justification ? v[i].justification : "");
        cJSON_AddItemToArray(arr, c);
    }
    return arr;
}
