/* bench_util.h — the clock and the order statistics every benchmark here
 * reports with (header only: each benchmark is one program). */
#ifndef TAU2_BENCH_UTIL_H
#define TAU2_BENCH_UTIL_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <curl/curl.h>

#include "core/sbuf.h"

/* Seconds on the monotonic clock. */
static inline double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* This process's peak resident memory in MiB: VmHWM, the high-water mark of
 * its own address space. (getrusage's ru_maxrss also counts the parent's
 * peak from before the exec, so a benchmark started from a Python script
 * that had grown to 3 GiB would report 3 GiB.) */
static inline double peak_rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kib = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    if (kib < 0) { /* no procfs */
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kib = ru.ru_maxrss;
    }
    return kib / 1024.0;
}

/* qsort comparison of doubles, ascending. */
static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile p (0..100) of n sorted values; 0 when n is 0. */
static inline double percentile(const double *sorted, int n, double p) {
    if (n == 0) return 0;
    int k = (int)(p / 100.0 * n + 0.999999) - 1;
    if (k < 0) k = 0;
    if (k >= n) k = n - 1;
    return sorted[k];
}

/* libcurl's write callback: the response bytes appended to the SBuf in ctx. */
static inline size_t on_body(char *data, size_t size, size_t nmemb, void *ctx) {
    sbuf_put(ctx, data, size * nmemb);
    return size * nmemb;
}

/* The next finished transfer of multi: the private pointer of its easy
 * handle (CURLOPT_PRIVATE), with its result and HTTP status; NULL when no
 * transfer has finished since the last call. */
static inline void *bench_next_done(CURLM *multi, CURLcode *result, long *status) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        void *priv = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&priv);
        *status = 0;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, status);
        *result = msg->data.result;
        return priv;
    }
    return NULL;
}

#endif
