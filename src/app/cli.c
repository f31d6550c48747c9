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

void cli_check_options(const char *cmd, int argc, char **argv, const char *const *known) {
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0) continue;
        bool ok = false;
        for (const char *const *k = known; *k && !ok; k++) ok = strcmp(*k, argv[i]) == 0;
        if (!ok) {
            fprintf(stderr, "%s: error: %s: unknown option '%s' (valid:", g_prog_name, cmd, argv[i]);
            for (const char *const *k = known; *k; k++) fprintf(stderr, " %s", *k);
            fprintf(stderr, ")\n");
            exit(EXIT_BAD_INPUT);
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
