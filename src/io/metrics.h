/* metrics.h — the metrics log: one JSON object per line (JSONL), one line
 * per training step and per evaluation; the report renders it.
 *
 * Each line goes to the file in a single write() on an O_APPEND descriptor,
 * so a killed process leaves only complete lines (the page cache keeps what
 * was written; a power loss may lose recent lines, never tear earlier
 * ones). Opening a log whose last line is incomplete (a crash inside a
 * write, a full disk) cuts that partial line off before appending.
 */
#ifndef TAU2_IO_METRICS_H
#define TAU2_IO_METRICS_H

#include <stddef.h>

#include <cJSON.h>

typedef struct MetricsLog MetricsLog;

/* Open path for appending (created if missing; truncate != 0 empties it
 * first). NULL with err naming the path. */
MetricsLog *metrics_open(const char *path, int truncate, char *err, size_t errlen);
/* Append obj (a JSON object) as one compact line. 0, or -1 with err. */
int metrics_write(MetricsLog *log, const cJSON *obj, char *err, size_t errlen);
void metrics_close(MetricsLog *log);

#endif
