/* test_db_schema.c — the load-time check of data files: each kind of misfit
 * is found and named by its path, and what fits passes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/json.h"
#include "tau2/db_schema.h"

/* A small model with every kind: Shop {items: Dict[str, Item], owner: Owner,
 * tags: List[str] = [], payments: Dict[str, Card | Cash]}. */
static const char *const SIZES[] = {"S", "M", "L", NULL};
static const DbType SIZE_TYPE = {DB_ENUM, .choices = SIZES};
static const DbType STOCK_TYPE = {DB_DICT, .item = &DB_T_INT, .choices = SIZES};
static const DbField ITEM_FIELDS[] = {
    {"name", &DB_T_STR},
    {"price", &DB_T_FLOAT},
    {"count", &DB_T_INT},
    {"live", &DB_T_BOOL},
    {"size", &SIZE_TYPE},
    {"stock", &STOCK_TYPE},
    {"added", &DB_T_DATE, "null", true},
    {NULL},
};
static const DbModel ITEM = {"Item", ITEM_FIELDS};
static const DbType ITEM_TYPE = {DB_MODEL, .model = &ITEM};
static const DbType ITEM_DICT = {DB_DICT, .item = &ITEM_TYPE};

static const DbField OWNER_FIELDS[] = {{"name", &DB_T_STR}, {NULL}};
static const DbModel OWNER = {"Owner", OWNER_FIELDS, true};
static const DbType OWNER_TYPE = {DB_MODEL, .model = &OWNER};

static const char *const KIND_CARD[] = {"card", NULL};
static const char *const KIND_CASH[] = {"cash", NULL};
static const DbType KIND_CARD_TYPE = {DB_ENUM, .choices = KIND_CARD};
static const DbType KIND_CASH_TYPE = {DB_ENUM, .choices = KIND_CASH};
static const DbField CARD_FIELDS[] = {{"kind", &KIND_CARD_TYPE}, {"last_four", &DB_T_STR}, {NULL}};
static const DbField CASH_FIELDS[] = {{"kind", &KIND_CASH_TYPE}, {"amount", &DB_T_FLOAT}, {NULL}};
static const DbModel CARD = {"Card", CARD_FIELDS};
static const DbModel CASH = {"Cash", CASH_FIELDS};
static const DbModel *const PAYMENT_VARIANTS[] = {&CARD, &CASH, NULL};
static const DbType PAYMENT_TYPE = {DB_UNION, .tag = "kind", .variants = PAYMENT_VARIANTS};
static const DbType PAYMENT_DICT = {DB_DICT, .item = &PAYMENT_TYPE};

static const DbField SHOP_FIELDS[] = {
    {"items", &ITEM_DICT},
    {"owner", &OWNER_TYPE},
    {"tags", &DB_T_LIST_STR, "[]"},
    {"payments", &PAYMENT_DICT},
    {NULL},
};
static const DbModel SHOP = {"Shop", SHOP_FIELDS};

static const char GOOD[] =
    "{\"items\": {\"i1\": {\"name\": \"hat\", \"price\": 5, \"count\": 2.0, \"live\": true, \"size\": \"M\","
    " \"stock\": {\"S\": 1, \"L\": 0}, \"added\": \"2025-01-20T14:30:00\", \"extra\": 1}},"
    " \"owner\": {\"name\": \"ann\"},"
    " \"payments\": {\"p1\": {\"kind\": \"card\", \"last_four\": \"1234\"}, \"p2\": {\"kind\": \"cash\", \"amount\": 3.5}}}";

/* Check GOOD with `from` replaced by `to` (once); returns the message, or
 * "" when it fits. */
static const char *check_altered(const char *from, const char *to) {
    static char err[512];
    char text[2048];
    const char *at = strstr(GOOD, from);
    assert_non_null(at);
    snprintf(text, sizeof text, "%.*s%s%s", (int)(at - GOOD), GOOD, to, at + strlen(from));
    char perr[128];
    cJSON *root = json_parse(text, strlen(text), "shop.json", perr, sizeof perr);
    assert_non_null(root);
    err[0] = '\0';
    int rc = db_schema_check(root, &SHOP, "shop.json", err, sizeof err);
    cJSON_Delete(root);
    assert_int_equal(rc != 0, err[0] != '\0');
    return err;
}

static void test_good_file_fits(void **state) {
    (void)state;
    /* An int for a float, 2.0 for an int, a datetime for a date, an absent
     * defaulted field and an extra key on an open model all fit. */
    assert_string_equal(check_altered("\"hat\"", "\"hat\""), "");
    assert_string_equal(check_altered("\"added\": \"2025-01-20T14:30:00\"", "\"added\": null"), "");
}

static void test_types_are_named_by_path(void **state) {
    (void)state;
    assert_string_equal(check_altered("\"name\": \"hat\"", "\"name\": 5"), "shop.json: items.i1.name: expected a string, got 5");
    assert_string_equal(check_altered("\"price\": 5", "\"price\": \"5\""),
                        "shop.json: items.i1.price: expected a number, got \"5\"");
    assert_string_equal(check_altered("\"count\": 2.0", "\"count\": 2.5"),
                        "shop.json: items.i1.count: expected a whole number, got 2.5");
    assert_string_equal(check_altered("\"live\": true", "\"live\": 1"),
                        "shop.json: items.i1.live: expected true or false, got 1");
    assert_string_equal(check_altered("\"size\": \"M\"", "\"size\": \"XL\""),
                        "shop.json: items.i1.size: expected one of S, M or L, got \"XL\"");
    assert_string_equal(check_altered("\"added\": \"2025-01-20T14:30:00\"", "\"added\": \"Jan 20\""),
                        "shop.json: items.i1.added: expected a date (YYYY-MM-DD), got \"Jan 20\"");
    assert_string_equal(check_altered("\"S\": 1", "\"XS\": 1"),
                        "shop.json: items.i1.stock.XS: unknown key (expected S, M or L)");
    assert_string_equal(check_altered("\"items\": {", "\"tags\": [\"a\", 7], \"items\": {"),
                        "shop.json: tags[1]: expected a string, got 7");
    assert_string_equal(check_altered("{\"name\": \"ann\"}", "[\"ann\"]"),
                        "shop.json: owner: expected an object (Owner), got [\"ann\"]");
}

static void test_fields_missing_unknown_and_unions(void **state) {
    (void)state;
    assert_string_equal(check_altered("\"name\": \"hat\", ", ""),
                        "shop.json: items.i1: missing field 'name' (Item)");
    assert_string_equal(check_altered("{\"name\": \"ann\"}", "{\"name\": \"ann\", \"age\": 3}"),
                        "shop.json: owner: unknown field 'age' (Owner has no such field)");
    assert_string_equal(check_altered("\"kind\": \"cash\"", "\"kind\": \"cheque\""),
                        "shop.json: payments.p2.kind: expected one of card or cash, got \"cheque\"");
    assert_string_equal(check_altered("\"kind\": \"cash\", ", ""),
                        "shop.json: payments.p2.kind: missing (it says which kind of record this is)");
    /* The variant the tag picks is the one checked. */
    assert_string_equal(check_altered("\"amount\": 3.5", "\"last_four\": \"9\""),
                        "shop.json: payments.p2: missing field 'amount' (Cash)");
}

static void test_top_level(void **state) {
    (void)state;
    char err[512];
    cJSON *empty = cJSON_CreateObject();
    assert_int_equal(db_schema_check(empty, &SHOP, "shop.json", err, sizeof err), -1);
    assert_string_equal(err, "shop.json: empty (expected the tables of Shop: items, owner, tags, payments)");
    cJSON_Delete(empty);
    assert_string_equal(check_altered("\"owner\": {\"name\": \"ann\"},", ""),
                        "shop.json: missing field 'owner' (Shop)");
    assert_non_null(db_model_field(&SHOP, "tags"));
    assert_null(db_model_field(&SHOP, "nope"));
}

/* A part checked apart from its file (a task's initialization_data): the
 * path starts where the part sits. */
static void test_part_checked_at_its_path(void **state) {
    (void)state;
    char err[512] = "";
    const char good[] = "{\"kind\": \"cash\", \"amount\": 2}";
    const char bad[] = "{\"kind\": \"cash\", \"amount\": \"2\"}";
    cJSON *v = json_parse(good, strlen(good), "part", err, sizeof err);
    assert_int_equal(db_schema_check_value(v, &PAYMENT_TYPE, "update", "payments.p9", err, sizeof err), 0);
    cJSON_Delete(v);
    v = json_parse(bad, strlen(bad), "part", err, sizeof err);
    assert_int_equal(db_schema_check_value(v, &PAYMENT_TYPE, "update", "payments.p9", err, sizeof err), -1);
    assert_string_equal(err, "update: payments.p9.amount: expected a number, got \"2\"");
    assert_int_equal(db_schema_check_value(v, &PAYMENT_TYPE, "update", "", err, sizeof err), -1);
    assert_string_equal(err, "update: amount: expected a number, got \"2\"");
    cJSON_Delete(v);
    char names[64];
    db_model_field_names(&SHOP, names, sizeof names);
    assert_string_equal(names, "items, owner, tags, payments");
    db_model_field_names(&SHOP, names, 12);
    assert_string_equal(names, "items, owne");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file_fits),
        cmocka_unit_test(test_types_are_named_by_path),
        cmocka_unit_test(test_fields_missing_unknown_and_unions),
        cmocka_unit_test(test_top_level),
        cmocka_unit_test(test_part_checked_at_its_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
