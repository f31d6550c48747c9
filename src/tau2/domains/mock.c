/* mock.c — τ²-bench's mock domain: users with tasks, and a user-side
 * notification inbox. Small enough to show the shape of every domain:
 * tool functions over the episode's Env, a ToolDef table in τ²-bench's
 * order with the exact OpenAI schemas, non-tool functions for task setup
 * and assertions, and the DomainSpec tying them to the data files. */
#include <stdio.h>
#include <string.h>

#include "core/json.h"
#include "tau2/domains/domains.h"

/* ---------------------------------------------------------------- agent tools */

static cJSON *mock_create_task(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *user_id = arg_str(args, "user_id");
    const char *title = arg_str(args, "title");
    const cJSON *description = json_get(args, "description");
    cJSON *user = db_get_mut(env->db, "users", user_id);
    if (!user) return tool_error(ctx, "User %s not found", user_id);
    /* τ²-bench numbers tasks by the table size, so ids can collide after deletions; none exist here. */
    char task_id[32];
    snprintf(task_id, sizeof task_id, "task_%d", db_count(env->db, "tasks") + 1);
    cJSON *task = cJSON_CreateObject();
    cJSON_AddStringToObject(task, "task_id", task_id);
    cJSON_AddStringToObject(task, "title", title);
    cJSON_AddItemToObject(task, "description", description ? cJSON_Duplicate(description, 1) : cJSON_CreateNull());
    cJSON_AddStringToObject(task, "status", "pending");
    cJSON *result = cJSON_Duplicate(task, 1);
    db_put(env->db, "tasks", task_id, task);
    cJSON *tasks = json_get(user, "tasks");
    if (tasks) cJSON_AddItemToArray(tasks, cJSON_CreateString(task_id));
    return result;
}

static cJSON *mock_get_users(Env *env, const cJSON *args, ToolCtx *ctx) {
    cJSON *out = cJSON_CreateArray();
    DbIter it;
    const char *key;
    const cJSON *rec;
    db_iter_init(&it, env->db, "users");
    while (db_iter_next(&it, &key, &rec)) cJSON_AddItemToArray(out, cJSON_Duplicate(rec, 1));
    return out;
}

static cJSON *mock_update_task_status(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *task_id = arg_str(args, "task_id");
    cJSON *task = db_get_mut(env->db, "tasks", task_id);
    if (!task) return tool_error(ctx, "Task %s not found", task_id);
    json_set(task, "status", cJSON_Duplicate(json_get(args, "status"), 1));
    return cJSON_Duplicate(task, 1);
}

static cJSON *mock_transfer_to_human_agents(Env *env, const cJSON *args, ToolCtx *ctx) {
    return cJSON_CreateString("Transfer successful");
}

/* ---------------------------------------------------------------- agent functions */

static cJSON *mock_assert_number_of_tasks(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *user_id = arg_str(args, "user_id");
    const cJSON *expected = arg_get(args, "expected_number");
    const cJSON *user = user_id ? db_get(env->db, "users", user_id) : NULL;
    if (!user) return tool_error(ctx, "User %s not found", user_id ? user_id : "None");
    if (!expected || !cJSON_IsNumber(expected)) return tool_error(ctx, "expected_number must be a number");
    return cJSON_CreateBool(cJSON_GetArraySize(json_get(user, "tasks")) == expected->valuedouble);
}

static cJSON *mock_assert_task_status(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *task_id = arg_str(args, "task_id");
    const char *expected = arg_str(args, "expected_status");
    const cJSON *task = task_id ? db_get(env->db, "tasks", task_id) : NULL;
    if (!task) return tool_error(ctx, "Task %s not found", task_id ? task_id : "None");
    const char *status = json_get_str(task, "status");
    return cJSON_CreateBool(status && expected && strcmp(status, expected) == 0);
}

/* ---------------------------------------------------------------- user tools */

static cJSON *mock_check_notifications(Env *env, const cJSON *args, ToolCtx *ctx) {
    cJSON *out = cJSON_CreateArray();
    DbIter it;
    const char *key;
    const cJSON *rec;
    db_iter_init(&it, env->user_db, "notifications");
    while (db_iter_next(&it, &key, &rec)) cJSON_AddItemToArray(out, cJSON_Duplicate(rec, 1));
    return out;
}

static cJSON *mock_dismiss_notification(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *id = arg_str(args, "notification_id");
    cJSON *n = db_get_mut(env->user_db, "notifications", id);
    if (!n) return tool_error(ctx, "Notification %s not found", id);
    json_set(n, "status", cJSON_CreateString("read"));
    char msg[256];
    snprintf(msg, sizeof msg, "Notification %s dismissed", id);
    return cJSON_CreateString(msg);
}

/* ---------------------------------------------------------------- user functions */

static cJSON *mock_add_notification(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *id = arg_str(args, "notification_id");
    const char *message = arg_str(args, "message");
    const char *task_id = arg_str(args, "task_id");
    if (!id || !message) return tool_error(ctx, "add_notification needs notification_id and message strings");
    cJSON *n = cJSON_CreateObject();
    cJSON_AddStringToObject(n, "notification_id", id);
    cJSON_AddStringToObject(n, "message", message);
    cJSON_AddStringToObject(n, "status", "unread");
    cJSON_AddItemToObject(n, "task_id", task_id ? cJSON_CreateString(task_id) : cJSON_CreateNull());
    cJSON *result = cJSON_Duplicate(n, 1);
    db_put(env->user_db, "notifications", id, n);
    return result;
}

static cJSON *mock_assert_notification_status(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *id = arg_str(args, "notification_id");
    const char *expected = arg_str(args, "expected_status");
    const cJSON *n = id ? db_get(env->user_db, "notifications", id) : NULL;
    if (!n) return tool_error(ctx, "Notification %s not found", id ? id : "None");
    const char *status = json_get_str(n, "status");
    return cJSON_CreateBool(status && expected && strcmp(status, expected) == 0);
}

/* ---------------------------------------------------------------- tables */

static const ToolDef MOCK_TOOLS[] = {
    {"create_task", mock_create_task, true,
     "{\"type\": \"function\", \"function\": {\"name\": \"create_task\", \"description\": \"Create a new task for a "
     "user.\", \"parameters\": {\"properties\": {\"user_id\": {\"description\": \"The ID of the user creating the "
     "task\", \"title\": \"User Id\", \"type\": \"string\"}, \"title\": {\"description\": \"The title of the task\", "
     "\"title\": \"Title\", \"type\": \"string\"}, \"description\": {\"default\": null, \"description\": \"Optional "
     "description of the task\", \"title\": \"Description\", \"type\": \"string\"}}, \"required\": [\"user_id\", "
     "\"title\"], \"title\": \"parameters\", \"type\": \"object\"}}}"},
    {"get_users", mock_get_users, false,
     "{\"type\": \"function\", \"function\": {\"name\": \"get_users\", \"description\": \"Get all users in the "
     "database.\", \"parameters\": {\"properties\": {}, \"title\": \"parameters\", \"type\": \"object\"}}}"},
    {"update_task_status", mock_update_task_status, true,
     "{\"type\": \"function\", \"function\": {\"name\": \"update_task_status\", \"description\": \"Update the status "
     "of a task.\", \"parameters\": {\"properties\": {\"task_id\": {\"description\": \"The ID of the task to "
     "update\", \"title\": \"Task Id\", \"type\": \"string\"}, \"status\": {\"description\": \"The new status of the "
     "task\", \"enum\": [\"pending\", \"completed\"], \"title\": \"Status\", \"type\": \"string\"}}, \"required\": "
     "[\"task_id\", \"status\"], \"title\": \"parameters\", \"type\": \"object\"}}}"},
    {"transfer_to_human_agents", mock_transfer_to_human_agents, false,
     "{\"type\": \"function\", \"function\": {\"name\": \"transfer_to_human_agents\", \"description\": \"Transfer "
     "the user to a human agent, with a summary of the user's issue.\\n\\nOnly transfer if\\n -  the user "
     "explicitly asks for a human agent\\n -  given the policy and the available tools, you cannot solve the "
     "user's issue.\", \"parameters\": {\"properties\": {\"summary\": {\"description\": \"A summary of the user's "
     "issue.\", \"title\": \"Summary\", \"type\": \"string\"}}, \"required\": [\"summary\"], \"title\": "
     "\"parameters\", \"type\": \"object\"}}}"},
};

static const ToolDef MOCK_FUNCS[] = {
    {"assert_number_of_tasks", mock_assert_number_of_tasks, false, NULL},
    {"assert_task_status", mock_assert_task_status, false, NULL},
};

static const ToolDef MOCK_USER_TOOLS[] = {
    {"check_notifications", mock_check_notifications, false,
     "{\"type\": \"function\", \"function\": {\"name\": \"check_notifications\", \"description\": \"Check all "
     "notifications in the user's inbox.\", \"parameters\": {\"properties\": {}, \"title\": \"parameters\", "
     "\"type\": \"object\"}}}"},
    {"dismiss_notification", mock_dismiss_notification, true,
     "{\"type\": \"function\", \"function\": {\"name\": \"dismiss_notification\", \"description\": \"Dismiss (mark "
     "as read) a notification.\", \"parameters\": {\"properties\": {\"notification_id\": {\"description\": \"The ID "
     "of the notification to dismiss.\", \"title\": \"Notification Id\", \"type\": \"string\"}}, \"required\": "
     "[\"notification_id\"], \"title\": \"parameters\", \"type\": \"object\"}}}"},
};

static const ToolDef MOCK_USER_FUNCS[] = {
    {"add_notification", mock_add_notification, true, NULL},
    {"assert_notification_status", mock_assert_notification_status, false, NULL},
};

static char *mock_load_policy(const char *domain_dir, char *err, size_t errlen) {
    return domain_read_text(domain_dir, "policy.md", err, errlen);
}

/* MockDB and MockUserDB as data_model.py and user_data_model.py declare them,
 * for the load-time check of db.json and user_db.json. */
static const char *const TASK_STATUSES[] = {"pending", "completed", NULL};
static const DbType TASK_STATUS_TYPE = {DB_ENUM, .choices = TASK_STATUSES};
static const DbField TASK_FIELDS[] = {
    {"task_id", &DB_T_STR}, {"title", &DB_T_STR}, {"description", &DB_T_STR, "null", true},
    {"status", &TASK_STATUS_TYPE}, {NULL},
};
static const DbModel TASK_MODEL = {"Task", TASK_FIELDS};
static const DbType TASK_TYPE = {DB_MODEL, .model = &TASK_MODEL};
static const DbField USER_FIELDS[] = {{"user_id", &DB_T_STR}, {"name", &DB_T_STR}, {"tasks", &DB_T_LIST_STR}, {NULL}};
static const DbModel USER_MODEL = {"User", USER_FIELDS};
static const DbType USER_TYPE = {DB_MODEL, .model = &USER_MODEL};
static const DbType TASK_DICT = {DB_DICT, .item = &TASK_TYPE};
static const DbType USER_DICT = {DB_DICT, .item = &USER_TYPE};
static const DbField MOCK_DB_FIELDS[] = {{"tasks", &TASK_DICT}, {"users", &USER_DICT}, {NULL}};
static const DbModel MOCK_DB_MODEL = {"MockDB", MOCK_DB_FIELDS};

static const char *const NOTIFICATION_STATUSES[] = {"unread", "read", NULL};
static const DbType NOTIFICATION_STATUS_TYPE = {DB_ENUM, .choices = NOTIFICATION_STATUSES};
static const DbField NOTIFICATION_FIELDS[] = {
    {"notification_id", &DB_T_STR},
    {"message", &DB_T_STR},
    {"status", &NOTIFICATION_STATUS_TYPE, "\"unread\""},
    {"task_id", &DB_T_STR, "null", true},
    {NULL},
};
static const DbModel NOTIFICATION_MODEL = {"Notification", NOTIFICATION_FIELDS, true};
static const DbType NOTIFICATION_TYPE = {DB_MODEL, .model = &NOTIFICATION_MODEL};
static const DbType NOTIFICATION_DICT = {DB_DICT, .item = &NOTIFICATION_TYPE};
static const DbField MOCK_USER_DB_FIELDS[] = {{"notifications", &NOTIFICATION_DICT, "{}"}, {NULL}};
static const DbModel MOCK_USER_DB_MODEL = {"MockUserDB", MOCK_USER_DB_FIELDS};

const DomainSpec DOMAIN_MOCK = {
    .name = "mock",
    .agent_tools = MOCK_TOOLS,
    .n_agent_tools = sizeof MOCK_TOOLS / sizeof MOCK_TOOLS[0],
    .agent_funcs = MOCK_FUNCS,
    .n_agent_funcs = sizeof MOCK_FUNCS / sizeof MOCK_FUNCS[0],
    .user_tools = MOCK_USER_TOOLS,
    .n_user_tools = sizeof MOCK_USER_TOOLS / sizeof MOCK_USER_TOOLS[0],
    .user_funcs = MOCK_USER_FUNCS,
    .n_user_funcs = sizeof MOCK_USER_FUNCS / sizeof MOCK_USER_FUNCS[0],
    .db_file = "db.json",
    .user_db_file = "user_db.json",
    .db_model = &MOCK_DB_MODEL,
    .user_db_model = &MOCK_USER_DB_MODEL,
    .load_policy = mock_load_policy,
    .normalize_db = NULL,
    .sync = NULL,
};
