#include "app/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"

long cli_long(const char *cmd, const char *opt, const char *s, long lo, long hi, const char *expected) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        if (expected) die_input("%s: %s: expected %s, got '%s'", cmd, opt, expected, s);
        die_input("%s: %s: expected an integer in [%ld, %ld], got '%s'", cmd, opt, lo, hi, s);
    }
    return v;
}

bool cli_is_dir(const char *p) {
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *cli_data_dir(const char *flag_value, const char *config_value) {
    if (flag_value) return flag_value;
    if (config_value) return config_value;
    const char *env = getenv("TAU2_DATA_DIR");
    if (env && env[0]) return env;
    if (cli_is_dir("../shared/tau2-data")) return "../shared/tau2-data";
#ifdef TAU2_SOURCE_DIR
    if (cli_is_dir(TAU2_SOURCE_DIR "/../shared/tau2-data")) return TAU2_SOURCE_DIR "/../shared/tau2-data";
#endif
    return "../shared/tau2-data";
}

const char *cli_opt(int argc, char **argv, const char *name) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], name) != 0) continue;
        if (i + 1 >= argc || (argv[i + 1][0] == '-' && argv[i + 1][1] == '-'))
            die_input("option %s needs a value", name);
        return argv[i + 1];
    }
    return NULL;
}

bool cli_flag(int argc, char **argv, const char *name) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0) return true;
    return false;
}

int cli_opt_list(int argc, char **argv, const char *name, const char **out, int max) {
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], name) != 0) continue;
        for (int j = i + 1; j < argc && strncmp(argv[j], "--", 2) != 0; j++) {
            if (n == max) die_input("option %s: at most %d values", name, max);
            out[n++] = argv[j];
        }
        if (n == 0) die_input("option %s needs at least one value", name);
    }
    return n;
}

static void die_unknown_option(const char *cmd, const char *arg, const CliOption *known) {
    fprintf(stderr, "%s: error: %s: unknown option '%s' (valid:", g_prog_name, cmd, arg);
    for (const CliOption *k = known; k->name; k++) fprintf(stderr, " %s", k->name);
    fprintf(stderr, ")\n");
    exit(EXIT_BAD_INPUT);
}

static bool is_option(const char *arg) { return strncmp(arg, "--", 2) == 0; }

void cli_check_args(const char *cmd, int argc, char **argv, const CliOption *known, int n_positional,
                    const char **positional, const char *usage) {
    const char *sep = usage ? " (" : "", *end = usage ? ")" : "";
    if (!usage) usage = "";
    for (int p = 0; p < n_positional; p++) positional[p] = NULL;
    int n_found = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!is_option(arg)) {
            /* "-" is standard input, and "-5" a value; "-x" is a mistyped option */
            if (arg[0] == '-' && arg[1] && !(arg[1] >= '0' && arg[1] <= '9')) die_unknown_option(cmd, arg, known);
            if (n_found == n_positional) die_input("%s: unexpected argument '%s'%s%s%s", cmd, arg, sep, usage, end);
            positional[n_found++] = arg;
            continue;
        }
        const CliOption *opt = NULL;
        for (const CliOption *k = known; k->name && !opt; k++)
            if (strcmp(k->name, arg) == 0) opt = k;
        if (!opt) die_unknown_option(cmd, arg, known);
        for (int e = 1; e < i; e++)
            if (strcmp(argv[e], arg) == 0) die_input("%s: option %s given twice", cmd, arg);
        if (opt->arity == CLI_VALUE) {
            if (i + 1 >= argc || is_option(argv[i + 1])) die_input("%s: option %s needs a value", cmd, arg);
            i++;
        } else if (opt->arity == CLI_LIST) {
            if (i + 1 >= argc || is_option(argv[i + 1])) die_input("%s: option %s needs at least one value", cmd, arg);
            while (i + 1 < argc && !is_option(argv[i + 1])) i++;
        }
    }
}

char *cli_read_stdin(size_t *len) {
    SBuf b;
    sbuf_init(&b);
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, stdin)) > 0) sbuf_put(&b, buf, got);
    if (!b.data) sbuf_put(&b, "", 0);
    if (len) *len = b.len;
    return sbuf_take(&b);
}

cJSON *cli_load_json(const char *path) {
    char err[1024];
    cJSON *v;
    if (strcmp(path, "-") == 0) {
        size_t len;
        char *text = cli_read_stdin(&len);
        v = json_parse(text, len, "<stdin>", err, sizeof err);
        free(text);
    } else {
        v = json_load_file(path, err, sizeof err);
    }
    if (!v) die_input("%s", err);
    return v;
}
