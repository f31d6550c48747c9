/* hmap.h — string-keyed hash map (open addressing, xxHash).
 * Keys are borrowed: the caller keeps them alive as long as the map. */
#ifndef TAU2_CORE_HMAP_H
#define TAU2_CORE_HMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *key;
    void *val;
    uint64_t hash;
} HMapEntry;

typedef struct {
    HMapEntry *slots;
    size_t cap; /* power of two, or 0 */
    size_t n;
} HMap;

void hmap_init(HMap *m);
void hmap_free(HMap *m);
void *hmap_get(const HMap *m, const char *key);
/* Insert or replace; returns the previous value (NULL if none). */
void *hmap_put(HMap *m, const char *key, void *val);
/* Copy the table (keys and values are still borrowed). */
void hmap_copy(HMap *dst, const HMap *src);

#endif
