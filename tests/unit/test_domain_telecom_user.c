/* test_domain_telecom_user.c — the telecom user (phone) toolkit.
 *
 * Runs the user tools through a small domain made here (user tools and
 * functions over the real user_db.toml, no agent side), so it does not need
 * the agent half of telecom:
 *   - tool schemas against tests/fixtures/tau2/tools_telecom_user.json;
 *   - the normalized user DB against TelecomUserDB.model_dump();
 *   - exact outputs of the status bar, speed test, APN, app and payment tools;
 *   - error paths (bad arguments, pydantic validation text, unknown names);
 *   - optionally, a differential replay: TAU2_TELECOM_USER_DIFF names a JSONL
 *     file of {user_db, steps, asserts, final_db} records made by running
 *     τ²-bench's TelecomUserTools (random tool and function calls per task).
 * When the full telecom domain (DOMAIN_TELECOM) is linked in, the gold
 * replay of tests/fixtures/tau2/gold_telecom.jsonl (or of TAU2_TELECOM_GOLD)
 * runs as well: steps with sync, env assertions, and the final user DB when
 * the record has one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/json.h"
#include "core/toml.h"
#include "tau2/db.h"
#include "tau2/domains/domains.h"
#include "tau2/env.h"

/* Weak, so this test still links in a tree without the agent half; the
 * gold replay then skips. */
extern const DomainSpec DOMAIN_TELECOM __attribute__((weak));

static void user_only_normalize(Env *env, bool is_user) {
    if (is_user) telecom_user_normalize(env);
}

static const DomainSpec USER_ONLY_SPEC = {
    .name = "telecom_user_only",
    .agent_tools = NULL,
    .n_agent_tools = 0,
    .agent_funcs = NULL,
    .n_agent_funcs = 0,
    .user_tools = TELECOM_USER_TOOLS,
    .n_user_tools = 0, /* set in setup: TELECOM_USER_N_TOOLS is not a constant expression */
    .user_funcs = TELECOM_USER_FUNCS,
    .n_user_funcs = 0,
    .db_file = "db.toml",
    .user_db_file = "user_db.toml",
    .load_policy = NULL,
    .normalize_db = user_only_normalize,
    .sync = NULL,
};

static DomainSpec g_spec;
static Domain g_dom;

static cJSON *parse_or_fail(const char *text) {
    char err[256];
    cJSON *v = json_parse(text, strlen(text), "test", err, sizeof err);
    if (!v) fail_msg("bad JSON in test: %s", err);
    return v;
}

static char *data_path(const char *rel) {
    const char *dir = getenv("TAU2_DATA_DIR");
    if (!dir || !*dir) dir = TAU2_TEST_DATA_DIR;
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, rel);
    return p;
}

static int setup_domain(void **state) {
    g_spec = USER_ONLY_SPEC;
    g_spec.n_user_tools = TELECOM_USER_N_TOOLS;
    g_spec.n_user_funcs = TELECOM_USER_N_FUNCS;
    memset(&g_dom, 0, sizeof g_dom);
    g_dom.spec = &g_spec;
    g_dom.dir = xstrdup("(test)");
    g_dom.policy = xstrdup("");
    g_dom.db_base = dbbase_new(cJSON_CreateObject());
    char err[512];
    char *path = data_path("domains/telecom/user_db.toml");
    cJSON *raw = toml_load_file(path, err, sizeof err);
    free(path);
    if (!raw) fail_msg("cannot load user_db.toml: %s", err);
    /* Normalize the base once, as domain_load does. */
    DbBase *rawbase = dbbase_new(raw);
    Env tmp = {&g_dom, NULL, db_new(rawbase)};
    telecom_user_normalize(&tmp);
    g_dom.user_db_base = dbbase_new(db_to_json(tmp.user_db));
    db_free(tmp.user_db);
    dbbase_free(rawbase);
    g_dom.agent_schemas = cJSON_CreateArray();
    g_dom.user_schemas = cJSON_CreateArray();
    for (int i = 0; i < TELECOM_USER_N_TOOLS; i++)
        cJSON_AddItemToArray(g_dom.user_schemas, parse_or_fail(TELECOM_USER_TOOLS[i].schema));
    (void)state;
    return 0;
}

static int teardown_domain(void **state) {
    free(g_dom.dir);
    free(g_dom.policy);
    dbbase_free(g_dom.db_base);
    dbbase_free(g_dom.user_db_base);
    cJSON_Delete(g_dom.agent_schemas);
    cJSON_Delete(g_dom.user_schemas);
    (void)state;
    return 0;
}

/* ---- helpers ---- */

/* Call a user tool; its content must be `want` and its error flag `err`. */
static void expect_tool(Env *env, const char *name, const char *args_json, bool want_err, const char *want) {
    cJSON *args = args_json ? parse_or_fail(args_json) : NULL;
    ToolResult r = env_tool_call(env, "user", name, args);
    if (r.error != want_err || strcmp(r.content, want) != 0)
        fail_msg("%s(%s):\n--- got (error=%d) ---\n%s\n--- want (error=%d) ---\n%s", name,
                 args_json ? args_json : "", r.error, r.content, want_err, want);
    tool_result_free(&r);
    cJSON_Delete(args);
}

static void expect_func(Env *env, const char *name, const char *args_json, const char *want_json) {
    cJSON *args = args_json ? parse_or_fail(args_json) : NULL;
    char err[1024] = "";
    cJSON *res = env_run_function(env, "user", name, args, err, sizeof err);
    if (!want_json) {
        if (res) fail_msg("%s: expected an error", name);
    } else {
        if (!res) fail_msg("%s failed: %s", name, err);
        cJSON *want = parse_or_fail(want_json);
        if (!json_equal(res, want, true)) {
            char *g = json_dumps(res, 0);
            fail_msg("%s(%s): got %s want %s", name, args_json ? args_json : "", g, want_json);
        }
        cJSON_Delete(want);
    }
    cJSON_Delete(res);
    cJSON_Delete(args);
}

static void expect_db_field(Env *env, const char *table, const char *key, const char *want_json) {
    const cJSON *t = db_table(env->user_db, table);
    cJSON *want = parse_or_fail(want_json);
    const cJSON *got = json_get(t, key);
    if (!got || !json_equal(got, want, true)) {
        char *g = got ? json_dumps(got, 0) : xstrdup("(absent)");
        fail_msg("%s.%s: got %s want %s", table, key, g, want_json);
    }
    cJSON_Delete(want);
}

#define BAR_DEFAULT "\xf0\x9f\x93\xb6\xc2\xb3 Good | 5G | \xf0\x9f\x93\xb1 Data Enabled | \xf0\x9f\x94\x8b 80%"
#define BAR_EXCELLENT "\xf0\x9f\x93\xb6\xe2\x81\xb4 Excellent | 5G | \xf0\x9f\x93\xb1 Data Enabled | \xf0\x9f\x94\x8b 80%"
#define BAR_AIRPLANE "\xe2\x9c\x88\xef\xb8\x8f Airplane Mode | \xf0\x9f\x94\x8b 80%"

/* ---- schemas ---- */

static void test_schemas_match_fixture(void **state) {
    (void)state;
    char err[512];
    cJSON *want = json_load_file(TAU2_SOURCE_DIR "/tests/fixtures/tau2/tools_telecom_user.json", err, sizeof err);
    if (!want) fail_msg("%s", err);
    assert_int_equal(cJSON_GetArraySize(want), TELECOM_USER_N_TOOLS);
    int i = 0;
    for (const cJSON *w = want->child; w; w = w->next, i++) {
        cJSON *got = parse_or_fail(TELECOM_USER_TOOLS[i].schema);
        if (!json_equal(got, w, true)) {
            char *ws = json_dumps(w, 0);
            fail_msg("schema of tool %d (%s) differs from the fixture:\n%s\n--- want ---\n%s", i,
                     TELECOM_USER_TOOLS[i].name, TELECOM_USER_TOOLS[i].schema, ws);
        }
        assert_string_equal(TELECOM_USER_TOOLS[i].name, json_get_str(json_get(w, "function"), "name"));
        cJSON_Delete(got);
    }
    cJSON_Delete(want);
}

/* ---- normalization ---- */

static const char *DEFAULT_USER_DB =
    "{\"device\":{\"sim_card_status\":\"active\",\"sim_card_missing\":false,\"airplane_mode\":false,"
    "\"network_signal_strength\":\"good\",\"network_technology_connected\":\"5G\",\"network_connection_status\":"
    "\"connected\",\"battery_level\":80,\"data_enabled\":true,\"roaming_enabled\":false,\"network_mode_preference\":"
    "\"4g_5g_preferred\",\"active_apn_settings\":{\"apn_name\":\"internet\",\"reset_at_reboot\":false,\"mms_apn\":"
    "\"mms\",\"mmsc_url\":\"http://mms.carrier.com/mms/wapenc\",\"mms_proxy\":null,\"mms_port\":null},"
    "\"wifi_enabled\":false,\"wifi_connected\":false,\"wifi_ssid\":null,\"wifi_signal_strength\":\"none\","
    "\"wifi_calling_enabled\":false,\"wifi_calling_mms_over_wifi\":false,\"data_saver_mode\":false,"
    "\"vpn_enabled_setting\":false,\"vpn_connected\":false,\"vpn_details\":null,\"app_statuses\":{\"messaging\":"
    "{\"app_name\":\"messaging\",\"permissions\":{\"sms\":true,\"storage\":true,\"phone\":true,\"network\":false}},"
    "\"browser\":{\"app_name\":\"browser\",\"permissions\":{\"sms\":false,\"storage\":true,\"phone\":false,"
    "\"network\":true}}}},\"surroundings\":{\"name\":null,\"phone_number\":null,\"is_abroad\":false,"
    "\"roaming_allowed\":false,\"signal_strength\":{\"2G\":\"poor\",\"3G\":\"fair\",\"4G\":\"good\",\"5G\":"
    "\"excellent\"},\"mobile_data_usage_exceeded\":false,\"line_active\":true,\"payment_request\":null}}";

/* Same values, kinds and key order. */
static void expect_same_dump(const cJSON *got, const char *want_json) {
    cJSON *want = parse_or_fail(want_json);
    char *g = json_dumps(got, 0);
    char *w = json_dumps(want, 0);
    if (strcmp(g, w) != 0) fail_msg("--- got ---\n%s\n--- want ---\n%s", g, w);
    free(g);
    free(w);
    cJSON_Delete(want);
}

static void test_normalized_base_is_model_dump(void **state) {
    (void)state;
    expect_same_dump(dbbase_root(g_dom.user_db_base), DEFAULT_USER_DB);
    /* Normalizing again changes nothing and copies nothing. */
    Env *env = env_new(&g_dom);
    telecom_user_normalize(env);
    Env *fresh = env_new(&g_dom);
    assert_true(db_equal(env->user_db, fresh->user_db));
    env_free(env);
    env_free(fresh);
}

static void test_normalize_coerces_merged_data(void **state) {
    (void)state;
    Env *env = env_new(&g_dom);
    cJSON *upd = parse_or_fail("{\"device\":{\"battery_level\":55.0,\"app_statuses\":{\"camera\":{\"app_name\":"
                               "\"camera\"}}},\"surroundings\":{\"payment_request\":{\"bill_id\":\"B1\","
                               "\"amount_due\":12}}}");
    db_merge(env->user_db, upd);
    cJSON_Delete(upd);
    telecom_user_normalize(env);
    expect_db_field(env, "device", "battery_level", "55");
    expect_db_field(env, "surroundings", "payment_request", "{\"bill_id\":\"B1\",\"amount_due\":12.0,\"paid\":false}");
    expect_db_field(env, "device", "app_statuses",
                    "{\"messaging\":{\"app_name\":\"messaging\",\"permissions\":{\"sms\":true,\"storage\":true,"
                    "\"phone\":true,\"network\":false}},\"browser\":{\"app_name\":\"browser\",\"permissions\":"
                    "{\"sms\":false,\"storage\":true,\"phone\":false,\"network\":true}},\"camera\":{\"app_name\":"
                    "\"camera\",\"permissions\":{\"sms\":false,\"storage\":false,\"phone\":false,\"network\":false}}}");
    const cJSON *amt = json_get(json_get(db_table(env->user_db, "surroundings"), "payment_request"), "amount_due");
    assert_true(json_is_float(amt));
    env_free(env);
}

/* ---- tool outputs ---- */

static void test_status_and_network(void **state) {
    (void)state;
    Env *env = env_new(&g_dom);
    expect_tool(env, "check_status_bar", NULL, false, "Status Bar: " BAR_DEFAULT);
    expect_tool(env, "check_network_status", "{}", false,
                "Airplane Mode: OFF\nSIM Card Status: active\nCellular Connection: connected\nCellular Signal: good\n"
                "Cellular Network Type: 5G\nMobile Data Enabled: Yes\nData Roaming Enabled: No\nWi-Fi Radio: OFF\n"
                "Wi-Fi Connected: No");
    /* The first network search picks up the surroundings' 5G signal. */
    expect_tool(env, "toggle_airplane_mode", NULL, false, "Airplane Mode is now ON.\nStatus Bar: " BAR_AIRPLANE);
    expect_db_field(env, "device", "network_connection_status", "\"no_service\"");
    expect_tool(env, "run_speed_test", NULL, false, "Speed test failed: No Connection.");
    expect_tool(env, "toggle_wifi", NULL, false,
                "Cannot change Wi-Fi settings while Airplane Mode is ON.\nStatus Bar: " BAR_AIRPLANE);
    expect_tool(env, "toggle_airplane_mode", NULL, false, "Airplane Mode is now OFF.\nStatus Bar: " BAR_EXCELLENT);
    expect_tool(env, "run_speed_test", NULL, false,
                "Speed Test Result: 275.00 Mbps (Excellent). Connection is very fast.");
    expect_tool(env, "set_network_mode_preference", "{\"mode\":\"2g_only\"}", false,
                "Preferred Network Mode set to: 2g_only\nStatus Bar: \xf0\x9f\x93\xb6\xc2\xb9 Poor | 2G | "
                "\xf0\x9f\x93\xb1 Data Enabled | \xf0\x9f\x94\x8b 80%");
    expect_tool(env, "run_speed_test", NULL, false,
                "Speed Test Result: 0.05 Mbps (Very Poor). Connection is very slow. Basic web browsing might be "
                "difficult.");
    expect_tool(env, "set_network_mode_preference", "{\"mode\":\"5g\"}", false,
                "Failed to set network mode: '5g' is not a valid option. Please use one of: 4g_5g_preferred, "
                "4g_only, 3g_only, 2g_only\nStatus Bar: \xf0\x9f\x93\xb6\xc2\xb9 Poor | 2G | \xf0\x9f\x93\xb1 Data "
                "Enabled | \xf0\x9f\x94\x8b 80%");
    expect_tool(env, "check_network_mode_preference", NULL, false, "Network Mode Preference: 2g_only");
    expect_tool(env, "can_send_mms", NULL, false, "Your messaging app cannot send MMS messages.");
    expect_tool(env, "set_network_mode_preference", "{\"mode\":\"3g_only\"}", false,
                "Preferred Network Mode set to: 3g_only\nStatus Bar: \xf0\x9f\x93\xb6\xc2\xb2 Fair | 3G | "
                "\xf0\x9f\x93\xb1 Data Enabled | \xf0\x9f\x94\x8b 80%");
    expect_tool(env, "can_send_mms", NULL, false, "Your messaging app can send MMS messages.");
    expect_tool(env, "toggle_data_saver_mode", NULL, false,
                "Data Saver Mode is now ON.\nStatus Bar: \xf0\x9f\x93\xb6\xc2\xb2 Fair | 3G | \xf0\x9f\x93\xb1 Data "
                "Enabled | \xf0\x9f\x94\xbd Data Saver | \xf0\x9f\x94\x8b 80%");
    expect_tool(env, "run_speed_test", NULL, false,
                "Speed Test Result: 0.30 Mbps (Very Poor). Connection is very slow. Basic web browsing might be "
                "difficult.");
    expect_tool(env, "toggle_data", NULL, false,
                "Mobile Data is now OFF.\nStatus Bar: \xf0\x9f\x93\xb6\xc2\xb2 Fair | 3G | \xf0\x9f\x93\xb5 Data "
                "Disabled | \xf0\x9f\x94\x8b 80%");
    expect_func(env, "assert_mobile_data_status", "{\"expected_status\":false}", "true");
    expect_func(env, "assert_internet_speed", "{\"expected_speed\":0}", "true");
    expect_func(env, "assert_internet_speed", "{\"expected_speed\":0,\"expected_desc\":\"poor\"}", "false");
    env_free(env);
}

static void test_sim_vpn_apps_payment(void **state) {
    (void)state;
    Env *env = env_new(&g_dom);
    expect_func(env, "unseat_sim_card", NULL, "\"SIM card un-seated successfully.\"");
    expect_tool(env, "check_sim_status", NULL, false, "No SIM card detected in the phone.");
    expect_func(env, "assert_service_status", "{\"expected_status\":\"no_service\"}", "true");
    expect_func(env, "assert_service_status", "{\"expected_status\":\"bogus\"}", NULL);
    expect_tool(env, "reseat_sim_card", NULL, false, "SIM card re-seated successfully.\nStatus Bar: " BAR_EXCELLENT);
    expect_func(env, "lock_sim_card", "{\"mode\":\"pin\"}", "\"SIM card locked successfully in pin mode.\"");
    expect_tool(env, "check_sim_status", NULL, false, "The SIM card is locked with a PIN code.");

    Env *e2 = env_new(&g_dom);
    expect_func(e2, "break_vpn", NULL, "\"VPN connection broken.\"");
    expect_tool(e2, "check_vpn_status", NULL, false,
                "VPN is ON and connected. Details: {'server_address': '192.168.1.1', 'protocol': 'OpenVPN', "
                "'server_performance': <PerformanceLevel.POOR: 'poor'>}");
    expect_tool(e2, "run_speed_test", NULL, false,
                "Speed Test Result: 22.00 Mbps (Fair). Connection is okay for web browsing and some standard "
                "definition streaming.");
    expect_tool(e2, "connect_vpn", NULL, false, "VPN already connected.");
    expect_tool(e2, "disconnect_vpn", NULL, false, "VPN disconnected successfully.\nStatus Bar: " BAR_DEFAULT);
    expect_db_field(e2, "device", "vpn_details", "null");
    expect_tool(e2, "check_vpn_status", NULL, false, "VPN is turned OFF.");

    expect_tool(e2, "check_installed_apps", NULL, false, "The following apps are installed on the phone: messaging, browser");
    expect_func(e2, "remove_app_permission", "{\"app_name\":\"messaging\",\"permission\":\"SMS\"}",
                "[true, \"Permission 'sms' removed from app 'messaging'.\"]");
    expect_tool(e2, "check_app_permissions", "{\"app_name\":\"messaging\"}", false,
                "App 'messaging' has permission for: storage, phone.");
    expect_tool(e2, "check_app_status", "{\"app_name\":\"browser\"}", false,
                "Status for App: browser\n - Permissions Granted:\n   - storage\n   - network");
    expect_tool(e2, "check_app_status", "{\"app_name\":\"camera\"}", false, "App 'camera' not found on this phone.");
    expect_tool(e2, "grant_app_permission", "{\"app_name\":\"messaging\",\"permission\":\"Camera\"}", false,
                "Error. Permission 'camera' not tracked for app 'messaging', available permissions: ['sms', "
                "'storage', 'phone', 'network']\nStatus Bar: " BAR_DEFAULT);
    expect_tool(e2, "grant_app_permission", "{\"app_name\":\"messaging\",\"permission\":\"sms\"}", false,
                "Success. Permission 'sms' granted to app 'messaging'.\nStatus Bar: " BAR_DEFAULT);

    expect_tool(e2, "check_payment_request", NULL, false, "No payment request has been made.");
    expect_tool(e2, "make_payment", NULL, false, "You do not have a payment request.");
    cJSON *upd = parse_or_fail("{\"surroundings\":{\"payment_request\":{\"bill_id\":\"B7\",\"amount_due\":65.5,"
                               "\"paid\":false}}}");
    db_merge(e2->user_db, upd);
    cJSON_Delete(upd);
    expect_tool(e2, "check_payment_request", NULL, false, "You have a payment request for bill B7 of 65.5 USD.");
    expect_tool(e2, "make_payment", NULL, false, "Payment of 65.5 USD has been made for bill B7.");
    expect_db_field(e2, "surroundings", "payment_request", "{\"bill_id\":\"B7\",\"amount_due\":65.5,\"paid\":true}");
    env_free(e2);
    env_free(env);
}

static void test_apn(void **state) {
    (void)state;
    Env *env = env_new(&g_dom);
    expect_func(env, "break_apn_settings", NULL, "\"APN settings broken. Please call reset_apn_settings() to fix.\"");
    expect_tool(env, "check_apn_settings", NULL, false,
                "Current APN Name: broken\nMMSC URL (for picture messages): http://mms.carrier.com/mms/wapenc\n"
                "(These are technical settings, usually best left unchanged.)");
    const char *bar_none = "\xf0\x9f\x93\xb5 No Signal | \xf0\x9f\x93\xb5 Data Disabled | \xf0\x9f\x94\x8b 80%";
    char want[512];
    snprintf(want, sizeof want, "APN settings will reset at reboot.\nStatus Bar: %s", bar_none);
    expect_tool(env, "reset_apn_settings", NULL, false, want);
    expect_tool(env, "reboot_device", NULL, false,
                "Resetting APN settings...\nRestarting network services...\nStatus Bar: " BAR_EXCELLENT);
    expect_db_field(env, "device", "active_apn_settings",
                    "{\"apn_name\":\"internet\",\"reset_at_reboot\":false,\"mms_apn\":\"mms\",\"mmsc_url\":"
                    "\"http://mms.carrier.com/mms/wapenc\",\"mms_proxy\":null,\"mms_port\":null}");
    expect_func(env, "break_apn_mms_setting", NULL,
                "\"APN MMS setting broken. Please call reset_apn_settings() to fix.\"");
    expect_func(env, "assert_can_send_mms", "{\"expected_status\":false}", "true");
    expect_tool(env, "set_apn_settings", "{\"apn_settings\":{\"mms_port\":\"8080\",\"reset_at_reboot\":\"yes\"}}",
                false, "APN settings set to: internet\nStatus Bar: " BAR_EXCELLENT);
    expect_db_field(env, "device", "active_apn_settings",
                    "{\"apn_name\":\"internet\",\"reset_at_reboot\":true,\"mms_apn\":\"mms\",\"mmsc_url\":"
                    "\"http://mms.carrier.com/mms/wapenc\",\"mms_proxy\":null,\"mms_port\":8080}");
    expect_tool(env, "set_apn_settings", "{\"apn_settings\":{\"foo\":\"a'b\",\"bar\":null,\"apn_name\":3}}", true,
                "Error: 3 validation errors for APNSettings\napn_name\n  Input should be 'internet' or 'broken' "
                "[type=enum, input_value=3, input_type=int]\n    For further information visit "
                "https://errors.pydantic.dev/2.13/v/enum\nfoo\n  Extra inputs are not permitted "
                "[type=extra_forbidden, input_value=\"a'b\", input_type=str]\n    For further information visit "
                "https://errors.pydantic.dev/2.13/v/extra_forbidden\nbar\n  Extra inputs are not permitted "
                "[type=extra_forbidden, input_value=None, input_type=NoneType]\n    For further information visit "
                "https://errors.pydantic.dev/2.13/v/extra_forbidden");
    expect_tool(env, "set_apn_settings", "{\"apn_settings\":{\"mms_port\":1.5}}", true,
                "Error: 1 validation error for APNSettings\nmms_port\n  Input should be a valid integer, got a "
                "number with a fractional part [type=int_from_float, input_value=1.5, input_type=float]\n    For "
                "further information visit https://errors.pydantic.dev/2.13/v/int_from_float");
    env_free(env);
}

static void test_functions_and_errors(void **state) {
    (void)state;
    Env *env = env_new(&g_dom);
    expect_func(env, "set_user_info", "{\"name\":\"John Smith\",\"phone_number\":\"555-123-2002\"}", "null");
    expect_db_field(env, "surroundings", "phone_number", "\"555-123-2002\"");
    expect_func(env, "set_user_info", "{\"name\":\"x\"}", NULL);
    expect_func(env, "set_user_info", "{\"name\":1,\"phone_number\":\"1\"}", NULL);
    expect_func(env, "set_user_location", "{\"abroad\":true}", "null");
    expect_func(env, "assert_mobile_data_status", "{\"expected_status\":false}", "true");
    expect_func(env, "turn_roaming_on", NULL, "\"Data Roaming is now ON.\"");
    /* roaming_allowed comes from the agent side (sync); still false here. */
    expect_func(env, "assert_mobile_data_status", "{\"expected_status\":false}", "true");
    expect_func(env, "assert_mobile_roaming_status", "{\"expected_status\":true}", "true");
    expect_func(env, "turn_data_off", NULL, "\"Data connection broken.\"");
    expect_db_field(env, "device", "data_enabled", "false");
    expect_func(env, "turn_data_on", NULL, "\"Data connection restored.\"");
    expect_func(env, "turn_airplane_mode_on", NULL, "\"Airplane Mode is now ON.\"");
    expect_func(env, "turn_airplane_mode_on", NULL, "\"Airplane Mode is now ON.\"");
    expect_func(env, "assert_airplane_mode_status", "{\"expected_status\":true}", "true");
    expect_func(env, "set_wifi_calling", "{\"enabled\":true,\"mms_over_wifi\":true}",
                "\"Wi-Fi Calling is now ON.\\nMMS over Wi-Fi is now ON.\"");
    expect_func(env, "turn_data_saver_mode_on", NULL, "\"Data Saver Mode is now ON.\"");
    expect_func(env, "assert_mobile_data_saver_mode_status", "{\"expected_status\":true}", "true");
    expect_func(env, "assert_internet_not_excellent", NULL, "true");
    expect_func(env, "assert_mobile_data_usage_exceeded", "{\"expected_status\":false}", "true");
    expect_func(env, "simulate_network_search", "{\"x\":1}", NULL);
    expect_func(env, "no_such_function", NULL, NULL);
    /* Dispatcher checks against the schemas. */
    ToolResult r = env_tool_call(env, "user", "grant_app_permission", NULL);
    assert_true(r.error);
    tool_result_free(&r);
    cJSON *bad_args = parse_or_fail("{\"app_name\":5}");
    r = env_tool_call(env, "user", "check_app_status", bad_args);
    assert_true(r.error);
    tool_result_free(&r);
    cJSON_Delete(bad_args);
    bad_args = parse_or_fail("{\"x\":5}");
    r = env_tool_call(env, "user", "toggle_data", bad_args);
    assert_true(r.error);
    tool_result_free(&r);
    cJSON_Delete(bad_args);
    r = env_tool_call(env, "user", "no_such_tool", NULL);
    assert_true(r.error);
    assert_string_equal(r.content, "Error: Tool 'no_such_tool' not found.");
    tool_result_free(&r);
    env_free(env);
}

/* Every function and tool, through the unchecked env-function path, with
 * arguments of every wrong shape: errors or results, never a crash or leak. */
static void test_odd_arguments_never_crash(void **state) {
    (void)state;
    static const char *const odd[] = {
        "{}", "{\"x\":1}", "{\"expected_status\":\"yes\",\"expected_speed\":\"1\"}",
        "{\"mode\":null,\"app_name\":null,\"permission\":[],\"enabled\":1}",
        "{\"apn_settings\":[1],\"name\":{},\"phone_number\":\"\",\"abroad\":null}",
        "{\"apn_settings\":{\"apn_name\":{\"a\":[1,2.5,null]}},\"expected_desc\":7,\"expected_speed\":1e308}",
    };
    Env *env = env_new(&g_dom);
    for (size_t a = 0; a < sizeof odd / sizeof odd[0]; a++) {
        cJSON *args = parse_or_fail(odd[a]);
        for (int i = 0; i < TELECOM_USER_N_FUNCS + TELECOM_USER_N_TOOLS; i++) {
            const char *name = i < TELECOM_USER_N_FUNCS ? TELECOM_USER_FUNCS[i].name
                                                        : TELECOM_USER_TOOLS[i - TELECOM_USER_N_FUNCS].name;
            char err[1024];
            cJSON_Delete(env_run_function(env, "user", name, args, err, sizeof err));
            ToolResult r = env_tool_call(env, "user", name, args);
            assert_non_null(r.content);
            tool_result_free(&r);
        }
        cJSON_Delete(args);
    }
    env_free(env);
}

/* ---- differential replay against τ²-bench's TelecomUserTools ---- */

static int diff_record(const cJSON *rec) {
    const char *id = json_get_str(rec, "id");
    int bad = 0;
    Env *env = env_new(&g_dom);
    /* The recorded DB is a full model dump: its tables replace the base's
     * (a merge could not drop keys the record lacks). */
    for (const cJSON *t = json_get(rec, "user_db")->child; t; t = t->next) {
        cJSON *mine = db_table_mut(env->user_db, t->string);
        while (mine->child) cJSON_Delete(cJSON_DetachItemViaPointer(mine, mine->child));
        for (const cJSON *c = t->child; c; c = c->next)
            cJSON_AddItemToObject(mine, c->string, cJSON_Duplicate(c, 1));
    }
    int k = 0;
    for (const cJSON *s = json_get(rec, "steps")->child; s; s = s->next, k++) {
        const char *name = json_get_str(s, "name");
        const cJSON *args = json_get(s, "args");
        if (strcmp(json_get_str(s, "kind"), "tool") == 0) {
            ToolResult r = env_tool_call_nosync(env, "user", name, args);
            bool want_err = cJSON_IsTrue(json_get(s, "error"));
            const char *want = json_get_str(s, "content");
            if (r.error != want_err || strcmp(r.content, want) != 0) {
                print_error("%s step %d %s:\n--- got ---\n%s\n--- want ---\n%s\n", id, k, name, r.content, want);
                bad++;
            }
            tool_result_free(&r);
        } else {
            char err[1024] = "";
            cJSON *res = env_run_function(env, "user", name, args, err, sizeof err);
            const cJSON *exc = json_get(s, "exc");
            bool want_exc = exc && !cJSON_IsNull(exc);
            if (want_exc != (res == NULL) || (res && !json_equal(res, json_get(s, "result"), true))) {
                char *g = res ? json_dumps(res, 0) : xstrdup(err);
                char *w = want_exc ? xstrdup(exc->valuestring) : json_dumps(json_get(s, "result"), 0);
                print_error("%s step %d %s: got %s want %s\n", id, k, name, g, w);
                free(g);
                free(w);
                bad++;
            }
            cJSON_Delete(res);
        }
    }
    for (const cJSON *a = json_get(rec, "asserts")->child; a; a = a->next) {
        char err[1024] = "";
        cJSON *res = env_run_function(env, "user", json_get_str(a, "name"), json_get(a, "args"), err, sizeof err);
        if (!res || !json_equal(res, json_get(a, "result"), true)) {
            char *as = json_dumps(json_get(a, "args"), 0);
            print_error("%s assertion %s(%s) differs (%s)\n", id, json_get_str(a, "name"), as, res ? "" : err);
            free(as);
            bad++;
        }
        cJSON_Delete(res);
    }
    cJSON *got = db_to_json(env->user_db);
    if (!json_equal(got, json_get(rec, "final_db"), true)) {
        char *g = json_dumps(got, JSON_DUMP_SORT_KEYS);
        char *w = json_dumps(json_get(rec, "final_db"), JSON_DUMP_SORT_KEYS);
        print_error("%s final user DB differs:\n--- got ---\n%s\n--- want ---\n%s\n", id, g, w);
        free(g);
        free(w);
        bad++;
    }
    cJSON_Delete(got);
    env_free(env);
    return bad;
}

/* Each line of a JSONL file; returns the number of records that failed. */
static int for_each_line(const char *path, int (*fn)(const cJSON *rec), int *count) {
    char err[512];
    size_t len;
    char *text = file_read_all(path, &len, err, sizeof err);
    if (!text) fail_msg("%s", err);
    int failed = 0;
    *count = 0;
    char *line = text;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        if (n > 0) {
            cJSON *rec = json_parse(line, n, path, err, sizeof err);
            if (!rec) fail_msg("%s", err);
            if (fn(rec) > 0) failed++;
            (*count)++;
            cJSON_Delete(rec);
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    return failed;
}

static void test_differential_replay(void **state) {
    (void)state;
    const char *path = getenv("TAU2_TELECOM_USER_DIFF");
    if (!path || !*path) skip();
    int count;
    int failed = for_each_line(path, diff_record, &count);
    if (failed) fail_msg("%d of %d differential records differ", failed, count);
    print_message("differential replay: %d records match\n", count);
}

/* ---- gold replay through the full telecom domain ---- */

static Domain *g_full;
static cJSON *g_tasks; /* task id -> task */

static int gold_record(const cJSON *rec) {
    const char *id = json_get_str(rec, "task_id");
    const cJSON *task = json_get(g_tasks, id);
    if (!task) {
        print_error("%s: task not found\n", id);
        return 1;
    }
    int bad = 0;
    char err[1024];
    Env *env = env_new(g_full);
    if (env_set_initial_state(env, json_get(task, "initial_state"), err, sizeof err) != 0) {
        print_error("%s: set_initial_state: %s\n", id, err);
        env_free(env);
        return 1;
    }
    int k = 0;
    for (const cJSON *s = json_get(rec, "steps")->child; s; s = s->next, k++) {
        ToolResult r = env_tool_call(env, json_get_str(s, "requestor"), json_get_str(s, "name"), json_get(s, "arguments"));
        const cJSON *want = json_get(s, "content");
        bool want_err = cJSON_IsTrue(json_get(s, "error"));
        bool same = r.error == want_err;
        if (same && cJSON_IsString(want)) {
            char e1[8];
            cJSON *a = json_parse(r.content, strlen(r.content), "", e1, sizeof e1);
            cJSON *b = json_parse(want->valuestring, strlen(want->valuestring), "", e1, sizeof e1);
            same = (a && b) ? json_equal(a, b, true) : strcmp(r.content, want->valuestring) == 0;
            cJSON_Delete(a);
            cJSON_Delete(b);
        }
        if (!same) {
            print_error("%s step %d %s (%s):\n--- got ---\n%s\n--- want ---\n%s\n", id, k, json_get_str(s, "name"),
                        json_get_str(s, "requestor"), r.content, cJSON_IsString(want) ? want->valuestring : "(not kept)");
            bad++;
        }
        tool_result_free(&r);
    }
    const cJSON *asserts = json_get(json_get(task, "evaluation_criteria"), "env_assertions");
    const cJSON *want_res = json_get(rec, "env_assertions");
    int i = 0;
    for (const cJSON *a = asserts ? asserts->child : NULL; a; a = a->next, i++) {
        cJSON *res = env_run_function(env, json_get_str(a, "env_type"), json_get_str(a, "func_name"),
                                      json_get(a, "arguments"), err, sizeof err);
        const cJSON *av = json_get(a, "assert_value");
        bool expect = av ? cJSON_IsTrue(av) : true;
        bool pass = res && cJSON_IsBool(res) && (cJSON_IsTrue(res) == expect);
        const cJSON *w = cJSON_GetArrayItem(want_res, i);
        if (!w || pass != cJSON_IsTrue(w)) {
            print_error("%s assertion %d %s: got %s\n", id, i, json_get_str(a, "func_name"), pass ? "pass" : "fail");
            bad++;
        }
        cJSON_Delete(res);
    }
    const cJSON *want_db = json_get(rec, "user_db");
    if (want_db) {
        cJSON *got = db_to_json(env->user_db);
        if (!json_equal(got, want_db, true)) {
            print_error("%s: final user DB differs\n", id);
            bad++;
        }
        cJSON_Delete(got);
    }
    env_free(env);
    return bad;
}

static void test_gold_replay(void **state) {
    (void)state;
    if (!&DOMAIN_TELECOM) skip();
    char err[512];
    char *dir = getenv("TAU2_DATA_DIR") && *getenv("TAU2_DATA_DIR") ? xstrdup(getenv("TAU2_DATA_DIR"))
                                                                     : xstrdup(TAU2_TEST_DATA_DIR);
    g_full = domain_load(dir, "telecom", err, sizeof err);
    if (!g_full) fail_msg("%s", err);
    char *tpath = data_path("domains/telecom/tasks.json");
    cJSON *arr = json_load_file(tpath, err, sizeof err);
    free(tpath);
    if (!arr) fail_msg("%s", err);
    g_tasks = cJSON_CreateObject();
    for (cJSON *t = arr->child; t; t = t->next)
        cJSON_AddItemReferenceToObject(g_tasks, json_get_str(t, "id"), t);
    /* TAU2_TELECOM_GOLD may name a bigger file of the same records (plus
     * the final user DB), e.g. every task's gold actions. */
    const char *gold = getenv("TAU2_TELECOM_GOLD");
    if (!gold || !*gold) gold = TAU2_SOURCE_DIR "/tests/fixtures/tau2/gold_telecom.jsonl";
    int count;
    int failed = for_each_line(gold, gold_record, &count);
    print_message("gold replay: %d records\n", count);
    cJSON_Delete(g_tasks);
    cJSON_Delete(arr);
    domain_free(g_full);
    free(dir);
    if (failed) fail_msg("%d of %d gold records differ", failed, count);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schemas_match_fixture),
        cmocka_unit_test(test_normalized_base_is_model_dump),
        cmocka_unit_test(test_normalize_coerces_merged_data),
        cmocka_unit_test(test_status_and_network),
        cmocka_unit_test(test_sim_vpn_apps_payment),
        cmocka_unit_test(test_apn),
        cmocka_unit_test(test_functions_and_errors),
        cmocka_unit_test(test_odd_arguments_never_crash),
        cmocka_unit_test(test_differential_replay),
        cmocka_unit_test(test_gold_replay),
    };
    return cmocka_run_group_tests(tests, setup_domain, teardown_domain);
}
