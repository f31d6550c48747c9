/* telecom.c — τ²-bench telecom, the agent's side: customers, lines, plans,
 * devices and bills of a mobile carrier (TelecomTools), plus the domain's
 * sync from the carrier's records to the user's phone (sync_tools).
 *
 * The agent DB is TelecomDB.model_dump(): five lists (plans, customers,
 * lines, bills, devices) of small records. Records are found by linear
 * search over the list, as in the Python (the first match wins, duplicates
 * included); the lists hold a few dozen records, so a search costs less
 * than a hash lookup's setup. Writes take the episode's own copy of a list
 * with db_table_mut and address records by their index.
 *
 * Values are kept as model_dump prints them through json.dumps(default=str):
 * dates "YYYY-MM-DD", datetimes "YYYY-MM-DD HH:MM:SS", enums by value,
 * float fields as floats (telecom_normalize_db makes loaded data so).
 *
 * "Today" is fixed by the Python code (utils.get_today: 2025-02-25), so every
 * date the tools compute is a constant; each is derived in a comment.
 *
 * One deliberate difference: refuel_data on a customer without a draft bill
 * creates one whose id τ²-bench draws from uuid4 ("B" + 8 hex digits). Here
 * the 8 hex digits are FNV-1a of "<customer_id>:<number of bills>", so
 * replays are reproducible and a gold replay matches the episode it grades.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "tau2/db.h"
#include "tau2/domains/domains.h"
#include "tau2/env.h"

/* ------------------------------------------------------------ fixed dates */

#define TEL_TODAY "2025-02-25"
/* get_data_usage: date(2025, 3, 1) - 1 day. */
#define TEL_CYCLE_END "2025-02-28"
/* _apply_one_time_charge: (2025-02-01 + 32 days).replace(day=1) = 2025-03-01;
 * period end is 2025-04-01 - 1 day; due 14 days after issue. */
#define TEL_DRAFT_START "2025-03-01"
#define TEL_DRAFT_END "2025-03-31"
#define TEL_DRAFT_DUE "2025-03-15"
/* suspend_line_for_overdue_bill: last month is 2025-01-01 .. 2025-01-31,
 * due 14 days after its first day. */
#define TEL_OVERDUE_START "2025-01-01"
#define TEL_OVERDUE_END "2025-01-31"
#define TEL_OVERDUE_DUE "2025-01-15"

/* The user side's table sizes. DomainSpec is a constant initializer and
 * TELECOM_USER_N_TOOLS / _N_FUNCS (extern const int) are not constant
 * expressions in C, so the counts are repeated here and checked against
 * them when the domain loads (telecom_load_policy). */
enum { TEL_USER_TOOLS_COUNT = 30, TEL_USER_FUNCS_COUNT = 27 };

/* ------------------------------------------------------------ Python values */

static bool str_eq(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

/* Python truthiness of a stored value (fields assigned without validation
 * may hold any JSON type). */
static bool py_truthy(const cJSON *v) {
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return false;
    if (cJSON_IsTrue(v)) return true;
    if (cJSON_IsNumber(v)) return v->valuedouble != 0;
    if (cJSON_IsString(v)) return v->valuestring[0] != '\0';
    return v->child != NULL;
}

/* Append Python's str() of a JSON value: str as is, numbers as repr,
 * True/False/None; containers approximated by their JSON text. */
static void py_str(SBuf *b, const cJSON *v) {
    char num[JSON_NUMBER_BUFSIZE];
    if (!v || cJSON_IsNull(v)) {
        sbuf_puts(b, "None");
    } else if (cJSON_IsString(v)) {
        sbuf_puts(b, v->valuestring);
    } else if (cJSON_IsBool(v)) {
        sbuf_puts(b, cJSON_IsTrue(v) ? "True" : "False");
    } else if (cJSON_IsNumber(v)) {
        json_format_number(num, v);
        sbuf_puts(b, num);
    } else {
        json_dump(b, v, 0);
    }
}

/* A function argument as the Python code sees it: `key` is the string to
 * match record ids against (NULL when the value is not a str, which equals
 * no id), `text` its str() for messages. */
typedef struct {
    const char *key;
    const char *text;
    char *owned;
} PyArg;

static void pyarg_init(PyArg *a, const cJSON *v) {
    a->owned = NULL;
    if (cJSON_IsString(v)) {
        a->key = a->text = v->valuestring;
        return;
    }
    SBuf b;
    sbuf_init(&b);
    py_str(&b, v);
    a->key = NULL;
    a->text = a->owned = sbuf_take(&b);
}

static void pyarg_free(PyArg *a) { free(a->owned); }

/* A number result of Python arithmetic on two numbers: float when either is. */
static cJSON *py_number(double v, const cJSON *a, const cJSON *b) {
    return (json_is_float(a) || json_is_float(b)) ? json_float(v) : json_int(v);
}

/* Bind keyword arguments the way a Python call does, with its TypeError
 * texts: unknown names first, then missing ones. `params` ends with NULL;
 * every parameter is required except those from index `nreq` on. */
static bool bind_args(ToolCtx *ctx, const char *fname, const cJSON *args, const char *const *params, int nreq) {
    for (const cJSON *a = args ? args->child : NULL; a; a = a->next) {
        bool known = false;
        for (int i = 0; params[i] && !known; i++) known = strcmp(params[i], a->string) == 0;
        if (!known) {
            tool_error(ctx, "TelecomTools.%s() got an unexpected keyword argument '%s'", fname, a->string);
            return false;
        }
    }
    const char *missing[8];
    int nmiss = 0;
    for (int i = 0; i < nreq && params[i]; i++)
        if (!json_get(args, params[i]) && nmiss < 8) missing[nmiss++] = params[i];
    if (nmiss == 0) return true;
    SBuf b;
    sbuf_init(&b);
    for (int i = 0; i < nmiss; i++) {
        if (i > 0) sbuf_puts(&b, nmiss == 2 ? " and " : (i == nmiss - 1 ? ", and " : ", "));
        sbuf_printf(&b, "'%s'", missing[i]);
    }
    tool_error(ctx, "TelecomTools.%s() missing %d required positional argument%s: %s", fname, nmiss,
               nmiss == 1 ? "" : "s", b.data);
    sbuf_free(&b);
    return false;
}

/* ------------------------------------------------------------ record fields */

/* Field positions in normalized records (model class order). Lookups try
 * the position first and fall back to a search by name, so a record of
 * another shape still reads right; this keeps the per-call sync cheap. */
enum { ID_FIELD = 0 };
enum { LINE_PHONE = 1, LINE_STATUS = 2, LINE_PLAN = 3, LINE_USED = 5, LINE_REFUELED = 6, LINE_ROAMING = 7 };
enum { PLAN_LIMIT = 2, PLAN_REFUEL_PRICE = 4 };
enum { BILL_TOTAL = 5, BILL_STATUS = 8 };
enum { CUSTOMER_PHONE = 4, CUSTOMER_LINE_IDS = 8, CUSTOMER_BILL_IDS = 9 };

static const cJSON *field(const cJSON *rec, int pos, const char *name) {
    const cJSON *c = rec ? rec->child : NULL;
    for (int i = 0; c && i < pos; i++) c = c->next;
    if (c && c->string && strcmp(c->string, name) == 0) return c;
    return json_get(rec, name);
}

static const char *field_str(const cJSON *rec, int pos, const char *name) {
    const cJSON *v = field(rec, pos, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num_of(const cJSON *v) { return cJSON_IsNumber(v) ? v->valuedouble : 0.0; }

/* ------------------------------------------------------------ record lookup */

/* The list table `name` of the agent DB, or NULL when it is not a list. */
static const cJSON *tel_list(const Env *env, const char *name) {
    const cJSON *t = db_table(env->db, name);
    return cJSON_IsArray(t) ? t : NULL;
}

/* Index of the first record whose field `name` (usually at `pos`) is the
 * string `key`, or -1. */
static int tel_index(const cJSON *list, int pos, const char *name, const char *key) {
    if (!list || !key) return -1;
    int i = 0;
    for (const cJSON *r = list->child; r; r = r->next, i++)
        if (str_eq(field_str(r, pos, name), key)) return i;
    return -1;
}

/* The episode's own copy of record `idx` of list `name`. */
static cJSON *tel_mut(Env *env, const char *name, int idx) {
    return cJSON_GetArrayItem(db_table_mut(env->db, name), idx);
}

typedef struct {
    const char *table;
    const char *id_field;
    const char *label; /* the model's name in "<label> with ID <id> not found" */
} Kind;

static const Kind K_CUSTOMER = {"customers", "customer_id", "Customer"};
static const Kind K_LINE = {"lines", "line_id", "Line"};
static const Kind K_PLAN = {"plans", "plan_id", "Plan"};
static const Kind K_DEVICE = {"devices", "device_id", "Device"};
static const Kind K_BILL = {"bills", "bill_id", "Bill"};

/* The tools' _get_<kind>_by_id: the record and its index, or NULL after
 * "<Kind> with ID <id> not found". */
static const cJSON *tel_get(const Env *env, const Kind *k, const char *key, const char *text, int *idx,
                            ToolCtx *ctx) {
    const cJSON *list = tel_list(env, k->table);
    int i = tel_index(list, ID_FIELD, k->id_field, key);
    if (idx) *idx = i;
    if (i < 0) return tool_error(ctx, "%s with ID %s not found", k->label, text);
    return cJSON_GetArrayItem(list, i);
}

static const cJSON *tel_get_arg(const Env *env, const Kind *k, const PyArg *a, int *idx, ToolCtx *ctx) {
    return tel_get(env, k, a->key, a->text, idx, ctx);
}

/* Same for an id stored in a record (an element of line_ids / bill_ids). */
static const cJSON *tel_get_ref(const Env *env, const Kind *k, const cJSON *ref, int *idx, ToolCtx *ctx) {
    PyArg a;
    pyarg_init(&a, ref);
    const cJSON *r = tel_get_arg(env, k, &a, idx, ctx);
    pyarg_free(&a);
    return r;
}

/* `key in list_of_ids` (a Python list of str). */
static bool ids_contain(const cJSON *ids, const char *key) {
    if (!cJSON_IsArray(ids) || !key) return false;
    for (const cJSON *x = ids->child; x; x = x->next)
        if (cJSON_IsString(x) && strcmp(x->valuestring, key) == 0) return true;
    return false;
}

/* _get_target_line: the customer must exist and list the line. */
static const cJSON *tel_target_line(const Env *env, const PyArg *cust, const PyArg *line, int *idx,
                                    ToolCtx *ctx) {
    const cJSON *c = tel_get_arg(env, &K_CUSTOMER, cust, NULL, ctx);
    if (!c) return NULL;
    if (!ids_contain(field(c, CUSTOMER_LINE_IDS, "line_ids"), line->key))
        return tool_error(ctx, "Line %s not found for customer %s", line->text, cust->text);
    return tel_get_arg(env, &K_LINE, line, idx, ctx);
}

/* get_customer_by_phone: the first customer whose contact number or one of
 * whose lines has the number. A dangling line id raises, as in Python.
 * Returns the customer or NULL; *found false means "not found" (no error). */
static const cJSON *tel_customer_by_phone(const Env *env, const char *phone, bool *found, ToolCtx *ctx) {
    *found = false;
    const cJSON *customers = tel_list(env, "customers");
    for (const cJSON *c = customers ? customers->child : NULL; c; c = c->next) {
        if (str_eq(field_str(c, CUSTOMER_PHONE, "phone_number"), phone)) {
            *found = true;
            return c;
        }
        const cJSON *ids = field(c, CUSTOMER_LINE_IDS, "line_ids");
        for (const cJSON *id = cJSON_IsArray(ids) ? ids->child : NULL; id; id = id->next) {
            const cJSON *line = tel_get_ref(env, &K_LINE, id, NULL, ctx);
            if (!line) return NULL;
            if (str_eq(field_str(line, LINE_PHONE, "phone_number"), phone)) {
                *found = true;
                return c;
            }
        }
    }
    return NULL;
}

/* The customer's bills in status "Awaiting Payment", in bill_ids order:
 * indexes into the bills list written to out (at most cap); returns the
 * count, or -1 after an error (a dangling bill id). */
static int tel_bills_awaiting(const Env *env, const cJSON *customer, int *out, int cap, ToolCtx *ctx) {
    int n = 0;
    const cJSON *ids = field(customer, CUSTOMER_BILL_IDS, "bill_ids");
    for (const cJSON *id = cJSON_IsArray(ids) ? ids->child : NULL; id; id = id->next) {
        int idx;
        const cJSON *bill = tel_get_ref(env, &K_BILL, id, &idx, ctx);
        if (!bill) return -1;
        if (str_eq(field_str(bill, BILL_STATUS, "status"), "Awaiting Payment")) {
            if (n < cap) out[n] = idx;
            n++;
        }
    }
    return n;
}

/* ------------------------------------------------------------ agent tools */

static const char *const P_PHONE[] = {"phone_number", NULL};
static const char *const P_CUSTOMER[] = {"customer_id", NULL};
static const char *const P_NAME[] = {"full_name", "dob", NULL};
static const char *const P_ID[] = {"id", NULL};
static const char *const P_CUST_LINE[] = {"customer_id", "line_id", NULL};
static const char *const P_SUSPEND[] = {"customer_id", "line_id", "reason", NULL};
static const char *const P_BILLS[] = {"customer_id", "limit", NULL};
static const char *const P_PAYMENT[] = {"customer_id", "bill_id", NULL};
static const char *const P_SUMMARY[] = {"summary", NULL};
static const char *const P_REFUEL[] = {"customer_id", "line_id", "gb_amount", NULL};

static cJSON *tel_get_customer_by_phone(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "get_customer_by_phone", args, P_PHONE, 1)) return NULL;
    PyArg phone;
    pyarg_init(&phone, json_get(args, "phone_number"));
    bool found;
    const cJSON *c = tel_customer_by_phone(env, phone.key, &found, ctx);
    cJSON *out = NULL;
    if (found) out = cJSON_Duplicate(c, 1);
    else if (!ctx->failed) tool_error(ctx, "Customer with phone number %s not found", phone.text);
    pyarg_free(&phone);
    return out;
}

static cJSON *tel_get_customer_by_id(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "get_customer_by_id", args, P_CUSTOMER, 1)) return NULL;
    PyArg id;
    pyarg_init(&id, json_get(args, "customer_id"));
    const cJSON *c = tel_get_arg(env, &K_CUSTOMER, &id, NULL, ctx);
    pyarg_free(&id);
    return c ? cJSON_Duplicate(c, 1) : NULL;
}

/* str.lower() equality. Only ASCII letters are folded: the stored names are
 * ASCII, and no non-ASCII character lowers to a lone ASCII letter except
 * the Kelvin sign (U+212A), which is folded to 'k' as well. */
static bool lower_equal(const char *a, const char *b) {
    for (;;) {
        int ca = (unsigned char)*a, cb = (unsigned char)*b;
        int la = 1, lb = 1;
        if (ca == 0xE2 && (unsigned char)a[1] == 0x84 && (unsigned char)a[2] == 0xAA) ca = 'k', la = 3;
        if (cb == 0xE2 && (unsigned char)b[1] == 0x84 && (unsigned char)b[2] == 0xAA) cb = 'k', lb = 3;
        if (ca >= 'A' && ca <= 'Z') ca += 'a' - 'A';
        if (cb >= 'A' && cb <= 'Z') cb += 'a' - 'A';
        if (ca != cb) return false;
        if (ca == 0) return true;
        a += la;
        b += lb;
    }
}

static cJSON *tel_get_customer_by_name(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "get_customer_by_name", args, P_NAME, 2)) return NULL;
    const char *name = arg_str(args, "full_name");
    const char *dob = arg_str(args, "dob");
    cJSON *out = cJSON_CreateArray();
    const cJSON *customers = tel_list(env, "customers");
    for (const cJSON *c = customers ? customers->child : NULL; c && name && dob; c = c->next) {
        const char *cn = json_get_str(c, "full_name");
        if (cn && lower_equal(cn, name) && str_eq(json_get_str(c, "date_of_birth"), dob))
            cJSON_AddItemToArray(out, cJSON_Duplicate(c, 1));
    }
    return out;
}

static cJSON *tel_get_details_by_id(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "get_details_by_id", args, P_ID, 1)) return NULL;
    const char *id = arg_str(args, "id");
    if (!id) return tool_error(ctx, "'%s' object has no attribute 'startswith'", "NoneType");
    const Kind *k = NULL;
    switch (id[0]) {
    case 'L': k = &K_LINE; break;
    case 'D': k = &K_DEVICE; break;
    case 'B': k = &K_BILL; break;
    case 'C': k = &K_CUSTOMER; break;
    case 'P': k = &K_PLAN; break;
    default: return tool_error(ctx, "Unknown ID format or type: %s", id);
    }
    const cJSON *r = tel_get(env, k, id, id, NULL, ctx);
    return r ? cJSON_Duplicate(r, 1) : NULL;
}

/* {"message": msg, "line": <the line's model_dump>} */
static cJSON *line_message(const char *msg, const cJSON *line) {
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "message", msg);
    cJSON_AddItemToObject(out, "line", cJSON_Duplicate(line, 1));
    return out;
}

static cJSON *tel_suspend_line(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "suspend_line", args, P_SUSPEND, 3)) return NULL;
    PyArg cust, line_id;
    pyarg_init(&cust, json_get(args, "customer_id"));
    pyarg_init(&line_id, json_get(args, "line_id"));
    int idx;
    cJSON *out = NULL;
    const cJSON *line = tel_target_line(env, &cust, &line_id, &idx, ctx);
    if (line && !str_eq(field_str(line, LINE_STATUS, "status"), "Active")) {
        tool_error(ctx, "Line must be active to suspend");
    } else if (line) {
        cJSON *m = tel_mut(env, "lines", idx);
        json_set(m, "status", cJSON_CreateString("Suspended"));
        json_set(m, "suspension_start_date", cJSON_CreateString(TEL_TODAY));
        out = line_message("Line suspended successfully. $5/month holding fee will apply.", m);
    }
    pyarg_free(&cust);
    pyarg_free(&line_id);
    return out;
}

static cJSON *tel_resume_line(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "resume_line", args, P_CUST_LINE, 2)) return NULL;
    PyArg cust, line_id;
    pyarg_init(&cust, json_get(args, "customer_id"));
    pyarg_init(&line_id, json_get(args, "line_id"));
    int idx;
    cJSON *out = NULL;
    const cJSON *line = tel_target_line(env, &cust, &line_id, &idx, ctx);
    const char *status = line ? field_str(line, LINE_STATUS, "status") : NULL;
    if (line && !str_eq(status, "Suspended") && !str_eq(status, "Pending Activation")) {
        tool_error(ctx, "Line must be suspended to resume");
    } else if (line) {
        cJSON *m = tel_mut(env, "lines", idx);
        json_set(m, "status", cJSON_CreateString("Active"));
        json_set(m, "suspension_start_date", cJSON_CreateNull());
        out = line_message("Line resumed successfully", m);
    }
    pyarg_free(&cust);
    pyarg_free(&line_id);
    return out;
}

static const char *issue_date(const cJSON *bill) {
    const char *s = json_get_str(bill, "issue_date");
    return s ? s : "";
}

static cJSON *tel_get_bills_for_customer(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "get_bills_for_customer", args, P_BILLS, 1)) return NULL;
    const cJSON *limit = json_get(args, "limit");
    if (limit && !cJSON_IsNull(limit) && !json_is_int(limit))
        return tool_error(ctx, "slice indices must be integers or None or have an __index__ method");
    PyArg cust;
    pyarg_init(&cust, json_get(args, "customer_id"));
    const cJSON *c = tel_get_arg(env, &K_CUSTOMER, &cust, NULL, ctx);
    pyarg_free(&cust);
    if (!c) return NULL;
    const cJSON *ids = field(c, CUSTOMER_BILL_IDS, "bill_ids");
    int n = cJSON_IsArray(ids) ? cJSON_GetArraySize(ids) : 0;
    const cJSON **bills = xcalloc((size_t)n + 1, sizeof *bills);
    int nb = 0;
    for (const cJSON *id = n ? ids->child : NULL; id; id = id->next) {
        const cJSON *b = tel_get_ref(env, &K_BILL, id, NULL, ctx);
        if (!b) {
            free(bills);
            return NULL;
        }
        /* sorted(..., key=issue_date, reverse=True) is stable: insert after
         * every bill with an equal or later date. */
        int j = nb++;
        while (j > 0 && strcmp(issue_date(bills[j - 1]), issue_date(b)) < 0) {
            bills[j] = bills[j - 1];
            j--;
        }
        bills[j] = b;
    }
    /* [:limit] with Python's slice rules (None keeps all, negative counts from the end). */
    int keep = nb;
    if (!limit) {
        keep = nb < 12 ? nb : 12;
    } else if (!cJSON_IsNull(limit)) {
        double l = limit->valuedouble;
        keep = l >= 0 ? (l < nb ? (int)l : nb) : (nb + l > 0 ? (int)(nb + l) : 0);
    }
    cJSON *out = cJSON_CreateArray();
    for (int i = 0; i < keep; i++) cJSON_AddItemToArray(out, cJSON_Duplicate(bills[i], 1));
    free(bills);
    return out;
}

static cJSON *tel_send_payment_request(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "send_payment_request", args, P_PAYMENT, 2)) return NULL;
    PyArg cust, bill_id;
    pyarg_init(&cust, json_get(args, "customer_id"));
    pyarg_init(&bill_id, json_get(args, "bill_id"));
    cJSON *out = NULL;
    int idx, awaiting;
    const cJSON *c = tel_get_arg(env, &K_CUSTOMER, &cust, NULL, ctx);
    if (!c) goto done;
    awaiting = tel_bills_awaiting(env, c, NULL, 0, ctx);
    if (awaiting < 0) goto done;
    if (awaiting > 0) {
        tool_error(ctx, "A bill is already awaiting payment for this customer");
        goto done;
    }
    if (!ids_contain(field(c, CUSTOMER_BILL_IDS, "bill_ids"), bill_id.key)) {
        tool_error(ctx, "Bill %s not found for customer %s", bill_id.text, cust.text);
        goto done;
    }
    if (!tel_get_arg(env, &K_BILL, &bill_id, &idx, ctx)) goto done;
    cJSON *bill = tel_mut(env, "bills", idx);
    json_set(bill, "status", cJSON_CreateString("Awaiting Payment"));
    SBuf b;
    sbuf_init(&b);
    sbuf_printf(&b, "Payment request sent to the customer for bill %s", bill_id.text);
    out = cJSON_CreateString(b.data);
    sbuf_free(&b);
done:
    pyarg_free(&cust);
    pyarg_free(&bill_id);
    return out;
}

/* str() of a record's number field, as the tools' plain dicts print it. */
static void add_py_str(cJSON *obj, const char *key, const cJSON *v) {
    SBuf b;
    sbuf_init(&b);
    py_str(&b, v);
    cJSON_AddStringToObject(obj, key, b.data ? b.data : "");
    sbuf_free(&b);
}

static cJSON *tel_get_data_usage(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "get_data_usage", args, P_CUST_LINE, 2)) return NULL;
    PyArg cust, line_id;
    pyarg_init(&cust, json_get(args, "customer_id"));
    pyarg_init(&line_id, json_get(args, "line_id"));
    cJSON *out = NULL;
    const cJSON *line = tel_target_line(env, &cust, &line_id, NULL, ctx);
    const cJSON *plan = line ? tel_get_ref(env, &K_PLAN, json_get(line, "plan_id"), NULL, ctx) : NULL;
    if (plan) {
        out = cJSON_CreateObject();
        add_py_str(out, "line_id", json_get(args, "line_id"));
        add_py_str(out, "data_used_gb", json_get(line, "data_used_gb"));
        add_py_str(out, "data_limit_gb", json_get(plan, "data_limit_gb"));
        add_py_str(out, "data_refueling_gb", json_get(line, "data_refueling_gb"));
        cJSON_AddStringToObject(out, "cycle_end_date", TEL_CYCLE_END);
    }
    pyarg_free(&cust);
    pyarg_free(&line_id);
    return out;
}

/* enable_roaming / disable_roaming share everything but the direction. */
static cJSON *set_roaming(Env *env, const char *fname, const cJSON *args, bool on, ToolCtx *ctx) {
    if (!bind_args(ctx, fname, args, P_CUST_LINE, 2)) return NULL;
    PyArg cust, line_id;
    pyarg_init(&cust, json_get(args, "customer_id"));
    pyarg_init(&line_id, json_get(args, "line_id"));
    int idx;
    cJSON *out = NULL;
    const cJSON *line = tel_target_line(env, &cust, &line_id, &idx, ctx);
    if (line && py_truthy(json_get(line, "roaming_enabled")) == on) {
        out = cJSON_CreateString(on ? "Roaming was already enabled" : "Roaming was already disabled");
    } else if (line) {
        json_set(tel_mut(env, "lines", idx), "roaming_enabled", cJSON_CreateBool(on));
        out = cJSON_CreateString(on ? "Roaming enabled successfully" : "Roaming disabled successfully");
    }
    pyarg_free(&cust);
    pyarg_free(&line_id);
    return out;
}

static cJSON *tel_enable_roaming(Env *env, const cJSON *args, ToolCtx *ctx) {
    return set_roaming(env, "enable_roaming", args, true, ctx);
}

static cJSON *tel_disable_roaming(Env *env, const cJSON *args, ToolCtx *ctx) {
    return set_roaming(env, "disable_roaming", args, false, ctx);
}

static cJSON *tel_transfer_to_human_agents(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "transfer_to_human_agents", args, P_SUMMARY, 1)) return NULL;
    return cJSON_CreateString("Transfer successful");
}

static uint32_t fnv1a(const char *s, uint32_t h) {
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* A new draft bill for next cycle, with field order of the Bill model. */
static cJSON *new_draft_bill(const char *bill_id, const char *customer_id) {
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "bill_id", bill_id);
    cJSON_AddStringToObject(b, "customer_id", customer_id);
    cJSON_AddStringToObject(b, "period_start", TEL_DRAFT_START);
    cJSON_AddStringToObject(b, "period_end", TEL_DRAFT_END);
    cJSON_AddStringToObject(b, "issue_date", TEL_DRAFT_START);
    cJSON_AddItemToObject(b, "total_due", json_float(0.0));
    cJSON_AddStringToObject(b, "due_date", TEL_DRAFT_DUE);
    cJSON_AddItemToObject(b, "line_items", cJSON_CreateArray());
    cJSON_AddStringToObject(b, "status", "Draft");
    return b;
}

static cJSON *new_line_item(const char *description, double amount, const char *item_type) {
    cJSON *it = cJSON_CreateObject();
    cJSON_AddStringToObject(it, "description", description);
    cJSON_AddItemToObject(it, "amount", json_float(amount));
    cJSON_AddStringToObject(it, "date", TEL_TODAY);
    cJSON_AddStringToObject(it, "item_type", item_type);
    return it;
}

/* Add `amount` to a bill: a line item and the total. */
static void bill_add_item(cJSON *bill, cJSON *item, const cJSON *amount) {
    cJSON *items = json_get(bill, "line_items");
    if (cJSON_IsArray(items)) cJSON_AddItemToArray(items, item);
    else cJSON_Delete(item);
    const cJSON *total = json_get(bill, "total_due");
    double t = cJSON_IsNumber(total) ? total->valuedouble : 0.0;
    json_set(bill, "total_due", py_number(t + amount->valuedouble, total, amount));
}

/* _apply_one_time_charge: onto the customer's first draft bill, creating
 * one for next cycle when there is none. Returns false after an error. */
static bool apply_one_time_charge(Env *env, const PyArg *cust, const cJSON *amount, const char *description,
                                  ToolCtx *ctx) {
    int cidx;
    const cJSON *c = tel_get_arg(env, &K_CUSTOMER, cust, &cidx, ctx);
    if (!c) return false;
    int draft = -1;
    const cJSON *ids = field(c, CUSTOMER_BILL_IDS, "bill_ids");
    for (const cJSON *id = cJSON_IsArray(ids) ? ids->child : NULL; id && draft < 0; id = id->next) {
        int idx;
        const cJSON *bill = tel_get_ref(env, &K_BILL, id, &idx, ctx);
        if (!bill) return false;
        if (str_eq(field_str(bill, BILL_STATUS, "status"), "Draft")) draft = idx;
    }
    cJSON *bills = db_table_mut(env->db, "bills");
    if (draft < 0) {
        char key[64], new_id[16];
        snprintf(key, sizeof key, ":%d", cJSON_GetArraySize(bills));
        snprintf(new_id, sizeof new_id, "B%08x", (unsigned)fnv1a(key, fnv1a(cust->key, 2166136261u)));
        draft = cJSON_GetArraySize(bills);
        cJSON_AddItemToArray(bills, new_draft_bill(new_id, cust->key));
        cJSON *cm = tel_mut(env, "customers", cidx);
        cJSON *bill_ids = json_get(cm, "bill_ids");
        if (cJSON_IsArray(bill_ids)) cJSON_AddItemToArray(bill_ids, cJSON_CreateString(new_id));
    }
    double a = amount->valuedouble;
    bill_add_item(cJSON_GetArrayItem(bills, draft), new_line_item(description, a, a < 0 ? "Credit" : "Charge"),
                  amount);
    return true;
}

static cJSON *tel_refuel_data(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "refuel_data", args, P_REFUEL, 3)) return NULL;
    const cJSON *gb = json_get(args, "gb_amount");
    if (!cJSON_IsNumber(gb)) return tool_error(ctx, "gb_amount must be a number");
    PyArg cust, line_id;
    pyarg_init(&cust, json_get(args, "customer_id"));
    pyarg_init(&line_id, json_get(args, "line_id"));
    cJSON *out = NULL, *charge = NULL;
    SBuf b;
    sbuf_init(&b);
    int idx;
    const cJSON *line = tel_target_line(env, &cust, &line_id, &idx, ctx);
    const cJSON *plan = NULL;
    if (!line) goto done;
    if (gb->valuedouble <= 0) {
        tool_error(ctx, "Refuel amount must be positive");
        goto done;
    }
    plan = tel_get_ref(env, &K_PLAN, json_get(line, "plan_id"), NULL, ctx);
    if (!plan) goto done;
    const cJSON *price = field(plan, PLAN_REFUEL_PRICE, "data_refueling_price_per_gb");
    charge = py_number(gb->valuedouble * num_of(price), gb, price);

    /* The line is credited before the charge is applied; a failing charge
     * leaves it credited, as in Python. */
    cJSON *m = tel_mut(env, "lines", idx);
    const cJSON *old = json_get(m, "data_refueling_gb");
    cJSON *refueled = py_number((cJSON_IsNumber(old) ? old->valuedouble : 0.0) + gb->valuedouble, old, gb);
    json_set(m, "data_refueling_gb", refueled);

    sbuf_puts(&b, "Data refueling: ");
    py_str(&b, gb);
    sbuf_puts(&b, " GB at $");
    py_str(&b, price);
    sbuf_puts(&b, "/GB");
    if (!apply_one_time_charge(env, &cust, charge, b.data, ctx)) goto done;

    b.len = 0;
    sbuf_puts(&b, "Successfully added ");
    py_str(&b, gb);
    sbuf_printf(&b, " GB of data for line %s for $%.2f", line_id.text, charge->valuedouble);
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "message", b.data);
    add_py_str(out, "new_data_refueling_gb", refueled);
    add_py_str(out, "charge", charge);
done:
    cJSON_Delete(charge);
    sbuf_free(&b);
    pyarg_free(&cust);
    pyarg_free(&line_id);
    return out;
}

/* ------------------------------------------------------------ agent functions */

static const char *const P_SET_USAGE[] = {"customer_id", "line_id", "data_used_gb", NULL};
static const char *const P_OVERDUE[] = {"customer_id", "line_id", "new_bill_id", "contract_ended", NULL};
static const char *const P_REFUEL_AMOUNT[] = {"customer_id", "line_id", "expected_amount", NULL};
static const char *const P_LINE_STATUS[] = {"customer_id", "line_id", "expected_status", NULL};
static const char *const P_OVERDUE_EXISTS[] = {"customer_id", "overdue_bill_id", NULL};
static const char *const P_NO_OVERDUE[] = {"overdue_bill_id", NULL};
static const char *const P_NONE[] = {NULL};

static cJSON *tel_get_available_plan_ids(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "get_available_plan_ids", args, P_NONE, 0)) return NULL;
    cJSON *out = cJSON_CreateArray();
    const cJSON *plans = tel_list(env, "plans");
    for (const cJSON *p = plans ? plans->child : NULL; p; p = p->next) {
        const cJSON *id = json_get(p, "plan_id");
        cJSON_AddItemToArray(out, id ? cJSON_Duplicate(id, 1) : cJSON_CreateNull());
    }
    return out;
}

/* set_data_usage assigns the value without validation (int stays int). */
static cJSON *tel_set_data_usage(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "set_data_usage", args, P_SET_USAGE, 3)) return NULL;
    const cJSON *used = json_get(args, "data_used_gb");
    PyArg cust, line_id;
    pyarg_init(&cust, json_get(args, "customer_id"));
    pyarg_init(&line_id, json_get(args, "line_id"));
    int idx;
    cJSON *out = NULL;
    if (tel_target_line(env, &cust, &line_id, &idx, ctx)) {
        json_set(tel_mut(env, "lines", idx), "data_used_gb", cJSON_Duplicate(used, 1));
        SBuf b;
        sbuf_init(&b);
        sbuf_puts(&b, "Data usage set to ");
        py_str(&b, used);
        sbuf_printf(&b, " GB for line %s", line_id.text);
        out = cJSON_CreateString(b.data);
        sbuf_free(&b);
    }
    pyarg_free(&cust);
    pyarg_free(&line_id);
    return out;
}

/* A bill for last month, already overdue, charging the line's plan price. */
static cJSON *new_overdue_bill(const char *bill_id, const char *customer_id, const char *line_id,
                               const cJSON *amount) {
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "bill_id", bill_id);
    cJSON_AddStringToObject(b, "customer_id", customer_id);
    cJSON_AddStringToObject(b, "period_start", TEL_OVERDUE_START);
    cJSON_AddStringToObject(b, "period_end", TEL_OVERDUE_END);
    cJSON_AddStringToObject(b, "issue_date", TEL_OVERDUE_START);
    cJSON_AddItemToObject(b, "total_due", json_float(0.0));
    cJSON_AddStringToObject(b, "due_date", TEL_OVERDUE_DUE);
    cJSON_AddItemToObject(b, "line_items", cJSON_CreateArray());
    cJSON_AddStringToObject(b, "status", "Overdue");
    char desc[256];
    snprintf(desc, sizeof desc, "Charge for line %s", line_id);
    double a = amount->valuedouble;
    bill_add_item(b, new_line_item(desc, a, a > 0 ? "Charge" : "Credit"), amount);
    return b;
}

static cJSON *tel_suspend_line_for_overdue_bill(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "suspend_line_for_overdue_bill", args, P_OVERDUE, 4)) return NULL;
    const cJSON *contract_ended = json_get(args, "contract_ended");
    const char *new_bill_id = arg_str(args, "new_bill_id");
    PyArg cust, line_id;
    pyarg_init(&cust, json_get(args, "customer_id"));
    pyarg_init(&line_id, json_get(args, "line_id"));
    cJSON *out = NULL;
    int lidx, cidx;
    const cJSON *line = tel_get_arg(env, &K_LINE, &line_id, &lidx, ctx);
    const cJSON *plan, *amount, *c, *ids;
    if (!line) goto done;
    if (!str_eq(field_str(line, LINE_STATUS, "status"), "Active")) {
        tool_error(ctx, "Line must be active to suspend for unpaid bill");
        goto done;
    }
    plan = tel_get_ref(env, &K_PLAN, json_get(line, "plan_id"), NULL, ctx);
    if (!plan) goto done;
    amount = json_get(plan, "price_per_month");
    if (!cJSON_IsNumber(amount) || amount->valuedouble <= 0) {
        tool_error(ctx, "Amount must be positive for overdue bill");
        goto done;
    }
    c = tel_get_arg(env, &K_CUSTOMER, &cust, &cidx, ctx);
    if (!c) goto done;
    ids = field(c, CUSTOMER_BILL_IDS, "bill_ids");
    for (const cJSON *id = cJSON_IsArray(ids) ? ids->child : NULL; id; id = id->next) {
        const cJSON *bill = tel_get_ref(env, &K_BILL, id, NULL, ctx);
        if (!bill) goto done;
        if (str_eq(field_str(bill, BILL_STATUS, "status"), "Overdue")) {
            tool_error(ctx, "Customer already has an overdue bill");
            goto done;
        }
    }
    if (!new_bill_id || !cust.key) {
        tool_error(ctx, "1 validation error for Bill: bill_id and customer_id must be strings");
        goto done;
    }
    cJSON_AddItemToArray(db_table_mut(env->db, "bills"),
                         new_overdue_bill(new_bill_id, cust.key, json_get_str(line, "line_id"), amount));
    cJSON *bill_ids = json_get(tel_mut(env, "customers", cidx), "bill_ids");
    if (cJSON_IsArray(bill_ids)) cJSON_AddItemToArray(bill_ids, cJSON_CreateString(new_bill_id));
    cJSON *m = tel_mut(env, "lines", lidx);
    json_set(m, "status", cJSON_CreateString("Suspended"));
    json_set(m, "suspension_start_date", cJSON_CreateString(TEL_TODAY));
    if (py_truthy(contract_ended)) json_set(m, "contract_end_date", cJSON_CreateString(TEL_OVERDUE_END));
    SBuf b;
    sbuf_init(&b);
    sbuf_printf(&b, "Line %s suspended for unpaid bill %s. Contract ended: ", line_id.text, new_bill_id);
    py_str(&b, contract_ended);
    out = cJSON_CreateString(b.data);
    sbuf_free(&b);
done:
    pyarg_free(&cust);
    pyarg_free(&line_id);
    return out;
}

static cJSON *tel_assert_data_refueling_amount(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "assert_data_refueling_amount", args, P_REFUEL_AMOUNT, 3)) return NULL;
    const cJSON *expected = json_get(args, "expected_amount");
    PyArg cust, line_id;
    pyarg_init(&cust, json_get(args, "customer_id"));
    pyarg_init(&line_id, json_get(args, "line_id"));
    cJSON *out = NULL;
    const cJSON *line = tel_target_line(env, &cust, &line_id, NULL, ctx);
    if (line) {
        const cJSON *have = json_get(line, "data_refueling_gb");
        if (!cJSON_IsNumber(expected) || !cJSON_IsNumber(have))
            tool_error(ctx, "unsupported operand type(s) for -: expected_amount must be a number");
        else out = cJSON_CreateBool(fabs(have->valuedouble - expected->valuedouble) < 1e-6);
    }
    pyarg_free(&cust);
    pyarg_free(&line_id);
    return out;
}

static cJSON *tel_assert_line_status(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "assert_line_status", args, P_LINE_STATUS, 3)) return NULL;
    PyArg cust, line_id;
    pyarg_init(&cust, json_get(args, "customer_id"));
    pyarg_init(&line_id, json_get(args, "line_id"));
    const cJSON *line = tel_target_line(env, &cust, &line_id, NULL, ctx);
    cJSON *out = NULL;
    if (line)
        out = cJSON_CreateBool(str_eq(field_str(line, LINE_STATUS, "status"), arg_str(args, "expected_status")));
    pyarg_free(&cust);
    pyarg_free(&line_id);
    return out;
}

static cJSON *tel_assert_overdue_bill_exists(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "assert_overdue_bill_exists", args, P_OVERDUE_EXISTS, 2)) return NULL;
    PyArg cust, bill_id;
    pyarg_init(&cust, json_get(args, "customer_id"));
    pyarg_init(&bill_id, json_get(args, "overdue_bill_id"));
    cJSON *out = NULL;
    const cJSON *c = tel_get_arg(env, &K_CUSTOMER, &cust, NULL, ctx);
    const cJSON *bill = NULL;
    if (!c) goto done;
    if (!ids_contain(field(c, CUSTOMER_BILL_IDS, "bill_ids"), bill_id.key)) {
        tool_error(ctx, "Overdue bill %s not found", bill_id.text);
        goto done;
    }
    bill = tel_get_arg(env, &K_BILL, &bill_id, NULL, ctx);
    if (!bill) goto done;
    if (!str_eq(field_str(bill, BILL_STATUS, "status"), "Overdue")) {
        tool_error(ctx, "Overdue bill %s is not overdue", bill_id.text);
        goto done;
    }
    out = cJSON_CreateBool(true);
done:
    pyarg_free(&cust);
    pyarg_free(&bill_id);
    return out;
}

/* True when the bill is gone or paid. */
static cJSON *tel_assert_no_overdue_bill(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!bind_args(ctx, "assert_no_overdue_bill", args, P_NO_OVERDUE, 1)) return NULL;
    const char *id = arg_str(args, "overdue_bill_id");
    const cJSON *bills = tel_list(env, "bills");
    int i = tel_index(bills, ID_FIELD, "bill_id", id);
    if (i < 0) return cJSON_CreateBool(true);
    return cJSON_CreateBool(str_eq(json_get_str(cJSON_GetArrayItem(bills, i), "status"), "Paid"));
}

/* ------------------------------------------------------------ sync */

/* Is surroundings[key] already the bool v? */
static bool sur_has_bool(const cJSON *sur, const char *key, bool v) {
    const cJSON *cur = json_get(sur, key);
    return cur && cJSON_IsBool(cur) && cJSON_IsTrue(cur) == v;
}

/* Does any bill await payment? Cheap, and when none does the payment
 * request step has nothing to do. */
static bool any_bill_awaiting(const Env *env) {
    const cJSON *bills = tel_list(env, "bills");
    for (const cJSON *b = bills ? bills->child : NULL; b; b = b->next)
        if (str_eq(field_str(b, BILL_STATUS, "status"), "Awaiting Payment")) return true;
    return false;
}

/* TelecomEnvironment.sync_tools: mirror the user's line onto the phone's
 * surroundings (line active, roaming allowed, data exhausted), settle a
 * paid payment request, and raise a new one for a bill awaiting payment.
 * Where the Python raises (a phone number with no line, a dangling id),
 * this stops quietly: sync has no caller to report to. It runs after every
 * call, so it reads first and copies the surroundings only on a change. */
static void telecom_sync(Env *env) {
    if (!env->db || !env->user_db) return;
    const cJSON *sur = db_table(env->user_db, "surroundings");
    const char *phone = json_get_str(sur, "phone_number");
    if (!phone) return;
    const cJSON *lines = tel_list(env, "lines");
    const cJSON *line = cJSON_GetArrayItem(lines, tel_index(lines, LINE_PHONE, "phone_number", phone));
    if (!line) return;
    bool active = str_eq(field_str(line, LINE_STATUS, "status"), "Active");
    bool roaming = py_truthy(field(line, LINE_ROAMING, "roaming_enabled"));
    const cJSON *plans = tel_list(env, "plans");
    const cJSON *plan = cJSON_GetArrayItem(plans, tel_index(plans, ID_FIELD, "plan_id", field_str(line, LINE_PLAN, "plan_id")));
    bool have_plan = plan != NULL;
    bool exceeded = false;
    if (have_plan) {
        double used = num_of(field(line, LINE_USED, "data_used_gb"));
        double allowed = num_of(field(plan, PLAN_LIMIT, "data_limit_gb")) +
                         num_of(field(line, LINE_REFUELED, "data_refueling_gb"));
        exceeded = used >= allowed;
    }
    if (!sur_has_bool(sur, "line_active", active) || !sur_has_bool(sur, "roaming_allowed", roaming) ||
        (have_plan && !sur_has_bool(sur, "mobile_data_usage_exceeded", exceeded))) {
        cJSON *m = db_table_mut(env->user_db, "surroundings");
        json_set(m, "line_active", cJSON_CreateBool(active));
        json_set(m, "roaming_allowed", cJSON_CreateBool(roaming));
        if (have_plan) json_set(m, "mobile_data_usage_exceeded", cJSON_CreateBool(exceeded));
        sur = m;
    }
    if (!have_plan) return;

    ToolCtx ctx = {{0}, false};
    const cJSON *req = json_get(sur, "payment_request");
    if (cJSON_IsObject(req) && py_truthy(json_get(req, "paid"))) {
        int idx;
        if (!tel_get(env, &K_BILL, json_get_str(req, "bill_id"), "", &idx, &ctx)) return;
        json_set(tel_mut(env, "bills", idx), "status", cJSON_CreateString("Paid"));
        json_set(db_table_mut(env->user_db, "surroundings"), "payment_request", cJSON_CreateNull());
        req = NULL;
    }
    if ((req && !cJSON_IsNull(req)) || !any_bill_awaiting(env)) return;
    bool found;
    const cJSON *c = tel_customer_by_phone(env, phone, &found, &ctx);
    if (!found) return;
    int first;
    if (tel_bills_awaiting(env, c, &first, 1, &ctx) <= 0) return;
    const cJSON *bill = cJSON_GetArrayItem(tel_list(env, "bills"), first);
    const cJSON *total = field(bill, BILL_TOTAL, "total_due");
    cJSON *pr = cJSON_CreateObject();
    cJSON_AddStringToObject(pr, "bill_id", json_get_str(bill, "bill_id") ? json_get_str(bill, "bill_id") : "");
    cJSON_AddItemToObject(pr, "amount_due", json_float(num_of(total)));
    cJSON_AddFalseToObject(pr, "paid");
    json_set(db_table_mut(env->user_db, "surroundings"), "payment_request", pr);
}

/* ------------------------------------------------------------ normalization */

/* TelecomDB as data_model.py declares it. db.toml is checked against it at
 * load; then normalization makes of the data what pydantic's
 * TelecomDB.model_validate + model_dump make of it: every field present in
 * class order (defaults filled in), float fields as floats, dates and
 * datetimes as json.dumps(default=str) prints them. Every model is
 * BaseModelNoExtra (closed). */
static const DbField ADDRESS_FIELDS[] = {
    {"street", &DB_T_STR}, {"city", &DB_T_STR}, {"state", &DB_T_STR}, {"zip_code", &DB_T_STR}, {NULL}};
static const DbModel ADDRESS = {"Address", ADDRESS_FIELDS, true};
static const DbType ADDRESS_TYPE = {DB_MODEL, .model = &ADDRESS};

static const char *const PAYMENT_METHOD_TYPES[] = {"Credit Card", "Debit Card", "PayPal", NULL};
static const DbType PAYMENT_METHOD_TYPE_TYPE = {DB_ENUM, .choices = PAYMENT_METHOD_TYPES};
static const DbField PAYMENT_METHOD_FIELDS[] = {
    {"method_type", &PAYMENT_METHOD_TYPE_TYPE},
    {"account_number_last_4", &DB_T_STR},
    {"expiration_date", &DB_T_STR},
    {NULL},
};
static const DbModel PAYMENT_METHOD = {"PaymentMethod", PAYMENT_METHOD_FIELDS, true};
static const DbType PAYMENT_METHOD_TYPE = {DB_MODEL, .model = &PAYMENT_METHOD};
static const DbType PAYMENT_METHOD_LIST = {DB_LIST, .item = &PAYMENT_METHOD_TYPE};

static const DbField PLAN_FIELDS[] = {
    {"plan_id", &DB_T_STR},
    {"name", &DB_T_STR},
    {"data_limit_gb", &DB_T_FLOAT},
    {"price_per_month", &DB_T_FLOAT},
    {"data_refueling_price_per_gb", &DB_T_FLOAT},
    {NULL},
};
static const DbModel PLAN = {"Plan", PLAN_FIELDS, true};

static const char *const ACCOUNT_STATUSES[] = {"Active", "Suspended", "Pending Verification", "Closed", NULL};
static const DbType ACCOUNT_STATUS_TYPE = {DB_ENUM, .choices = ACCOUNT_STATUSES};
static const DbField CUSTOMER_FIELDS[] = {
    {"customer_id", &DB_T_STR},
    {"full_name", &DB_T_STR},
    {"date_of_birth", &DB_T_STR},
    {"email", &DB_T_STR},
    {"phone_number", &DB_T_STR},
    {"address", &ADDRESS_TYPE},
    {"account_status", &ACCOUNT_STATUS_TYPE, "\"Pending Verification\""},
    {"payment_methods", &PAYMENT_METHOD_LIST, "[]"},
    {"line_ids", &DB_T_LIST_STR, "[]"},
    {"bill_ids", &DB_T_LIST_STR, "[]"},
    /* The default is DEFAULT_START_DATE, a date; the next validation (any
     * update_db) turns it into midnight, which is what is stored here. */
    {"created_at", &DB_T_DATETIME, "\"2025-01-01\""},
    {"last_extension_date", &DB_T_DATE, "null", true},
    {"goodwill_credit_used_this_year", &DB_T_FLOAT, "0.0"},
    {NULL},
};
static const DbModel CUSTOMER = {"Customer", CUSTOMER_FIELDS, true};

static const char *const LINE_STATUSES[] = {"Active", "Suspended", "Pending Activation", "Closed", NULL};
static const DbType LINE_STATUS_TYPE = {DB_ENUM, .choices = LINE_STATUSES};
static const DbField LINE_FIELDS[] = {
    {"line_id", &DB_T_STR},
    {"phone_number", &DB_T_STR},
    {"status", &LINE_STATUS_TYPE, "\"Pending Activation\""},
    {"plan_id", &DB_T_STR},
    {"device_id", &DB_T_STR, "null", true},
    {"data_used_gb", &DB_T_FLOAT, "0.0"},
    {"data_refueling_gb", &DB_T_FLOAT, "0.0"},
    {"roaming_enabled", &DB_T_BOOL, "false"},
    {"contract_end_date", &DB_T_DATE, "null", true},
    {"last_plan_change_date", &DB_T_DATE, "null", true},
    {"last_sim_replacement_date", &DB_T_DATE, "null", true},
    {"suspension_start_date", &DB_T_DATE, "null", true},
    {NULL},
};
static const DbModel LINE = {"Line", LINE_FIELDS, true};

static const DbField LINE_ITEM_FIELDS[] = {
    {"description", &DB_T_STR}, {"amount", &DB_T_FLOAT}, {"date", &DB_T_DATE}, {"item_type", &DB_T_STR}, {NULL}};
static const DbModel LINE_ITEM = {"LineItem", LINE_ITEM_FIELDS, true};
static const DbType LINE_ITEM_TYPE = {DB_MODEL, .model = &LINE_ITEM};
static const DbType LINE_ITEM_LIST = {DB_LIST, .item = &LINE_ITEM_TYPE};

static const char *const BILL_STATUSES[] = {"Draft", "Issued", "Awaiting Payment", "Paid", "Overdue", "Disputed", NULL};
static const DbType BILL_STATUS_TYPE = {DB_ENUM, .choices = BILL_STATUSES};
static const DbField BILL_FIELDS[] = {
    {"bill_id", &DB_T_STR},
    {"customer_id", &DB_T_STR},
    {"period_start", &DB_T_DATE},
    {"period_end", &DB_T_DATE},
    {"issue_date", &DB_T_DATE},
    {"total_due", &DB_T_FLOAT},
    {"due_date", &DB_T_DATE},
    {"line_items", &LINE_ITEM_LIST, "[]"},
    {"status", &BILL_STATUS_TYPE, "\"Draft\""},
    {NULL},
};
static const DbModel BILL = {"Bill", BILL_FIELDS, true};

static const char *const DEVICE_TYPES[] = {"phone", "router", "tablet", "watch", "other", NULL};
static const DbType DEVICE_TYPE_TYPE = {DB_ENUM, .choices = DEVICE_TYPES};
static const DbField DEVICE_FIELDS[] = {
    {"device_id", &DB_T_STR},
    {"device_type", &DEVICE_TYPE_TYPE},
    {"model", &DB_T_STR},
    {"imei", &DB_T_STR, "null", true},
    {"is_esim_capable", &DB_T_BOOL},
    {"activated", &DB_T_BOOL, "false"},
    {"activation_date", &DB_T_DATETIME, "null", true},
    {"last_esim_transfer_date", &DB_T_DATETIME, "null", true},
    {NULL},
};
static const DbModel DEVICE = {"Device", DEVICE_FIELDS, true};

/* TelecomDB's lists, in class order. */
static const DbType PLAN_TYPE = {DB_MODEL, .model = &PLAN};
static const DbType CUSTOMER_TYPE = {DB_MODEL, .model = &CUSTOMER};
static const DbType LINE_TYPE = {DB_MODEL, .model = &LINE};
static const DbType BILL_TYPE = {DB_MODEL, .model = &BILL};
static const DbType DEVICE_TYPE = {DB_MODEL, .model = &DEVICE};
static const DbType PLAN_LIST = {DB_LIST, .item = &PLAN_TYPE};
static const DbType CUSTOMER_LIST = {DB_LIST, .item = &CUSTOMER_TYPE};
static const DbType LINE_LIST = {DB_LIST, .item = &LINE_TYPE};
static const DbType BILL_LIST = {DB_LIST, .item = &BILL_TYPE};
static const DbType DEVICE_LIST = {DB_LIST, .item = &DEVICE_TYPE};
static const DbField TELECOM_DB_FIELDS[] = {
    {"plans", &PLAN_LIST, "[]"},     {"customers", &CUSTOMER_LIST, "[]"}, {"lines", &LINE_LIST, "[]"},
    {"bills", &BILL_LIST, "[]"},     {"devices", &DEVICE_LIST, "[]"},     {NULL},
};
static const DbModel TELECOM_DB = {"TelecomDB", TELECOM_DB_FIELDS};

static bool fix_model(cJSON *rec, const DbModel *m, bool apply);

/* A date string as str(date): "YYYY-MM-DD" (a datetime string at midnight
 * is accepted by pydantic for a date and loses its time). */
static bool fix_date(cJSON *v, bool apply) {
    if (!cJSON_IsString(v) || strlen(v->valuestring) <= 10) return false;
    char c = v->valuestring[10];
    if (c != 'T' && c != ' ') return false;
    if (apply) v->valuestring[10] = '\0';
    return true;
}

/* A datetime string as str(datetime): "YYYY-MM-DD HH:MM:SS[.ffffff]". */
static bool fix_datetime(cJSON *v, bool apply) {
    if (!cJSON_IsString(v)) return false;
    const char *s = v->valuestring;
    size_t n = strlen(s);
    if (n == 10) {
        if (apply) {
            char buf[32];
            snprintf(buf, sizeof buf, "%s 00:00:00", s);
            cJSON_SetValuestring(v, buf);
        }
        return true;
    }
    bool z = n > 19 && s[n - 1] == 'Z';
    if (!(n > 10 && s[10] == 'T') && !z) return false;
    if (apply) {
        SBuf b;
        sbuf_init(&b);
        sbuf_put(&b, s, z ? n - 1 : n);
        if (b.len > 10 && b.data[10] == 'T') b.data[10] = ' ';
        if (z) sbuf_puts(&b, "+00:00");
        cJSON_SetValuestring(v, b.data);
        sbuf_free(&b);
    }
    return true;
}

/* Coerce one field value; returns whether a change is (apply=false) or
 * was (apply=true) needed. */
static bool fix_value(cJSON *v, const DbType *t, bool apply) {
    switch (t->kind) {
    case DB_FLOAT:
        if (!cJSON_IsNumber(v) || json_is_float(v)) return false;
        if (apply) v->type |= JSON_FLOAT_FLAG;
        return true;
    case DB_DATE: return fix_date(v, apply);
    case DB_DATETIME: return fix_datetime(v, apply);
    case DB_MODEL: return cJSON_IsObject(v) && fix_model(v, t->model, apply);
    case DB_LIST: {
        if (t->item->kind != DB_MODEL) return false;
        bool changed = false;
        for (cJSON *x = cJSON_IsArray(v) ? v->child : NULL; x && (apply || !changed); x = x->next)
            if (cJSON_IsObject(x)) changed |= fix_model(x, t->item->model, apply);
        return changed;
    }
    default: return false;
    }
}

/* Rebuild rec with the model's fields in class order, defaults filled in;
 * unknown keys (pydantic would refuse them) are kept at the end. */
static void reorder_model(cJSON *rec, const DbModel *m) {
    cJSON *fresh = cJSON_CreateObject();
    for (const DbField *f = m->fields; f->name; f++) {
        cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(rec, f->name);
        if (!v && f->dflt) {
            char err[64];
            v = json_parse(f->dflt, strlen(f->dflt), "<default>", err, sizeof err);
        }
        if (v) cJSON_AddItemToObject(fresh, f->name, v);
    }
    /* Adding to the array list keeps each item's own key. */
    while (rec->child) cJSON_AddItemToArray(fresh, cJSON_DetachItemViaPointer(rec, rec->child));
    rec->child = fresh->child;
    fresh->child = NULL;
    cJSON_Delete(fresh);
}

static bool fix_model(cJSON *rec, const DbModel *m, bool apply) {
    /* Are the keys already the fields in class order, extras last? */
    bool in_order = true;
    const cJSON *c = rec->child;
    for (const DbField *f = m->fields; f->name && in_order; f++) {
        if (c && c->string && strcmp(c->string, f->name) == 0) c = c->next;
        else if (json_get(rec, f->name) || f->dflt) in_order = false;
    }
    bool changed = !in_order;
    if (!in_order && apply) reorder_model(rec, m);
    for (const DbField *f = m->fields; f->name && (apply || !changed); f++) {
        cJSON *v = json_get(rec, f->name);
        if (v) changed |= fix_value(v, f->type, apply);
    }
    return changed;
}

/* normalize_db: the agent DB here, the phone's in telecom_user.c. Lists are
 * copied only when something in them needs fixing, so normalizing an
 * already normal DB costs one read-only pass. */
static void telecom_normalize_db(Env *env, bool is_user) {
    if (is_user) {
        telecom_user_normalize(env);
        return;
    }
    for (const DbField *table = TELECOM_DB.fields; table->name; table++) {
        const char *name = table->name;
        const DbModel *model = table->type->item->model;
        const cJSON *list = db_table(env->db, name);
        if (!list) {
            /* default_factory=list; db_table_mut creates an empty object. */
            cJSON *created = db_table_mut(env->db, name);
            created->type = (created->type & ~0xFF) | cJSON_Array;
            continue;
        }
        if (!cJSON_IsArray(list)) continue;
        bool needed = false;
        for (const cJSON *r = list->child; r && !needed; r = r->next)
            needed = cJSON_IsObject(r) && fix_model((cJSON *)r, model, false);
        if (!needed) continue;
        cJSON *mut = db_table_mut(env->db, name);
        for (cJSON *r = mut->child; r; r = r->next)
            if (cJSON_IsObject(r)) fix_model(r, model, true);
    }
}

/* ------------------------------------------------------------ policy */

/* get_environment(policy_type="manual"): the main policy and the tech
 * support manual, each wrapped in its tag. */
static char *telecom_load_policy(const char *domain_dir, char *err, size_t errlen) {
    if (TELECOM_USER_N_TOOLS != TEL_USER_TOOLS_COUNT || TELECOM_USER_N_FUNCS != TEL_USER_FUNCS_COUNT) {
        snprintf(err, errlen, "telecom: user tool tables have %d tools and %d functions, telecom.c expects %d and %d",
                 TELECOM_USER_N_TOOLS, TELECOM_USER_N_FUNCS, TEL_USER_TOOLS_COUNT, TEL_USER_FUNCS_COUNT);
        return NULL;
    }
    char *main_policy = domain_read_text(domain_dir, "main_policy.md", err, errlen);
    if (!main_policy) return NULL;
    char *tech = domain_read_text(domain_dir, "tech_support_manual.md", err, errlen);
    if (!tech) {
        free(main_policy);
        return NULL;
    }
    SBuf b;
    sbuf_init(&b);
    sbuf_puts(&b, "<main_policy>\n");
    sbuf_puts(&b, main_policy);
    sbuf_puts(&b, "\n</main_policy>\n<tech_support_policy>\n");
    sbuf_puts(&b, tech);
    sbuf_puts(&b, "\n</tech_support_policy>");
    free(main_policy);
    free(tech);
    return sbuf_take(&b);
}

/* ------------------------------------------------------------ schemas */

static const char SCHEMA_GET_CUSTOMER_BY_PHONE[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_customer_by_phone\",\"description\":\"Finds "
    "a customer by their primary contact or line phone number.\",\"parameters\":{\"properties\":{\"ph"
    "one_number\":{\"description\":\"The phone number to search for.\",\"title\":\"Phone Number\",\"t"
    "ype\":\"string\"}},\"required\":[\"phone_number\"],\"title\":\"parameters\",\"type\":\"object\"}"
    "}}";

static const char SCHEMA_GET_CUSTOMER_BY_ID[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_customer_by_id\",\"description\":\"Retrieves"
    " a customer directly by their unique ID.\",\"parameters\":{\"properties\":{\"customer_id\":{\"de"
    "scription\":\"The unique identifier of the customer.\",\"title\":\"Customer Id\",\"type\":\"stri"
    "ng\"}},\"required\":[\"customer_id\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_GET_CUSTOMER_BY_NAME[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_customer_by_name\",\"description\":\"Searche"
    "s for customers by name and DOB. May return multiple matches if names are similar,\\n\\nDOB help"
    "s disambiguate.\",\"parameters\":{\"properties\":{\"full_name\":{\"description\":\"The full name"
    " of the customer.\",\"title\":\"Full Name\",\"type\":\"string\"},\"dob\":{\"description\":\"Date"
    " of birth for verification, in the format YYYY-MM-DD.\",\"title\":\"Dob\",\"type\":\"string\"}},"
    "\"required\":[\"full_name\",\"dob\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_GET_DETAILS_BY_ID[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_details_by_id\",\"description\":\"Retrieves "
    "the details for a given ID.\\n\\nThe ID must be a valid ID for a Customer, Line, Device, Bill, o"
    "r Plan.\",\"parameters\":{\"properties\":{\"id\":{\"description\":\"The ID of the object to retr"
    "ieve.\",\"title\":\"Id\",\"type\":\"string\"}},\"required\":[\"id\"],\"title\":\"parameters\",\""
    "type\":\"object\"}}}";

static const char SCHEMA_SUSPEND_LINE[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"suspend_line\",\"description\":\"Suspends a spec"
    "ific line (max 6 months).\\n\\nChecks: Line status must be Active.\\nLogic: Sets line status to "
    "Suspended, records suspension_start_date.\",\"parameters\":{\"properties\":{\"customer_id\":{\"d"
    "escription\":\"ID of the customer who owns the line.\",\"title\":\"Customer Id\",\"type\":\"stri"
    "ng\"},\"line_id\":{\"description\":\"ID of the line to suspend.\",\"title\":\"Line Id\",\"type\""
    ":\"string\"},\"reason\":{\"description\":\"Reason for suspension.\",\"title\":\"Reason\",\"type\""
    ":\"string\"}},\"required\":[\"customer_id\",\"line_id\",\"reason\"],\"title\":\"parameters\",\"t"
    "ype\":\"object\"}}}";

static const char SCHEMA_RESUME_LINE[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"resume_line\",\"description\":\"Resumes a suspen"
    "ded line.\\n\\nChecks: Line status must be Suspended or Pending Activation.\\nLogic: Sets line s"
    "tatus to Active, clears suspension_start_date.\",\"parameters\":{\"properties\":{\"customer_id\""
    ":{\"description\":\"ID of the customer who owns the line.\",\"title\":\"Customer Id\",\"type\":\""
    "string\"},\"line_id\":{\"description\":\"ID of the line to resume.\",\"title\":\"Line Id\",\"typ"
    "e\":\"string\"}},\"required\":[\"customer_id\",\"line_id\"],\"title\":\"parameters\",\"type\":\""
    "object\"}}}";

static const char SCHEMA_GET_BILLS_FOR_CUSTOMER[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_bills_for_customer\",\"description\":\"Retri"
    "eves a list of the customer's bills, most recent first.\",\"parameters\":{\"properties\":{\"cust"
    "omer_id\":{\"description\":\"ID of the customer.\",\"title\":\"Customer Id\",\"type\":\"string\""
    "},\"limit\":{\"default\":12,\"description\":\"Maximum number of bills to return.\",\"title\":\"L"
    "imit\",\"type\":\"integer\"}},\"required\":[\"customer_id\"],\"title\":\"parameters\",\"type\":\""
    "object\"}}}";

static const char SCHEMA_SEND_PAYMENT_REQUEST[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"send_payment_request\",\"description\":\"Sends a"
    " payment request to the customer for a specific bill.\\n\\nChecks:\\n    - Customer exists\\n   "
    " - Bill exists and belongs to the customer\\n    - No other bills are already awaiting payment f"
    "or this customer\\nLogic: Sets bill status to AWAITING_PAYMENT and notifies customer.\\nWarning:"
    " This method does not check if the bill is already PAID.\\nAlways check the bill status before c"
    "alling this method.\",\"parameters\":{\"properties\":{\"customer_id\":{\"description\":\"ID of t"
    "he customer who owns the bill.\",\"title\":\"Customer Id\",\"type\":\"string\"},\"bill_id\":{\"d"
    "escription\":\"ID of the bill to send payment request for.\",\"title\":\"Bill Id\",\"type\":\"st"
    "ring\"}},\"required\":[\"customer_id\",\"bill_id\"],\"title\":\"parameters\",\"type\":\"object\""
    "}}}";

static const char SCHEMA_GET_DATA_USAGE[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_data_usage\",\"description\":\"Retrieves cur"
    "rent billing cycle data usage for a line, including data\\n\\nrefueling amount, data limit, and "
    "cycle end date.\",\"parameters\":{\"properties\":{\"customer_id\":{\"description\":\"ID of the c"
    "ustomer who owns the line.\",\"title\":\"Customer Id\",\"type\":\"string\"},\"line_id\":{\"descr"
    "iption\":\"ID of the line to check usage for.\",\"title\":\"Line Id\",\"type\":\"string\"}},\"re"
    "quired\":[\"customer_id\",\"line_id\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_ENABLE_ROAMING[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"enable_roaming\",\"description\":\"Enables inter"
    "national roaming on a line.\",\"parameters\":{\"properties\":{\"customer_id\":{\"description\":\""
    "ID of the customer who owns the line.\",\"title\":\"Customer Id\",\"type\":\"string\"},\"line_id"
    "\":{\"description\":\"ID of the line to enable roaming for.\",\"title\":\"Line Id\",\"type\":\"s"
    "tring\"}},\"required\":[\"customer_id\",\"line_id\"],\"title\":\"parameters\",\"type\":\"object\""
    "}}}";

static const char SCHEMA_DISABLE_ROAMING[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"disable_roaming\",\"description\":\"Disables int"
    "ernational roaming on a line.\",\"parameters\":{\"properties\":{\"customer_id\":{\"description\""
    ":\"ID of the customer who owns the line.\",\"title\":\"Customer Id\",\"type\":\"string\"},\"line"
    "_id\":{\"description\":\"ID of the line to disable roaming for.\",\"title\":\"Line Id\",\"type\""
    ":\"string\"}},\"required\":[\"customer_id\",\"line_id\"],\"title\":\"parameters\",\"type\":\"obj"
    "ect\"}}}";

static const char SCHEMA_TRANSFER_TO_HUMAN_AGENTS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"transfer_to_human_agents\",\"description\":\"Tra"
    "nsfer the user to a human agent, with a summary of the user's issue.\\n\\nOnly transfer if\\n - "
    " the user explicitly asks for a human agent\\n -  given the policy and the available tools, you "
    "cannot solve the user's issue.\",\"parameters\":{\"properties\":{\"summary\":{\"description\":\""
    "A summary of the user's issue.\",\"title\":\"Summary\",\"type\":\"string\"}},\"required\":[\"sum"
    "mary\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_REFUEL_DATA[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"refuel_data\",\"description\":\"Refuels data for"
    " a specific line, adding to the customer's bill.\\n\\nChecks: Line status must be Active, Custom"
    "er owns the line.\\nLogic: Adds data to the line and charges customer based on the plan's refuel"
    "ing rate.\",\"parameters\":{\"properties\":{\"customer_id\":{\"description\":\"ID of the custome"
    "r who owns the line.\",\"title\":\"Customer Id\",\"type\":\"string\"},\"line_id\":{\"description"
    "\":\"ID of the line to refuel data for.\",\"title\":\"Line Id\",\"type\":\"string\"},\"gb_amount"
    "\":{\"description\":\"Amount of data to add in gigabytes.\",\"title\":\"Gb Amount\",\"type\":\"n"
    "umber\"}},\"required\":[\"customer_id\",\"line_id\",\"gb_amount\"],\"title\":\"parameters\",\"ty"
    "pe\":\"object\"}}}";

/* ------------------------------------------------------------ tables */

/* TelecomTools.get_tools() order. */
static const ToolDef TELECOM_TOOLS[] = {
    {"get_customer_by_phone", tel_get_customer_by_phone, false, SCHEMA_GET_CUSTOMER_BY_PHONE},
    {"get_customer_by_id", tel_get_customer_by_id, false, SCHEMA_GET_CUSTOMER_BY_ID},
    {"get_customer_by_name", tel_get_customer_by_name, false, SCHEMA_GET_CUSTOMER_BY_NAME},
    {"get_details_by_id", tel_get_details_by_id, false, SCHEMA_GET_DETAILS_BY_ID},
    {"suspend_line", tel_suspend_line, true, SCHEMA_SUSPEND_LINE},
    {"resume_line", tel_resume_line, true, SCHEMA_RESUME_LINE},
    {"get_bills_for_customer", tel_get_bills_for_customer, false, SCHEMA_GET_BILLS_FOR_CUSTOMER},
    {"send_payment_request", tel_send_payment_request, true, SCHEMA_SEND_PAYMENT_REQUEST},
    {"get_data_usage", tel_get_data_usage, false, SCHEMA_GET_DATA_USAGE},
    {"enable_roaming", tel_enable_roaming, true, SCHEMA_ENABLE_ROAMING},
    {"disable_roaming", tel_disable_roaming, true, SCHEMA_DISABLE_ROAMING},
    {"transfer_to_human_agents", tel_transfer_to_human_agents, false, SCHEMA_TRANSFER_TO_HUMAN_AGENTS},
    {"refuel_data", tel_refuel_data, true, SCHEMA_REFUEL_DATA},
};

/* Public non-tool methods of TelecomTools that tasks (or graders) call. */
static const ToolDef TELECOM_FUNCS[] = {
    {"get_available_plan_ids", tel_get_available_plan_ids, false, NULL},
    {"set_data_usage", tel_set_data_usage, true, NULL},
    {"suspend_line_for_overdue_bill", tel_suspend_line_for_overdue_bill, true, NULL},
    {"assert_data_refueling_amount", tel_assert_data_refueling_amount, false, NULL},
    {"assert_line_status", tel_assert_line_status, false, NULL},
    {"assert_overdue_bill_exists", tel_assert_overdue_bill_exists, false, NULL},
    {"assert_no_overdue_bill", tel_assert_no_overdue_bill, false, NULL},
};

const DomainSpec DOMAIN_TELECOM = {
    .name = "telecom",
    .agent_tools = TELECOM_TOOLS,
    .n_agent_tools = sizeof TELECOM_TOOLS / sizeof TELECOM_TOOLS[0],
    .agent_funcs = TELECOM_FUNCS,
    .n_agent_funcs = sizeof TELECOM_FUNCS / sizeof TELECOM_FUNCS[0],
    .user_tools = TELECOM_USER_TOOLS,
    .n_user_tools = TEL_USER_TOOLS_COUNT,
    .user_funcs = TELECOM_USER_FUNCS,
    .n_user_funcs = TEL_USER_FUNCS_COUNT,
    .db_file = "db.toml",
    .user_db_file = "user_db.toml",
    .db_model = &TELECOM_DB,
    .user_db_model = &TELECOM_USER_DB,
    .load_policy = telecom_load_policy,
    .normalize_db = telecom_normalize_db,
    .sync = telecom_sync,
};
