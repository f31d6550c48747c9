/* test_db.c — copy-on-write databases: isolation, order, equality, merge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/json.h"
#include "tau2/db.h"

static DbBase *make_base(void) {
    const char *s = "{\"users\": {\"u1\": {\"name\": \"a\", \"n\": 1}, \"u2\": {\"name\": \"b\", \"n\": 2}},"
                    " \"plans\": [{\"id\": \"p\"}], \"meta\": {\"version\": 1}}";
    char err[128];
    return dbbase_new(json_parse(s, strlen(s), "db", err, sizeof err));
}

static void test_copy_on_write_isolation(void **state) {
    (void)state;
    DbBase *base = make_base();
    Db *a = db_new(base), *b = db_new(base);
    const cJSON *before = db_get(a, "users", "u1");
    cJSON *u1 = db_get_mut(a, "users", "u1");
    assert_ptr_not_equal(before, u1);
    json_set(u1, "n", json_int(10));
    assert_int_equal((int)json_get(db_get(a, "users", "u1"), "n")->valuedouble, 10);
    assert_int_equal((int)json_get(db_get(b, "users", "u1"), "n")->valuedouble, 1);
    assert_int_equal((int)json_get(json_get(json_get(dbbase_root(base), "users"), "u1"), "n")->valuedouble, 1);
    assert_false(db_equal(a, b));
    cJSON *u1b = db_get_mut(b, "users", "u1");
    json_set(u1b, "n", json_int(10));
    assert_true(db_equal(a, b));
    json_set(u1b, "n", json_float(10)); /* 10 vs 10.0 differ, as in τ²-bench's hash */
    assert_false(db_equal(a, b));
    db_free(a);
    db_free(b);
    dbbase_free(base);
}

static void test_insert_order_and_iteration(void **state) {
    (void)state;
    DbBase *base = make_base();
    Db *db = db_new(base);
    char err[64];
    db_put(db, "users", "u3", json_parse("{\"name\": \"c\"}", 13, "r", err, sizeof err));
    db_put(db, "users", "u0", json_parse("{\"name\": \"z\"}", 13, "r", err, sizeof err));
    db_put(db, "users", "u3", json_parse("{\"name\": \"c2\"}", 14, "r", err, sizeof err)); /* replace an added one */
    assert_int_equal(db_count(db, "users"), 4);
    const char *want[] = {"u1", "u2", "u3", "u0"};
    DbIter it;
    const char *key;
    const cJSON *rec;
    int i = 0;
    db_iter_init(&it, db, "users");
    while (db_iter_next(&it, &key, &rec)) assert_string_equal(key, want[i++]);
    assert_int_equal(i, 4);
    assert_string_equal(json_get_str(db_get(db, "users", "u3"), "name"), "c2");
    Db *c = db_clone(db);
    assert_true(db_equal(db, c));
    cJSON *all = db_to_json(c);
    char *s = json_dumps(json_get(all, "users"), JSON_DUMP_COMPACT);
    assert_string_equal(s, "{\"u1\":{\"name\":\"a\",\"n\":1},\"u2\":{\"name\":\"b\",\"n\":2},\"u3\":{\"name\":\"c2\"},"
                           "\"u0\":{\"name\":\"z\"}}");
    free(s);
    cJSON_Delete(all);
    db_free(c);
    db_free(db);
    dbbase_free(base);
}

static void test_whole_tables_and_merge(void **state) {
    (void)state;
    DbBase *base = make_base();
    Db *a = db_new(base), *b = db_new(base);
    cJSON *plans = db_table_mut(a, "plans");
    cJSON_AddItemToArray(plans, cJSON_CreateString("x"));
    assert_int_equal(cJSON_GetArraySize(db_table(a, "plans")), 2);
    assert_int_equal(cJSON_GetArraySize(db_table(b, "plans")), 1);
    assert_false(db_equal(a, b));
    char err[64];
    const char *u = "{\"users\": {\"u2\": {\"n\": 5}, \"u9\": {\"name\": \"new\"}}, \"meta\": {\"flag\": true}}";
    cJSON *upd = json_parse(u, strlen(u), "u", err, sizeof err);
    db_merge(b, upd);
    assert_int_equal((int)json_get(db_get(b, "users", "u2"), "n")->valuedouble, 5);
    assert_string_equal(json_get_str(db_get(b, "users", "u2"), "name"), "b");
    assert_non_null(db_get(b, "users", "u9"));
    assert_true(cJSON_IsTrue(json_get(db_table(b, "meta"), "flag")));
    assert_int_equal(db_count(b, "users"), 3);
    cJSON_Delete(upd);
    db_free(a);
    db_free(b);
    dbbase_free(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_on_write_isolation),
        cmocka_unit_test(test_insert_order_and_iteration),
        cmocka_unit_test(test_whole_tables_and_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
