#include "core/hmap.h"

#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "core/error.h"

void hmap_init(HMap *m) {
    m->slots = NULL;
    m->cap = 0;
    m->n = 0;
}

void hmap_free(HMap *m) {
    free(m->slots);
    hmap_init(m);
}

static uint64_t hash_key(const char *key) { return XXH3_64bits(key, strlen(key)); }

static HMapEntry *find_slot(HMapEntry *slots, size_t cap, const char *key, uint64_t h) {
    size_t i = (size_t)h & (cap - 1);
    for (;;) {
        HMapEntry *e = &slots[i];
        if (!e->key || (e->hash == h && strcmp(e->key, key) == 0)) return e;
        i = (i + 1) & (cap - 1);
    }
}

static void grow(HMap *m) {
    size_t cap = m->cap ? m->cap * 2 : 16;
    HMapEntry *slots = xcalloc(cap, sizeof *slots);
    for (size_t i = 0; i < m->cap; i++) {
        HMapEntry *e = &m->slots[i];
        if (e->key) *find_slot(slots, cap, e->key, e->hash) = *e;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
}

void *hmap_get(const HMap *m, const char *key) {
    if (!m->n) return NULL;
    HMapEntry *e = find_slot(m->slots, m->cap, key, hash_key(key));
    return e->key ? e->val : NULL;
}

void *hmap_put(HMap *m, const char *key, void *val) {
    if ((m->n + 1) * 4 >= m->cap * 3) grow(m); /* load factor < 3/4 */
    uint64_t h = hash_key(key);
    HMapEntry *e = find_slot(m->slots, m->cap, key, h);
    if (e->key) {
        void *old = e->val;
        e->key = key; /* the new owner's copy of the key */
        e->val = val;
        return old;
    }
    e->key = key;
    e->val = val;
    e->hash = h;
    m->n++;
    return NULL;
}

void hmap_copy(HMap *dst, const HMap *src) {
    dst->cap = src->cap;
    dst->n = src->n;
    dst->slots = NULL;
    if (src->cap) {
        dst->slots = xmalloc(src->cap * sizeof *dst->slots);
        memcpy(dst->slots, src->slots, src->cap * sizeof *dst->slots);
    }
}
