/* fuzz_toml.c — libFuzzer target for the TOML reader.
 *
 * Any input must either parse into a tree that can be printed and freed, or
 * fail with a "<name>:<line>:<col>: ..." message; never crash or leak.
 * Seeds: tests/fuzz/corpus/toml plus the telecom db.toml and user_db.toml.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    cJSON *v = toml_parse((const char *)data, size, "fuzz.toml", err, sizeof err);
    if (!v) {
        int line = 0, col = 0;
        if (sscanf(err, "fuzz.toml:%d:%d: ", &line, &col) != 2 || line < 1 || col < 1) {
            fprintf(stderr, "error message without a position: %s\n", err);
            abort();
        }
        return 0;
    }
    if (!cJSON_IsObject(v)) abort();
    char *text = json_dumps(v, 0);
    free(text);
    cJSON_Delete(v);
    return 0;
}
