/* db.c — copy-on-write domain databases (see db.h). */
#include "tau2/db.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/hmap.h"
#include "core/json.h"

typedef struct {
    const char *name;
    const cJSON *value;
    bool keyed;   /* an object whose members are all objects (records by key) */
    HMap index;   /* key → const cJSON* record */
} BaseTable;

struct DbBase {
    cJSON *root;
    BaseTable *tables;
    int ntables;
};

/* One table's state in an episode. Either record-level (overlay over the
 * base table) or whole (the episode owns a full copy). */
typedef struct {
    char *name;              /* owned (tables not in the base need one) */
    const BaseTable *base;   /* NULL for tables created by the episode */
    HMap over;               /* key → cJSON* owned record (modified or added) */
    char **added;            /* keys not in the base, in insertion order (borrowed from records) */
    int nadded, capadded;
    cJSON *whole;            /* owned full copy, or NULL */
} TableState;

struct Db {
    const DbBase *base;
    TableState *t;
    int nt, capt;
};

/* ------------------------------------------------------------------ base */

DbBase *dbbase_new(cJSON *root) {
    DbBase *b = xcalloc(1, sizeof *b);
    b->root = root;
    int n = 0;
    for (cJSON *c = root ? root->child : NULL; c; c = c->next) n++;
    b->tables = xcalloc((size_t)n, sizeof *b->tables);
    for (cJSON *c = root ? root->child : NULL; c; c = c->next) {
        BaseTable *t = &b->tables[b->ntables++];
        t->name = c->string;
        t->value = c;
        hmap_init(&t->index);
        t->keyed = cJSON_IsObject(c);
        for (cJSON *r = c->child; r && t->keyed; r = r->next)
            if (!cJSON_IsObject(r)) t->keyed = false;
        if (t->keyed)
            for (cJSON *r = c->child; r; r = r->next) hmap_put(&t->index, r->string, r);
    }
    return b;
}

void dbbase_free(DbBase *b) {
    if (!b) return;
    for (int i = 0; i < b->ntables; i++) hmap_free(&b->tables[i].index);
    free(b->tables);
    cJSON_Delete(b->root);
    free(b);
}

const cJSON *dbbase_root(const DbBase *b) { return b->root; }

/* ------------------------------------------------------------------ episode */

static void state_init(TableState *s, const char *name, const BaseTable *base) {
    memset(s, 0, sizeof *s);
    s->name = xstrdup(name);
    s->base = base;
    hmap_init(&s->over);
}

static void state_clear_overlay(TableState *s) {
    for (size_t i = 0; i < s->over.cap; i++)
        if (s->over.slots[i].key) cJSON_Delete(s->over.slots[i].val);
    hmap_free(&s->over);
    free(s->added);
    s->added = NULL;
    s->nadded = s->capadded = 0;
}

Db *db_new(const DbBase *base) {
    Db *db = xcalloc(1, sizeof *db);
    db->base = base;
    db->capt = base->ntables + 2;
    db->t = xcalloc((size_t)db->capt, sizeof *db->t);
    for (int i = 0; i < base->ntables; i++) state_init(&db->t[db->nt++], base->tables[i].name, &base->tables[i]);
    return db;
}

void db_free(Db *db) {
    if (!db) return;
    for (int i = 0; i < db->nt; i++) {
        state_clear_overlay(&db->t[i]);
        cJSON_Delete(db->t[i].whole);
        free(db->t[i].name);
    }
    free(db->t);
    free(db);
}

Db *db_clone(const Db *src) {
    Db *db = xcalloc(1, sizeof *db);
    db->base = src->base;
    db->capt = src->capt;
    db->nt = src->nt;
    db->t = xcalloc((size_t)db->capt, sizeof *db->t);
    for (int i = 0; i < src->nt; i++) {
        const TableState *s = &src->t[i];
        TableState *d = &db->t[i];
        state_init(d, s->name, s->base);
        if (s->whole) d->whole = cJSON_Duplicate(s->whole, 1);
        /* Copy the overlay records; keys point into the copies. */
        for (size_t k = 0; k < s->over.cap; k++) {
            if (!s->over.slots[k].key) continue;
            cJSON *rec = cJSON_Duplicate(s->over.slots[k].val, 1);
            hmap_put(&d->over, rec->string, rec);
        }
        d->capadded = s->nadded;
        d->nadded = s->nadded;
        d->added = s->nadded ? xmalloc((size_t)s->nadded * sizeof *d->added) : NULL;
        for (int k = 0; k < s->nadded; k++) {
            cJSON *rec = hmap_get(&d->over, s->added[k]);
            d->added[k] = rec->string;
        }
    }
    return db;
}

static TableState *find_state(const Db *db, const char *table) {
    for (int i = 0; i < db->nt; i++)
        if (strcmp(db->t[i].name, table) == 0) return &db->t[i];
    return NULL;
}

static TableState *add_state(Db *db, const char *table) {
    if (db->nt == db->capt) {
        db->capt = db->capt * 2 + 2;
        db->t = xrealloc(db->t, (size_t)db->capt * sizeof *db->t);
    }
    TableState *s = &db->t[db->nt++];
    state_init(s, table, NULL);
    s->whole = cJSON_CreateObject();
    return s;
}

static bool record_level(const TableState *s) { return !s->whole && s->base && s->base->keyed; }

/* Build the current value of a record-level table as a new tree. */
static cJSON *materialize(const TableState *s) {
    if (s->whole) return cJSON_Duplicate(s->whole, 1);
    if (!s->base) return cJSON_CreateObject();
    if (!s->base->keyed || s->over.n == 0) return cJSON_Duplicate(s->base->value, 1);
    cJSON *out = cJSON_CreateObject();
    for (const cJSON *r = s->base->value->child; r; r = r->next) {
        const cJSON *cur = hmap_get(&s->over, r->string);
        cJSON_AddItemToObject(out, r->string, cJSON_Duplicate(cur ? cur : r, 1));
    }
    for (int i = 0; i < s->nadded; i++)
        cJSON_AddItemToObject(out, s->added[i], cJSON_Duplicate(hmap_get(&s->over, s->added[i]), 1));
    return out;
}

/* The table's current value without copying when it exists as one tree;
 * a record-level overlay is materialized into *owned. */
static const cJSON *current_value(const TableState *s, cJSON **owned) {
    *owned = NULL;
    if (s->whole) return s->whole;
    if (s->base && (!s->base->keyed || s->over.n == 0)) return s->base->value;
    *owned = materialize(s);
    return *owned;
}

static void make_whole(TableState *s) {
    if (s->whole) return;
    cJSON *w = materialize(s);
    state_clear_overlay(s);
    s->whole = w;
}

const cJSON *db_get(const Db *db, const char *table, const char *key) {
    const TableState *s = find_state(db, table);
    if (!s) return NULL;
    if (s->whole) return json_get(s->whole, key);
    if (!s->base->keyed) return json_get(s->base->value, key);
    const cJSON *r = hmap_get(&s->over, key);
    return r ? r : hmap_get(&s->base->index, key);
}

cJSON *db_get_mut(Db *db, const char *table, const char *key) {
    TableState *s = find_state(db, table);
    if (!s) return NULL;
    if (!record_level(s)) {
        make_whole(s);
        return json_get(s->whole, key);
    }
    cJSON *r = hmap_get(&s->over, key);
    if (r) return r;
    const cJSON *b = hmap_get(&s->base->index, key);
    if (!b) return NULL;
    r = cJSON_Duplicate(b, 1);
    hmap_put(&s->over, r->string, r);
    return r;
}

static void name_record(cJSON *rec, const char *key) {
    if (rec->string && strcmp(rec->string, key) == 0) return;
    if (!(rec->type & cJSON_StringIsConst)) free(rec->string);
    rec->type &= ~cJSON_StringIsConst;
    rec->string = xstrdup(key);
}

void db_put(Db *db, const char *table, const char *key, cJSON *rec) {
    TableState *s = find_state(db, table);
    if (!s) s = add_state(db, table);
    if (!record_level(s)) {
        make_whole(s);
        json_set(s->whole, key, rec);
        return;
    }
    name_record(rec, key);
    cJSON *old = hmap_put(&s->over, rec->string, rec);
    if (old) {
        /* The added-keys list borrows the old record's key: repoint it. */
        for (int i = 0; i < s->nadded; i++)
            if (s->added[i] == old->string) s->added[i] = rec->string;
        cJSON_Delete(old);
        return;
    }
    if (!hmap_get(&s->base->index, key)) {
        if (s->nadded == s->capadded) {
            s->capadded = s->capadded * 2 + 8;
            s->added = xrealloc(s->added, (size_t)s->capadded * sizeof *s->added);
        }
        s->added[s->nadded++] = rec->string;
    }
}

int db_count(const Db *db, const char *table) {
    const TableState *s = find_state(db, table);
    if (!s) return 0;
    if (s->whole) return cJSON_GetArraySize(s->whole);
    if (!s->base->keyed) return cJSON_GetArraySize(s->base->value);
    return (int)s->base->index.n + s->nadded;
}

void db_iter_init(DbIter *it, const Db *db, const char *table) {
    it->db = db;
    it->table = -1;
    it->pos = 0;
    it->phase = 2;
    const TableState *s = find_state(db, table);
    if (!s) return;
    it->table = (int)(s - db->t);
    it->phase = 0;
    it->node = (s->whole ? s->whole : s->base->value)->child;
}

bool db_iter_next(DbIter *it, const char **key, const cJSON **rec) {
    if (it->phase == 2) return false;
    const TableState *s = &it->db->t[it->table];
    const cJSON *node = NULL;
    if (it->phase == 0) {
        /* Base order (or the whole copy's order), walked by index. */
        node = it->node;
        if (node) {
            it->node = node->next;
            const cJSON *cur = (!s->whole && s->base->keyed) ? hmap_get(&s->over, node->string) : NULL;
            *key = node->string;
            *rec = cur ? cur : node;
            return true;
        }
        it->phase = s->whole ? 2 : 1;
        it->pos = 0;
        if (it->phase == 2) return false;
    }
    if (it->pos < s->nadded) {
        *key = s->added[it->pos++];
        *rec = hmap_get(&s->over, *key);
        return true;
    }
    it->phase = 2;
    return false;
}

const cJSON *db_table(const Db *db, const char *table) {
    TableState *s = find_state(db, table);
    if (!s) return NULL;
    if (s->whole) return s->whole;
    if (!s->base->keyed || s->over.n == 0) return s->base->value;
    /* Logically const: converting to a whole copy does not change content. */
    make_whole(s);
    return s->whole;
}

cJSON *db_table_mut(Db *db, const char *table) {
    TableState *s = find_state(db, table);
    if (!s) s = add_state(db, table);
    make_whole(s);
    return s->whole;
}

void db_merge(Db *db, const cJSON *update) {
    if (!cJSON_IsObject(update)) return;
    for (const cJSON *u = update->child; u; u = u->next) {
        TableState *s = find_state(db, u->string);
        if (s && record_level(s) && cJSON_IsObject(u)) {
            for (const cJSON *r = u->child; r; r = r->next) {
                cJSON *cur = db_get_mut(db, u->string, r->string);
                if (cur && cJSON_IsObject(r)) json_merge(cur, r);
                else db_put(db, u->string, r->string, cJSON_Duplicate(r, 1));
            }
            continue;
        }
        cJSON *whole = db_table_mut(db, u->string);
        if (cJSON_IsObject(whole) && cJSON_IsObject(u)) {
            json_merge(whole, u);
        } else {
            s = find_state(db, u->string);
            cJSON_Delete(s->whole);
            s->whole = cJSON_Duplicate(u, 1);
        }
    }
}

static bool table_equal(const TableState *a, const TableState *b) {
    if (record_level(a) && record_level(b) && a->base == b->base) {
        if ((int)a->base->index.n + a->nadded != (int)b->base->index.n + b->nadded) return false;
        const TableState *sides[2] = {a, b};
        for (int side = 0; side < 2; side++) {
            const HMap *m = &sides[side]->over;
            for (size_t i = 0; i < m->cap; i++) {
                const char *k = m->slots[i].key;
                if (!k) continue;
                const cJSON *x = hmap_get(&a->over, k);
                const cJSON *y = hmap_get(&b->over, k);
                if (!x) x = hmap_get(&a->base->index, k);
                if (!y) y = hmap_get(&b->base->index, k);
                if (!json_equal(x, y, true)) return false;
            }
        }
        return true;
    }
    cJSON *ox = NULL, *oy = NULL;
    const cJSON *x = current_value(a, &ox), *y = current_value(b, &oy);
    bool eq = json_equal(x, y, true);
    cJSON_Delete(ox);
    cJSON_Delete(oy);
    return eq;
}

bool db_equal(const Db *a, const Db *b) {
    for (int i = 0; i < a->nt; i++) {
        const TableState *y = find_state(b, a->t[i].name);
        if (!y || !table_equal(&a->t[i], y)) return false;
    }
    for (int i = 0; i < b->nt; i++)
        if (!find_state(a, b->t[i].name)) return false;
    return true;
}

cJSON *db_to_json(const Db *db) {
    cJSON *out = cJSON_CreateObject();
    for (int i = 0; i < db->nt; i++) cJSON_AddItemToObject(out, db->t[i].name, materialize(&db->t[i]));
    return out;
}
