/* db_schema.h — the shape of a domain's data files, checked once at load.
 *
 * τ²-bench reads each domain's db.json / db.toml into pydantic models, which
 * refuse a file whose fields are missing or of the wrong type. The tools here
 * read the same data as plain JSON, so without a check an altered file shows
 * up much later, as a task that fails or passes for no visible reason. Each
 * domain describes its models with the tables below (field for field what
 * its data_model.py declares), and domain_load checks the files against them
 * before any task runs, naming the file, the field's path and what it expected.
 *
 * The types are checked strictly: a field declared int must hold a number
 * (5.0 is taken, as pydantic's lax mode takes it), not the string "5", since
 * the tools read the values as they are and do not coerce them.
 */
#ifndef TAU2_DB_SCHEMA_H
#define TAU2_DB_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

typedef enum {
    DB_STR,
    DB_INT,      /* a whole number */
    DB_FLOAT,    /* any number */
    DB_BOOL,
    DB_DATE,     /* a string that starts YYYY-MM-DD (datetime.date) */
    DB_DATETIME, /* the same check (datetime.datetime) */
    DB_ENUM,     /* a string among `choices` */
    DB_MODEL,    /* an object with `model`'s fields */
    DB_UNION,    /* an object of one of `variants`, picked by its field `tag` */
    DB_LIST,     /* a list of `item` */
    DB_DICT,     /* an object of `item` values, its keys among `choices` when given */
} DbKind;

typedef struct DbType DbType;
typedef struct DbModel DbModel;

struct DbType {
    DbKind kind;
    const DbType *item;             /* DB_LIST, DB_DICT */
    const DbModel *model;           /* DB_MODEL */
    const char *const *choices;     /* DB_ENUM's values, DB_DICT's keys (NULL: any); NULL-terminated */
    const char *tag;                /* DB_UNION: the field whose value picks the variant */
    const DbModel *const *variants; /* DB_UNION, NULL-terminated: each has `tag` as a one-value DB_ENUM */
};

typedef struct {
    const char *name;
    const DbType *type;
    const char *dflt; /* JSON text of the default; NULL when the field is required */
    bool nullable;    /* Optional[...]: null is taken */
} DbField;

struct DbModel {
    const char *name;      /* the pydantic class, for messages */
    const DbField *fields; /* in class order, ending with {NULL} */
    bool closed;           /* BaseModelNoExtra: a key that is no field is refused */
};

/* Types many models share. */
extern const DbType DB_T_STR;
extern const DbType DB_T_INT;
extern const DbType DB_T_FLOAT;
extern const DbType DB_T_BOOL;
extern const DbType DB_T_DATE;
extern const DbType DB_T_DATETIME;
extern const DbType DB_T_LIST_STR;     /* List[str] */
extern const DbType DB_T_DICT_STR_STR; /* Dict[str, str] */

/* Check a loaded data file against its top-level model. 0 when it fits;
 * otherwise -1 with "<file>: <path>: <what was expected>" in err, for the
 * first misfit in document order. An empty top-level object is refused
 * too, even where every field has a default: such a file is a mistake. */
int db_schema_check(const cJSON *root, const DbModel *model, const char *file, char *err, size_t errlen);

/* Check one value against a type, its messages' paths starting at `path`
 * ("" for none): for parts of a data set checked apart from the whole, as
 * the records a task's initialization_data merges into a DB. */
int db_schema_check_value(const cJSON *v, const DbType *type, const char *file, const char *path, char *err,
                          size_t errlen);

/* Whether the NULL-terminated `choices` hold `s` (false for s NULL). */
bool db_choices_have(const char *const *choices, const char *s);

/* The model's field called `name`, or NULL. */
const DbField *db_model_field(const DbModel *m, const char *name);

/* The model's field names, comma-separated in class order, for messages. */
void db_model_field_names(const DbModel *m, char *out, size_t outlen);

#endif
