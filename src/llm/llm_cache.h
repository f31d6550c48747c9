/* llm_cache.h — chat-completion responses on disk, one file per request.
 *
 * The key is XXH3-128 of (endpoint base URL, model, canonical request),
 * where the canonical request is the request body without "model" and
 * "stream", dumped with sorted keys and compact separators: messages,
 * tools, sampling parameters and seed, whatever the caller sent. The API
 * key travels in a header and is part of neither the key nor the file.
 *
 * Layout: <dir>/<first 2 hex digits>/<32 hex digits>.json holding
 *   {"version": 1, "base_url", "model", "request": {...},
 *    "response": {"message", "finish_reason", "usage"}}
 * written to a temporary name and renamed. A read checks that the stored
 * base_url, model and request match, so a hash collision is a miss, and a
 * damaged file is a miss too. */
#ifndef TAU2_LLM_CACHE_H
#define TAU2_LLM_CACHE_H

#include <stddef.h>

#include <cJSON.h>

#define LLM_CACHE_KEY_HEX 33 /* 32 hex digits and a NUL */

/* The canonical form of a request body (new string, caller frees). */
char *llm_cache_canonical(const cJSON *body);

/* key = hex of XXH3-128 over the three strings. */
void llm_cache_key(const char *base_url, const char *model, const char *canonical, char key[LLM_CACHE_KEY_HEX]);

/* The stored response object for key, or NULL on a miss (no file, a
 * damaged one, or one written for a different request). Caller frees. */
cJSON *llm_cache_get(const char *dir, const char *key, const char *base_url, const char *model,
                     const char *canonical);

/* Store response under key. 0, or -1 with err naming the path. */
int llm_cache_put(const char *dir, const char *key, const char *base_url, const char *model, const char *canonical,
                  const cJSON *response, char *err, size_t errlen);

#endif
