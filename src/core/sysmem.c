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
    g_limit = limit;
}

/* Read once: the engines are made at every rollout step, and a process's
 * memory and cgroup do not change under it. */
double sysmem_limit_bytes(void) {
    pthread_once(&g_limit_once, limit_init);
    return g_limit;
}

int sysmem_check(double bytes, const char *what, char *err, size_t errlen) {
    double limit = sysmem_limit_bytes();
    if (limit == 0 || bytes <= limit) return 0;
    const double gib = 1024.0 * 1024.0 * 1024.0;
    return err_set(err, errlen, "%s would take %.1f GiB, more than the %.1f GiB of memory this process may use",
                   what, bytes / gib, limit / gib);
}
