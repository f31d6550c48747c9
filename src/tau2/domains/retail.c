/* retail.c — τ²-bench's retail domain: users, products and orders, with the
 * tools an agent uses to look them up, cancel or modify pending orders, and
 * request returns or exchanges of delivered ones.
 *
 * Records are kept as RetailDB.model_dump() has them: normalize_db fills in
 * the Order fields that db.json leaves out (None) and coerces float fields,
 * so results and DB hashes match τ²-bench; order results are still rebuilt
 * in model field order in case a merge brought a record in another order.
 * Money is Python float arithmetic: doubles, and round(x, 2) done the way
 * CPython does it (correctly rounded decimal, ties to even). */
#include <complex.h>
/* glibc defines CMPLX only for compilers with __builtin_complex (gcc); clang
 * 14 builds the fuzzers. Same meaning: real and imaginary parts as given. */
#ifndef CMPLX
#define CMPLX(x, y) __builtin_complex((double)(x), (double)(y))
#endif
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "tau2/domains/domains.h"

/* ---------------------------------------------------------------- numbers */

/* Python's round(x, 2) on a float: the decimal string correctly rounded to
 * two places (glibc's printf rounds exactly, ties to even, like dtoa mode 3),
 * read back. */
static double py_round2(double x) {
    if (!isfinite(x)) return x;
    char buf[400];
    snprintf(buf, sizeof buf, "%.2f", x);
    return strtod(buf, NULL);
}

static double num_of(const cJSON *v) { return (v && cJSON_IsNumber(v)) ? v->valuedouble : 0.0; }

/* ---------------------------------------------------------------- records */

static const cJSON *order_find(const Env *env, const char *order_id) {
    return order_id ? db_get(env->db, "orders", order_id) : NULL;
}

static const cJSON *user_find(const Env *env, const char *user_id) {
    return user_id ? db_get(env->db, "users", user_id) : NULL;
}

/* τ²-bench's _get_payment_method: the user first, then the method. */
static const cJSON *payment_method_find(const Env *env, const char *user_id, const char *pm_id, ToolCtx *ctx) {
    const cJSON *user = user_find(env, user_id);
    if (!user) {
        tool_error(ctx, "User not found");
        return NULL;
    }
    const cJSON *pm = pm_id ? json_get(json_get(user, "payment_methods"), pm_id) : NULL;
    if (!pm) tool_error(ctx, "Payment method not found");
    return pm;
}

static bool is_gift_card(const cJSON *pm) {
    const char *source = json_get_str(pm, "source");
    return source && strcmp(source, "gift_card") == 0;
}

/* The user's own (mutable) copy of a payment method, for balance updates. */
static cJSON *payment_method_mut(Env *env, const char *user_id, const char *pm_id) {
    cJSON *user = db_get_mut(env->db, "users", user_id);
    return user ? json_get(json_get(user, "payment_methods"), pm_id) : NULL;
}

/* balance = round(balance + delta, 2), as the tools write it. */
static void gift_card_add(cJSON *pm, double delta) {
    if (!pm) return;
    double balance = num_of(json_get(pm, "balance")) + delta;
    json_set(pm, "balance", json_float(py_round2(balance)));
}

/* ------------------------------------------------------------ data model */

/* RetailDB as data_model.py declares it: db.json is checked against it at
 * load, and Order's field order is the order of its dumps. */
static const DbField VARIANT_FIELDS[] = {
    {"item_id", &DB_T_STR}, {"options", &DB_T_DICT_STR_STR}, {"available", &DB_T_BOOL}, {"price", &DB_T_FLOAT}, {NULL}};
static const DbModel VARIANT_MODEL = {"Variant", VARIANT_FIELDS};
static const DbType VARIANT_TYPE = {DB_MODEL, .model = &VARIANT_MODEL};
static const DbType VARIANT_DICT = {DB_DICT, .item = &VARIANT_TYPE};
static const DbField PRODUCT_FIELDS[] = {
    {"name", &DB_T_STR}, {"product_id", &DB_T_STR}, {"variants", &VARIANT_DICT}, {NULL}};
static const DbModel PRODUCT_MODEL = {"Product", PRODUCT_FIELDS};
static const DbType PRODUCT_TYPE = {DB_MODEL, .model = &PRODUCT_MODEL};

static const DbField USER_NAME_FIELDS[] = {{"first_name", &DB_T_STR}, {"last_name", &DB_T_STR}, {NULL}};
static const DbModel USER_NAME_MODEL = {"UserName", USER_NAME_FIELDS};
static const DbType USER_NAME_TYPE = {DB_MODEL, .model = &USER_NAME_MODEL};
static const DbField USER_ADDRESS_FIELDS[] = {
    {"address1", &DB_T_STR}, {"address2", &DB_T_STR}, {"city", &DB_T_STR},
    {"country", &DB_T_STR},  {"state", &DB_T_STR},    {"zip", &DB_T_STR},
    {NULL},
};
static const DbModel USER_ADDRESS_MODEL = {"UserAddress", USER_ADDRESS_FIELDS};
static const DbType USER_ADDRESS_TYPE = {DB_MODEL, .model = &USER_ADDRESS_MODEL};

/* PaymentMethod = Union[CreditCard, GiftCard, Paypal], told apart by source. */
static const char *const SOURCE_CREDIT_CARD[] = {"credit_card", NULL};
static const char *const SOURCE_GIFT_CARD[] = {"gift_card", NULL};
static const char *const SOURCE_PAYPAL[] = {"paypal", NULL};
static const DbType SOURCE_CREDIT_CARD_TYPE = {DB_ENUM, .choices = SOURCE_CREDIT_CARD};
static const DbType SOURCE_GIFT_CARD_TYPE = {DB_ENUM, .choices = SOURCE_GIFT_CARD};
static const DbType SOURCE_PAYPAL_TYPE = {DB_ENUM, .choices = SOURCE_PAYPAL};
static const DbField CREDIT_CARD_FIELDS[] = {
    {"source", &SOURCE_CREDIT_CARD_TYPE}, {"id", &DB_T_STR}, {"brand", &DB_T_STR}, {"last_four", &DB_T_STR}, {NULL}};
static const DbField GIFT_CARD_FIELDS[] = {
    {"source", &SOURCE_GIFT_CARD_TYPE}, {"id", &DB_T_STR}, {"balance", &DB_T_FLOAT}, {NULL}};
static const DbField PAYPAL_FIELDS[] = {{"source", &SOURCE_PAYPAL_TYPE}, {"id", &DB_T_STR}, {NULL}};
static const DbModel CREDIT_CARD_MODEL = {"CreditCard", CREDIT_CARD_FIELDS};
static const DbModel GIFT_CARD_MODEL = {"GiftCard", GIFT_CARD_FIELDS};
static const DbModel PAYPAL_MODEL = {"Paypal", PAYPAL_FIELDS};
static const DbModel *const PAYMENT_METHOD_VARIANTS[] = {&CREDIT_CARD_MODEL, &GIFT_CARD_MODEL, &PAYPAL_MODEL, NULL};
static const DbType PAYMENT_METHOD_TYPE = {DB_UNION, .tag = "source", .variants = PAYMENT_METHOD_VARIANTS};
static const DbType PAYMENT_METHOD_DICT = {DB_DICT, .item = &PAYMENT_METHOD_TYPE};

static const DbField USER_FIELDS[] = {
    {"user_id", &DB_T_STR},
    {"name", &USER_NAME_TYPE},
    {"address", &USER_ADDRESS_TYPE},
    {"email", &DB_T_STR},
    {"payment_methods", &PAYMENT_METHOD_DICT},
    {"orders", &DB_T_LIST_STR},
    {NULL},
};
static const DbModel USER_MODEL = {"User", USER_FIELDS};
static const DbType USER_TYPE = {DB_MODEL, .model = &USER_MODEL};

static const DbField FULFILLMENT_FIELDS[] = {{"tracking_id", &DB_T_LIST_STR}, {"item_ids", &DB_T_LIST_STR}, {NULL}};
static const DbModel FULFILLMENT_MODEL = {"OrderFullfilment", FULFILLMENT_FIELDS};
static const DbType FULFILLMENT_TYPE = {DB_MODEL, .model = &FULFILLMENT_MODEL};
static const DbType FULFILLMENT_LIST = {DB_LIST, .item = &FULFILLMENT_TYPE};
static const DbField ORDER_ITEM_FIELDS[] = {
    {"name", &DB_T_STR},   {"product_id", &DB_T_STR},         {"item_id", &DB_T_STR},
    {"price", &DB_T_FLOAT}, {"options", &DB_T_DICT_STR_STR}, {NULL},
};
static const DbModel ORDER_ITEM_MODEL = {"OrderItem", ORDER_ITEM_FIELDS};
static const DbType ORDER_ITEM_TYPE = {DB_MODEL, .model = &ORDER_ITEM_MODEL};
static const DbType ORDER_ITEM_LIST = {DB_LIST, .item = &ORDER_ITEM_TYPE};
static const char *const TRANSACTION_TYPES[] = {"payment", "refund", NULL};
static const DbType TRANSACTION_TYPE = {DB_ENUM, .choices = TRANSACTION_TYPES};
static const DbField ORDER_PAYMENT_FIELDS[] = {
    {"transaction_type", &TRANSACTION_TYPE}, {"amount", &DB_T_FLOAT}, {"payment_method_id", &DB_T_STR}, {NULL}};
static const DbModel ORDER_PAYMENT_MODEL = {"OrderPayment", ORDER_PAYMENT_FIELDS};
static const DbType ORDER_PAYMENT_TYPE = {DB_MODEL, .model = &ORDER_PAYMENT_MODEL};
static const DbType ORDER_PAYMENT_LIST = {DB_LIST, .item = &ORDER_PAYMENT_TYPE};

static const char *const ORDER_STATUSES[] = {"processed", "pending", "pending (item modified)", "delivered",
                                             "cancelled", "exchange requested", "return requested", NULL};
static const DbType ORDER_STATUS_TYPE = {DB_ENUM, .choices = ORDER_STATUSES};
static const char *const CANCEL_REASONS[] = {"no longer needed", "ordered by mistake", NULL};
static const DbType CANCEL_REASON_TYPE = {DB_ENUM, .choices = CANCEL_REASONS};
static const DbField ORDER_FIELDS[] = {
    {"order_id", &DB_T_STR},
    {"user_id", &DB_T_STR},
    {"address", &USER_ADDRESS_TYPE},
    {"items", &ORDER_ITEM_LIST},
    {"status", &ORDER_STATUS_TYPE},
    {"fulfillments", &FULFILLMENT_LIST},
    {"payment_history", &ORDER_PAYMENT_LIST},
    {"cancel_reason", &CANCEL_REASON_TYPE, "null", true},
    {"exchange_items", &DB_T_LIST_STR, "null", true},
    {"exchange_new_items", &DB_T_LIST_STR, "null", true},
    {"exchange_payment_method_id", &DB_T_STR, "null", true},
    {"exchange_price_difference", &DB_T_FLOAT, "null", true},
    {"return_items", &DB_T_LIST_STR, "null", true},
    {"return_payment_method_id", &DB_T_STR, "null", true},
    {NULL},
};
static const DbModel ORDER_MODEL = {"Order", ORDER_FIELDS};
static const DbType ORDER_TYPE = {DB_MODEL, .model = &ORDER_MODEL};

static const DbType PRODUCT_DICT = {DB_DICT, .item = &PRODUCT_TYPE};
static const DbType USER_DICT = {DB_DICT, .item = &USER_TYPE};
static const DbType ORDER_DICT = {DB_DICT, .item = &ORDER_TYPE};
static const DbField RETAIL_DB_FIELDS[] = {
    {"products", &PRODUCT_DICT}, {"users", &USER_DICT}, {"orders", &ORDER_DICT}, {NULL}};
static const DbModel RETAIL_DB_MODEL = {"RetailDB", RETAIL_DB_FIELDS};

/* Order.model_dump(): fields in class order, None for the optional ones the
 * record lacks. */
static cJSON *order_dump(const cJSON *order) {
    cJSON *out = cJSON_CreateObject();
    for (const DbField *f = ORDER_FIELDS; f->name; f++) {
        const cJSON *v = json_get(order, f->name);
        cJSON_AddItemToObject(out, f->name, v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
    }
    return out;
}

/* UserAddress(...) in class field order. */
static cJSON *address_from_args(const cJSON *args) {
    static const char *const fields[] = {"address1", "address2", "city", "country", "state", "zip"};
    cJSON *addr = cJSON_CreateObject();
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const char *s = arg_str(args, fields[i]);
        cJSON_AddItemToObject(addr, fields[i], cJSON_CreateString(s ? s : ""));
    }
    return addr;
}

/* The first item of the order whose item_id is id (Python's next(...)). */
static cJSON *order_item_find(const cJSON *order, const char *id) {
    const cJSON *items = json_get(order, "items");
    for (cJSON *it = items ? items->child : NULL; it; it = it->next) {
        const char *iid = json_get_str(it, "item_id");
        if (iid && id && strcmp(iid, id) == 0) return it;
    }
    return NULL;
}

static int count_in_list(const cJSON *list, const char *id) {
    int n = 0;
    for (const cJSON *e = list ? list->child : NULL; e; e = e->next)
        if (cJSON_IsString(e) && strcmp(e->valuestring, id) == 0) n++;
    return n;
}

static int count_in_items(const cJSON *order, const char *id) {
    int n = 0;
    const cJSON *items = json_get(order, "items");
    for (const cJSON *it = items ? items->child : NULL; it; it = it->next) {
        const char *iid = json_get_str(it, "item_id");
        if (iid && strcmp(iid, id) == 0) n++;
    }
    return n;
}

/* The multiset check every item tool starts with: the first id of item_ids
 * wanted more often than the order holds it, or NULL. */
static const char *first_missing_item(const cJSON *order, const cJSON *item_ids) {
    for (const cJSON *e = item_ids ? item_ids->child : NULL; e; e = e->next) {
        if (!cJSON_IsString(e)) return "";
        if (count_in_list(item_ids, e->valuestring) > count_in_items(order, e->valuestring)) return e->valuestring;
    }
    return NULL;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* sorted(ids) as a new JSON list (Python orders str by code point, which
 * is byte order for UTF-8). */
static cJSON *sorted_ids(const cJSON *ids) {
    int n = cJSON_GetArraySize(ids);
    const char **v = xcalloc(n > 0 ? (size_t)n : 1, sizeof *v);
    int k = 0;
    for (const cJSON *e = ids ? ids->child : NULL; e; e = e->next)
        if (cJSON_IsString(e)) v[k++] = e->valuestring;
    qsort(v, (size_t)k, sizeof *v, cmp_str_ptr);
    cJSON *out = cJSON_CreateArray();
    for (int i = 0; i < k; i++) cJSON_AddItemToArray(out, cJSON_CreateString(v[i]));
    free(v);
    return out;
}

/* _get_variant(product_id, variant_id). */
static const cJSON *variant_find(const Env *env, const char *product_id, const char *variant_id, ToolCtx *ctx) {
    const cJSON *product = product_id ? db_get(env->db, "products", product_id) : NULL;
    if (!product) {
        tool_error(ctx, "Product not found");
        return NULL;
    }
    const cJSON *variant = variant_id ? json_get(json_get(product, "variants"), variant_id) : NULL;
    if (!variant) tool_error(ctx, "Variant not found");
    return variant;
}

/* ASCII lower-casing for str.lower() comparisons. The DB's names and emails
 * are ASCII, so the only non-ASCII input that can still match is U+212A
 * KELVIN SIGN, which Python lowers to 'k'. */
static char *lower_dup(const char *s) {
    size_t n = strlen(s);
    char *out = xmalloc(n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0xE2 && (unsigned char)s[i + 1] == 0x84 && (unsigned char)s[i + 2] == 0xAA) {
            out[j++] = 'k';
            i += 2;
        } else {
            out[j++] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
        }
    }
    out[j] = '\0';
    return out;
}

static bool lower_equal(const char *db_value, const char *lowered_arg) {
    if (!db_value) return false;
    char *a = lower_dup(db_value);
    bool eq = strcmp(a, lowered_arg) == 0;
    free(a);
    return eq;
}

/* ---------------------------------------------------------------- calculate
 *
 * τ²-bench evaluates the expression with Python's eval() after checking its
 * characters, then prints str(round(float(result), 2)). The characters allow
 * more than arithmetic: '**', '//', '...' (Ellipsis), '()' (an empty tuple)
 * and calls like '(2)(3)', so this is a small model of CPython 3.11 on that
 * alphabet: its tokenizer, its PEG parser's error messages (including the
 * second, diagnostic pass), and int/float/complex arithmetic. Ints are exact
 * up to 127 bits and approximated by doubles beyond. */

__extension__ typedef __int128 i128;

enum {
    T_NUM, T_ELLIPSIS, T_DOT, T_PLUS, T_MINUS, T_STAR, T_DSTAR, T_SLASH, T_DSLASH, T_LPAR, T_RPAR, T_END, T_ERR
};

typedef struct {
    int kind;
    int start, len;
    int level;       /* paren depth after the token, as CPython records it */
    const char *msg; /* T_ERR: the tokenizer's message */
} CalcTok;

enum { N_INT, N_FLOAT, N_ELLIPSIS, N_TUPLE, N_NEG, N_POS, N_ADD, N_SUB, N_MUL, N_DIV, N_FLOORDIV, N_POW, N_CALL };

typedef struct {
    int kind;
    int a, b;   /* children (-1: none) */
    int star;   /* N_CALL: 0 plain argument, 1 '*arg', 2 '**arg' */
    int tok;    /* N_INT / N_FLOAT: the literal */
} CalcNode;

#define CALC_MAX_DEPTH 2900

typedef struct {
    const char *src;
    CalcTok *toks;
    int ntok;
    CalcNode *nodes;
    int nnodes, cap;
    int maxfetch;
    bool diag; /* second pass: the grammar's invalid_* rules are on */
    const char *raised;
    int depth;
    int *memo_sum, *memo_sum_end, *memo_expr, *memo_expr_end; /* -2 unknown, -1 failed */
} CalcParser;

static const char MSG_LEADING_ZEROS[] =
    "leading zeros in decimal integer literals are not permitted; use an 0o prefix for octal integers";

static void calc_push_tok(CalcTok **toks, int *n, int *cap, int kind, int start, int len, int level, const char *msg) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *toks = xrealloc(*toks, (size_t)*cap * sizeof **toks);
    }
    (*toks)[(*n)++] = (CalcTok){kind, start, len, level, msg};
}

/* CPython's tokenizer on the allowed alphabet. Stops at the first error
 * token (T_ERR) or the end (T_END, or T_ERR "'(' was never closed"). */
static CalcTok *calc_tokenize(const char *s, int *ntok) {
    CalcTok *toks = NULL;
    int n = 0, cap = 0, level = 0;
    int i = 0;
    for (;;) {
        while (s[i] == ' ') i++;
        int st = i;
        char c = s[i];
        if (c == '\0') {
            if (level > 0) calc_push_tok(&toks, &n, &cap, T_ERR, st, 0, level, "'(' was never closed");
            else calc_push_tok(&toks, &n, &cap, T_END, st, 0, 0, NULL);
            break;
        }
        if (c >= '0' && c <= '9') {
            bool nonzero_after_zero = false;
            if (c == '0') {
                while (s[i] == '0') i++;
                if (s[i] >= '0' && s[i] <= '9') nonzero_after_zero = true;
            }
            while (s[i] >= '0' && s[i] <= '9') i++;
            if (s[i] == '.') {
                i++;
                while (s[i] >= '0' && s[i] <= '9') i++;
            } else if (nonzero_after_zero) {
                calc_push_tok(&toks, &n, &cap, T_ERR, st, i - st, level, MSG_LEADING_ZEROS);
                break;
            }
            calc_push_tok(&toks, &n, &cap, T_NUM, st, i - st, level, NULL);
            continue;
        }
        if (c == '.') {
            if (s[i + 1] >= '0' && s[i + 1] <= '9') {
                i++;
                while (s[i] >= '0' && s[i] <= '9') i++;
                calc_push_tok(&toks, &n, &cap, T_NUM, st, i - st, level, NULL);
            } else if (s[i + 1] == '.' && s[i + 2] == '.') {
                i += 3;
                calc_push_tok(&toks, &n, &cap, T_ELLIPSIS, st, 3, level, NULL);
            } else {
                i++;
                calc_push_tok(&toks, &n, &cap, T_DOT, st, 1, level, NULL);
            }
            continue;
        }
        if (c == '(') {
            if (level >= 200) {
                calc_push_tok(&toks, &n, &cap, T_ERR, st, 1, level, "too many nested parentheses");
                break;
            }
            level++;
            i++;
            calc_push_tok(&toks, &n, &cap, T_LPAR, st, 1, level, NULL);
            continue;
        }
        if (c == ')') {
            if (level == 0) {
                calc_push_tok(&toks, &n, &cap, T_ERR, st, 1, 0, "unmatched ')'");
                break;
            }
            i++;
            level--;
            calc_push_tok(&toks, &n, &cap, T_RPAR, st, 1, level, NULL);
            continue;
        }
        int kind;
        if (c == '*' && s[i + 1] == '*') kind = T_DSTAR, i += 2;
        else if (c == '/' && s[i + 1] == '/') kind = T_DSLASH, i += 2;
        else if (c == '*') kind = T_STAR, i++;
        else if (c == '/') kind = T_SLASH, i++;
        else if (c == '+') kind = T_PLUS, i++;
        else kind = T_MINUS, i++; /* '-': the alphabet was checked */
        calc_push_tok(&toks, &n, &cap, kind, st, i - st, level, NULL);
    }
    *ntok = n;
    return toks;
}

static void calc_raise(CalcParser *p, const char *msg) {
    if (!p->raised) p->raised = msg;
}

/* The token at i, as the parser asks for it: a tokenizer error surfaces the
 * moment the parser reaches it. */
static int calc_fetch(CalcParser *p, int i) {
    if (i >= p->ntok) i = p->ntok - 1;
    if (i > p->maxfetch) p->maxfetch = i;
    if (p->toks[i].kind == T_ERR) calc_raise(p, p->toks[i].msg);
    return p->toks[i].kind;
}

static int calc_node(CalcParser *p, int kind, int a, int b, int star, int tok) {
    if (p->nnodes == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 32;
        p->nodes = xrealloc(p->nodes, (size_t)p->cap * sizeof *p->nodes);
    }
    p->nodes[p->nnodes] = (CalcNode){kind, a, b, star, tok};
    return p->nnodes++;
}

static bool calc_enter(CalcParser *p) {
    if (++p->depth > CALC_MAX_DEPTH) calc_raise(p, "maximum recursion depth exceeded during compilation");
    return !p->raised;
}

static int calc_expression(CalcParser *p, int pos, int *end);
static int calc_sum(CalcParser *p, int pos, int *end);
static int calc_factor(CalcParser *p, int pos, int *end);

/* '(' [ '*' expr | '**' expr | expr ] ')' after a primary. */
static int calc_call(CalcParser *p, int callee, int pos, int *end) {
    int k = calc_fetch(p, pos + 1);
    if (p->raised) return -1;
    if (k == T_RPAR) {
        *end = pos + 2;
        return calc_node(p, N_CALL, callee, -1, 0, -1);
    }
    int star = k == T_STAR ? 1 : k == T_DSTAR ? 2 : 0;
    int e;
    int arg = calc_expression(p, pos + 1 + (star ? 1 : 0), &e);
    if (arg < 0) return -1;
    if (calc_fetch(p, e) != T_RPAR) return -1;
    *end = e + 1;
    return calc_node(p, N_CALL, callee, arg, star, -1);
}

static int calc_atom(CalcParser *p, int pos, int *end) {
    int k = calc_fetch(p, pos);
    if (p->raised) return -1;
    if (k == T_NUM) {
        *end = pos + 1;
        bool is_float = memchr(p->src + p->toks[pos].start, '.', (size_t)p->toks[pos].len) != NULL;
        return calc_node(p, is_float ? N_FLOAT : N_INT, -1, -1, 0, pos);
    }
    if (k == T_ELLIPSIS) {
        *end = pos + 1;
        return calc_node(p, N_ELLIPSIS, -1, -1, 0, -1);
    }
    if (k != T_LPAR) return -1;
    /* tuple: only '()' is possible without commas */
    int k1 = calc_fetch(p, pos + 1);
    if (p->raised) return -1;
    if (k1 == T_RPAR) {
        *end = pos + 2;
        return calc_node(p, N_TUPLE, -1, -1, 0, -1);
    }
    int e;
    if (k1 == T_STAR) { /* star_named_expression, then a ',' that never comes */
        if (calc_sum(p, pos + 2, &e) >= 0) calc_fetch(p, e);
    } else {
        if (calc_expression(p, pos + 1, &e) >= 0) calc_fetch(p, e);
    }
    if (p->raised) return -1;
    /* group */
    int x = calc_expression(p, pos + 1, &e);
    if (p->raised) return -1;
    if (x >= 0 && calc_fetch(p, e) == T_RPAR) {
        *end = e + 1;
        return x;
    }
    if (p->raised) return -1;
    if (p->diag && (k1 == T_STAR || k1 == T_DSTAR)) { /* invalid_group */
        int y = calc_expression(p, pos + 2, &e);
        if (p->raised) return -1;
        if (y >= 0 && calc_fetch(p, e) == T_RPAR)
            calc_raise(p, k1 == T_STAR ? "cannot use starred expression here"
                                       : "cannot use double starred expression here");
    }
    return -1;
}

static int calc_primary(CalcParser *p, int pos, int *end) {
    int e;
    int n = calc_atom(p, pos, &e);
    if (n < 0) return -1;
    for (;;) {
        int k = calc_fetch(p, e);
        if (p->raised) return -1;
        if (k == T_LPAR) {
            int e2;
            int c = calc_call(p, n, e, &e2);
            if (p->raised) return -1;
            if (c < 0) break;
            n = c;
            e = e2;
        } else {
            if (k == T_DOT) calc_fetch(p, e + 1); /* wants a NAME, which can't come */
            if (p->raised) return -1;
            break;
        }
    }
    *end = e;
    return n;
}

static int calc_power(CalcParser *p, int pos, int *end) {
    int e;
    int n = calc_primary(p, pos, &e);
    if (n < 0) return -1;
    if (calc_fetch(p, e) == T_DSTAR) {
        int e2;
        int r = calc_factor(p, e + 1, &e2);
        if (p->raised) return -1;
        if (r >= 0) {
            *end = e2;
            return calc_node(p, N_POW, n, r, 0, -1);
        }
    }
    if (p->raised) return -1;
    *end = e;
    return n;
}

static int calc_factor(CalcParser *p, int pos, int *end) {
    if (!calc_enter(p)) return -1;
    int k = calc_fetch(p, pos);
    int n = -1;
    if (p->raised) {
        n = -1;
    } else if (k == T_PLUS || k == T_MINUS) {
        int e;
        int x = calc_factor(p, pos + 1, &e);
        if (x >= 0) {
            *end = e;
            n = calc_node(p, k == T_PLUS ? N_POS : N_NEG, x, -1, 0, -1);
        }
    } else {
        n = calc_power(p, pos, end);
    }
    p->depth--;
    return n;
}

static int calc_term(CalcParser *p, int pos, int *end) {
    int e;
    int n = calc_factor(p, pos, &e);
    if (n < 0) return -1;
    for (;;) {
        int k = calc_fetch(p, e);
        if (p->raised) return -1;
        if (k != T_STAR && k != T_SLASH && k != T_DSLASH) break;
        int e2;
        int r = calc_factor(p, e + 1, &e2);
        if (p->raised) return -1;
        if (r < 0) break;
        if (!calc_enter(p)) return -1; /* left-nested operations deepen the tree */
        n = calc_node(p, k == T_STAR ? N_MUL : k == T_SLASH ? N_DIV : N_FLOORDIV, n, r, 0, -1);
        e = e2;
    }
    *end = e;
    return n;
}

static int calc_sum(CalcParser *p, int pos, int *end) {
    if (p->memo_sum[pos] != -2) {
        *end = p->memo_sum_end[pos];
        return p->memo_sum[pos];
    }
    int saved_depth = p->depth;
    int e = pos;
    int n = calc_term(p, pos, &e);
    while (n >= 0) {
        int k = calc_fetch(p, e);
        if (p->raised) return -1;
        if (k != T_PLUS && k != T_MINUS) break;
        int e2;
        int r = calc_term(p, e + 1, &e2);
        if (p->raised) return -1;
        if (r < 0) break;
        if (!calc_enter(p)) return -1;
        n = calc_node(p, k == T_PLUS ? N_ADD : N_SUB, n, r, 0, -1);
        e = e2;
    }
    p->depth = saved_depth;
    if (p->raised) return -1;
    p->memo_sum[pos] = n;
    p->memo_sum_end[pos] = e;
    *end = e;
    return n;
}

/* invalid_expression: two expressions side by side inside brackets. */
static void calc_invalid_expression(CalcParser *p, int pos) {
    int a_end;
    if (calc_sum(p, pos, &a_end) < 0) return;
    p->diag = false;
    int b_end;
    int b = calc_sum(p, a_end, &b_end);
    p->diag = true;
    if (p->raised || b < 0) return;
    /* Only inside brackets: judged by the level where b ends. */
    if (p->toks[b_end - 1].level > 0) calc_raise(p, "invalid syntax. Perhaps you forgot a comma?");
}

static int calc_expression(CalcParser *p, int pos, int *end) {
    if (p->memo_expr[pos] != -2) {
        *end = p->memo_expr_end[pos];
        return p->memo_expr[pos];
    }
    if (!calc_enter(p)) return -1;
    if (p->diag) calc_invalid_expression(p, pos);
    int e = pos;
    int n = p->raised ? -1 : calc_sum(p, pos, &e);
    p->depth--;
    if (p->raised) return -1;
    p->memo_expr[pos] = n;
    p->memo_expr_end[pos] = e;
    *end = e;
    return n;
}

static void calc_reset_memo(CalcParser *p) {
    for (int i = 0; i < p->ntok; i++) p->memo_sum[i] = p->memo_expr[i] = -2;
}

/* One parser pass over eval_input: expression ENDMARKER. Returns the root. */
static int calc_parse_pass(CalcParser *p) {
    calc_reset_memo(p);
    p->nnodes = 0;
    p->depth = 0;
    int e;
    int root = calc_expression(p, 0, &e);
    if (root < 0 || p->raised) return -1;
    if (calc_fetch(p, e) != T_END) return -1;
    return root;
}

/* ---- values ---- */

enum { V_INT, V_FLOAT, V_COMPLEX, V_TUPLE, V_ELLIPSIS };

typedef struct {
    int kind;
    bool big;          /* V_INT beyond 127 bits: only the double `f` */
    i128 i;
    double f;          /* V_FLOAT, or a big int's approximation (inf if huge) */
    double complex c;
} CalcVal;

static const char *calc_type_name(const CalcVal *v) {
    switch (v->kind) {
    case V_INT: return "int";
    case V_FLOAT: return "float";
    case V_COMPLEX: return "complex";
    case V_TUPLE: return "tuple";
    default: return "ellipsis";
    }
}

static CalcVal calc_int(i128 i) { return (CalcVal){.kind = V_INT, .i = i}; }
static CalcVal calc_bigint(double f) { return (CalcVal){.kind = V_INT, .big = true, .f = f}; }
static CalcVal calc_float(double f) { return (CalcVal){.kind = V_FLOAT, .f = f}; }
static CalcVal calc_complex(double complex c) { return (CalcVal){.kind = V_COMPLEX, .c = c}; }

static bool calc_is_num(const CalcVal *v) { return v->kind == V_INT || v->kind == V_FLOAT || v->kind == V_COMPLEX; }

/* float(int): correctly rounded; OverflowError beyond the float range. */
static bool calc_to_double(const CalcVal *v, double *out, char *err, size_t errlen) {
    if (v->kind == V_FLOAT) {
        *out = v->f;
        return true;
    }
    double d = v->big ? v->f : (double)v->i;
    if (isinf(d)) {
        snprintf(err, errlen, "int too large to convert to float");
        return false;
    }
    *out = d;
    return true;
}

static double calc_int_approx(const CalcVal *v) { return v->big ? v->f : (double)v->i; }

static bool calc_to_complex(const CalcVal *v, double complex *out, char *err, size_t errlen) {
    if (v->kind == V_COMPLEX) {
        *out = v->c;
        return true;
    }
    double d;
    if (!calc_to_double(v, &d, err, errlen)) return false;
    *out = CMPLX(d, 0.0);
    return true;
}

static void calc_unsupported(const char *op, const CalcVal *a, const CalcVal *b, char *err, size_t errlen) {
    snprintf(err, errlen, "unsupported operand type(s) for %s: '%s' and '%s'", op, calc_type_name(a),
             calc_type_name(b));
}

/* Python's float floor division (float_floor_div). */
static double calc_float_floordiv(double vx, double wx) {
    double mod = fmod(vx, wx);
    double div = (vx - mod) / wx;
    if (mod != 0.0) {
        if ((wx < 0) != (mod < 0)) div -= 1.0;
    }
    double floordiv;
    if (div != 0.0) {
        floordiv = floor(div);
        if (div - floordiv > 0.5) floordiv += 1.0;
    } else {
        floordiv = copysign(0.0, vx / wx);
    }
    return floordiv;
}

/* Python's complex ** (complex_pow): integral small exponents by repeated
 * multiplication, the rest through polar form. */
static bool calc_complex_pow(double complex a, double complex b, CalcVal *out, char *err, size_t errlen) {
    double complex r;
    if (cimag(b) == 0.0 && creal(b) == floor(creal(b)) && fabs(creal(b)) <= 100.0) {
        long n = (long)creal(b);
        if (a == 0.0 && n < 0) {
            snprintf(err, errlen, "0.0 to a negative or complex power");
            return false;
        }
        double complex x = 1.0, base = n < 0 ? 1.0 / a : a;
        for (long k = labs(n); k > 0; k >>= 1) {
            if (k & 1) x *= base;
            base *= base;
        }
        r = x;
    } else if (b == 0.0) {
        r = 1.0;
    } else if (a == 0.0) {
        if (cimag(b) != 0.0 || creal(b) < 0.0) {
            snprintf(err, errlen, "0.0 to a negative or complex power");
            return false;
        }
        r = 0.0;
    } else {
        double vabs = hypot(creal(a), cimag(a));
        double len = pow(vabs, creal(b));
        double at = atan2(cimag(a), creal(a));
        double phase = at * creal(b);
        if (cimag(b) != 0.0) {
            len /= exp(at * cimag(b));
            phase += cimag(b) * log(vabs);
        }
        r = CMPLX(len * cos(phase), len * sin(phase));
    }
    if (!isfinite(creal(r)) || !isfinite(cimag(r))) {
        snprintf(err, errlen, "complex exponentiation");
        return false;
    }
    *out = calc_complex(r);
    return true;
}

/* Python's float ** float (float_pow). */
static bool calc_float_pow(double iv, double iw, CalcVal *out, char *err, size_t errlen) {
    if (iw == 0.0) {
        *out = calc_float(1.0);
        return true;
    }
    if (isnan(iv)) {
        *out = calc_float(iv);
        return true;
    }
    if (isnan(iw)) {
        *out = calc_float(iv == 1.0 ? 1.0 : iw);
        return true;
    }
    if (isinf(iw) || isinf(iv)) {
        *out = calc_float(pow(iv, iw));
        return true;
    }
    bool iw_is_odd = fmod(fabs(iw), 2.0) == 1.0;
    if (iv == 0.0) {
        if (iw < 0.0) {
            snprintf(err, errlen, "0.0 cannot be raised to a negative power");
            return false;
        }
        *out = calc_float(iw_is_odd ? iv : 0.0);
        return true;
    }
    if (iv == 1.0) {
        *out = calc_float(1.0);
        return true;
    }
    if (iv < 0.0 && iw != floor(iw)) return calc_complex_pow(CMPLX(iv, 0.0), CMPLX(iw, 0.0), out, err, errlen);
    bool negate = iv < 0.0 && iw_is_odd;
    double ix = pow(fabs(iv), iw);
    if (negate) ix = -ix;
    if (isinf(ix)) {
        snprintf(err, errlen, "(34, 'Numerical result out of range')");
        return false;
    }
    *out = calc_float(ix);
    return true;
}

static bool calc_int_pow(const CalcVal *a, const CalcVal *b, CalcVal *out, char *err, size_t errlen) {
    if ((b->big ? b->f : (double)b->i) < 0) {
        double x, y;
        if (!calc_to_double(a, &x, err, errlen) || !calc_to_double(b, &y, err, errlen)) return false;
        return calc_float_pow(x, y, out, err, errlen);
    }
    if (!a->big && !b->big) {
        i128 base = a->i, result = 1;
        i128 e = b->i;
        bool overflow = false;
        if (base == 0 || base == 1) {
            *out = calc_int(e == 0 ? 1 : base);
            return true;
        }
        if (base == -1) {
            *out = calc_int((e & 1) ? -1 : 1);
            return true;
        }
        while (e > 0 && !overflow) {
            if (e & 1) overflow |= __builtin_mul_overflow(result, base, &result);
            e >>= 1;
            if (e > 0) overflow |= __builtin_mul_overflow(base, base, &base);
        }
        if (!overflow) {
            *out = calc_int(result);
            return true;
        }
    }
    *out = calc_bigint(pow(calc_int_approx(a), calc_int_approx(b)));
    return true;
}

static bool calc_binary(int op, const CalcVal *a, const CalcVal *b, CalcVal *out, char *err, size_t errlen) {
    const char *opname = op == N_ADD ? "+" : op == N_SUB ? "-" : op == N_MUL ? "*" : op == N_DIV ? "/"
                         : op == N_FLOORDIV ? "//" : "** or pow()";
    /* sequences: tuple + tuple, tuple * int */
    if (a->kind == V_TUPLE || b->kind == V_TUPLE || a->kind == V_ELLIPSIS || b->kind == V_ELLIPSIS) {
        if (op == N_ADD && a->kind == V_TUPLE) {
            if (b->kind == V_TUPLE) {
                *out = *a;
                return true;
            }
            snprintf(err, errlen, "can only concatenate tuple (not \"%s\") to tuple", calc_type_name(b));
            return false;
        }
        if (op == N_MUL && (a->kind == V_TUPLE || b->kind == V_TUPLE)) {
            const CalcVal *other = a->kind == V_TUPLE ? b : a;
            if (other->kind == V_INT) {
                if (other->big || other->i > INT64_MAX || other->i < INT64_MIN) {
                    snprintf(err, errlen, "cannot fit 'int' into an index-sized integer");
                    return false;
                }
                *out = (CalcVal){.kind = V_TUPLE};
                return true;
            }
            snprintf(err, errlen, "can't multiply sequence by non-int of type '%s'", calc_type_name(other));
            return false;
        }
        calc_unsupported(opname, a, b, err, errlen);
        return false;
    }
    if (a->kind == V_COMPLEX || b->kind == V_COMPLEX) {
        if (op == N_FLOORDIV) {
            calc_unsupported(opname, a, b, err, errlen);
            return false;
        }
        double complex x, y;
        if (!calc_to_complex(a, &x, err, errlen) || !calc_to_complex(b, &y, err, errlen)) return false;
        switch (op) {
        case N_ADD: *out = calc_complex(x + y); return true;
        case N_SUB: *out = calc_complex(x - y); return true;
        case N_MUL: *out = calc_complex(x * y); return true;
        case N_DIV:
            if (y == 0.0) {
                snprintf(err, errlen, "complex division by zero");
                return false;
            }
            *out = calc_complex(x / y);
            return true;
        default: return calc_complex_pow(x, y, out, err, errlen);
        }
    }
    if (a->kind == V_INT && b->kind == V_INT) {
        bool small = !a->big && !b->big;
        i128 r;
        switch (op) {
        case N_ADD:
            if (small && !__builtin_add_overflow(a->i, b->i, &r)) *out = calc_int(r);
            else *out = calc_bigint(calc_int_approx(a) + calc_int_approx(b));
            return true;
        case N_SUB:
            if (small && !__builtin_sub_overflow(a->i, b->i, &r)) *out = calc_int(r);
            else *out = calc_bigint(calc_int_approx(a) - calc_int_approx(b));
            return true;
        case N_MUL:
            if (small && !__builtin_mul_overflow(a->i, b->i, &r)) *out = calc_int(r);
            else *out = calc_bigint(calc_int_approx(a) * calc_int_approx(b));
            return true;
        case N_DIV: {
            if (!b->big && b->i == 0) {
                snprintf(err, errlen, "division by zero");
                return false;
            }
            const i128 lim = (i128)1 << 53;
            if (small && a->i <= lim && a->i >= -lim && b->i <= lim && b->i >= -lim) {
                *out = calc_float((double)a->i / (double)b->i);
            } else if (small) {
                *out = calc_float((double)((long double)a->i / (long double)b->i));
            } else {
                /* Beyond 127 bits only magnitudes are known: a finite int
                 * over a huge one is 0.0, a huge one over a finite one too
                 * large (Python divides the exact ints). */
                double x = calc_int_approx(a), y = calc_int_approx(b);
                if (isinf(x) && !isinf(y)) {
                    snprintf(err, errlen, "integer division result too large for a float");
                    return false;
                }
                if (isinf(x) || isinf(y)) {
                    if (isinf(x)) {
                        snprintf(err, errlen, "int too large to convert to float");
                        return false;
                    }
                    *out = calc_float(copysign(0.0, x) * copysign(1.0, y));
                } else {
                    *out = calc_float(x / y);
                }
            }
            return true;
        }
        case N_FLOORDIV:
            if (!b->big && b->i == 0) {
                snprintf(err, errlen, "integer division or modulo by zero");
                return false;
            }
            if (small) {
                i128 q = a->i / b->i; /* no overflow: |a| < 2^127 and b != 0, except MIN / -1 */
                if ((a->i % b->i != 0) && ((a->i < 0) != (b->i < 0))) q -= 1;
                *out = calc_int(q);
            } else {
                *out = calc_bigint(floor(calc_int_approx(a) / calc_int_approx(b)));
            }
            return true;
        default: return calc_int_pow(a, b, out, err, errlen);
        }
    }
    double x, y;
    if (!calc_to_double(a, &x, err, errlen) || !calc_to_double(b, &y, err, errlen)) return false;
    switch (op) {
    case N_ADD: *out = calc_float(x + y); return true;
    case N_SUB: *out = calc_float(x - y); return true;
    case N_MUL: *out = calc_float(x * y); return true;
    case N_DIV:
        if (y == 0.0) {
            snprintf(err, errlen, "float division by zero");
            return false;
        }
        *out = calc_float(x / y);
        return true;
    case N_FLOORDIV:
        if (y == 0.0) {
            snprintf(err, errlen, "float floor division by zero");
            return false;
        }
        *out = calc_float(calc_float_floordiv(x, y));
        return true;
    default: return calc_float_pow(x, y, out, err, errlen);
    }
}

/* str() of a value, for "X argument after * must be ..." messages. */
static void calc_value_str(const CalcVal *v, char *buf, size_t n) {
    switch (v->kind) {
    case V_INT:
        if (v->big || v->i > INT64_MAX || v->i < INT64_MIN) snprintf(buf, n, "%.0f", v->f);
        else snprintf(buf, n, "%lld", (long long)v->i);
        break;
    case V_FLOAT: json_format_float(buf, v->f); break;
    case V_TUPLE: snprintf(buf, n, "()"); break;
    case V_ELLIPSIS: snprintf(buf, n, "Ellipsis"); break;
    default: {
        char re[32], im[32];
        json_format_float(re, creal(v->c));
        json_format_float(im, cimag(v->c));
        snprintf(buf, n, "(%s%s%sj)", re, cimag(v->c) < 0 ? "" : "+", im);
    }
    }
}

static bool calc_eval_node(const CalcParser *p, int id, CalcVal *out, char *err, size_t errlen) {
    const CalcNode *nd = &p->nodes[id];
    switch (nd->kind) {
    case N_INT: {
        const CalcTok *t = &p->toks[nd->tok];
        i128 v = 0;
        bool overflow = false;
        for (int i = 0; i < t->len; i++)
            overflow |= __builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, p->src[t->start + i] - '0', &v);
        if (!overflow) {
            *out = calc_int(v);
        } else {
            char *digits = xstrndup(p->src + t->start, (size_t)t->len);
            *out = calc_bigint(strtod(digits, NULL));
            free(digits);
        }
        return true;
    }
    case N_FLOAT: {
        char *text = xstrndup(p->src + p->toks[nd->tok].start, (size_t)p->toks[nd->tok].len);
        *out = calc_float(strtod(text, NULL));
        free(text);
        return true;
    }
    case N_ELLIPSIS: *out = (CalcVal){.kind = V_ELLIPSIS}; return true;
    case N_TUPLE: *out = (CalcVal){.kind = V_TUPLE}; return true;
    case N_NEG:
    case N_POS: {
        CalcVal x;
        if (!calc_eval_node(p, nd->a, &x, err, errlen)) return false;
        if (!calc_is_num(&x)) {
            snprintf(err, errlen, "bad operand type for unary %s: '%s'", nd->kind == N_NEG ? "-" : "+",
                     calc_type_name(&x));
            return false;
        }
        if (nd->kind == N_NEG) {
            if (x.kind == V_INT && !x.big) x.i = -x.i; /* |i| < 2^127 from literals and checked ops */
            else if (x.kind == V_INT || x.kind == V_FLOAT) x.f = -x.f;
            else x.c = -x.c;
        }
        *out = x;
        return true;
    }
    case N_CALL: {
        CalcVal f, arg;
        if (!calc_eval_node(p, nd->a, &f, err, errlen)) return false;
        if (nd->b >= 0 && !calc_eval_node(p, nd->b, &arg, err, errlen)) return false;
        if (nd->b >= 0 && nd->star == 1 && arg.kind != V_TUPLE) {
            char fs[96];
            calc_value_str(&f, fs, sizeof fs);
            snprintf(err, errlen, "%s argument after * must be an iterable, not %s", fs, calc_type_name(&arg));
            return false;
        }
        if (nd->b >= 0 && nd->star == 2) {
            char fs[96];
            calc_value_str(&f, fs, sizeof fs);
            snprintf(err, errlen, "%s argument after ** must be a mapping, not %s", fs, calc_type_name(&arg));
            return false;
        }
        snprintf(err, errlen, "'%s' object is not callable", calc_type_name(&f));
        return false;
    }
    default: {
        CalcVal a, b;
        if (!calc_eval_node(p, nd->a, &a, err, errlen)) return false;
        if (!calc_eval_node(p, nd->b, &b, err, errlen)) return false;
        return calc_binary(nd->kind, &a, &b, out, err, errlen);
    }
    }
}

/* str(round(float(eval(expr)), 2)) into out (>= 32 bytes), or -1 with the
 * exception text in err. */
static int calc_eval(const char *expr, char *out, char *err, size_t errlen) {
    CalcParser p = {.src = expr, .maxfetch = -1};
    p.toks = calc_tokenize(expr, &p.ntok);
    p.memo_sum = xmalloc((size_t)p.ntok * sizeof(int));
    p.memo_sum_end = xmalloc((size_t)p.ntok * sizeof(int));
    p.memo_expr = xmalloc((size_t)p.ntok * sizeof(int));
    p.memo_expr_end = xmalloc((size_t)p.ntok * sizeof(int));
    int rc = -1;
    int root = calc_parse_pass(&p);
    if (root < 0 && !p.raised) {
        /* CPython's second pass, with the diagnostic rules on. */
        p.diag = true;
        calc_parse_pass(&p);
        if (!p.raised) p.raised = "invalid syntax";
    }
    if (p.raised) {
        /* A tokenizer error later in the source beats the parser's message. */
        const CalcTok *last = &p.toks[p.ntok - 1];
        const char *msg = p.raised;
        if (last->kind == T_ERR && strcmp(last->msg, "'(' was never closed") != 0) msg = last->msg;
        bool empty = p.ntok == 1 && last->kind == T_END;
        snprintf(err, errlen, "%s (<string>, line %d)", msg, empty ? 0 : 1);
    } else {
        CalcVal v;
        if (calc_eval_node(&p, root, &v, err, errlen)) {
            double d;
            if (v.kind == V_INT || v.kind == V_FLOAT) {
                if (calc_to_double(&v, &d, err, errlen)) {
                    d = py_round2(d);
                    if (isnan(d)) strcpy(out, "nan"); /* repr(), not JSON's NaN/Infinity */
                    else if (isinf(d)) strcpy(out, d > 0 ? "inf" : "-inf");
                    else json_format_float(out, d);
                    rc = 0;
                }
            } else {
                snprintf(err, errlen, "float() argument must be a string or a real number, not '%s'",
                         calc_type_name(&v));
            }
        }
    }
    free(p.toks);
    free(p.nodes);
    free(p.memo_sum);
    free(p.memo_sum_end);
    free(p.memo_expr);
    free(p.memo_expr_end);
    return rc;
}

/* ---------------------------------------------------------------- agent tools */

static cJSON *retail_calculate(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *expr = arg_str(args, "expression");
    if (!expr) expr = "";
    for (const char *p = expr; *p; p++)
        if (!strchr("0123456789+-*/(). ", *p)) return tool_error(ctx, "Invalid characters in expression");
    char out[64];
    char err[256];
    if (calc_eval(expr, out, err, sizeof err) != 0) return tool_error(ctx, "%s", err);
    return cJSON_CreateString(out);
}

static cJSON *retail_cancel_pending_order(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *order_id = arg_str(args, "order_id");
    const char *reason = arg_str(args, "reason");
    const cJSON *order = order_find(env, order_id);
    if (!order) return tool_error(ctx, "Order not found");
    const char *status = json_get_str(order, "status");
    if (!status || strcmp(status, "pending") != 0) return tool_error(ctx, "Non-pending order cannot be cancelled");
    if (!reason || (strcmp(reason, "no longer needed") != 0 && strcmp(reason, "ordered by mistake") != 0))
        return tool_error(ctx, "Invalid reason");

    /* Refunds go back payment by payment; gift cards are credited at once,
     * so a failure part-way keeps the credits already made, as in Python. */
    const char *user_id = json_get_str(order, "user_id");
    cJSON *refunds = cJSON_CreateArray();
    const cJSON *history = json_get(order, "payment_history");
    for (const cJSON *pay = history ? history->child : NULL; pay; pay = pay->next) {
        const char *pm_id = json_get_str(pay, "payment_method_id");
        const cJSON *amount = json_get(pay, "amount");
        cJSON *refund = cJSON_CreateObject();
        cJSON_AddStringToObject(refund, "transaction_type", "refund");
        cJSON_AddItemToObject(refund, "amount", json_float(num_of(amount)));
        cJSON_AddItemToObject(refund, "payment_method_id", cJSON_CreateString(pm_id ? pm_id : ""));
        cJSON_AddItemToArray(refunds, refund);
        if (!user_find(env, user_id)) {
            cJSON_Delete(refunds);
            return tool_error(ctx, "User not found");
        }
        const cJSON *pm = payment_method_find(env, user_id, pm_id, ctx);
        if (!pm) {
            cJSON_Delete(refunds);
            return NULL;
        }
        if (is_gift_card(pm)) gift_card_add(payment_method_mut(env, user_id, pm_id), num_of(amount));
    }
    cJSON *o = db_get_mut(env->db, "orders", order_id);
    json_set(o, "status", cJSON_CreateString("cancelled"));
    json_set(o, "cancel_reason", cJSON_CreateString(reason));
    cJSON *hist = json_get(o, "payment_history");
    while (refunds->child) cJSON_AddItemToArray(hist, cJSON_DetachItemViaPointer(refunds, refunds->child));
    cJSON_Delete(refunds);
    return order_dump(o);
}

static cJSON *retail_exchange_delivered_order_items(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *order_id = arg_str(args, "order_id");
    const cJSON *item_ids = arg_get(args, "item_ids");
    const cJSON *new_item_ids = arg_get(args, "new_item_ids");
    const char *pm_id = arg_str(args, "payment_method_id");
    const cJSON *order = order_find(env, order_id);
    if (!order) return tool_error(ctx, "Order not found");
    const char *status = json_get_str(order, "status");
    if (!status || strcmp(status, "delivered") != 0) return tool_error(ctx, "Non-delivered order cannot be exchanged");
    const char *missing = first_missing_item(order, item_ids);
    if (missing) return tool_error(ctx, "Number of %s not found.", missing);
    int n = cJSON_GetArraySize(item_ids);
    if (n != cJSON_GetArraySize(new_item_ids)) return tool_error(ctx, "The number of items to be exchanged should match.");

    double diff = 0.0;
    const cJSON *old_id = item_ids ? item_ids->child : NULL;
    const cJSON *new_id = new_item_ids ? new_item_ids->child : NULL;
    for (; old_id && new_id; old_id = old_id->next, new_id = new_id->next) {
        const cJSON *item = order_item_find(order, old_id->valuestring);
        if (!item) return tool_error(ctx, "Item %s not found", old_id->valuestring);
        const cJSON *variant = variant_find(env, json_get_str(item, "product_id"), new_id->valuestring, ctx);
        if (!variant) return NULL;
        if (!cJSON_IsTrue(json_get(variant, "available")))
            return tool_error(ctx, "New item %s not found or available", new_id->valuestring);
        diff += num_of(json_get(variant, "price")) - num_of(json_get(item, "price"));
    }
    diff = py_round2(diff);

    const char *user_id = json_get_str(order, "user_id");
    const cJSON *pm = payment_method_find(env, user_id, pm_id, ctx);
    if (!pm) return NULL;
    if (is_gift_card(pm) && num_of(json_get(pm, "balance")) < diff)
        return tool_error(ctx, "Insufficient gift card balance to pay for the price difference");

    cJSON *o = db_get_mut(env->db, "orders", order_id);
    json_set(o, "status", cJSON_CreateString("exchange requested"));
    json_set(o, "exchange_items", sorted_ids(item_ids));
    json_set(o, "exchange_new_items", sorted_ids(new_item_ids));
    json_set(o, "exchange_payment_method_id", cJSON_CreateString(pm_id));
    /* Python's diff starts as int 0 and stays one when no items are given. */
    json_set(o, "exchange_price_difference", n > 0 ? json_float(diff) : json_int(0));
    return order_dump(o);
}

static cJSON *retail_find_user_id_by_name_zip(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *first = arg_str(args, "first_name");
    const char *last = arg_str(args, "last_name");
    const char *zip = arg_str(args, "zip");
    if (!first || !last || !zip) return tool_error(ctx, "User not found");
    char *first_l = lower_dup(first);
    char *last_l = lower_dup(last);
    const char *found = NULL;
    DbIter it;
    const char *key;
    const cJSON *user;
    db_iter_init(&it, env->db, "users");
    while (!found && db_iter_next(&it, &key, &user)) {
        const cJSON *name = json_get(user, "name");
        const char *uzip = json_get_str(json_get(user, "address"), "zip");
        if (lower_equal(json_get_str(name, "first_name"), first_l) &&
            lower_equal(json_get_str(name, "last_name"), last_l) && uzip && strcmp(uzip, zip) == 0)
            found = key;
    }
    free(first_l);
    free(last_l);
    if (!found) return tool_error(ctx, "User not found");
    return cJSON_CreateString(found);
}

static cJSON *retail_find_user_id_by_email(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *email = arg_str(args, "email");
    if (!email) return tool_error(ctx, "User not found");
    char *email_l = lower_dup(email);
    const char *found = NULL;
    DbIter it;
    const char *key;
    const cJSON *user;
    db_iter_init(&it, env->db, "users");
    while (!found && db_iter_next(&it, &key, &user))
        if (lower_equal(json_get_str(user, "email"), email_l)) found = key;
    free(email_l);
    if (!found) return tool_error(ctx, "User not found");
    return cJSON_CreateString(found);
}

static cJSON *retail_get_order_details(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *order = order_find(env, arg_str(args, "order_id"));
    if (!order) return tool_error(ctx, "Order not found");
    return order_dump(order);
}

static cJSON *retail_get_product_details(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *product_id = arg_str(args, "product_id");
    const cJSON *product = product_id ? db_get(env->db, "products", product_id) : NULL;
    if (!product) return tool_error(ctx, "Product not found");
    return cJSON_Duplicate(product, 1);
}

static cJSON *retail_get_item_details(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *item_id = arg_str(args, "item_id");
    DbIter it;
    const char *key;
    const cJSON *product;
    db_iter_init(&it, env->db, "products");
    while (item_id && db_iter_next(&it, &key, &product)) {
        const cJSON *variant = json_get(json_get(product, "variants"), item_id);
        if (variant) return cJSON_Duplicate(variant, 1);
    }
    return tool_error(ctx, "Item not found");
}

static cJSON *retail_get_user_details(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *user = user_find(env, arg_str(args, "user_id"));
    if (!user) return tool_error(ctx, "User not found");
    return cJSON_Duplicate(user, 1);
}

static cJSON *retail_list_all_product_types(Env *env, const cJSON *args, ToolCtx *ctx) {
    /* {product.name: product.product_id}: a later product of the same name wins. */
    cJSON *map = cJSON_CreateObject();
    DbIter it;
    const char *key;
    const cJSON *product;
    db_iter_init(&it, env->db, "products");
    while (db_iter_next(&it, &key, &product)) {
        const char *name = json_get_str(product, "name");
        const char *pid = json_get_str(product, "product_id");
        if (name && pid) json_set(map, name, cJSON_CreateString(pid));
    }
    char *text = json_dumps(map, JSON_DUMP_SORT_KEYS);
    cJSON_Delete(map);
    cJSON *out = cJSON_CreateString(text);
    free(text);
    return out;
}

static cJSON *retail_modify_pending_order_address(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *order_id = arg_str(args, "order_id");
    const cJSON *order = order_find(env, order_id);
    if (!order) return tool_error(ctx, "Order not found");
    const char *status = json_get_str(order, "status");
    if (!status || !strstr(status, "pending")) return tool_error(ctx, "Non-pending order cannot be modified");
    cJSON *o = db_get_mut(env->db, "orders", order_id);
    json_set(o, "address", address_from_args(args));
    return order_dump(o);
}

static cJSON *retail_modify_pending_order_items(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *order_id = arg_str(args, "order_id");
    const cJSON *item_ids = arg_get(args, "item_ids");
    const cJSON *new_item_ids = arg_get(args, "new_item_ids");
    const char *pm_id = arg_str(args, "payment_method_id");
    const cJSON *order = order_find(env, order_id);
    if (!order) return tool_error(ctx, "Order not found");
    const char *status = json_get_str(order, "status");
    if (!status || strcmp(status, "pending") != 0) return tool_error(ctx, "Non-pending order cannot be modified");
    const char *missing = first_missing_item(order, item_ids);
    if (missing) return tool_error(ctx, "%s not found", missing);
    if (cJSON_GetArraySize(item_ids) != cJSON_GetArraySize(new_item_ids))
        return tool_error(ctx, "The number of items to be exchanged should match");

    double diff = 0.0;
    const cJSON *variant = NULL; /* the last variant looked up: see below */
    const cJSON *old_id = item_ids ? item_ids->child : NULL;
    const cJSON *new_id = new_item_ids ? new_item_ids->child : NULL;
    for (; old_id && new_id; old_id = old_id->next, new_id = new_id->next) {
        if (strcmp(old_id->valuestring, new_id->valuestring) == 0)
            return tool_error(ctx, "The new item id should be different from the old item id");
        const cJSON *item = order_item_find(order, old_id->valuestring);
        if (!item) return tool_error(ctx, "Item %s not found", old_id->valuestring);
        variant = variant_find(env, json_get_str(item, "product_id"), new_id->valuestring, ctx);
        if (!variant) return NULL;
        if (!cJSON_IsTrue(json_get(variant, "available")))
            return tool_error(ctx, "New item %s not found or available", new_id->valuestring);
        diff += num_of(json_get(variant, "price")) - num_of(json_get(item, "price"));
    }

    const char *user_id = json_get_str(order, "user_id");
    const cJSON *pm = payment_method_find(env, user_id, pm_id, ctx);
    if (!pm) return NULL;
    bool gift = is_gift_card(pm);
    if (gift && num_of(json_get(pm, "balance")) < diff)
        return tool_error(ctx, "Insufficient gift card balance to pay for the new item");

    cJSON *o = db_get_mut(env->db, "orders", order_id);
    cJSON *pay = cJSON_CreateObject();
    cJSON_AddStringToObject(pay, "transaction_type", diff > 0 ? "payment" : "refund");
    cJSON_AddItemToObject(pay, "amount", json_float(fabs(diff)));
    cJSON_AddItemToObject(pay, "payment_method_id", cJSON_CreateString(pm_id));
    cJSON_AddItemToArray(json_get(o, "payment_history"), pay);
    if (gift) gift_card_add(payment_method_mut(env, user_id, pm_id), -diff);

    /* τ²-bench's second loop re-finds each item but takes price and options
     * from `variant`, the last one the first loop looked up: every modified
     * item gets that variant's price and options. Kept on purpose. */
    old_id = item_ids ? item_ids->child : NULL;
    new_id = new_item_ids ? new_item_ids->child : NULL;
    for (; old_id && new_id; old_id = old_id->next, new_id = new_id->next) {
        cJSON *item = order_item_find(o, old_id->valuestring);
        if (!item) return tool_error(ctx, "Item %s not found", old_id->valuestring);
        json_set(item, "item_id", cJSON_CreateString(new_id->valuestring));
        json_set(item, "price", json_float(num_of(json_get(variant, "price"))));
        json_set(item, "options", cJSON_Duplicate(json_get(variant, "options"), 1));
    }
    json_set(o, "status", cJSON_CreateString("pending (item modified)"));
    return order_dump(o);
}

static cJSON *retail_modify_pending_order_payment(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *order_id = arg_str(args, "order_id");
    const char *pm_id = arg_str(args, "payment_method_id");
    const cJSON *order = order_find(env, order_id);
    if (!order) return tool_error(ctx, "Order not found");
    const char *status = json_get_str(order, "status");
    if (!status || !strstr(status, "pending")) return tool_error(ctx, "Non-pending order cannot be modified");
    const char *user_id = json_get_str(order, "user_id");
    const cJSON *pm = payment_method_find(env, user_id, pm_id, ctx);
    if (!pm) return NULL;
    const cJSON *history = json_get(order, "payment_history");
    const cJSON *first = history ? history->child : NULL;
    const char *first_type = json_get_str(first, "transaction_type");
    if (cJSON_GetArraySize(history) != 1 || !first_type || strcmp(first_type, "payment") != 0)
        return tool_error(ctx, "There should be exactly one payment for a pending order");
    const char *old_pm_id = json_get_str(first, "payment_method_id");
    if (old_pm_id && strcmp(old_pm_id, pm_id) == 0)
        return tool_error(ctx, "The new payment method should be different from the current one");
    double amount = num_of(json_get(first, "amount"));
    bool gift = is_gift_card(pm);
    if (gift && num_of(json_get(pm, "balance")) < amount)
        return tool_error(ctx, "Insufficient gift card balance to pay for the order");

    cJSON *o = db_get_mut(env->db, "orders", order_id);
    cJSON *hist = json_get(o, "payment_history");
    char *old_id = xstrdup(old_pm_id ? old_pm_id : "");
    cJSON *pay = cJSON_CreateObject();
    cJSON_AddStringToObject(pay, "transaction_type", "payment");
    cJSON_AddItemToObject(pay, "amount", json_float(amount));
    cJSON_AddItemToObject(pay, "payment_method_id", cJSON_CreateString(pm_id));
    cJSON_AddItemToArray(hist, pay);
    cJSON *refund = cJSON_CreateObject();
    cJSON_AddStringToObject(refund, "transaction_type", "refund");
    cJSON_AddItemToObject(refund, "amount", json_float(amount));
    cJSON_AddItemToObject(refund, "payment_method_id", cJSON_CreateString(old_id));
    cJSON_AddItemToArray(hist, refund);
    if (gift) gift_card_add(payment_method_mut(env, user_id, pm_id), -amount);

    const cJSON *old_pm = payment_method_find(env, user_id, old_id, ctx);
    if (!old_pm) {
        free(old_id);
        return NULL;
    }
    if (is_gift_card(old_pm)) gift_card_add(payment_method_mut(env, user_id, old_id), amount);
    free(old_id);
    return order_dump(o);
}

static cJSON *retail_modify_user_address(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *user_id = arg_str(args, "user_id");
    if (!user_find(env, user_id)) return tool_error(ctx, "User not found");
    cJSON *user = db_get_mut(env->db, "users", user_id);
    json_set(user, "address", address_from_args(args));
    return cJSON_Duplicate(user, 1);
}

static cJSON *retail_return_delivered_order_items(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *order_id = arg_str(args, "order_id");
    const cJSON *item_ids = arg_get(args, "item_ids");
    const char *pm_id = arg_str(args, "payment_method_id");
    const cJSON *order = order_find(env, order_id);
    if (!order) return tool_error(ctx, "Order not found");
    const char *status = json_get_str(order, "status");
    if (!status || strcmp(status, "delivered") != 0) return tool_error(ctx, "Non-delivered order cannot be returned");
    const char *user_id = json_get_str(order, "user_id");
    if (!user_find(env, user_id)) return tool_error(ctx, "User not found");
    const cJSON *pm = payment_method_find(env, user_id, pm_id, ctx);
    if (!pm) return NULL;
    if (!is_gift_card(pm)) {
        const cJSON *history = json_get(order, "payment_history");
        if (!history || !history->child) return tool_error(ctx, "list index out of range");
        const char *orig = json_get_str(history->child, "payment_method_id");
        if (!orig || strcmp(orig, pm_id) != 0)
            return tool_error(ctx, "Payment method should be the original payment method");
    }
    if (first_missing_item(order, item_ids)) return tool_error(ctx, "Some item not found");

    cJSON *o = db_get_mut(env->db, "orders", order_id);
    json_set(o, "status", cJSON_CreateString("return requested"));
    json_set(o, "return_items", sorted_ids(item_ids));
    json_set(o, "return_payment_method_id", cJSON_CreateString(pm_id));
    return order_dump(o);
}

static cJSON *retail_transfer_to_human_agents(Env *env, const cJSON *args, ToolCtx *ctx) {
    return cJSON_CreateString("Transfer successful");
}

/* ---------------------------------------------------------------- domain */


/* ---------------------------------------------------------------- normalization */

/* pydantic coerces an int given for a float field. */
static bool needs_float(const cJSON *v) { return v && cJSON_IsNumber(v) && !json_is_float(v); }

static void make_float(cJSON *obj, const char *key) {
    const cJSON *v = json_get(obj, key);
    if (needs_float(v)) json_set(obj, key, json_float(v->valuedouble));
}

static bool order_needs_fix(const cJSON *order) {
    for (const DbField *f = ORDER_FIELDS; f->name; f++)
        if (!json_get(order, f->name)) return true;
    const cJSON *items = json_get(order, "items");
    for (const cJSON *it = items ? items->child : NULL; it; it = it->next)
        if (needs_float(json_get(it, "price"))) return true;
    const cJSON *hist = json_get(order, "payment_history");
    for (const cJSON *p = hist ? hist->child : NULL; p; p = p->next)
        if (needs_float(json_get(p, "amount"))) return true;
    return needs_float(json_get(order, "exchange_price_difference"));
}

static cJSON *order_fixed(const cJSON *order) {
    cJSON *o = order_dump(order);
    cJSON *items = json_get(o, "items");
    for (cJSON *it = items ? items->child : NULL; it; it = it->next) make_float(it, "price");
    cJSON *hist = json_get(o, "payment_history");
    for (cJSON *p = hist ? hist->child : NULL; p; p = p->next) make_float(p, "amount");
    make_float(o, "exchange_price_difference");
    return o;
}

static bool user_needs_fix(const cJSON *user) {
    const cJSON *pms = json_get(user, "payment_methods");
    for (const cJSON *pm = pms ? pms->child : NULL; pm; pm = pm->next)
        if (needs_float(json_get(pm, "balance"))) return true;
    return false;
}

static bool product_needs_fix(const cJSON *product) {
    const cJSON *variants = json_get(product, "variants");
    for (const cJSON *v = variants ? variants->child : NULL; v; v = v->next)
        if (needs_float(json_get(v, "price"))) return true;
    return false;
}

/* RetailDB.model_validate: Order's optional fields present (None) in class
 * order, float fields as floats. Only records that need it are rewritten,
 * so an episode's DB stays copy-on-write. */
static void retail_normalize(Env *env, bool is_user) {
    if (is_user || !env->db) return;
    DbIter it;
    const char *key;
    const cJSON *rec;
    db_iter_init(&it, env->db, "orders");
    while (db_iter_next(&it, &key, &rec))
        if (order_needs_fix(rec)) db_put(env->db, "orders", key, order_fixed(rec));
    db_iter_init(&it, env->db, "users");
    while (db_iter_next(&it, &key, &rec)) {
        if (!user_needs_fix(rec)) continue;
        cJSON *user = db_get_mut(env->db, "users", key);
        cJSON *pms = json_get(user, "payment_methods");
        for (cJSON *pm = pms ? pms->child : NULL; pm; pm = pm->next)
            if (json_get(pm, "balance")) make_float(pm, "balance");
    }
    db_iter_init(&it, env->db, "products");
    while (db_iter_next(&it, &key, &rec)) {
        if (!product_needs_fix(rec)) continue;
        cJSON *product = db_get_mut(env->db, "products", key);
        cJSON *variants = json_get(product, "variants");
        for (cJSON *v = variants ? variants->child : NULL; v; v = v->next) make_float(v, "price");
    }
}
/* OpenAI schemas exactly as τ²-bench's tool.openai_schema prints them. */
static const char SCHEMA_CALCULATE[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"calculate\",\"description\":\"Calculate the result of a mathe"
    "matical expression.\",\"parameters\":{\"properties\":{\"expression\":{\"description\":\"The mathematical e"
    "xpression to calculate, such as '2 + 2'. The expression can contain numbers, operators (+, -, *,"
    " /), parentheses, and spaces.\",\"title\":\"Expression\",\"type\":\"string\"}},\"required\":[\"expression\"],"
    "\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_CANCEL_PENDING_ORDER[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"cancel_pending_order\",\"description\":\"Cancel a pending ord"
    "er. If the order is already processed or delivered,\\n\\nit cannot be cancelled. The agent needs t"
    "o explain the cancellation detail\\nand ask for explicit user confirmation (yes/no) to proceed. I"
    "f the user confirms,\\nthe order status will be changed to 'cancelled' and the payment will be re"
    "funded.\\nThe refund will be added to the user's gift card balance immediately if the payment\\nwa"
    "s made using a gift card, otherwise the refund would take 5-7 business days to process.\\nThe fun"
    "ction returns the order details after the cancellation.\",\"parameters\":{\"properties\":{\"order_id\":"
    "{\"description\":\"The order id, such as '#W0000000'. Be careful there is a '#' symbol at the begin"
    "ning of the order id.\",\"title\":\"Order Id\",\"type\":\"string\"},\"reason\":{\"description\":\"The reason f"
    "or cancellation, which should be either 'no longer needed' or 'ordered by mistake'.\",\"title\":\"Re"
    "ason\",\"type\":\"string\"}},\"required\":[\"order_id\",\"reason\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_EXCHANGE_DELIVERED_ORDER_ITEMS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"exchange_delivered_order_items\",\"description\":\"Exchange i"
    "tems in a delivered order to new items of the same product type.\\n\\nFor a delivered order, retur"
    "n or exchange can be only done once by the agent.\\nThe agent needs to explain the exchange detai"
    "l and ask for explicit user confirmation (yes/no) to proceed.\",\"parameters\":{\"properties\":{\"orde"
    "r_id\":{\"description\":\"The order id, such as '#W0000000'. Be careful there is a '#' symbol at the"
    " beginning of the order id.\",\"title\":\"Order Id\",\"type\":\"string\"},\"item_ids\":{\"description\":\"The "
    "item ids to be exchanged, each such as '1008292230'. There could be duplicate items in the list."
    "\",\"items\":{\"type\":\"string\"},\"title\":\"Item Ids\",\"type\":\"array\"},\"new_item_ids\":{\"description\":\"Th"
    "e item ids to be exchanged for, each such as '1008292230'.\\nThere could be duplicate items in th"
    "e list. Each new item id should match the item id\\nin the same position and be of the same produ"
    "ct.\",\"items\":{\"type\":\"string\"},\"title\":\"New Item Ids\",\"type\":\"array\"},\"payment_method_id\":{\"desc"
    "ription\":\"The payment method id to pay or receive refund for the item price difference,\\nsuch as"
    " 'gift_card_0000000' or 'credit_card_0000000'. These can be looked up\\nfrom the user or order de"
    "tails.\",\"title\":\"Payment Method Id\",\"type\":\"string\"}},\"required\":[\"order_id\",\"item_ids\",\"new_ite"
    "m_ids\",\"payment_method_id\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_FIND_USER_ID_BY_NAME_ZIP[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"find_user_id_by_name_zip\",\"description\":\"Find user id by "
    "first name, last name, and zip code. If the user is not found, the function\\n\\nwill return an er"
    "ror message. By default, find user id by email, and only call this function\\nif the user is not "
    "found by email or cannot remember email.\",\"parameters\":{\"properties\":{\"first_name\":{\"description"
    "\":\"The first name of the customer, such as 'John'.\",\"title\":\"First Name\",\"type\":\"string\"},\"last_"
    "name\":{\"description\":\"The last name of the customer, such as 'Doe'.\",\"title\":\"Last Name\",\"type\":"
    "\"string\"},\"zip\":{\"description\":\"The zip code of the customer, such as '12345'.\",\"title\":\"Zip\",\"t"
    "ype\":\"string\"}},\"required\":[\"first_name\",\"last_name\",\"zip\"],\"title\":\"parameters\",\"type\":\"object\""
    "}}}";

static const char SCHEMA_FIND_USER_ID_BY_EMAIL[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"find_user_id_by_email\",\"description\":\"Find user id by ema"
    "il. If the user is not found, the function will return an error message.\",\"parameters\":{\"propert"
    "ies\":{\"email\":{\"description\":\"The email of the user, such as 'something@example.com'.\",\"title\":\""
    "Email\",\"type\":\"string\"}},\"required\":[\"email\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_GET_ORDER_DETAILS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_order_details\",\"description\":\"Get the status and deta"
    "ils of an order.\",\"parameters\":{\"properties\":{\"order_id\":{\"description\":\"The order id, such as '"
    "#W0000000'. Be careful there is a '#' symbol at the beginning of the order id.\",\"title\":\"Order I"
    "d\",\"type\":\"string\"}},\"required\":[\"order_id\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_GET_PRODUCT_DETAILS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_product_details\",\"description\":\"Get the inventory det"
    "ails of a product.\",\"parameters\":{\"properties\":{\"product_id\":{\"description\":\"The product id, suc"
    "h as '6086499569'. Be careful the product id is different from the item id.\",\"title\":\"Product Id"
    "\",\"type\":\"string\"}},\"required\":[\"product_id\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_GET_ITEM_DETAILS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_item_details\",\"description\":\"Get the inventory detail"
    "s of an item.\",\"parameters\":{\"properties\":{\"item_id\":{\"description\":\"The item id, such as '60864"
    "99569'. Be careful the item id is different from the product id.\",\"title\":\"Item Id\",\"type\":\"stri"
    "ng\"}},\"required\":[\"item_id\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_GET_USER_DETAILS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_user_details\",\"description\":\"Get the details of a use"
    "r, including their orders.\",\"parameters\":{\"properties\":{\"user_id\":{\"description\":\"The user id, s"
    "uch as 'sara_doe_496'.\",\"title\":\"User Id\",\"type\":\"string\"}},\"required\":[\"user_id\"],\"title\":\"para"
    "meters\",\"type\":\"object\"}}}";

static const char SCHEMA_LIST_ALL_PRODUCT_TYPES[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"list_all_product_types\",\"description\":\"List the name and "
    "product id of all product types.\\n\\nEach product type has a variety of different items with uniq"
    "ue item ids and options.\\nThere are only 50 product types in the store.\",\"parameters\":{\"properti"
    "es\":{},\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_MODIFY_PENDING_ORDER_ADDRESS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"modify_pending_order_address\",\"description\":\"Modify the s"
    "hipping address of a pending order. The agent needs to explain the modification detail and ask f"
    "or explicit user confirmation (yes/no) to proceed.\",\"parameters\":{\"properties\":{\"order_id\":{\"des"
    "cription\":\"The order id, such as '#W0000000'. Be careful there is a '#' symbol at the beginning "
    "of the order id.\",\"title\":\"Order Id\",\"type\":\"string\"},\"address1\":{\"description\":\"The first line "
    "of the address, such as '123 Main St'.\",\"title\":\"Address1\",\"type\":\"string\"},\"address2\":{\"descrip"
    "tion\":\"The second line of the address, such as 'Apt 1' or ''.\",\"title\":\"Address2\",\"type\":\"string"
    "\"},\"city\":{\"description\":\"The city, such as 'San Francisco'.\",\"title\":\"City\",\"type\":\"string\"},\"s"
    "tate\":{\"description\":\"The state, such as 'CA'.\",\"title\":\"State\",\"type\":\"string\"},\"country\":{\"des"
    "cription\":\"The country, such as 'USA'.\",\"title\":\"Country\",\"type\":\"string\"},\"zip\":{\"description\":"
    "\"The zip code, such as '12345'.\",\"title\":\"Zip\",\"type\":\"string\"}},\"required\":[\"order_id\",\"address"
    "1\",\"address2\",\"city\",\"state\",\"country\",\"zip\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_MODIFY_PENDING_ORDER_ITEMS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"modify_pending_order_items\",\"description\":\"Modify items i"
    "n a pending order to new items of the same product type. For a pending order, this function can "
    "only be called once. The agent needs to explain the exchange detail and ask for explicit user co"
    "nfirmation (yes/no) to proceed.\",\"parameters\":{\"properties\":{\"order_id\":{\"description\":\"The orde"
    "r id, such as '#W0000000'. Be careful there is a '#' symbol at the beginning of the order id.\",\""
    "title\":\"Order Id\",\"type\":\"string\"},\"item_ids\":{\"description\":\"The item ids to be modified, each "
    "such as '1008292230'. There could be duplicate items in the list.\",\"items\":{\"type\":\"string\"},\"ti"
    "tle\":\"Item Ids\",\"type\":\"array\"},\"new_item_ids\":{\"description\":\"The item ids to be modified for, "
    "each such as '1008292230'. There could be duplicate items in the list. Each new item id should m"
    "atch the item id in the same position and be of the same product.\",\"items\":{\"type\":\"string\"},\"ti"
    "tle\":\"New Item Ids\",\"type\":\"array\"},\"payment_method_id\":{\"description\":\"The payment method id to"
    " pay or receive refund for the item price difference, such as 'gift_card_0000000' or 'credit_car"
    "d_0000000'. These can be looked up from the user or order details.\",\"title\":\"Payment Method Id\","
    "\"type\":\"string\"}},\"required\":[\"order_id\",\"item_ids\",\"new_item_ids\",\"payment_method_id\"],\"title\":"
    "\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_MODIFY_PENDING_ORDER_PAYMENT[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"modify_pending_order_payment\",\"description\":\"Modify the p"
    "ayment method of a pending order. The agent needs to explain the modification detail and ask for"
    " explicit user confirmation (yes/no) to proceed.\",\"parameters\":{\"properties\":{\"order_id\":{\"descr"
    "iption\":\"The order id, such as '#W0000000'. Be careful there is a '#' symbol at the beginning of"
    " the order id.\",\"title\":\"Order Id\",\"type\":\"string\"},\"payment_method_id\":{\"description\":\"The paym"
    "ent method id to pay or receive refund for the item price difference, such as 'gift_card_0000000"
    "' or 'credit_card_0000000'. These can be looked up from the user or order details.\",\"title\":\"Pay"
    "ment Method Id\",\"type\":\"string\"}},\"required\":[\"order_id\",\"payment_method_id\"],\"title\":\"parameter"
    "s\",\"type\":\"object\"}}}";

static const char SCHEMA_MODIFY_USER_ADDRESS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"modify_user_address\",\"description\":\"Modify the default ad"
    "dress of a user. The agent needs to explain the modification detail and ask for explicit user co"
    "nfirmation (yes/no) to proceed.\",\"parameters\":{\"properties\":{\"user_id\":{\"description\":\"The user "
    "id, such as 'sara_doe_496'.\",\"title\":\"User Id\",\"type\":\"string\"},\"address1\":{\"description\":\"The f"
    "irst line of the address, such as '123 Main St'.\",\"title\":\"Address1\",\"type\":\"string\"},\"address2\""
    ":{\"description\":\"The second line of the address, such as 'Apt 1' or ''.\",\"title\":\"Address2\",\"typ"
    "e\":\"string\"},\"city\":{\"description\":\"The city, such as 'San Francisco'.\",\"title\":\"City\",\"type\":\"s"
    "tring\"},\"state\":{\"description\":\"The state, such as 'CA'.\",\"title\":\"State\",\"type\":\"string\"},\"coun"
    "try\":{\"description\":\"The country, such as 'USA'.\",\"title\":\"Country\",\"type\":\"string\"},\"zip\":{\"des"
    "cription\":\"The zip code, such as '12345'.\",\"title\":\"Zip\",\"type\":\"string\"}},\"required\":[\"user_id\""
    ",\"address1\",\"address2\",\"city\",\"state\",\"country\",\"zip\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_RETURN_DELIVERED_ORDER_ITEMS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"return_delivered_order_items\",\"description\":\"Return some "
    "items of a delivered order.\\n\\nThe order status will be changed to 'return requested'.\\nThe agen"
    "t needs to explain the return detail and ask for explicit user confirmation (yes/no) to proceed."
    "\\nThe user will receive follow-up email for how and where to return the item.\",\"parameters\":{\"pr"
    "operties\":{\"order_id\":{\"description\":\"The order id, such as '#W0000000'. Be careful there is a '"
    "#' symbol at the beginning of the order id.\",\"title\":\"Order Id\",\"type\":\"string\"},\"item_ids\":{\"de"
    "scription\":\"The item ids to be returned, each such as '1008292230'. There could be duplicate ite"
    "ms in the list.\",\"items\":{\"type\":\"string\"},\"title\":\"Item Ids\",\"type\":\"array\"},\"payment_method_id"
    "\":{\"description\":\"The payment method id to pay or receive refund for the item price difference, "
    "such as 'gift_card_0000000' or 'credit_card_0000000'.\\nThese can be looked up from the user or o"
    "rder details.\",\"title\":\"Payment Method Id\",\"type\":\"string\"}},\"required\":[\"order_id\",\"item_ids\",\""
    "payment_method_id\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_TRANSFER_TO_HUMAN_AGENTS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"transfer_to_human_agents\",\"description\":\"Transfer the use"
    "r to a human agent, with a summary of the user's issue.\\n\\nOnly transfer if\\n -  the user explic"
    "itly asks for a human agent\\n -  given the policy and the available tools, you cannot solve the "
    "user's issue.\",\"parameters\":{\"properties\":{\"summary\":{\"description\":\"A summary of the user's iss"
    "ue.\",\"title\":\"Summary\",\"type\":\"string\"}},\"required\":[\"summary\"],\"title\":\"parameters\",\"type\":\"obj"
    "ect\"}}}";

static const ToolDef RETAIL_TOOLS[] = {
    {"calculate", retail_calculate, false, SCHEMA_CALCULATE},
    {"cancel_pending_order", retail_cancel_pending_order, true, SCHEMA_CANCEL_PENDING_ORDER},
    {"exchange_delivered_order_items", retail_exchange_delivered_order_items, true, SCHEMA_EXCHANGE_DELIVERED_ORDER_ITEMS},
    {"find_user_id_by_name_zip", retail_find_user_id_by_name_zip, false, SCHEMA_FIND_USER_ID_BY_NAME_ZIP},
    {"find_user_id_by_email", retail_find_user_id_by_email, false, SCHEMA_FIND_USER_ID_BY_EMAIL},
    {"get_order_details", retail_get_order_details, false, SCHEMA_GET_ORDER_DETAILS},
    {"get_product_details", retail_get_product_details, false, SCHEMA_GET_PRODUCT_DETAILS},
    {"get_item_details", retail_get_item_details, false, SCHEMA_GET_ITEM_DETAILS},
    {"get_user_details", retail_get_user_details, false, SCHEMA_GET_USER_DETAILS},
    {"list_all_product_types", retail_list_all_product_types, false, SCHEMA_LIST_ALL_PRODUCT_TYPES},
    {"modify_pending_order_address", retail_modify_pending_order_address, true, SCHEMA_MODIFY_PENDING_ORDER_ADDRESS},
    {"modify_pending_order_items", retail_modify_pending_order_items, true, SCHEMA_MODIFY_PENDING_ORDER_ITEMS},
    {"modify_pending_order_payment", retail_modify_pending_order_payment, true, SCHEMA_MODIFY_PENDING_ORDER_PAYMENT},
    {"modify_user_address", retail_modify_user_address, true, SCHEMA_MODIFY_USER_ADDRESS},
    {"return_delivered_order_items", retail_return_delivered_order_items, true, SCHEMA_RETURN_DELIVERED_ORDER_ITEMS},
    {"transfer_to_human_agents", retail_transfer_to_human_agents, false, SCHEMA_TRANSFER_TO_HUMAN_AGENTS},
};

static char *retail_load_policy(const char *domain_dir, char *err, size_t errlen) {
    return domain_read_text(domain_dir, "policy.md", err, errlen);
}

const DomainSpec DOMAIN_RETAIL = {
    .name = "retail",
    .agent_tools = RETAIL_TOOLS,
    .n_agent_tools = (int)(sizeof RETAIL_TOOLS / sizeof RETAIL_TOOLS[0]),
    .agent_funcs = NULL,
    .n_agent_funcs = 0,
    .user_tools = NULL,
    .n_user_tools = 0,
    .user_funcs = NULL,
    .n_user_funcs = 0,
    .db_file = "db.json",
    .user_db_file = NULL,
    .db_model = &RETAIL_DB_MODEL,
    .user_db_model = NULL,
    .load_policy = retail_load_policy,
    .normalize_db = retail_normalize,
    .sync = NULL,
};
