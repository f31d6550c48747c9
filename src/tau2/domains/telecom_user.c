/* telecom_user.c — τ²-bench telecom, the user's side: a simulated phone.
 *
 * The user DB is TelecomUserDB.model_dump(): {"device": MockPhoneAttributes,
 * "surroundings": UserSurroundings}. Enum fields hold their string values.
 * Both tables are small, so tools work on whole-table copies (db_table_mut).
 *
 * Every change to the radio state is followed, as in the Python, by a
 * "network search" that derives connection status, technology and signal
 * from the SIM, the mode preference, the surroundings, airplane mode, the APN
 * and whether the line is active.
 *
 * One deliberate difference: in Python, connect_vpn stores the class-level
 * default VpnDetails object itself and break_vpn mutates it, so after any
 * break_vpn every later connect_vpn in the same process reports a poor VPN.
 * Here connect_vpn always connects with fresh default details (what a fresh
 * process does), so episodes do not depend on each other.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "tau2/db.h"
#include "tau2/domains/domains.h"
#include "tau2/env.h"

/* ------------------------------------------------------------ enum values */

static const char *const SIM_STATUS_VALUES[] = {"active", "missing", "locked_pin", "locked_puk", NULL};
static const char *const NET_TECH_VALUES[] = {"none", "2G", "3G", "4G", "5G", NULL};
static const char *const NET_MODE_VALUES[] = {"4g_5g_preferred", "4g_only", "3g_only", "2g_only", NULL};
static const char *const SIGNAL_VALUES[] = {"none", "poor", "fair", "good", "excellent", NULL};
static const char *const PERF_VALUES[] = {"unknown", "poor", "fair", "good", "excellent", NULL};
static const char *const NET_STATUS_VALUES[] = {"connected", "searching", "no_service", "emergency_only", NULL};
static const char *const APN_NAME_VALUES[] = {"internet", "broken", NULL};

/* The four AppPermissions fields, in class order. */
static const char *const PERMISSION_NAMES[] = {"sms", "storage", "phone", "network", NULL};

static bool str_eq(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }


/* ------------------------------------------------------------ value access */

/* Python truthiness of a stored value (fields assigned without validation
 * may hold any JSON type). A missing field reads as `def`. */
static bool py_truthy(const cJSON *v) {
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return false;
    if (cJSON_IsTrue(v)) return true;
    if (cJSON_IsNumber(v)) return v->valuedouble != 0;
    if (cJSON_IsString(v)) return v->valuestring[0] != '\0';
    if (cJSON_IsArray(v) || cJSON_IsObject(v)) return v->child != NULL;
    return true;
}

static bool flag(const cJSON *obj, const char *key, bool def) {
    const cJSON *v = json_get(obj, key);
    return v ? py_truthy(v) : def;
}

/* Enum or string field; "" when absent or not a string. */
static const char *str_field(const cJSON *obj, const char *key) {
    const char *s = json_get_str(obj, key);
    return s ? s : "";
}

static void set_bool(cJSON *obj, const char *key, bool v) {
    cJSON *it = json_get(obj, key);
    if (it && cJSON_IsBool(it)) {
        it->type = (it->type & ~(cJSON_True | cJSON_False)) | (v ? cJSON_True : cJSON_False);
        it->valueint = v;
        return;
    }
    json_set(obj, key, cJSON_CreateBool(v));
}

/* Set a string field; NULL stores null (Python None). */
static void set_str(cJSON *obj, const char *key, const char *v) {
    cJSON *it = json_get(obj, key);
    if (v && it && cJSON_IsString(it) && strcmp(it->valuestring, v) == 0) return;
    if (!v && it && cJSON_IsNull(it)) return;
    json_set(obj, key, v ? cJSON_CreateString(v) : cJSON_CreateNull());
}

/* Python str() of a stored value, for f-strings. */
static void py_str(SBuf *b, const cJSON *v) {
    char num[JSON_NUMBER_BUFSIZE];
    if (!v || cJSON_IsNull(v)) sbuf_puts(b, "None");
    else if (cJSON_IsTrue(v)) sbuf_puts(b, "True");
    else if (cJSON_IsFalse(v)) sbuf_puts(b, "False");
    else if (cJSON_IsString(v)) sbuf_puts(b, v->valuestring);
    else if (cJSON_IsNumber(v)) {
        json_format_number(num, v);
        sbuf_puts(b, num);
    } else {
        char *s = json_dumps(v, 0);
        sbuf_puts(b, s);
        free(s);
    }
}

/* Python repr() of a str. */
static void py_repr_str(SBuf *b, const char *s) {
    char q = (strchr(s, '\'') && !strchr(s, '"')) ? '"' : '\'';
    sbuf_putc(b, q);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\\') sbuf_puts(b, "\\\\");
        else if (*p == (unsigned char)q) {
            sbuf_putc(b, '\\');
            sbuf_putc(b, (char)q);
        } else if (*p == '\n') sbuf_puts(b, "\\n");
        else if (*p == '\r') sbuf_puts(b, "\\r");
        else if (*p == '\t') sbuf_puts(b, "\\t");
        else if (*p < 0x20 || *p == 0x7f) sbuf_printf(b, "\\x%02x", *p);
        else sbuf_putc(b, (char)*p);
    }
    sbuf_putc(b, q);
}

/* Python repr() of a plain value (dicts, lists, str, numbers, None). */
static void py_repr(SBuf *b, const cJSON *v) {
    if (cJSON_IsString(v)) {
        py_repr_str(b, v->valuestring);
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        bool obj = cJSON_IsObject(v);
        sbuf_putc(b, obj ? '{' : '[');
        for (const cJSON *c = v->child; c; c = c->next) {
            if (c != v->child) sbuf_puts(b, ", ");
            if (obj) {
                py_repr_str(b, c->string ? c->string : "");
                sbuf_puts(b, ": ");
            }
            py_repr(b, c);
        }
        sbuf_putc(b, obj ? '}' : ']');
    } else {
        py_str(b, v);
    }
}

/* Python type name, for pydantic's input_type. */
static const char *py_type_name(const cJSON *v) {
    if (!v || cJSON_IsNull(v)) return "NoneType";
    if (cJSON_IsBool(v)) return "bool";
    if (cJSON_IsNumber(v)) return json_is_float(v) ? "float" : "int";
    if (cJSON_IsString(v)) return "str";
    if (cJSON_IsArray(v)) return "list";
    return "dict";
}

/* ------------------------------------------------------------ the phone */

/* The two tables of one episode. Tools that change state take both mutable
 * (device first, then surroundings, so both pointers stay valid). */
typedef struct {
    cJSON *dev;
    cJSON *sur;
} Phone;

static Phone phone_mut(Env *env) {
    Phone p;
    p.dev = db_table_mut(env->user_db, "device");
    p.sur = db_table_mut(env->user_db, "surroundings");
    return p;
}

static const cJSON *device_ro(const Env *env) { return db_table(env->user_db, "device"); }
static const cJSON *surroundings_ro(const Env *env) { return db_table(env->user_db, "surroundings"); }

/* _check_sim_status: a missing SIM overrides the stored status. */
static const char *sim_status(const cJSON *dev) {
    if (flag(dev, "sim_card_missing", false)) return "missing";
    return str_field(dev, "sim_card_status");
}

/* surroundings.signal_strength.get(tech, NONE) */
static const char *area_signal(const cJSON *sur, const char *tech) {
    const cJSON *map = json_get(sur, "signal_strength");
    if (!map) {
        /* UserSurroundings default. */
        static const char *const defs[][2] = {{"2G", "poor"}, {"3G", "fair"}, {"4G", "good"}, {"5G", "excellent"}};
        for (int i = 0; i < 4; i++)
            if (strcmp(defs[i][0], tech) == 0) return defs[i][1];
        return "none";
    }
    const char *s = json_get_str(map, tech);
    return s ? s : "none";
}

static void set_network(cJSON *dev, const char *status, const char *tech, const char *signal) {
    set_str(dev, "network_connection_status", status);
    set_str(dev, "network_technology_connected", tech);
    set_str(dev, "network_signal_strength", signal);
}

/* simulate_network_search: the outcome of a cellular network search. */
static void simulate_network_search(cJSON *dev, const cJSON *sur) {
    if (str_eq(sim_status(dev), "active")) {
        const char *pref = str_field(dev, "network_mode_preference");
        const char *tech = "4G";
        if (str_eq(pref, "4g_5g_preferred")) {
            if (!str_eq(area_signal(sur, "5G"), "none")) tech = "5G";
        } else if (str_eq(pref, "3g_only")) {
            tech = "3G";
        } else if (str_eq(pref, "2g_only")) {
            tech = "2G";
        }
        /* area_signal points into sur, which set_network does not touch. */
        set_network(dev, "connected", tech, area_signal(sur, tech));
    } else {
        set_network(dev, "no_service", "none", "none");
    }
    if (flag(dev, "airplane_mode", false)) set_network(dev, "no_service", "none", "none");
    const cJSON *apn = json_get(dev, "active_apn_settings");
    if (str_eq(json_get_str(apn, "apn_name"), "broken")) set_network(dev, "no_service", "none", "none");
    if (!flag(sur, "line_active", true)) set_network(dev, "no_service", "none", "none");
}

/* _get_mobile_data_working */
static bool mobile_data_working(const cJSON *dev, const cJSON *sur) {
    if (flag(dev, "airplane_mode", false) || str_eq(str_field(dev, "network_signal_strength"), "none"))
        return false;
    if (str_eq(str_field(dev, "network_connection_status"), "no_service")) return false;
    if (flag(sur, "is_abroad", false)) {
        if (!flag(dev, "roaming_enabled", false) || !flag(sur, "roaming_allowed", false)) return false;
    }
    if (!flag(dev, "data_enabled", true)) return false;
    if (flag(sur, "mobile_data_usage_exceeded", false)) return false;
    return true;
}

/* _run_speed_test: false ("No Connection") when mobile data is down. The
 * speed is rounded to 2 decimals like Python's round(x, 2). */
static bool speed_test(const cJSON *dev, const cJSON *sur, double *speed, const char **desc) {
    if (!mobile_data_working(dev, sur)) {
        *speed = 0.0;
        *desc = "No Connection";
        return false;
    }
    double base = 1.0;
    const cJSON *vpn = json_get(dev, "vpn_details");
    if (flag(dev, "vpn_connected", false) && cJSON_IsObject(vpn) &&
        str_eq(json_get_str(vpn, "server_performance"), "poor"))
        base = 0.1;
    if (flag(dev, "data_saver_mode", false)) base *= 0.2;

    const char *tech = str_field(dev, "network_technology_connected");
    double lo = 0.0, hi = 0.0;
    if (str_eq(tech, "2G")) lo = 0.1, hi = 0.4;
    else if (str_eq(tech, "3G")) lo = 1.0, hi = 5.0;
    else if (str_eq(tech, "4G")) lo = 10.0, hi = 100.0;
    else if (str_eq(tech, "5G")) lo = 50.0, hi = 500.0;

    const char *sig = str_field(dev, "network_signal_strength");
    double sf = 0.0;
    if (str_eq(sig, "poor")) sf = 0.2;
    else if (str_eq(sig, "fair")) sf = 0.5;
    else if (str_eq(sig, "good")) sf = 0.8;
    else if (str_eq(sig, "excellent")) sf = 1.0;

    double v = (lo + hi) / 2.0 * sf * base;
    /* Correctly rounded to 2 decimals, as round(v, 2) is. */
    char buf[64];
    snprintf(buf, sizeof buf, "%.2f", v);
    v = strtod(buf, NULL);
    *speed = v;
    if (v < 1) *desc = "Very Poor";
    else if (v < 5) *desc = "Poor";
    else if (v < 25) *desc = "Fair";
    else if (v < 100) *desc = "Good";
    else *desc = "Excellent";
    return true;
}

/* _can_send_mms */
static bool can_send_mms(const cJSON *dev, const cJSON *sur) {
    if (!mobile_data_working(dev, sur)) return false;
    if (str_eq(str_field(dev, "network_technology_connected"), "2G")) return false;
    if (flag(dev, "wifi_calling_enabled", false) && flag(dev, "wifi_calling_mms_over_wifi", false)) return false;
    const cJSON *apn = json_get(dev, "active_apn_settings");
    const cJSON *mmsc = json_get(apn, "mmsc_url");
    if (!mmsc || cJSON_IsNull(mmsc)) return false;
    const cJSON *app = json_get(json_get(dev, "app_statuses"), "messaging");
    if (!app) return false;
    const cJSON *perms = json_get(app, "permissions");
    return flag(perms, "storage", false) && flag(perms, "sms", false);
}

/* _check_status_bar. The icons are the exact UTF-8 bytes τ²-bench prints. */
static void status_bar(SBuf *b, const cJSON *dev) {
    bool first = true;
#define SB_ADD(s)                              \
    do {                                       \
        if (!first) sbuf_puts(b, " | ");       \
        first = false;                         \
        sbuf_puts(b, (s));                     \
    } while (0)
    if (flag(dev, "airplane_mode", false)) {
        SB_ADD("\xe2\x9c\x88\xef\xb8\x8f Airplane Mode"); /* ✈️ */
    } else {
        const char *sig = str_field(dev, "network_signal_strength");
        if (str_eq(sig, "poor")) SB_ADD("\xf0\x9f\x93\xb6\xc2\xb9 Poor");                 /* 📶¹ */
        else if (str_eq(sig, "fair")) SB_ADD("\xf0\x9f\x93\xb6\xc2\xb2 Fair");            /* 📶² */
        else if (str_eq(sig, "good")) SB_ADD("\xf0\x9f\x93\xb6\xc2\xb3 Good");            /* 📶³ */
        else if (str_eq(sig, "excellent")) SB_ADD("\xf0\x9f\x93\xb6\xe2\x81\xb4 Excellent"); /* 📶⁴ */
        else SB_ADD("\xf0\x9f\x93\xb5 No Signal");                                          /* 📵 */
        const char *tech = str_field(dev, "network_technology_connected");
        bool has_tech = !str_eq(tech, "none");
        if (has_tech) SB_ADD(tech);
        if (flag(dev, "data_enabled", true) && has_tech) {
            SB_ADD("\xf0\x9f\x93\xb1 Data Enabled"); /* 📱 */
            if (flag(dev, "data_saver_mode", false)) SB_ADD("\xf0\x9f\x94\xbd Data Saver"); /* 🔽 */
        } else {
            SB_ADD("\xf0\x9f\x93\xb5 Data Disabled"); /* 📵 */
        }
    }
    if (flag(dev, "wifi_enabled", false) && flag(dev, "wifi_connected", false)) {
        const cJSON *ssid = json_get(dev, "wifi_ssid");
        if (py_truthy(ssid)) {
            SB_ADD("\xf0\x9f\x93\xa1 Connected to "); /* 📡 */
            py_str(b, ssid);
        } else {
            SB_ADD("\xf0\x9f\x93\xa1 Enabled");
        }
    }
    if (flag(dev, "vpn_connected", false)) SB_ADD("\xf0\x9f\x94\x92 VPN Connected"); /* 🔒 */
    SB_ADD("\xf0\x9f\x94\x8b "); /* 🔋 */
    const cJSON *bat = json_get(dev, "battery_level");
    if (bat) py_str(b, bat);
    else sbuf_puts(b, "80");
    sbuf_putc(b, '%');
#undef SB_ADD
}

/* "<msg>\nStatus Bar: <bar>" as a result string. */
static cJSON *with_status_bar(const cJSON *dev, const char *msg) {
    SBuf b;
    sbuf_init(&b);
    sbuf_puts(&b, msg);
    sbuf_puts(&b, "\nStatus Bar: ");
    status_bar(&b, dev);
    cJSON *r = cJSON_CreateString(b.data);
    sbuf_free(&b);
    return r;
}

static cJSON *take_string(SBuf *b) {
    cJSON *r = cJSON_CreateString(b->data ? b->data : "");
    sbuf_free(b);
    return r;
}

/* ------------------------------------------------------------ state changes */

static void disconnect_vpn(cJSON *dev) {
    set_bool(dev, "vpn_connected", false);
    set_str(dev, "vpn_details", NULL);
}

static void wifi_disconnect(cJSON *dev) {
    set_bool(dev, "wifi_connected", false);
    set_str(dev, "wifi_ssid", NULL);
    set_str(dev, "wifi_signal_strength", "none");
}

/* _toggle_airplane_mode; returns the new state. */
static bool toggle_airplane(Phone p) {
    bool was_on = flag(p.dev, "airplane_mode", false);
    set_bool(p.dev, "airplane_mode", !was_on);
    if (was_on) {
        set_str(p.dev, "network_connection_status", "searching");
        if (flag(p.dev, "wifi_enabled", false)) wifi_disconnect(p.dev);
    } else {
        wifi_disconnect(p.dev);
        if (flag(p.dev, "vpn_connected", false)) disconnect_vpn(p.dev);
    }
    simulate_network_search(p.dev, p.sur);
    return !was_on;
}

/* Toggle a boolean device setting, optionally followed by a network search. */
static bool toggle_setting(Phone p, const char *key, bool def, bool search) {
    bool v = !flag(p.dev, key, def);
    set_bool(p.dev, key, v);
    if (search) simulate_network_search(p.dev, p.sur);
    return v;
}

/* VpnDetails as connect_vpn stores it. */
static cJSON *default_vpn_details(void) {
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "server_address", "192.168.1.1");
    cJSON_AddStringToObject(d, "protocol", "OpenVPN");
    cJSON_AddStringToObject(d, "server_performance", "excellent");
    return d;
}

/* _connect_vpn: false when already connected (Python returns None). */
static bool connect_vpn(cJSON *dev) {
    if (flag(dev, "vpn_connected", false)) return false;
    set_bool(dev, "vpn_connected", true);
    json_set(dev, "vpn_details", default_vpn_details());
    return true;
}

/* APNSettings() */
static cJSON *default_apn_settings(void) {
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "apn_name", "internet");
    cJSON_AddBoolToObject(a, "reset_at_reboot", false);
    cJSON_AddStringToObject(a, "mms_apn", "mms");
    cJSON_AddStringToObject(a, "mmsc_url", "http://mms.carrier.com/mms/wapenc");
    cJSON_AddNullToObject(a, "mms_proxy");
    cJSON_AddNullToObject(a, "mms_port");
    return a;
}

/* The device's apn settings object, created with defaults if absent. */
static cJSON *apn_mut(cJSON *dev) {
    cJSON *apn = json_get(dev, "active_apn_settings");
    if (!cJSON_IsObject(apn)) {
        apn = default_apn_settings();
        json_set(dev, "active_apn_settings", apn);
    }
    return apn;
}

/* ------------------------------------------------------------ argument checks */

/* For non-tool functions (unchecked arguments): fetch a required argument of
 * the given kind, or fill ctx with a TypeError-like message. */
static const cJSON *need_arg(const cJSON *args, const char *fn, const char *name, int kind, ToolCtx *ctx) {
    const cJSON *v = json_get(args, name);
    if (!v) {
        tool_error(ctx, "%s() missing 1 required positional argument: '%s'", fn, name);
        return NULL;
    }
    bool ok = (kind == cJSON_String && cJSON_IsString(v)) || (kind == cJSON_True && cJSON_IsBool(v)) ||
              (kind == cJSON_Number && cJSON_IsNumber(v));
    if (!ok) {
        const char *want = kind == cJSON_String ? "a string" : kind == cJSON_True ? "a boolean" : "a number";
        tool_error(ctx, "%s(): argument '%s' must be %s", fn, name, want);
        return NULL;
    }
    return v;
}

/* Reject arguments a function does not take (Python raises TypeError). */
static bool no_extra_args(const cJSON *args, const char *fn, const char *const *allowed, ToolCtx *ctx) {
    for (const cJSON *a = args ? args->child : NULL; a; a = a->next) {
        bool ok = false;
        for (int i = 0; allowed && allowed[i]; i++)
            if (a->string && strcmp(a->string, allowed[i]) == 0) ok = true;
        if (!ok) {
            tool_error(ctx, "%s() got an unexpected keyword argument '%s'", fn, a->string ? a->string : "");
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------ tools: status */

static cJSON *tu_check_status_bar(Env *env, const cJSON *args, ToolCtx *ctx) {
    SBuf b;
    sbuf_init(&b);
    sbuf_puts(&b, "Status Bar: ");
    status_bar(&b, device_ro(env));
    return take_string(&b);
}

static cJSON *tu_check_network_status(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *dev = device_ro(env);
    SBuf b;
    sbuf_init(&b);
    sbuf_printf(&b, "Airplane Mode: %s\n", flag(dev, "airplane_mode", false) ? "ON" : "OFF");
    sbuf_printf(&b, "SIM Card Status: %s\n", sim_status(dev));
    sbuf_printf(&b, "Cellular Connection: %s\n", str_field(dev, "network_connection_status"));
    sbuf_printf(&b, "Cellular Signal: %s\n", str_field(dev, "network_signal_strength"));
    sbuf_printf(&b, "Cellular Network Type: %s\n", str_field(dev, "network_technology_connected"));
    sbuf_printf(&b, "Mobile Data Enabled: %s\n", flag(dev, "data_enabled", true) ? "Yes" : "No");
    sbuf_printf(&b, "Data Roaming Enabled: %s\n", flag(dev, "roaming_enabled", false) ? "Yes" : "No");
    sbuf_printf(&b, "Wi-Fi Radio: %s\n", flag(dev, "wifi_enabled", false) ? "ON" : "OFF");
    bool wifi = flag(dev, "wifi_connected", false);
    sbuf_printf(&b, "Wi-Fi Connected: %s", wifi ? "Yes" : "No");
    if (wifi) {
        sbuf_puts(&b, "\nConnected Wi-Fi Network: ");
        py_str(&b, json_get(dev, "wifi_ssid"));
    }
    return take_string(&b);
}

static cJSON *tu_check_network_mode_preference(Env *env, const cJSON *args, ToolCtx *ctx) {
    SBuf b;
    sbuf_init(&b);
    sbuf_printf(&b, "Network Mode Preference: %s", str_field(device_ro(env), "network_mode_preference"));
    return take_string(&b);
}

static cJSON *tu_set_network_mode_preference(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *mode = need_arg(args, "set_network_mode_preference", "mode", cJSON_String, ctx);
    if (!mode) return NULL;
    static const char *const allowed[] = {"mode", NULL};
    if (!no_extra_args(args, "set_network_mode_preference", allowed, ctx)) return NULL;
    Phone p = phone_mut(env);
    SBuf b;
    sbuf_init(&b);
    if (!db_choices_have(NET_MODE_VALUES, mode->valuestring)) {
        sbuf_printf(&b,
                    "Failed to set network mode: '%s' is not a valid option. Please use one of: "
                    "4g_5g_preferred, 4g_only, 3g_only, 2g_only",
                    mode->valuestring);
    } else {
        set_str(p.dev, "network_mode_preference", mode->valuestring);
        simulate_network_search(p.dev, p.sur);
        sbuf_printf(&b, "Preferred Network Mode set to: %s", mode->valuestring);
    }
    cJSON *r = with_status_bar(p.dev, b.data);
    sbuf_free(&b);
    return r;
}

static cJSON *tu_run_speed_test(Env *env, const cJSON *args, ToolCtx *ctx) {
    double speed;
    const char *desc;
    SBuf b;
    sbuf_init(&b);
    if (!speed_test(device_ro(env), surroundings_ro(env), &speed, &desc)) {
        sbuf_printf(&b, "Speed test failed: %s.", desc);
        return take_string(&b);
    }
    const char *advice = "";
    if (str_eq(desc, "Very Poor")) advice = "Connection is very slow. Basic web browsing might be difficult.";
    else if (str_eq(desc, "Poor")) advice = "Connection is slow. Web browsing may be sluggish, streaming difficult.";
    else if (str_eq(desc, "Fair"))
        advice = "Connection is okay for web browsing and some standard definition streaming.";
    else if (str_eq(desc, "Good")) advice = "Connection is good for most activities, including HD streaming.";
    else if (str_eq(desc, "Excellent")) advice = "Connection is very fast.";
    sbuf_printf(&b, "Speed Test Result: %.2f Mbps (%s). %s", speed, desc, advice);
    return take_string(&b);
}

/* ------------------------------------------------------------ tools: radio, SIM, data */

static cJSON *tu_toggle_airplane_mode(Env *env, const cJSON *args, ToolCtx *ctx) {
    Phone p = phone_mut(env);
    bool on = toggle_airplane(p);
    return with_status_bar(p.dev, on ? "Airplane Mode is now ON." : "Airplane Mode is now OFF.");
}

static cJSON *tu_check_sim_status(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *s = sim_status(device_ro(env));
    if (str_eq(s, "active")) return cJSON_CreateString("Your SIM card is active and working.");
    if (str_eq(s, "missing")) return cJSON_CreateString("No SIM card detected in the phone.");
    if (str_eq(s, "locked_pin")) return cJSON_CreateString("The SIM card is locked with a PIN code.");
    if (str_eq(s, "locked_puk")) return cJSON_CreateString("The SIM card is locked with a PUK code.");
    SBuf b;
    sbuf_init(&b);
    sbuf_printf(&b, "Unknown SIM status: %s", s);
    return take_string(&b);
}

static cJSON *tu_reseat_sim_card(Env *env, const cJSON *args, ToolCtx *ctx) {
    Phone p = phone_mut(env);
    set_bool(p.dev, "sim_card_missing", false);
    simulate_network_search(p.dev, p.sur);
    /* Python asserts the SIM is no longer missing; a stored status of
     * "missing" fails that assert (AssertionError prints empty). */
    if (str_eq(sim_status(p.dev), "missing")) return tool_error(ctx, "%s", "");
    return with_status_bar(p.dev, "SIM card re-seated successfully.");
}

static cJSON *tu_toggle_data(Env *env, const cJSON *args, ToolCtx *ctx) {
    Phone p = phone_mut(env);
    bool on = toggle_setting(p, "data_enabled", true, true);
    return with_status_bar(p.dev, on ? "Mobile Data is now ON." : "Mobile Data is now OFF.");
}

static cJSON *tu_toggle_roaming(Env *env, const cJSON *args, ToolCtx *ctx) {
    Phone p = phone_mut(env);
    bool on = toggle_setting(p, "roaming_enabled", false, true);
    return with_status_bar(p.dev, on ? "Data Roaming is now ON." : "Data Roaming is now OFF.");
}

static cJSON *tu_check_data_restriction_status(Env *env, const cJSON *args, ToolCtx *ctx) {
    bool on = flag(device_ro(env), "data_saver_mode", false);
    return cJSON_CreateString(on ? "Data Saver mode is ON (limits data usage)." : "Data Saver mode is OFF.");
}

static cJSON *tu_toggle_data_saver_mode(Env *env, const cJSON *args, ToolCtx *ctx) {
    Phone p = phone_mut(env);
    bool on = toggle_setting(p, "data_saver_mode", false, false);
    return with_status_bar(p.dev, on ? "Data Saver Mode is now ON." : "Data Saver Mode is now OFF.");
}

/* ------------------------------------------------------------ tools: APN */

static cJSON *tu_check_apn_settings(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *apn = json_get(device_ro(env), "active_apn_settings");
    const char *name = json_get_str(apn, "apn_name");
    const cJSON *mmsc = json_get(apn, "mmsc_url");
    SBuf b;
    sbuf_init(&b);
    sbuf_printf(&b, "Current APN Name: %s\nMMSC URL (for picture messages): ", name && *name ? name : "Not Set");
    if (py_truthy(mmsc)) py_str(&b, mmsc);
    else sbuf_puts(&b, "Not Set");
    sbuf_puts(&b, "\n(These are technical settings, usually best left unchanged.)");
    return take_string(&b);
}

/* One pydantic error line group ("field\n  msg [type=..., input_value=...,
 * input_type=...]\n    For further information visit ..."). */
static void pyd_error(SBuf *errs, int *n, const char *field, const char *msg, const char *type, const cJSON *input) {
    sbuf_printf(errs, "\n%s\n  %s [type=%s, input_value=", field, msg, type);
    py_repr(errs, input);
    sbuf_printf(errs, ", input_type=%s]\n    For further information visit https://errors.pydantic.dev/2.13/v/%s",
                py_type_name(input), type);
    (*n)++;
}

/* pydantic lax bool: bools, 0/1, and the usual words. -1 when invalid. */
static int lax_bool(const cJSON *v) {
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    if (cJSON_IsNumber(v)) {
        if (v->valuedouble == 0) return 0;
        if (v->valuedouble == 1) return 1;
        return -1;
    }
    if (cJSON_IsString(v)) {
        static const char *const t[] = {"1", "on", "t", "true", "y", "yes", NULL};
        static const char *const f[] = {"0", "off", "f", "false", "n", "no", NULL};
        for (int i = 0; t[i]; i++)
            if (strcasecmp(v->valuestring, t[i]) == 0) return 1;
        for (int i = 0; f[i]; i++)
            if (strcasecmp(v->valuestring, f[i]) == 0) return 0;
    }
    return -1;
}

/* pydantic lax int into *out. Returns NULL or the error type. */
static const char *lax_int(const cJSON *v, double *out) {
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v);
        return NULL;
    }
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (json_is_float(v)) {
            if (!isfinite(d) || fabs(d) > 9.2e18) return "int_parsing_size";
            if (d != floor(d)) return "int_from_float";
        }
        *out = d;
        return NULL;
    }
    if (cJSON_IsString(v)) {
        const char *s = v->valuestring;
        while (isspace((unsigned char)*s)) s++;
        const char *p = s;
        if (*p == '+' || *p == '-') p++;
        if (!isdigit((unsigned char)*p)) return "int_parsing";
        while (isdigit((unsigned char)*p)) p++;
        while (isspace((unsigned char)*p)) p++;
        if (*p) return "int_parsing";
        *out = strtod(s, NULL);
        return NULL;
    }
    return "int_type";
}

/* APNSettings(**d): validate a dict into a new settings object, or NULL
 * with the pydantic ValidationError text in ctx. */
static cJSON *apn_from_dict(const cJSON *d, ToolCtx *ctx) {
    static const char *const fields[] = {"apn_name", "reset_at_reboot", "mms_apn", "mmsc_url", "mms_proxy", "mms_port", NULL};
    cJSON *a = default_apn_settings();
    SBuf errs;
    sbuf_init(&errs);
    int n = 0;
    for (int i = 0; fields[i]; i++) {
        const cJSON *v = json_get(d, fields[i]);
        if (!v) continue;
        if (i == 0) {
            if (cJSON_IsString(v) && db_choices_have(APN_NAME_VALUES, v->valuestring))
                json_set(a, fields[i], cJSON_CreateString(v->valuestring));
            else
                pyd_error(&errs, &n, fields[i], "Input should be 'internet' or 'broken'", "enum", v);
        } else if (i == 1) {
            int bv = lax_bool(v);
            if (bv >= 0) json_set(a, fields[i], cJSON_CreateBool(bv));
            else if (cJSON_IsString(v) || cJSON_IsNumber(v))
                pyd_error(&errs, &n, fields[i], "Input should be a valid boolean, unable to interpret input",
                          "bool_parsing", v);
            else
                pyd_error(&errs, &n, fields[i], "Input should be a valid boolean", "bool_type", v);
        } else if (i <= 4) {
            if (cJSON_IsString(v) || cJSON_IsNull(v)) json_set(a, fields[i], cJSON_Duplicate(v, 1));
            else pyd_error(&errs, &n, fields[i], "Input should be a valid string", "string_type", v);
        } else {
            double iv;
            const char *et = cJSON_IsNull(v) ? NULL : lax_int(v, &iv);
            if (cJSON_IsNull(v)) json_set(a, fields[i], cJSON_CreateNull());
            else if (!et) json_set(a, fields[i], json_int(iv));
            else if (strcmp(et, "int_from_float") == 0)
                pyd_error(&errs, &n, fields[i], "Input should be a valid integer, got a number with a fractional part", et, v);
            else if (strcmp(et, "int_parsing") == 0)
                pyd_error(&errs, &n, fields[i], "Input should be a valid integer, unable to parse string as an integer", et, v);
            else if (strcmp(et, "int_parsing_size") == 0)
                pyd_error(&errs, &n, fields[i], "Unable to parse input string as an integer, exceeded maximum size", et, v);
            else
                pyd_error(&errs, &n, fields[i], "Input should be a valid integer", et, v);
        }
    }
    for (const cJSON *v = d->child; v; v = v->next) {
        bool known = false;
        for (int i = 0; fields[i]; i++)
            if (v->string && strcmp(v->string, fields[i]) == 0) known = true;
        if (!known) pyd_error(&errs, &n, v->string ? v->string : "", "Extra inputs are not permitted", "extra_forbidden", v);
    }
    if (n > 0) {
        tool_error(ctx, "%d validation error%s for APNSettings%s", n, n == 1 ? "" : "s", errs.data);
        sbuf_free(&errs);
        cJSON_Delete(a);
        return NULL;
    }
    sbuf_free(&errs);
    return a;
}

static cJSON *tu_set_apn_settings(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *d = json_get(args, "apn_settings");
    if (!cJSON_IsObject(d)) return tool_error(ctx, "set_apn_settings(): argument 'apn_settings' must be an object");
    cJSON *apn = apn_from_dict(d, ctx);
    if (!apn) return NULL;
    Phone p = phone_mut(env);
    SBuf b;
    sbuf_init(&b);
    sbuf_printf(&b, "APN settings set to: %s", json_get_str(apn, "apn_name"));
    json_set(p.dev, "active_apn_settings", apn);
    simulate_network_search(p.dev, p.sur);
    cJSON *r = with_status_bar(p.dev, b.data);
    sbuf_free(&b);
    return r;
}

static cJSON *tu_reset_apn_settings(Env *env, const cJSON *args, ToolCtx *ctx) {
    Phone p = phone_mut(env);
    set_bool(apn_mut(p.dev), "reset_at_reboot", true);
    simulate_network_search(p.dev, p.sur);
    return with_status_bar(p.dev, "APN settings will reset at reboot.");
}

/* ------------------------------------------------------------ tools: Wi-Fi, VPN */

static cJSON *tu_check_wifi_status(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *dev = device_ro(env);
    if (!flag(dev, "wifi_enabled", false)) return cJSON_CreateString("Wi-Fi is turned OFF.");
    if (!flag(dev, "wifi_connected", false)) return cJSON_CreateString("Wi-Fi is ON but not connected to any network.");
    SBuf b;
    sbuf_init(&b);
    sbuf_puts(&b, "Wi-Fi is ON and connected to '");
    py_str(&b, json_get(dev, "wifi_ssid"));
    sbuf_printf(&b, "'. Signal strength: %s.", str_field(dev, "wifi_signal_strength"));
    return take_string(&b);
}

static cJSON *tu_toggle_wifi(Env *env, const cJSON *args, ToolCtx *ctx) {
    Phone p = phone_mut(env);
    if (flag(p.dev, "airplane_mode", false))
        return with_status_bar(p.dev, "Cannot change Wi-Fi settings while Airplane Mode is ON.");
    bool on = !flag(p.dev, "wifi_enabled", false);
    set_bool(p.dev, "wifi_enabled", on);
    if (!on) wifi_disconnect(p.dev);
    return with_status_bar(p.dev, on ? "Wi-Fi is now ON." : "Wi-Fi is now OFF.");
}

static cJSON *tu_check_wifi_calling_status(Env *env, const cJSON *args, ToolCtx *ctx) {
    bool on = flag(device_ro(env), "wifi_calling_enabled", false);
    return cJSON_CreateString(on ? "Wi-Fi Calling is currently turned ON." : "Wi-Fi Calling is currently turned OFF.");
}

static cJSON *tu_toggle_wifi_calling(Env *env, const cJSON *args, ToolCtx *ctx) {
    Phone p = phone_mut(env);
    bool on = toggle_setting(p, "wifi_calling_enabled", false, false);
    return with_status_bar(p.dev, on ? "Wi-Fi Calling is now ON." : "Wi-Fi Calling is now OFF.");
}

static cJSON *tu_check_vpn_status(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *dev = device_ro(env);
    if (flag(dev, "vpn_connected", false)) {
        const cJSON *d = json_get(dev, "vpn_details");
        if (!cJSON_IsObject(d)) return cJSON_CreateString("VPN is ON and connected (no specific details available).");
        /* f"{details}" of VpnDetails.model_dump(): a dict repr in which the
         * performance is still an Enum member. */
        SBuf b;
        sbuf_init(&b);
        sbuf_puts(&b, "VPN is ON and connected. Details: {'server_address': ");
        const cJSON *addr = json_get(d, "server_address");
        const cJSON *proto = json_get(d, "protocol");
        if (addr) py_repr(&b, addr);
        else sbuf_puts(&b, "None");
        sbuf_puts(&b, ", 'protocol': ");
        if (proto) py_repr(&b, proto);
        else sbuf_puts(&b, "None");
        const char *perf = json_get_str(d, "server_performance");
        if (!perf) perf = "unknown";
        char upper[32];
        size_t i = 0;
        for (; perf[i] && i + 1 < sizeof upper; i++) upper[i] = (char)toupper((unsigned char)perf[i]);
        upper[i] = '\0';
        sbuf_printf(&b, ", 'server_performance': <PerformanceLevel.%s: '%s'>}", upper, perf);
        return take_string(&b);
    }
    if (flag(dev, "vpn_enabled_setting", false))
        return cJSON_CreateString("VPN is turned ON in settings, but currently not connected.");
    return cJSON_CreateString("VPN is turned OFF.");
}

static cJSON *tu_connect_vpn(Env *env, const cJSON *args, ToolCtx *ctx) {
    Phone p = phone_mut(env);
    if (!connect_vpn(p.dev)) return cJSON_CreateString("VPN already connected.");
    return with_status_bar(p.dev, "VPN connected successfully.");
}

static cJSON *tu_disconnect_vpn(Env *env, const cJSON *args, ToolCtx *ctx) {
    Phone p = phone_mut(env);
    bool was = flag(p.dev, "vpn_connected", false);
    if (was) disconnect_vpn(p.dev);
    return with_status_bar(p.dev, was ? "VPN disconnected successfully." : "No active VPN connection to disconnect.");
}

/* ------------------------------------------------------------ tools: apps, MMS */

static const cJSON *find_app(const cJSON *dev, const char *name) {
    return json_get(json_get(dev, "app_statuses"), name);
}

static cJSON *tu_check_installed_apps(Env *env, const cJSON *args, ToolCtx *ctx) {
    SBuf b;
    sbuf_init(&b);
    sbuf_puts(&b, "The following apps are installed on the phone: ");
    const cJSON *apps = json_get(device_ro(env), "app_statuses");
    for (const cJSON *a = apps ? apps->child : NULL; a; a = a->next) {
        if (a != apps->child) sbuf_puts(&b, ", ");
        sbuf_puts(&b, a->string ? a->string : "");
    }
    return take_string(&b);
}

/* Granted permission names, in field order; returns how many. */
static int granted_permissions(const cJSON *app, const char **out) {
    const cJSON *perms = json_get(app, "permissions");
    int n = 0;
    for (int i = 0; PERMISSION_NAMES[i]; i++)
        if (flag(perms, PERMISSION_NAMES[i], false)) out[n++] = PERMISSION_NAMES[i];
    return n;
}

static cJSON *tu_check_app_status(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *name = arg_str(args, "app_name");
    if (!name) return tool_error(ctx, "check_app_status(): argument 'app_name' must be a string");
    const cJSON *app = find_app(device_ro(env), name);
    SBuf b;
    sbuf_init(&b);
    if (!app) {
        sbuf_printf(&b, "App '%s' not found on this phone.", name);
        return take_string(&b);
    }
    const char *perms[4];
    int n = granted_permissions(app, perms);
    sbuf_printf(&b, "Status for App: %s", name);
    if (n == 0) {
        sbuf_puts(&b, "\n - Permissions: None granted.");
    } else {
        sbuf_puts(&b, "\n - Permissions Granted:");
        for (int i = 0; i < n; i++) sbuf_printf(&b, "\n   - %s", perms[i]);
    }
    return take_string(&b);
}

static cJSON *tu_check_app_permissions(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *name = arg_str(args, "app_name");
    if (!name) return tool_error(ctx, "check_app_permissions(): argument 'app_name' must be a string");
    const cJSON *app = find_app(device_ro(env), name);
    SBuf b;
    sbuf_init(&b);
    if (!app) {
        sbuf_printf(&b, "App '%s' not found on this phone.", name);
        return take_string(&b);
    }
    const char *perms[4];
    int n = granted_permissions(app, perms);
    if (n == 0) {
        sbuf_printf(&b, "App '%s' currently has no permissions granted.", name);
        return take_string(&b);
    }
    sbuf_printf(&b, "App '%s' has permission for: ", name);
    for (int i = 0; i < n; i++) sbuf_printf(&b, "%s%s", i ? ", " : "", perms[i]);
    sbuf_putc(&b, '.');
    return take_string(&b);
}

/* str.lower() for ASCII letters (other characters are kept). */
static char *ascii_lower(const char *s) {
    char *r = xstrdup(s);
    for (char *p = r; *p; p++) *p = (char)tolower((unsigned char)*p);
    return r;
}

static bool is_permission(const char *p) { return db_choices_have(PERMISSION_NAMES, p); }

/* Set one permission of an app; the app's permissions object is created if
 * absent. Returns false when the app does not exist. */
static bool set_permission(cJSON *dev, const char *app_name, const char *perm, bool v) {
    cJSON *app = json_get(json_get(dev, "app_statuses"), app_name);
    if (!app) return false;
    cJSON *perms = json_get(app, "permissions");
    if (!cJSON_IsObject(perms)) {
        perms = cJSON_CreateObject();
        for (int i = 0; PERMISSION_NAMES[i]; i++) cJSON_AddBoolToObject(perms, PERMISSION_NAMES[i], false);
        json_set(app, "permissions", perms);
    }
    set_bool(perms, perm, v);
    return true;
}

static cJSON *tu_grant_app_permission(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *app_name = arg_str(args, "app_name");
    const char *perm_in = arg_str(args, "permission");
    if (!app_name || !perm_in)
        return tool_error(ctx, "grant_app_permission(): arguments 'app_name' and 'permission' must be strings");
    char *perm = ascii_lower(perm_in);
    SBuf b;
    sbuf_init(&b);
    const cJSON *dev_ro = device_ro(env);
    if (!find_app(dev_ro, app_name)) {
        sbuf_printf(&b, "Error. App '%s' not found. Cannot grant permission.", app_name);
        free(perm);
        cJSON *r = with_status_bar(dev_ro, b.data);
        sbuf_free(&b);
        return r;
    }
    if (!is_permission(perm)) {
        sbuf_printf(&b, "Error. Permission '%s' not tracked for app '%s', available permissions: "
                        "['sms', 'storage', 'phone', 'network']",
                    perm, app_name);
        free(perm);
        cJSON *r = with_status_bar(dev_ro, b.data);
        sbuf_free(&b);
        return r;
    }
    Phone p = phone_mut(env);
    set_permission(p.dev, app_name, perm, true);
    sbuf_printf(&b, "Success. Permission '%s' granted to app '%s'.", perm, app_name);
    free(perm);
    cJSON *r = with_status_bar(p.dev, b.data);
    sbuf_free(&b);
    return r;
}

static cJSON *tu_can_send_mms(Env *env, const cJSON *args, ToolCtx *ctx) {
    bool ok = can_send_mms(device_ro(env), surroundings_ro(env));
    return cJSON_CreateString(ok ? "Your messaging app can send MMS messages."
                                 : "Your messaging app cannot send MMS messages.");
}

/* ------------------------------------------------------------ tools: device, payment */

static cJSON *tu_reboot_device(Env *env, const cJSON *args, ToolCtx *ctx) {
    Phone p = phone_mut(env);
    SBuf b;
    sbuf_init(&b);
    if (flag(json_get(p.dev, "active_apn_settings"), "reset_at_reboot", false)) {
        sbuf_puts(&b, "Resetting APN settings...\n");
        json_set(p.dev, "active_apn_settings", default_apn_settings());
    }
    sbuf_puts(&b, "Restarting network services...");
    set_str(p.dev, "network_connection_status", "searching");
    simulate_network_search(p.dev, p.sur);
    cJSON *r = with_status_bar(p.dev, b.data);
    sbuf_free(&b);
    return r;
}

/* amount_due as Python prints a float. */
static void put_amount(SBuf *b, const cJSON *req) {
    const cJSON *amt = json_get(req, "amount_due");
    char num[JSON_NUMBER_BUFSIZE];
    if (cJSON_IsNumber(amt)) {
        json_format_float(num, amt->valuedouble);
        sbuf_puts(b, num);
    } else {
        py_str(b, amt);
    }
}

static cJSON *tu_check_payment_request(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *req = json_get(surroundings_ro(env), "payment_request");
    if (!cJSON_IsObject(req)) return cJSON_CreateString("No payment request has been made.");
    SBuf b;
    sbuf_init(&b);
    sbuf_puts(&b, "You have a payment request for bill ");
    py_str(&b, json_get(req, "bill_id"));
    sbuf_puts(&b, " of ");
    put_amount(&b, req);
    sbuf_puts(&b, " USD.");
    return take_string(&b);
}

static cJSON *tu_make_payment(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!cJSON_IsObject(json_get(surroundings_ro(env), "payment_request")))
        return cJSON_CreateString("You do not have a payment request.");
    cJSON *sur = db_table_mut(env->user_db, "surroundings");
    cJSON *req = json_get(sur, "payment_request");
    set_bool(req, "paid", true);
    SBuf b;
    sbuf_init(&b);
    sbuf_puts(&b, "Payment of ");
    put_amount(&b, req);
    sbuf_puts(&b, " USD has been made for bill ");
    py_str(&b, json_get(req, "bill_id"));
    sbuf_puts(&b, ".");
    return take_string(&b);
}

/* ------------------------------------------------------------ non-tool functions */

static cJSON *tf_set_user_info(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *name = need_arg(args, "set_user_info", "name", cJSON_String, ctx);
    if (!name) return NULL;
    const cJSON *phone = need_arg(args, "set_user_info", "phone_number", cJSON_String, ctx);
    if (!phone) return NULL;
    static const char *const allowed[] = {"name", "phone_number", NULL};
    if (!no_extra_args(args, "set_user_info", allowed, ctx)) return NULL;
    cJSON *sur = db_table_mut(env->user_db, "surroundings");
    set_str(sur, "name", name->valuestring);
    set_str(sur, "phone_number", phone->valuestring);
    return cJSON_CreateNull();
}

static cJSON *tf_set_user_location(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *abroad = need_arg(args, "set_user_location", "abroad", cJSON_True, ctx);
    if (!abroad) return NULL;
    static const char *const allowed[] = {"abroad", NULL};
    if (!no_extra_args(args, "set_user_location", allowed, ctx)) return NULL;
    set_bool(db_table_mut(env->user_db, "surroundings"), "is_abroad", cJSON_IsTrue(abroad));
    return cJSON_CreateNull();
}

/* Functions without parameters reject any argument. */
static bool no_args(const cJSON *args, const char *fn, ToolCtx *ctx) { return no_extra_args(args, fn, NULL, ctx); }

static cJSON *tf_turn_airplane_mode_on(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!no_args(args, "turn_airplane_mode_on", ctx)) return NULL;
    Phone p = phone_mut(env);
    if (!toggle_airplane(p)) toggle_airplane(p);
    return cJSON_CreateString("Airplane Mode is now ON.");
}

static cJSON *tf_turn_airplane_mode_off(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!no_args(args, "turn_airplane_mode_off", ctx)) return NULL;
    Phone p = phone_mut(env);
    if (toggle_airplane(p)) toggle_airplane(p);
    return cJSON_CreateString("Airplane Mode is now OFF.");
}

static cJSON *tf_unseat_sim_card(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!no_args(args, "unseat_sim_card", ctx)) return NULL;
    Phone p = phone_mut(env);
    set_bool(p.dev, "sim_card_missing", true);
    simulate_network_search(p.dev, p.sur);
    return cJSON_CreateString("SIM card un-seated successfully.");
}

static cJSON *tf_lock_sim_card(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *mode = need_arg(args, "lock_sim_card", "mode", cJSON_String, ctx);
    if (!mode) return NULL;
    static const char *const allowed[] = {"mode", NULL};
    if (!no_extra_args(args, "lock_sim_card", allowed, ctx)) return NULL;
    Phone p = phone_mut(env);
    if (str_eq(mode->valuestring, "pin")) set_str(p.dev, "sim_card_status", "locked_pin");
    else if (str_eq(mode->valuestring, "puk")) set_str(p.dev, "sim_card_status", "locked_puk");
    simulate_network_search(p.dev, p.sur);
    SBuf b;
    sbuf_init(&b);
    sbuf_printf(&b, "SIM card locked successfully in %s mode.", mode->valuestring);
    return take_string(&b);
}

static cJSON *tf_turn_data_on(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!no_args(args, "turn_data_on", ctx)) return NULL;
    /* No network search here, as in the Python. */
    set_bool(db_table_mut(env->user_db, "device"), "data_enabled", true);
    return cJSON_CreateString("Data connection restored.");
}

static cJSON *tf_turn_data_off(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!no_args(args, "turn_data_off", ctx)) return NULL;
    Phone p = phone_mut(env);
    if (toggle_setting(p, "data_enabled", true, true)) toggle_setting(p, "data_enabled", true, true);
    return cJSON_CreateString("Data connection broken.");
}

static cJSON *tf_turn_roaming_on(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!no_args(args, "turn_roaming_on", ctx)) return NULL;
    Phone p = phone_mut(env);
    if (!toggle_setting(p, "roaming_enabled", false, true)) toggle_setting(p, "roaming_enabled", false, true);
    return cJSON_CreateString("Data Roaming is now ON.");
}

static cJSON *tf_turn_roaming_off(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!no_args(args, "turn_roaming_off", ctx)) return NULL;
    Phone p = phone_mut(env);
    if (toggle_setting(p, "roaming_enabled", false, true)) toggle_setting(p, "roaming_enabled", false, true);
    return cJSON_CreateString("Data Roaming is now OFF.");
}

static cJSON *tf_turn_data_saver_mode_on(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!no_args(args, "turn_data_saver_mode_on", ctx)) return NULL;
    set_bool(db_table_mut(env->user_db, "device"), "data_saver_mode", true);
    return cJSON_CreateString("Data Saver Mode is now ON.");
}

static cJSON *tf_turn_data_saver_mode_off(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!no_args(args, "turn_data_saver_mode_off", ctx)) return NULL;
    set_bool(db_table_mut(env->user_db, "device"), "data_saver_mode", false);
    return cJSON_CreateString("Data Saver Mode is now OFF.");
}

static cJSON *tf_break_apn_settings(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!no_args(args, "break_apn_settings", ctx)) return NULL;
    Phone p = phone_mut(env);
    set_str(apn_mut(p.dev), "apn_name", "broken");
    simulate_network_search(p.dev, p.sur);
    return cJSON_CreateString("APN settings broken. Please call reset_apn_settings() to fix.");
}

static cJSON *tf_break_apn_mms_setting(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!no_args(args, "break_apn_mms_setting", ctx)) return NULL;
    Phone p = phone_mut(env);
    set_str(apn_mut(p.dev), "mmsc_url", NULL);
    return cJSON_CreateString("APN MMS setting broken. Please call reset_apn_settings() to fix.");
}

static cJSON *tf_set_wifi_calling(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *enabled = need_arg(args, "set_wifi_calling", "enabled", cJSON_True, ctx);
    if (!enabled) return NULL;
    static const char *const allowed[] = {"enabled", "mms_over_wifi", NULL};
    if (!no_extra_args(args, "set_wifi_calling", allowed, ctx)) return NULL;
    const cJSON *mms = arg_get(args, "mms_over_wifi");
    if (mms && !cJSON_IsBool(mms)) return tool_error(ctx, "set_wifi_calling(): argument 'mms_over_wifi' must be a boolean");
    cJSON *dev = db_table_mut(env->user_db, "device");
    bool on = cJSON_IsTrue(enabled);
    if (flag(dev, "wifi_calling_enabled", false) != on) set_bool(dev, "wifi_calling_enabled", on);
    SBuf b;
    sbuf_init(&b);
    sbuf_printf(&b, "Wi-Fi Calling is now %s.", on ? "ON" : "OFF");
    if (mms) {
        set_bool(dev, "wifi_calling_mms_over_wifi", cJSON_IsTrue(mms));
        sbuf_printf(&b, "\nMMS over Wi-Fi is now %s.", cJSON_IsTrue(mms) ? "ON" : "OFF");
    }
    return take_string(&b);
}

static cJSON *tf_break_vpn(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!no_args(args, "break_vpn", ctx)) return NULL;
    cJSON *dev = db_table_mut(env->user_db, "device");
    connect_vpn(dev);
    cJSON *d = json_get(dev, "vpn_details");
    if (!cJSON_IsObject(d)) return tool_error(ctx, "'NoneType' object has no attribute 'server_performance'");
    set_str(d, "server_performance", "poor");
    return cJSON_CreateString("VPN connection broken.");
}

/* remove_app_permission returns a (bool, str) tuple. */
static cJSON *perm_result(bool ok, SBuf *msg) {
    cJSON *r = cJSON_CreateArray();
    cJSON_AddItemToArray(r, cJSON_CreateBool(ok));
    cJSON_AddItemToArray(r, take_string(msg));
    return r;
}

static cJSON *tf_remove_app_permission(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *app = need_arg(args, "remove_app_permission", "app_name", cJSON_String, ctx);
    if (!app) return NULL;
    const cJSON *perm_in = need_arg(args, "remove_app_permission", "permission", cJSON_String, ctx);
    if (!perm_in) return NULL;
    static const char *const allowed[] = {"app_name", "permission", NULL};
    if (!no_extra_args(args, "remove_app_permission", allowed, ctx)) return NULL;
    char *perm = ascii_lower(perm_in->valuestring);
    SBuf b;
    sbuf_init(&b);
    bool ok = false;
    if (!find_app(device_ro(env), app->valuestring)) {
        sbuf_printf(&b, "App '%s' not found. Cannot remove permission.", app->valuestring);
    } else if (!is_permission(perm)) {
        sbuf_printf(&b, "Permission '%s' not tracked for app '%s'.", perm, app->valuestring);
    } else {
        set_permission(db_table_mut(env->user_db, "device"), app->valuestring, perm, false);
        sbuf_printf(&b, "Permission '%s' removed from app '%s'.", perm, app->valuestring);
        ok = true;
    }
    free(perm);
    return perm_result(ok, &b);
}

static cJSON *tf_simulate_network_search(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!no_args(args, "simulate_network_search", ctx)) return NULL;
    Phone p = phone_mut(env);
    simulate_network_search(p.dev, p.sur);
    return cJSON_CreateNull();
}

/* ---- assertions ---- */

static const cJSON *need_bool(const cJSON *args, const char *fn, ToolCtx *ctx) {
    const cJSON *v = need_arg(args, fn, "expected_status", cJSON_True, ctx);
    if (!v) return NULL;
    static const char *const allowed[] = {"expected_status", NULL};
    if (!no_extra_args(args, fn, allowed, ctx)) return NULL;
    return v;
}

static cJSON *tf_assert_airplane_mode_status(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *e = need_bool(args, "assert_airplane_mode_status", ctx);
    if (!e) return NULL;
    return cJSON_CreateBool(flag(device_ro(env), "airplane_mode", false) == cJSON_IsTrue(e));
}

static cJSON *tf_assert_service_status(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *e = need_arg(args, "assert_service_status", "expected_status", cJSON_String, ctx);
    if (!e) return NULL;
    static const char *const allowed[] = {"expected_status", NULL};
    if (!no_extra_args(args, "assert_service_status", allowed, ctx)) return NULL;
    /* NetworkStatus(expected_status) raises for unknown values. */
    if (!db_choices_have(NET_STATUS_VALUES, e->valuestring)) {
        SBuf b;
        sbuf_init(&b);
        py_repr_str(&b, e->valuestring);
        tool_error(ctx, "%s is not a valid NetworkStatus", b.data);
        sbuf_free(&b);
        return NULL;
    }
    return cJSON_CreateBool(str_eq(str_field(device_ro(env), "network_connection_status"), e->valuestring));
}

static cJSON *tf_assert_mobile_data_status(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *e = need_bool(args, "assert_mobile_data_status", ctx);
    if (!e) return NULL;
    return cJSON_CreateBool(mobile_data_working(device_ro(env), surroundings_ro(env)) == cJSON_IsTrue(e));
}

static cJSON *tf_assert_mobile_roaming_status(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *e = need_bool(args, "assert_mobile_roaming_status", ctx);
    if (!e) return NULL;
    return cJSON_CreateBool(flag(device_ro(env), "roaming_enabled", false) == cJSON_IsTrue(e));
}

static cJSON *tf_assert_mobile_data_saver_mode_status(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *e = need_bool(args, "assert_mobile_data_saver_mode_status", ctx);
    if (!e) return NULL;
    return cJSON_CreateBool(flag(device_ro(env), "data_saver_mode", false) == cJSON_IsTrue(e));
}

static bool ascii_ieq(const char *a, const char *b) { return strcasecmp(a, b) == 0; }

static cJSON *tf_assert_internet_speed(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *want = need_arg(args, "assert_internet_speed", "expected_speed", cJSON_Number, ctx);
    if (!want) return NULL;
    static const char *const allowed[] = {"expected_speed", "expected_desc", NULL};
    if (!no_extra_args(args, "assert_internet_speed", allowed, ctx)) return NULL;
    const cJSON *want_desc = arg_get(args, "expected_desc");
    if (want_desc && !cJSON_IsString(want_desc))
        return tool_error(ctx, "assert_internet_speed(): argument 'expected_desc' must be a string");
    double speed;
    const char *desc;
    speed_test(device_ro(env), surroundings_ro(env), &speed, &desc);
    bool ok = speed >= want->valuedouble;
    if (want_desc) ok = ok && ascii_ieq(desc, want_desc->valuestring);
    return cJSON_CreateBool(ok);
}

static cJSON *tf_assert_internet_not_excellent(Env *env, const cJSON *args, ToolCtx *ctx) {
    if (!no_args(args, "assert_internet_not_excellent", ctx)) return NULL;
    double speed;
    const char *desc;
    speed_test(device_ro(env), surroundings_ro(env), &speed, &desc);
    return cJSON_CreateBool(!ascii_ieq(desc, "excellent"));
}

static cJSON *tf_assert_can_send_mms(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *e = need_bool(args, "assert_can_send_mms", ctx);
    if (!e) return NULL;
    return cJSON_CreateBool(can_send_mms(device_ro(env), surroundings_ro(env)) == cJSON_IsTrue(e));
}

static cJSON *tf_assert_mobile_data_usage_exceeded(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *e = need_bool(args, "assert_mobile_data_usage_exceeded", ctx);
    if (!e) return NULL;
    return cJSON_CreateBool(flag(surroundings_ro(env), "mobile_data_usage_exceeded", false) == cJSON_IsTrue(e));
}

/* ------------------------------------------------------------ tables */

/* Schemas: τ²-bench's Tool.openai_schema for each user tool, compact. */
#define NOARG_PARAMS "\"parameters\":{\"properties\":{},\"title\":\"parameters\",\"type\":\"object\"}"
#define NOARG_SCHEMA(name, desc) \
    "{\"type\":\"function\",\"function\":{\"name\":\"" name "\",\"description\":\"" desc "\"," NOARG_PARAMS "}}"
#define APP_NAME_SCHEMA(name, desc)                                                                  \
    "{\"type\":\"function\",\"function\":{\"name\":\"" name "\",\"description\":\"" desc            \
    "\",\"parameters\":{\"properties\":{\"app_name\":{\"title\":\"App Name\",\"type\":\"string\"}}," \
    "\"required\":[\"app_name\"],\"title\":\"parameters\",\"type\":\"object\"}}}"

const ToolDef TELECOM_USER_TOOLS[] = {
    {"check_status_bar", tu_check_status_bar, false,
     NOARG_SCHEMA("check_status_bar",
                  "Shows what icons are currently visible in your phone's status bar (the area at the top of the "
                  "screen). Displays network signal strength, mobile data status (enabled, disabled, data saver), "
                  "Wi-Fi status, and battery level.")},
    {"check_network_status", tu_check_network_status, false,
     NOARG_SCHEMA("check_network_status",
                  "Checks your phone's connection status to cellular networks and Wi-Fi. Shows airplane mode "
                  "status, signal strength, network type, whether mobile data is enabled, and whether data roaming "
                  "is enabled.")},
    {"check_network_mode_preference", tu_check_network_mode_preference, false,
     NOARG_SCHEMA("check_network_mode_preference", "Shows the current network mode preference.")},
    {"set_network_mode_preference", tu_set_network_mode_preference, true,
     "{\"type\":\"function\",\"function\":{\"name\":\"set_network_mode_preference\",\"description\":\"Changes the "
     "type of cellular network your phone prefers to connect to (e.g., 5G, LTE/4G, 3G). Higher-speed networks "
     "(LTE/5G) provide faster data but may use more battery.\",\"parameters\":{\"$defs\":{\"NetworkModePreference\":"
     "{\"enum\":[\"4g_5g_preferred\",\"4g_only\",\"3g_only\",\"2g_only\"],\"title\":\"NetworkModePreference\","
     "\"type\":\"string\"}},\"properties\":{\"mode\":{\"anyOf\":[{\"$ref\":\"#/$defs/NetworkModePreference\"},"
     "{\"type\":\"string\"}],\"title\":\"Mode\"}},\"required\":[\"mode\"],\"title\":\"parameters\",\"type\":"
     "\"object\"}}}"},
    {"run_speed_test", tu_run_speed_test, false,
     NOARG_SCHEMA("run_speed_test",
                  "Measures your current internet connection speed (download speed). Provides information about "
                  "connection quality and what activities it can support.")},
    {"toggle_airplane_mode", tu_toggle_airplane_mode, true,
     NOARG_SCHEMA("toggle_airplane_mode",
                  "Toggles Airplane Mode ON or OFF. When ON, it disconnects all wireless communications including "
                  "cellular, Wi-Fi, and Bluetooth.\\n\\nReturns the new state of airplane_mode.")},
    {"check_sim_status", tu_check_sim_status, false,
     NOARG_SCHEMA("check_sim_status",
                  "Checks if your SIM card is working correctly and displays its current status. Shows if the SIM "
                  "is active, missing, or locked with a PIN or PUK code.")},
    {"reseat_sim_card", tu_reseat_sim_card, true,
     NOARG_SCHEMA("reseat_sim_card",
                  "Simulates removing and reinserting your SIM card. This can help resolve recognition issues.")},
    {"toggle_data", tu_toggle_data, true,
     NOARG_SCHEMA("toggle_data",
                  "Toggles your phone's mobile data connection ON or OFF. Controls whether your phone can use "
                  "cellular data for internet access when Wi-Fi is unavailable.\\n\\nReturns the new data connection status.")},
    {"toggle_roaming", tu_toggle_roaming, true,
     NOARG_SCHEMA("toggle_roaming",
                  "Toggles Data Roaming ON or OFF. When ON, your phone can use data networks in areas outside your "
                  "carrier's coverage.\\n\\nReturns the new data roaming status.")},
    {"check_data_restriction_status", tu_check_data_restriction_status, false,
     NOARG_SCHEMA("check_data_restriction_status",
                  "Checks if your phone has any data-limiting features active. Shows if Data Saver mode is on.")},
    {"toggle_data_saver_mode", tu_toggle_data_saver_mode, true,
     NOARG_SCHEMA("toggle_data_saver_mode",
                  "Toggles Data Saver mode ON or OFF. When ON, it reduces data usage, which may affect data speed.\\n\\nReturns the new data saver mode status.")},
    {"check_apn_settings", tu_check_apn_settings, false,
     NOARG_SCHEMA("check_apn_settings",
                  "Checks the technical APN settings your phone uses to connect to your carrier's mobile data "
                  "network. Shows current APN name and MMSC URL for picture messaging.")},
    {"set_apn_settings", tu_set_apn_settings, true,
     "{\"type\":\"function\",\"function\":{\"name\":\"set_apn_settings\",\"description\":\"Sets the APN settings "
     "for the phone.\",\"parameters\":{\"$defs\":{\"APNNames\":{\"enum\":[\"internet\",\"broken\"],\"title\":"
     "\"APNNames\",\"type\":\"string\"},\"APNSettings\":{\"additionalProperties\":false,\"description\":"
     "\"Represents the configuration for a single Access Point Name (APN).\",\"properties\":{\"apn_name\":{\"$ref\":"
     "\"#/$defs/APNNames\",\"default\":\"internet\",\"description\":\"The name identifier for the APN "
     "connection.\"},\"reset_at_reboot\":{\"default\":false,\"description\":\"Whether the APN settings will be "
     "reset at the next reboot.\",\"title\":\"Reset At Reboot\",\"type\":\"boolean\"},\"mms_apn\":{\"anyOf\":"
     "[{\"type\":\"string\"},{\"type\":\"null\"}],\"default\":\"mms\",\"description\":\"Specific APN name used for "
     "MMS traffic, if different from general data.\",\"title\":\"Mms Apn\"},\"mmsc_url\":{\"anyOf\":[{\"type\":"
     "\"string\"},{\"type\":\"null\"}],\"default\":\"http://mms.carrier.com/mms/wapenc\",\"description\":\"The URL "
     "of the Multimedia Messaging Service Center (MMSC). Crucial for MMS.\",\"title\":\"Mmsc Url\"},\"mms_proxy\":"
     "{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}],\"default\":null,\"description\":\"The proxy server "
     "address required for MMS traffic on some networks.\",\"title\":\"Mms Proxy\"},\"mms_port\":{\"anyOf\":"
     "[{\"type\":\"integer\"},{\"type\":\"null\"}],\"default\":null,\"description\":\"The proxy server port "
     "required for MMS traffic on some networks.\",\"title\":\"Mms Port\"}},\"title\":\"APNSettings\",\"type\":"
     "\"object\"}},\"properties\":{\"apn_settings\":{\"anyOf\":[{\"$ref\":\"#/$defs/APNSettings\"},"
     "{\"additionalProperties\":true,\"type\":\"object\"}],\"title\":\"Apn Settings\"}},\"required\":"
     "[\"apn_settings\"],\"title\":\"parameters\",\"type\":\"object\"}}}"},
    {"reset_apn_settings", tu_reset_apn_settings, true,
     NOARG_SCHEMA("reset_apn_settings", "Resets your APN settings to the default settings.")},
    {"check_wifi_status", tu_check_wifi_status, false,
     NOARG_SCHEMA("check_wifi_status",
                  "Checks your Wi-Fi connection status. Shows if Wi-Fi is turned on, which network you're "
                  "connected to (if any), and the signal strength.")},
    {"toggle_wifi", tu_toggle_wifi, true,
     NOARG_SCHEMA("toggle_wifi",
                  "Toggles your phone's Wi-Fi radio ON or OFF. Controls whether your phone can discover and "
                  "connect to wireless networks for internet access.\\n\\nReturns the new Wi-Fi status.")},
    {"check_wifi_calling_status", tu_check_wifi_calling_status, false,
     NOARG_SCHEMA("check_wifi_calling_status",
                  "Checks if Wi-Fi Calling is enabled on your device. This feature allows you to make and receive "
                  "calls over a Wi-Fi network instead of using the cellular network.")},
    {"toggle_wifi_calling", tu_toggle_wifi_calling, true,
     NOARG_SCHEMA("toggle_wifi_calling",
                  "Toggles Wi-Fi Calling ON or OFF. This feature allows you to make and receive calls over Wi-Fi "
                  "instead of the cellular network, which can help in areas with weak cellular signal.\\n\\nReturns the new Wi-Fi Calling "
                  "status.")},
    {"check_vpn_status", tu_check_vpn_status, false,
     NOARG_SCHEMA("check_vpn_status",
                  "Checks if you're using a VPN (Virtual Private Network) connection. Shows if a VPN is active, "
                  "connected, and displays any available connection details.")},
    {"connect_vpn", tu_connect_vpn, true,
     NOARG_SCHEMA("connect_vpn", "Connects to your VPN (Virtual Private Network).")},
    {"disconnect_vpn", tu_disconnect_vpn, true,
     NOARG_SCHEMA("disconnect_vpn",
                  "Disconnects any active VPN (Virtual Private Network) connection. Stops routing your internet "
                  "traffic through a VPN server, which might affect connection speed or access to content.")},
    {"check_installed_apps", tu_check_installed_apps, false,
     NOARG_SCHEMA("check_installed_apps", "Returns the name of all installed apps on the phone.")},
    {"check_app_status", tu_check_app_status, false,
     APP_NAME_SCHEMA("check_app_status",
                     "Checks detailed information about a specific app. Shows its permissions and background data "
                     "usage settings.")},
    {"check_app_permissions", tu_check_app_permissions, false,
     APP_NAME_SCHEMA("check_app_permissions",
                     "Checks what permissions a specific app currently has. Shows if the app has access to features "
                     "like storage, camera, location, etc.")},
    {"grant_app_permission", tu_grant_app_permission, true,
     "{\"type\":\"function\",\"function\":{\"name\":\"grant_app_permission\",\"description\":\"Gives a specific "
     "permission to an app (like access to storage, camera, or location). Required for some app functions to work "
     "properly.\",\"parameters\":{\"properties\":{\"app_name\":{\"description\":\"The name of the app to grant the "
     "permission to.\",\"title\":\"App Name\",\"type\":\"string\"},\"permission\":{\"description\":\"The "
     "permission to grant, should be lowercase.\",\"title\":\"Permission\",\"type\":\"string\"}},\"required\":"
     "[\"app_name\",\"permission\"],\"title\":\"parameters\",\"type\":\"object\"}}}"},
    {"can_send_mms", tu_can_send_mms, false,
     NOARG_SCHEMA("can_send_mms", "Checks if the default messaging app can send MMS messages.")},
    {"reboot_device", tu_reboot_device, true,
     NOARG_SCHEMA("reboot_device",
                  "Restarts your phone completely. This can help resolve many temporary software glitches by "
                  "refreshing all running services and connections.")},
    {"check_payment_request", tu_check_payment_request, false,
     NOARG_SCHEMA("check_payment_request", "Checks if the agent has sent you a payment request.")},
    {"make_payment", tu_make_payment, true,
     NOARG_SCHEMA("make_payment", "Makes a payment for the bill that the agent has sent you.")},
};
const int TELECOM_USER_N_TOOLS = (int)(sizeof TELECOM_USER_TOOLS / sizeof TELECOM_USER_TOOLS[0]);

const ToolDef TELECOM_USER_FUNCS[] = {
    {"set_user_info", tf_set_user_info, true, NULL},
    {"set_user_location", tf_set_user_location, true, NULL},
    {"turn_airplane_mode_on", tf_turn_airplane_mode_on, true, NULL},
    {"turn_airplane_mode_off", tf_turn_airplane_mode_off, true, NULL},
    {"unseat_sim_card", tf_unseat_sim_card, true, NULL},
    {"lock_sim_card", tf_lock_sim_card, true, NULL},
    {"turn_data_on", tf_turn_data_on, true, NULL},
    {"turn_data_off", tf_turn_data_off, true, NULL},
    {"turn_roaming_on", tf_turn_roaming_on, true, NULL},
    {"turn_roaming_off", tf_turn_roaming_off, true, NULL},
    {"turn_data_saver_mode_on", tf_turn_data_saver_mode_on, true, NULL},
    {"turn_data_saver_mode_off", tf_turn_data_saver_mode_off, true, NULL},
    {"break_apn_settings", tf_break_apn_settings, true, NULL},
    {"break_apn_mms_setting", tf_break_apn_mms_setting, true, NULL},
    {"set_wifi_calling", tf_set_wifi_calling, true, NULL},
    {"break_vpn", tf_break_vpn, true, NULL},
    {"remove_app_permission", tf_remove_app_permission, true, NULL},
    {"simulate_network_search", tf_simulate_network_search, true, NULL},
    {"assert_airplane_mode_status", tf_assert_airplane_mode_status, false, NULL},
    {"assert_service_status", tf_assert_service_status, false, NULL},
    {"assert_mobile_data_status", tf_assert_mobile_data_status, false, NULL},
    {"assert_mobile_roaming_status", tf_assert_mobile_roaming_status, false, NULL},
    {"assert_mobile_data_saver_mode_status", tf_assert_mobile_data_saver_mode_status, false, NULL},
    {"assert_internet_speed", tf_assert_internet_speed, false, NULL},
    {"assert_internet_not_excellent", tf_assert_internet_not_excellent, false, NULL},
    {"assert_can_send_mms", tf_assert_can_send_mms, false, NULL},
    {"assert_mobile_data_usage_exceeded", tf_assert_mobile_data_usage_exceeded, false, NULL},
};
const int TELECOM_USER_N_FUNCS = (int)(sizeof TELECOM_USER_FUNCS / sizeof TELECOM_USER_FUNCS[0]);

/* ------------------------------------------------------------ normalization */

/* TelecomUserDB as user_data_model.py declares it (every model is
 * BaseModelNoExtra). user_db.toml is checked against it at load; after that
 * and after each merge, one routine fills defaults and coerces types the way
 * pydantic's model_validate would (lax mode). A merged value that cannot be
 * coerced falls back to the field's default: pydantic would reject the whole
 * DB instead, which no task relies on. */
static const DbType APN_NAME_TYPE = {DB_ENUM, .choices = APN_NAME_VALUES};
static const DbField APN_FIELDS[] = {
    {"apn_name", &APN_NAME_TYPE, "\"internet\""},
    {"reset_at_reboot", &DB_T_BOOL, "false"},
    {"mms_apn", &DB_T_STR, "\"mms\"", true},
    {"mmsc_url", &DB_T_STR, "\"http://mms.carrier.com/mms/wapenc\"", true},
    {"mms_proxy", &DB_T_STR, "null", true},
    {"mms_port", &DB_T_INT, "null", true},
    {NULL},
};
static const DbModel APN_MODEL = {"APNSettings", APN_FIELDS, true};
static const DbType APN_TYPE = {DB_MODEL, .model = &APN_MODEL};

static const DbType PERF_TYPE = {DB_ENUM, .choices = PERF_VALUES};
static const DbField VPN_FIELDS[] = {
    {"server_address", &DB_T_STR, "null", true},
    {"protocol", &DB_T_STR, "null", true},
    {"server_performance", &PERF_TYPE, "\"unknown\""},
    {NULL},
};
static const DbModel VPN_MODEL = {"VpnDetails", VPN_FIELDS, true};
static const DbType VPN_TYPE = {DB_MODEL, .model = &VPN_MODEL};

static const DbField PERM_FIELDS[] = {
    {"sms", &DB_T_BOOL, "false"},
    {"storage", &DB_T_BOOL, "false"},
    {"phone", &DB_T_BOOL, "false"},
    {"network", &DB_T_BOOL, "false"},
    {NULL},
};
static const DbModel PERM_MODEL = {"AppPermissions", PERM_FIELDS, true};
static const DbType PERM_TYPE = {DB_MODEL, .model = &PERM_MODEL};

static const DbField APP_FIELDS[] = {{"app_name", &DB_T_STR}, {"permissions", &PERM_TYPE, "{}"}, {NULL}};
static const DbModel APP_MODEL = {"AppStatus", APP_FIELDS, true};
static const DbType APP_TYPE = {DB_MODEL, .model = &APP_MODEL};
static const DbType APPS_TYPE = {DB_DICT, .item = &APP_TYPE};
/* app_statuses' default_factory. */
static const char DEFAULT_APPS[] =
    "{\"messaging\": {\"app_name\": \"messaging\", \"permissions\": {\"sms\": true, \"storage\": true, \"phone\": true, "
    "\"network\": false}}, \"browser\": {\"app_name\": \"browser\", \"permissions\": {\"sms\": false, \"storage\": "
    "true, \"phone\": false, \"network\": true}}}";

static const DbType SIM_STATUS_TYPE = {DB_ENUM, .choices = SIM_STATUS_VALUES};
static const DbType SIGNAL_TYPE = {DB_ENUM, .choices = SIGNAL_VALUES};
static const DbType NET_TECH_TYPE = {DB_ENUM, .choices = NET_TECH_VALUES};
static const DbType NET_STATUS_TYPE = {DB_ENUM, .choices = NET_STATUS_VALUES};
static const DbType NET_MODE_TYPE = {DB_ENUM, .choices = NET_MODE_VALUES};
static const DbField DEVICE_FIELDS[] = {
    {"sim_card_status", &SIM_STATUS_TYPE, "\"active\""},
    {"sim_card_missing", &DB_T_BOOL, "false"},
    {"airplane_mode", &DB_T_BOOL, "false"},
    {"network_signal_strength", &SIGNAL_TYPE, "\"good\""},
    {"network_technology_connected", &NET_TECH_TYPE, "\"5G\""},
    {"network_connection_status", &NET_STATUS_TYPE, "\"connected\""},
    {"battery_level", &DB_T_INT, "80"},
    {"data_enabled", &DB_T_BOOL, "true"},
    {"roaming_enabled", &DB_T_BOOL, "false"},
    {"network_mode_preference", &NET_MODE_TYPE, "\"4g_5g_preferred\""},
    {"active_apn_settings", &APN_TYPE, "{}"},
    {"wifi_enabled", &DB_T_BOOL, "false"},
    {"wifi_connected", &DB_T_BOOL, "false"},
    {"wifi_ssid", &DB_T_STR, "null", true},
    {"wifi_signal_strength", &SIGNAL_TYPE, "\"none\""},
    {"wifi_calling_enabled", &DB_T_BOOL, "false"},
    {"wifi_calling_mms_over_wifi", &DB_T_BOOL, "false"},
    {"data_saver_mode", &DB_T_BOOL, "false"},
    {"vpn_enabled_setting", &DB_T_BOOL, "false"},
    {"vpn_connected", &DB_T_BOOL, "false"},
    {"vpn_details", &VPN_TYPE, "null", true},
    {"app_statuses", &APPS_TYPE, DEFAULT_APPS},
    {NULL},
};
static const DbModel DEVICE_MODEL = {"MockPhoneAttributes", DEVICE_FIELDS, true};
static const DbType DEVICE_TYPE = {DB_MODEL, .model = &DEVICE_MODEL};

static const DbField PAYMENT_FIELDS[] = {
    {"bill_id", &DB_T_STR}, {"amount_due", &DB_T_FLOAT}, {"paid", &DB_T_BOOL, "false"}, {NULL}};
static const DbModel PAYMENT_MODEL = {"PaymentRequest", PAYMENT_FIELDS, true};
static const DbType PAYMENT_TYPE = {DB_MODEL, .model = &PAYMENT_MODEL};

/* dict[NetworkTechnology, SignalStrength]. */
static const DbType SIGNALS_TYPE = {DB_DICT, .item = &SIGNAL_TYPE, .choices = NET_TECH_VALUES};
static const DbField SURROUNDINGS_FIELDS[] = {
    {"name", &DB_T_STR, "null", true},
    {"phone_number", &DB_T_STR, "null", true},
    {"is_abroad", &DB_T_BOOL, "false"},
    {"roaming_allowed", &DB_T_BOOL, "false"},
    {"signal_strength", &SIGNALS_TYPE, "{\"2G\": \"poor\", \"3G\": \"fair\", \"4G\": \"good\", \"5G\": \"excellent\"}"},
    {"mobile_data_usage_exceeded", &DB_T_BOOL, "false"},
    {"line_active", &DB_T_BOOL, "true"},
    {"payment_request", &PAYMENT_TYPE, "null", true},
    {NULL},
};
static const DbModel SURROUNDINGS_MODEL = {"UserSurroundings", SURROUNDINGS_FIELDS, true};
static const DbType SURROUNDINGS_TYPE = {DB_MODEL, .model = &SURROUNDINGS_MODEL};

static const DbField TELECOM_USER_DB_FIELDS[] = {
    {"device", &DEVICE_TYPE, "{}"}, {"surroundings", &SURROUNDINGS_TYPE, "{}"}, {NULL}};
const DbModel TELECOM_USER_DB = {"TelecomUserDB", TELECOM_USER_DB_FIELDS};

static cJSON *model_normalize(const cJSON *src, const DbModel *m);
static cJSON *value_coerce(const DbType *t, const cJSON *v);

/* A field's default as its type dumps it (an int stays an int, a float a
 * float, a model gets its own defaults). A required field that a merge left
 * out gets "" or null: pydantic would refuse the DB, and the check at load
 * has refused such a file already. */
static cJSON *field_default(const DbField *f) {
    if (!f->dflt) return f->type->kind == DB_STR ? cJSON_CreateString("") : cJSON_CreateNull();
    char err[64];
    cJSON *d = json_parse(f->dflt, strlen(f->dflt), f->name, err, sizeof err);
    if (!d) die_runtime("telecom user model: default of %s is not JSON: %s", f->name, err);
    if (cJSON_IsNull(d)) return d;
    cJSON *c = value_coerce(f->type, d);
    cJSON_Delete(d);
    return c ? c : cJSON_CreateNull();
}

/* Coerce one present value; NULL when it does not validate. */
static cJSON *value_coerce(const DbType *t, const cJSON *v) {
    double d;
    switch (t->kind) {
    case DB_BOOL: {
        int b = lax_bool(v);
        return b < 0 ? NULL : cJSON_CreateBool(b);
    }
    case DB_INT: return lax_int(v, &d) ? NULL : json_int(d);
    case DB_FLOAT:
        if (cJSON_IsNumber(v)) return json_float(v->valuedouble);
        if (cJSON_IsBool(v)) return json_float(cJSON_IsTrue(v) ? 1.0 : 0.0);
        if (cJSON_IsString(v)) {
            char *end;
            d = strtod(v->valuestring, &end);
            return (end != v->valuestring && *end == '\0') ? json_float(d) : NULL;
        }
        return NULL;
    case DB_STR: return cJSON_IsString(v) ? cJSON_CreateString(v->valuestring) : NULL;
    case DB_ENUM:
        return (cJSON_IsString(v) && db_choices_have(t->choices, v->valuestring)) ? cJSON_CreateString(v->valuestring) : NULL;
    case DB_MODEL: return cJSON_IsObject(v) ? model_normalize(v, t->model) : NULL;
    case DB_DICT: {
        /* Entries that do not validate are dropped, the rest coerced. */
        if (!cJSON_IsObject(v)) return NULL;
        cJSON *out = cJSON_CreateObject();
        for (const cJSON *e = v->child; e; e = e->next) {
            if (!e->string || (t->choices && !db_choices_have(t->choices, e->string))) continue;
            cJSON *c = value_coerce(t->item, e);
            if (!c) continue;
            /* AppStatus.app_name is required; an app without one keeps its key. */
            if (t->item->kind == DB_MODEL && cJSON_IsString(json_get(c, "app_name")) &&
                !cJSON_IsString(json_get(e, "app_name")))
                json_set(c, "app_name", cJSON_CreateString(e->string));
            cJSON_AddItemToObject(out, e->string, c);
        }
        return out;
    }
    default: return NULL;
    }
}

/* A new object with exactly the model's fields, in class order. */
static cJSON *model_normalize(const cJSON *src, const DbModel *m) {
    cJSON *out = cJSON_CreateObject();
    for (const DbField *f = m->fields; f->name; f++) {
        const cJSON *v = json_get(src, f->name);
        cJSON *c = NULL;
        if (v && cJSON_IsNull(v) && f->nullable) c = cJSON_CreateNull();
        else if (v) c = value_coerce(f->type, v);
        cJSON_AddItemToObject(out, f->name, c ? c : field_default(f));
    }
    return out;
}

/* Same JSON, same key order, same int/float kinds. */
static bool json_identical(const cJSON *a, const cJSON *b) {
    if ((a->type & 0xFF) != (b->type & 0xFF)) return false;
    if (cJSON_IsNumber(a))
        return a->valuedouble == b->valuedouble && json_is_float(a) == json_is_float(b);
    if (cJSON_IsString(a)) return strcmp(a->valuestring, b->valuestring) == 0;
    if (cJSON_IsArray(a) || cJSON_IsObject(a)) {
        const cJSON *x = a->child, *y = b->child;
        for (; x && y; x = x->next, y = y->next) {
            if (cJSON_IsObject(a) && strcmp(x->string ? x->string : "", y->string ? y->string : "") != 0) return false;
            if (!json_identical(x, y)) return false;
        }
        return !x && !y;
    }
    return true;
}

/* Make one table the model's canonical dump, copying it only if it differs. */
static void normalize_table(Db *db, const char *table, const DbModel *m) {
    const cJSON *cur = db_table(db, table);
    cJSON *canon = model_normalize(cur, m);
    if (cur && json_identical(cur, canon)) {
        cJSON_Delete(canon);
        return;
    }
    cJSON *t = db_table_mut(db, table);
    if (!cJSON_IsObject(t)) {
        /* Not an object at all: let db_merge replace the whole value. */
        cJSON *upd = cJSON_CreateObject();
        cJSON_AddItemToObject(upd, table, canon);
        db_merge(db, upd);
        cJSON_Delete(upd);
        return;
    }
    while (t->child) cJSON_Delete(cJSON_DetachItemViaPointer(t, t->child));
    t->child = canon->child;
    canon->child = NULL;
    cJSON_Delete(canon);
}

void telecom_user_normalize(Env *env) {
    if (!env || !env->user_db) return;
    normalize_table(env->user_db, "device", &DEVICE_MODEL);
    normalize_table(env->user_db, "surroundings", &SURROUNDINGS_MODEL);
}
