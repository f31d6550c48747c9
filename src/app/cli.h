/* cli.h — small helpers shared by the subcommands: option parsing and the
 * τ²-bench data directory lookup. */
#ifndef TAU2_APP_CLI_H
#define TAU2_APP_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

/* Where τ²-bench's data is: the flag, then the config's data_dir, then
 * TAU2_DATA_DIR, then ../shared/tau2-data (from the working directory, then
 * from the source tree). Never NULL: the last candidate is returned even if
 * missing, so the domain loader's error names it. */
const char *cli_data_dir(const char *flag_value, const char *config_value);

/* argv scanning: "--name value" options. Returns the value or NULL; exits 2
 * when the option is present without a value. */
const char *cli_opt(int argc, char **argv, const char *name);
bool cli_flag(int argc, char **argv, const char *name);
/* An option's value as a whole integer in [lo, hi]; else exit 2 with
 * "CMD: OPT: expected EXPECTED, got 'S'", EXPECTED NULL meaning "an
 * integer in [lo, hi]" ("5abc" and "2.9" are refused). */
long cli_long(const char *cmd, const char *opt, const char *s, long lo, long hi, const char *expected);
/* Every value after --name up to the next option (for nargs="+"). */
int cli_opt_list(int argc, char **argv, const char *name, const char **out, int max);
/* True when path names a directory. */
bool cli_is_dir(const char *path);
/* All of standard input, NUL-terminated; *len (if given) its length. */
char *cli_read_stdin(size_t *len);
/* A JSON document from a file, or from standard input when path is "-"
 * (named "<stdin>" in messages). Exits 2 with the position on bad JSON. */
cJSON *cli_load_json(const char *path);

/* What an option takes: one value, nothing, or every argument up to the
 * next option (nargs="+"). */
typedef enum { CLI_VALUE, CLI_FLAG, CLI_LIST } CliArity;
typedef struct {
    const char *name; /* "--name" */
    CliArity arity;
} CliOption;

/* Checks the whole of argv (argv[0] is the subcommand) against `known`
 * (ended by a {NULL} entry) and exits 2 naming the first argument that
 * does not fit: an unknown option (also a single-dash one), an option given
 * twice, a value option without its value, or a positional argument beyond
 * the `n_positional` allowed. The positional arguments found go to
 * positional[0..n_positional) (unfilled slots NULL; positional may be NULL
 * when n_positional is 0). `usage` (may be NULL) is added to the
 * message of a stray argument, in parentheses. */
void cli_check_args(const char *cmd, int argc, char **argv, const CliOption *known, int n_positional,
                    const char **positional, const char *usage);

int cmd_tools(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_oracle(int argc, char **argv);
int cmd_prepare(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_render(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_run_config(const char *path, int argc, char **argv);
int cmd_run_oracle_config(const char *path, int argc, char **argv);

#endif
