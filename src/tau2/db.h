/* db.h — copy-on-write domain databases.
 *
 * A τ²-bench DB is a JSON object of tables (airline: flights, users,
 * reservations). The base DB is parsed once per process and never changes;
 * an episode's Db records only what the episode changed, at record
 * granularity, so creating one is O(1) even for the 7 MB airline DB, and two
 * Dbs over the same base compare in time proportional to their changes.
 *
 * A table is either keyed (a JSON object of records, addressed by key) or
 * anything else (a list, a scalar, a small object); for the latter use
 * db_table / db_table_mut, which copy the whole table on first write.
 * Iteration follows Python dict order: base keys first, then keys added.
 */
#ifndef TAU2_DB_H
#define TAU2_DB_H

#include <stdbool.h>

#include <cJSON.h>

typedef struct DbBase DbBase;
typedef struct Db Db;

/* Take ownership of root (a JSON object) and index its keyed tables. */
DbBase *dbbase_new(cJSON *root);
void dbbase_free(DbBase *base);
const cJSON *dbbase_root(const DbBase *base);

Db *db_new(const DbBase *base);
Db *db_clone(const Db *db);
void db_free(Db *db);

/* Record access in keyed tables. db_get returns NULL when the table or the
 * key is absent. db_get_mut copies the record into the overlay on first
 * write and returns the episode's own copy. */
const cJSON *db_get(const Db *db, const char *table, const char *key);
cJSON *db_get_mut(Db *db, const char *table, const char *key);
/* Insert a new record or replace one; takes ownership of rec. */
void db_put(Db *db, const char *table, const char *key, cJSON *rec);
int db_count(const Db *db, const char *table);

typedef struct {
    const Db *db;
    int table;
    const cJSON *node; /* next base (or whole-copy) member */
    int pos;           /* position among added keys */
    int phase;         /* 0 base keys, 1 added keys, 2 done */
} DbIter;
void db_iter_init(DbIter *it, const Db *db, const char *table);
/* Next record in dict order; false when done. */
bool db_iter_next(DbIter *it, const char **key, const cJSON **rec);

/* Whole-table access. db_table returns the current value (NULL if absent);
 * db_table_mut returns the episode's own copy (created on first call,
 * replacing any record-level overlay of that table). A table absent from
 * the base is created as an empty object. */
const cJSON *db_table(const Db *db, const char *table);
cJSON *db_table_mut(Db *db, const char *table);

/* initialization_data: addict deep-update of the DB with `update`. */
void db_merge(Db *db, const cJSON *update);
/* Same content? (json.dumps(sort_keys=True) equality: ints and floats differ). */
bool db_equal(const Db *a, const Db *b);
/* The whole DB as a new JSON tree (caller frees). */
cJSON *db_to_json(const Db *db);

#endif
