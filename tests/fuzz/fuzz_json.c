/* fuzz_json.c — the JSON reader and writer: parse, dump, re-parse, compare. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    cJSON *v = json_parse((const char *)data, size, "fuzz", err, sizeof err);
    if (!v) {
        if (!strstr(err, "fuzz:")) abort(); /* errors always carry a position */
        return 0;
    }
    char *s = json_dumps(v, 0);
    cJSON *w = json_parse(s, strlen(s), "dump", err, sizeof err);
    /* What we print must read back to an equal value (NaN aside, which json_equal treats as equal). */
    if (!w || !json_equal(v, w, true)) abort();
    free(s);
    cJSON_Delete(w);
    cJSON_Delete(v);
    return 0;
}
