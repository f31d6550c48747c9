/* llm_cache.c — see llm_cache.h. */
#include "llm/llm_cache.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"

enum { CANONICAL_FLAGS = JSON_DUMP_SORT_KEYS | JSON_DUMP_COMPACT | JSON_DUMP_UTF8 };

char *llm_cache_canonical(const cJSON *body) {
    /* "model" is keyed separately (the endpoint's, not the caller's) and
     * "stream" does not change the answer. */
    cJSON *copy = cJSON_Duplicate(body, 1);
    if (!copy) die_runtime("out of memory duplicating a request body");
    cJSON_DeleteItemFromObjectCaseSensitive(copy, "model");
    cJSON_DeleteItemFromObjectCaseSensitive(copy, "stream");
    char *s = json_dumps(copy, CANONICAL_FLAGS);
    cJSON_Delete(copy);
    return s;
}

void llm_cache_key(const char *base_url, const char *model, const char *canonical, char key[LLM_CACHE_KEY_HEX]) {
    /* Length prefixes keep ("ab", "c") and ("a", "bc") apart. */
    SBuf b;
    sbuf_init(&b);
    sbuf_printf(&b, "tau2_hpc-llm-cache-v1\n%zu:%s\n%zu:%s\n%zu:", strlen(base_url), base_url, strlen(model), model,
                strlen(canonical));
    sbuf_puts(&b, canonical);
    XXH128_hash_t h = XXH3_128bits(b.data, b.len);
    sbuf_free(&b);
    snprintf(key, LLM_CACHE_KEY_HEX, "%016llx%016llx", (unsigned long long)h.high64, (unsigned long long)h.low64);
}

static char *entry_path(const char *dir, const char *key, bool subdir_only) {
    SBuf p;
    sbuf_init(&p);
    sbuf_printf(&p, "%s/%.2s", dir, key);
    if (!subdir_only) sbuf_printf(&p, "/%s.json", key);
    return sbuf_take(&p);
}

cJSON *llm_cache_get(const char *dir, const char *key, const char *base_url, const char *model,
                     const char *canonical) {
    char *path = entry_path(dir, key, false);
    char err[256];
    cJSON *entry = json_load_file(path, err, sizeof err);
    free(path);
    if (!entry) return NULL;
    cJSON *response = NULL;
    const char *u = json_get_str(entry, "base_url"), *m = json_get_str(entry, "model");
    cJSON *req = json_get(entry, "request");
    cJSON *resp = json_get(entry, "response");
    if (u && m && req && cJSON_IsObject(resp) && cJSON_IsObject(json_get(resp, "message")) &&
        strcmp(u, base_url) == 0 && strcmp(m, model) == 0) {
        char *stored = json_dumps(req, CANONICAL_FLAGS);
        if (strcmp(stored, canonical) == 0) response = cJSON_DetachItemFromObjectCaseSensitive(entry, "response");
        free(stored);
    }
    cJSON_Delete(entry);
    return response;
}

int llm_cache_put(const char *dir, const char *key, const char *base_url, const char *model, const char *canonical,
                  const cJSON *response, char *err, size_t errlen) {
    char *sub = entry_path(dir, key, true);
    int rc = dir_create_all(sub, err, errlen);
    free(sub);
    if (rc != 0) return -1;
    /* The canonical string is compact sorted JSON: splice it in as is, so
     * what a read re-dumps is exactly what was keyed. */
    SBuf b;
    sbuf_init(&b);
    cJSON *head = cJSON_CreateObject();
    cJSON_AddItemToObject(head, "version", json_int(1));
    cJSON_AddStringToObject(head, "base_url", base_url);
    cJSON_AddStringToObject(head, "model", model);
    char *head_s = json_dumps(head, JSON_DUMP_UTF8);
    cJSON_Delete(head);
    head_s[strlen(head_s) - 1] = '\0'; /* drop the closing brace */
    char *resp_s = json_dumps(response, JSON_DUMP_UTF8);
    sbuf_printf(&b, "%s, \"request\": %s, \"response\": %s}\n", head_s, canonical, resp_s);
    free(head_s);
    free(resp_s);
    char *path = entry_path(dir, key, false);
    rc = file_write_atomic(path, b.data, b.len, err, errlen);
    free(path);
    sbuf_free(&b);
    return rc;
}
