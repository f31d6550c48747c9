/* env.h — τ²-bench environments: domains, their tools, and one episode's state.
 *
 * A domain (airline, retail, telecom, mock) is a static table of tools and
 * non-tool functions plus its loaded data (policy, base DBs, tasks). An
 * episode's Env owns its agent Db and user Db (both copy-on-write over the
 * domain's bases). Tools are C functions over the Env; the dispatcher
 * validates arguments against the tool's schema, runs the function, and
 * serializes the result exactly as τ²-bench's Environment.to_json_str does.
 */
#ifndef TAU2_ENV_H
#define TAU2_ENV_H

#include <stdbool.h>

#include <cJSON.h>

#include "tau2/db.h"
#include "tau2/db_schema.h"

typedef struct Env Env;
typedef struct Domain Domain;

/* What a tool function reports besides its result. */
typedef struct {
    char err[1024]; /* set by tool_error: the exception text after "Error: " */
    bool failed;
} ToolCtx;

/* A tool or env function. Returns the result as the JSON value that
 * τ²-bench's Environment.to_json_str would dump (a pydantic model as its
 * model_dump, a plain str as a cJSON string, which is output unquoted), or
 * NULL after tool_error(). `args` is a JSON object already checked against
 * the schema (required present, no unknown names, JSON types right); an
 * optional parameter the caller left out is absent from it. */
typedef cJSON *(*ToolFn)(Env *env, const cJSON *args, ToolCtx *ctx);

typedef struct {
    const char *name;
    ToolFn fn;
    bool mutates;       /* re-executed when an episode is replayed for evaluation */
    const char *schema; /* OpenAI function schema as τ²-bench prints it (JSON text);
                           NULL for non-tool functions (initialization actions,
                           assertions), which take arguments unchecked */
} ToolDef;

/* Record a tool failure; the model sees "Error: <message>". Returns NULL so
 * a tool can `return tool_error(ctx, ...)`. */
cJSON *tool_error(ToolCtx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One domain's static description, provided by src/tau2/domains/<name>.c. */
typedef struct {
    const char *name;
    const ToolDef *agent_tools; /* in τ²-bench's order (the order `tools` prints) */
    int n_agent_tools;
    const ToolDef *agent_funcs; /* non-tool functions of the agent toolkit */
    int n_agent_funcs;
    const ToolDef *user_tools; /* user (phone) tools, or NULL */
    int n_user_tools;
    const ToolDef *user_funcs;
    int n_user_funcs;
    /* Files: agent DB and user DB relative to domains/<name>/ (".json" or
     * ".toml"); user_db_file NULL when the domain has none. */
    const char *db_file;
    const char *user_db_file;
    /* The files' top-level models (db_schema.h), checked at load. */
    const DbModel *db_model;
    const DbModel *user_db_model;
    /* Policy text as τ²-bench assembles it from the domain directory; returns
     * a new string or NULL with err filled. */
    char *(*load_policy)(const char *domain_dir, char *err, size_t errlen);
    /* Optional: fill in model defaults and coerce types after a DB is loaded
     * or merged (what pydantic's model_validate does). is_user selects the DB. */
    void (*normalize_db)(Env *env, bool is_user);
    /* Optional: the environment's sync_tools (telecom: agent DB → phone). */
    void (*sync)(Env *env);
} DomainSpec;

/* Loaded domain: spec + data directory + base DBs + policy + tasks. */
struct Domain {
    const DomainSpec *spec;
    char *dir;    /* .../domains/<name> */
    char *policy; /* assembled policy text */
    DbBase *db_base;
    DbBase *user_db_base; /* NULL when the domain has no user DB */
    cJSON *agent_schemas; /* array of OpenAI tool schemas (parsed) */
    cJSON *user_schemas;  /* same for user tools, or NULL */
};

struct Env {
    const Domain *domain;
    Db *db;      /* agent DB */
    Db *user_db; /* user DB, or NULL */
};

/* The registry of compiled-in domains. */
const DomainSpec *domain_spec_find(const char *name);
/* Comma-separated names, for messages ("airline, retail, telecom, mock"). */
const char *domain_spec_names(void);

/* Load a domain from <data_dir>/domains/<name>. NULL with err on failure
 * (unknown domain, missing or malformed file; the message names it). */
Domain *domain_load(const char *data_dir, const char *name, char *err, size_t errlen);
void domain_free(Domain *d);

Env *env_new(const Domain *d);
void env_free(Env *env);

/* Result of a tool call, as the model sees it. */
typedef struct {
    char *content; /* owned */
    bool error;
} ToolResult;
void tool_result_free(ToolResult *r);

/* Run a tool call for requestor "assistant" or "user" (τ²-bench's
 * get_response): argument checks, the call, serialization, then sync.
 * Never fails: an unknown tool or bad arguments give an error result. */
ToolResult env_tool_call(Env *env, const char *requestor, const char *name, const cJSON *args);

/* Look up a tool (not a function) of the requestor's toolkit. */
const ToolDef *env_find_tool(const Env *env, const char *requestor, const char *name);

/* Run an env function call (initialization action or assertion) by name on
 * the "assistant" or "user" toolkit: tools and non-tool functions alike.
 * Returns the raw result (caller frees) or NULL with err set. Then syncs. */
cJSON *env_run_function(Env *env, const char *env_type, const char *func_name, const cJSON *args,
                        char *err, size_t errlen);

/* Serialize a tool's return value as Environment.to_json_str does. */
char *env_result_to_string(const cJSON *result);

/* Run the domain's sync (no-op for domains without one). */
void env_sync(Env *env);

/* Same as env_tool_call, but without the sync afterwards (τ²-bench's
 * make_tool_call, which the evaluator's gold replay uses). */
ToolResult env_tool_call_nosync(Env *env, const char *requestor, const char *name, const cJSON *args);

/* τ²-bench's Environment.set_state for a task's initial_state (may be NULL):
 * initialization_data deep-merged into the agent and user DBs (what it
 * touched then checked against the DBs' models; a table the model lacks
 * is refused),
 * initialization_actions run, message_history tool calls replayed (only
 * state-changing tools), then sync. Returns 0, or -1 with err set. */
int env_set_initial_state(Env *env, const cJSON *initial_state, char *err, size_t errlen);

/* The first two parts of env_set_initial_state: initialization_data and
 * initialization_actions (no history replay, no final sync). */
int env_apply_initialization(Env *env, const cJSON *initial_state, char *err, size_t errlen);

/* Replay the tool calls of a message list (τ²-bench's set_state history
 * replay: only state-changing tools, unknown tools skipped). strict: a
 * replayed result that differs from the recorded tool message is an error
 * (live evaluation); lenient re-grades edited or historical trajectories.
 * Returns 0, or -1 with err set. */
int env_replay_messages(Env *env, const cJSON *messages, bool strict, char *err, size_t errlen);

/* ---- argument access for tool implementations ---- */
/* The argument, or NULL when absent or JSON null. */
const cJSON *arg_get(const cJSON *args, const char *name);
/* String argument or NULL (absent, null, or not a string). */
const char *arg_str(const cJSON *args, const char *name);

#endif
