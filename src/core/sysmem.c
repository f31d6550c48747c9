#include "core/sysmem.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"

/* A cgroup limit file's number of bytes, or 0 for "max", unreadable or
 * absent (v1 writes a huge number for "no limit": the physical size wins
 * the minimum then). */
static double read_limit(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char buf[64] = "";
    char *got = fgets(buf, sizeof buf, f);
    fclose(f);
    if (!got || strncmp(buf, "max", 3) == 0) return 0;
    char *end;
    double v = strtod(buf, &end);
    return end != buf && v > 0 ? v : 0;
}

/* The smallest limit of the cgroup `path` (under `root`, with `file` the
 * limit's name) and its ancestors: a parent's limit binds its children. */
static double tree_limit(const char *root, const char *path, const char *file) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    double best = 0;
    for (;;) {
        char f[1200];
        snprintf(f, sizeof f, "%s%s/%s", root, strcmp(dir, "/") ? dir : "", file);
        double v = read_limit(f);
        if (v > 0 && (best == 0 || v < best)) best = v;
        if (strcmp(dir, "/") == 0) break;
        path_to_parent(dir);
    }
    return best;
}

static double g_limit;
static pthread_once_t g_limit_once = PTHREAD_ONCE_INIT;

/* TAU2_MEMORY_LIMIT: a size in bytes with an optional binary suffix (64G,
 * 512M), or 0 when unset; anything else is an input error. */
static double env_limit(void) {
    const char *v = getenv("TAU2_MEMORY_LIMIT");
    if (!v || !*v) return 0;
    char *end;
    double x = strtod(v, &end);
    double unit = 1;
    if (*end) {
        const char *units = "KMGT";
        const char *u = strchr(units, *end >= 'a' && *end <= 'z' ? *end - 'a' + 'A' : *end);
        if (u && *u) {
            for (const char *k = units; k <= u; k++) unit *= 1024.0;
            end++;
            if (*end == 'i' && end[1] == 'B') end += 2;
            else if (*end == 'B') end++;
        }
    }
    if (end == v || *end || !(x > 0) || x * unit > 1e18)
        die_input("environment variable TAU2_MEMORY_LIMIT: '%s' is not a memory size (expected a positive number of "
                  "bytes with an optional K, M, G or T suffix, e.g. 64G)", v);
    return x * unit;
}

static void limit_init(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    double limit = pages > 0 && page > 0 ? (double)pages * (double)page : 0;
    /* /proc/self/cgroup: "0::PATH" (v2), "N:...memory...:PATH" (v1) */
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[1200];
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || c2[1] != '/') continue;
        *c2 = '\0';
        double v = 0;
        if (strcmp(c1 + 1, "") == 0) v = tree_limit("/sys/fs/cgroup", c2 + 1, "memory.max");
        else if (strstr(c1 + 1, "memory")) v = tree_limit("/sys/fs/cgroup/memory", c2 + 1, "memory.limit_in_bytes");
        if (v > 0 && (limit == 0 || v < limit)) limit = v;
    }
    if (f) fclose(f);
    double user = env_limit();
    if (user > 0 && (limit == 0 || user < limit)) limit = user;
    g_limit = limit;
}

/* Read once: the engines are made at every rollout step, and a process's
 * memory and cgroup do not change under it. */
double sysmem_limit_bytes(void) {
    pthread_once(&g_limit_once, limit_init);
    return g_limit;
}

const char *sysmem_format(double bytes, char *buf, size_t n) {
    const double mib = 1024.0 * 1024.0, gib = 1024.0 * mib;
    if (bytes >= gib) snprintf(buf, n, "%.1f GiB", bytes / gib);
    else snprintf(buf, n, "%.1f MiB", bytes / mib);
    return buf;
}

int sysmem_check(double bytes, const char *what, char *err, size_t errlen) {
    double limit = sysmem_limit_bytes();
    if (limit == 0 || bytes <= limit) return 0;
    char b[32], l[32];
    return err_set(err, errlen, "%s would take %s, more than the %s of memory this process may use", what,
                   sysmem_format(bytes, b, sizeof b), sysmem_format(limit, l, sizeof l));
}
