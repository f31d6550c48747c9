/* bench_util.h — the clock and the order statistics every benchmark here
 * reports with (header only: each benchmark is one program). */
#ifndef TAU2_BENCH_UTIL_H
#define TAU2_BENCH_UTIL_H

#include <stddef.h>
#include <time.h>

#include <curl/curl.h>

#include "core/sbuf.h"

/* Seconds on the monotonic clock. */
static inline double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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
