/* checkpoint.c — HDF5 training checkpoints (see checkpoint.h). */
#include "io/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "core/error.h"
#include "io/h5util.h"

void ckpt_state_free(CkptState *st) {
    free(st->rng);
    free(st->consumed_prompts);
    free(st->config_json);
    memset(st, 0, sizeof *st);
}

void ckpt_path(const char *dir, int64_t step, char *out, size_t outlen) {
    snprintf(out, outlen, "%s/step_%06" PRId64 ".h5", dir, step);
}

/* The step of a checkpoint file name "step_<digits>.h5", or -1. */
static int64_t step_of_name(const char *name) {
    if (strncmp(name, "step_", 5) != 0) return -1;
    const char *p = name + 5;
    int64_t step = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (step > (INT64_MAX - 9) / 10) return -1;
        step = step * 10 + (*p - '0');
    }
    return (digits > 0 && strcmp(p, ".h5") == 0) ? step : -1;
}

static int check_tensors(const CkptTensor *t, int n, const char *what, char *err, size_t errlen) {
    for (int i = 0; i < n; i++) {
        if (!t[i].name || !t[i].name[0] || strchr(t[i].name, '/') || strcmp(t[i].name, ".") == 0) {
            snprintf(err, errlen, "checkpoint: %s tensor %d has an invalid name '%s'", what, i,
                     t[i].name ? t[i].name : "(null)");
            return -1;
        }
        if (t[i].ndim < 1 || t[i].ndim > CKPT_MAX_DIMS) {
            snprintf(err, errlen, "checkpoint: %s tensor '%s': ndim %d not in 1..%d", what, t[i].name, t[i].ndim,
                     CKPT_MAX_DIMS);
            return -1;
        }
        if (!t[i].data) {
            snprintf(err, errlen, "checkpoint: %s tensor '%s' has no data", what, t[i].name);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ saving */

static int write_group(hid_t f, const char *file, const char *group, const CkptTensor *t, int n, char *err,
                       size_t errlen) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t g = H5Gcreate2(f, group, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    if (g < 0) {
        snprintf(err, errlen, "%s: cannot create group '%s'", file, group);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        /* weights do not compress; contiguous keeps reads and writes at disk speed */
        rc = h5u_write(g, file, t[i].name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t[i].ndim, t[i].shape, t[i].data,
                       false, err, errlen);
        if (rc) snprintf(err, errlen, "%s: cannot write tensor '%s/%s'", file, group, t[i].name);
    }
    H5Gclose(g);
    return rc;
}

static int write_state(hid_t f, const char *file, const CkptState *st, char *err, size_t errlen) {
    hid_t g = H5Gcreate2(f, "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) {
        snprintf(err, errlen, "%s: cannot create group 'state'", file);
        return -1;
    }
    int rc = h5u_write(g, file, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, 0, NULL, &st->step, false, err, errlen) ||
             h5u_write(g, file, "adam_step", H5T_STD_I64LE, H5T_NATIVE_INT64, 0, NULL, &st->adam_step, false, err,
                       errlen) ||
             h5u_write(g, file, "data_cursor", H5T_STD_I64LE, H5T_NATIVE_INT64, 0, NULL, &st->data_cursor, false,
                       err, errlen) ||
             h5u_write(g, file, "rng", H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, &st->n_rng, st->rng, false, err,
                       errlen) ||
             h5u_write(g, file, "consumed_prompts", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &st->n_consumed,
                       st->consumed_prompts, true, err, errlen);
    H5Gclose(g);
    return rc ? -1 : 0;
}

static int write_file(const char *tmp, const char *path, const CkptState *st, const CkptTensor *model,
                      const CkptTensor *m, const CkptTensor *v, int n, char *err, size_t errlen) {
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        snprintf(err, errlen, "%s: cannot create", tmp);
        return -1;
    }
    /* room for everything before HDF5 writes a byte (see h5util.h): the
     * tensors, the state, and generous room for metadata */
    int64_t bytes = (1 << 20) + 8 * (st->n_rng + st->n_consumed) +
                    (int64_t)(st->config_json ? strlen(st->config_json) : 0);
    for (int i = 0; i < n; i++) {
        int64_t numel = 1;
        for (int j = 0; j < model[i].ndim; j++) numel *= model[i].shape[j];
        bytes += (m ? 3 : 1) * (4 * numel + 4096);
    }
    if (h5u_reserve(f, tmp, bytes, err, errlen) != 0) {
        H5Fclose(f); /* nothing written yet: the close only writes a superblock */
        return -1;
    }
    int rc = h5u_attr_write_i64(f, path, "format_version", CKPT_FORMAT_VERSION, err, errlen) ||
             h5u_attr_write_i64(f, path, "step", st->step, err, errlen) ||
             h5u_attr_write_str(f, path, "config", st->config_json, err, errlen) ||
             write_state(f, path, st, err, errlen) || write_group(f, path, "model", model, n, err, errlen) ||
             (m && write_group(f, path, "optim/m", m, n, err, errlen)) ||
             (v && write_group(f, path, "optim/v", v, n, err, errlen));
    /* The reservation made the file longer than HDF5's end of allocation,
     * which HDF5 1.10 leaves in place at close: note where the file ends
     * once all metadata is flushed and cut it there after the close. */
    hsize_t end = 0;
    if (!rc && (H5Fflush(f, H5F_SCOPE_LOCAL) < 0 || H5Fget_filesize(f, &end) < 0)) {
        snprintf(err, errlen, "%s: cannot write (flush failed)", path);
        rc = 1;
    }
    if (H5Fclose(f) < 0 && !rc) {
        snprintf(err, errlen, "%s: cannot write (close failed)", path);
        rc = 1;
    }
    if (!rc && end > 0 && truncate(tmp, (off_t)end) != 0) {
        snprintf(err, errlen, "%s: cannot truncate: %s", tmp, strerror(errno));
        rc = 1;
    }
    return rc ? -1 : 0;
}

/* Delete step_*.h5 files with a step <= newest until keep remain. */
static void prune(const char *dir, int64_t newest, int keep) {
    DIR *d = opendir(dir);
    if (!d) return;
    int64_t *steps = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int64_t s = step_of_name(e->d_name);
        if (s < 0 || s > newest) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            steps = xrealloc(steps, (size_t)cap * sizeof *steps);
        }
        steps[n++] = s;
    }
    closedir(d);
    /* n is small: drop the smallest step until keep remain */
    while (n > keep) {
        int lo = 0;
        for (int i = 1; i < n; i++)
            if (steps[i] < steps[lo]) lo = i;
        char path[4096];
        ckpt_path(dir, steps[lo], path, sizeof path);
        unlink(path);
        steps[lo] = steps[--n];
    }
    free(steps);
}

int ckpt_save(const char *dir, const CkptState *st, const CkptTensor *model, const CkptTensor *m,
              const CkptTensor *v, int n, int keep_last, char *err, size_t errlen) {
    if ((m == NULL) != (v == NULL)) {
        snprintf(err, errlen, "checkpoint: both AdamW moments or neither");
        return -1;
    }
    if (check_tensors(model, n, "model", err, errlen) || (m && check_tensors(m, n, "optim/m", err, errlen)) ||
        (v && check_tensors(v, n, "optim/v", err, errlen)))
        return -1;
    if ((st->n_rng && !st->rng) || (st->n_consumed && !st->consumed_prompts) || st->n_rng < 0 ||
        st->n_consumed < 0) {
        snprintf(err, errlen, "checkpoint: state arrays missing");
        return -1;
    }
    char path[4096];
    ckpt_path(dir, st->step, path, sizeof path);
    char *tmp = h5u_tmp_name(path);
    tmpfile_register(tmp);
    H5uQuiet q;
    h5u_quiet_begin(&q);
    int rc = write_file(tmp, path, st, model, m, v, n, err, errlen);
    h5u_quiet_end(&q);
    if (rc == 0) rc = h5u_publish(tmp, path, err, errlen);
    if (rc != 0) unlink(tmp);
    tmpfile_unregister(tmp);
    free(tmp);
    if (rc != 0) return -1;

    /* the new checkpoint is durable: point the marker at it */
    char marker[4096], line[64];
    snprintf(marker, sizeof marker, "%s/%s", dir, CKPT_LATEST);
    snprintf(line, sizeof line, "step_%06" PRId64 ".h5\n", st->step);
    if (file_write_atomic(marker, line, strlen(line), err, errlen) != 0) return -1;
    if (keep_last > 0) prune(dir, st->step, keep_last);
    return 0;
}

int ckpt_latest(const char *dir, char *out, size_t outlen, char *err, size_t errlen) {
    char marker[4096];
    snprintf(marker, sizeof marker, "%s/%s", dir, CKPT_LATEST);
    size_t len;
    char *text = file_read_all(marker, &len, err, errlen);
    if (!text) return -1;
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ')) text[--len] = '\0';
    int rc = -1;
    if (step_of_name(text) < 0) {
        snprintf(err, errlen, "%s: expected a checkpoint file name like step_000010.h5, found '%.64s'", marker, text);
    } else {
        snprintf(out, outlen, "%s/%s", dir, text);
        if (access(out, R_OK) != 0)
            snprintf(err, errlen, "%s: names %s, which cannot be read: %s", marker, out, strerror(errno));
        else
            rc = 0;
    }
    free(text);
    return rc;
}

/* ------------------------------------------------------------ loading */

static int read_tensor(hid_t f, const char *file, const char *group, CkptTensor *t, char *err, size_t errlen) {
    char where[512];
    snprintf(where, sizeof where, "%s/%s", group, t->name);
    int64_t dims[8];
    hid_t d = h5u_open_checked(f, file, where, H5U_FLOAT, 4, "float32", t->ndim, dims, err, errlen);
    if (d < 0) return -1;
    int rc = 0;
    for (int i = 0; i < t->ndim && rc == 0; i++) {
        if (dims[i] != t->shape[i]) {
            char want[128] = "", got[128] = "";
            for (int j = 0; j < t->ndim; j++) {
                size_t a = strlen(want), b = strlen(got);
                snprintf(want + a, sizeof want - a, "%s%" PRId64, j ? ", " : "", t->shape[j]);
                snprintf(got + b, sizeof got - b, "%s%" PRId64, j ? ", " : "", dims[j]);
            }
            snprintf(err, errlen, "%s: dataset '%s': expected shape (%s), found (%s)", file, where, want, got);
            rc = -1;
        }
    }
    if (rc == 0) rc = h5u_read_all(d, file, where, H5T_NATIVE_FLOAT, t->data, err, errlen);
    H5Dclose(d);
    return rc;
}

static int read_group(hid_t f, const char *file, const char *group, CkptTensor *t, int n, char *err,
                      size_t errlen) {
    if (H5Lexists(f, group, H5P_DEFAULT) <= 0) {
        snprintf(err, errlen, "%s: missing group '%s'", file, group);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (read_tensor(f, file, group, &t[i], err, errlen) != 0) return -1;
    /* all n names are there, so any further link is one the caller did not expect */
    hid_t g = H5Gopen2(f, group, H5P_DEFAULT);
    H5G_info_t info;
    int rc = 0;
    if (g < 0 || H5Gget_info(g, &info) < 0) {
        snprintf(err, errlen, "%s: '%s' is not a group", file, group);
        rc = -1;
    } else if (info.nlinks > (hsize_t)n) {
        for (hsize_t i = 0; i < info.nlinks && rc == 0; i++) {
            char name[256];
            if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT) < 0) continue;
            int known = 0;
            for (int j = 0; j < n && !known; j++) known = strcmp(t[j].name, name) == 0;
            if (!known) {
                snprintf(err, errlen, "%s: unexpected dataset '%s/%s' (not among the %d expected tensors)", file,
                         group, name, n);
                rc = -1;
            }
        }
    }
    if (g >= 0) H5Gclose(g);
    return rc;
}

static int read_scalar(hid_t g, const char *file, const char *name, int64_t *out, char *err, size_t errlen) {
    int64_t dims[8];
    char full[64];
    snprintf(full, sizeof full, "state/%s", name);
    hid_t d = h5u_open_checked(g, file, full, H5U_INT, 8, "int64", 0, dims, err, errlen);
    if (d < 0) return -1;
    int rc = h5u_read_all(d, file, full, H5T_NATIVE_INT64, out, err, errlen);
    H5Dclose(d);
    return rc;
}

static void *read_array(hid_t f, const char *file, const char *name, H5uKind kind, const char *dtype, hid_t mtype,
                        int64_t *n, char *err, size_t errlen) {
    int64_t dims[8];
    hid_t d = h5u_open_checked(f, file, name, kind, 8, dtype, 1, dims, err, errlen);
    if (d < 0) return NULL;
    void *out = xmalloc((size_t)(dims[0] > 0 ? dims[0] : 1) * 8);
    if (h5u_read_all(d, file, name, mtype, out, err, errlen) != 0) {
        free(out);
        out = NULL;
    }
    *n = dims[0];
    H5Dclose(d);
    return out;
}

static int read_state(hid_t f, const char *file, CkptState *st, char *err, size_t errlen) {
    int64_t version;
    if (h5u_attr_read_i64(f, file, "/", "format_version", &version, err, errlen)) return -1;
    if (version != CKPT_FORMAT_VERSION) {
        snprintf(err, errlen, "%s: format_version %" PRId64 " is not supported (expected %d)", file, version,
                 CKPT_FORMAT_VERSION);
        return -1;
    }
    st->config_json = h5u_attr_read_str(f, file, "/", "config", err, errlen);
    if (!st->config_json) return -1;
    if (read_scalar(f, file, "step", &st->step, err, errlen) ||
        read_scalar(f, file, "adam_step", &st->adam_step, err, errlen) ||
        read_scalar(f, file, "data_cursor", &st->data_cursor, err, errlen))
        return -1;
    st->rng = read_array(f, file, "state/rng", H5U_UINT, "uint64", H5T_NATIVE_UINT64, &st->n_rng, err, errlen);
    if (!st->rng) return -1;
    st->consumed_prompts = read_array(f, file, "state/consumed_prompts", H5U_INT, "int64", H5T_NATIVE_INT64,
                                      &st->n_consumed, err, errlen);
    return st->consumed_prompts ? 0 : -1;
}

int ckpt_load(const char *path, CkptState *st, CkptTensor *model, CkptTensor *m, CkptTensor *v, int n,
              char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    if (check_tensors(model, n, "model", err, errlen) || (m && check_tensors(m, n, "optim/m", err, errlen)) ||
        (v && check_tensors(v, n, "optim/v", err, errlen)))
        return -1;
    if (access(path, R_OK) != 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    H5uQuiet q;
    h5u_quiet_begin(&q);
    int rc = -1;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        snprintf(err, errlen, "%s: not an HDF5 file", path);
    } else {
        if (H5Lexists(f, "state", H5P_DEFAULT) <= 0)
            snprintf(err, errlen, "%s: missing group '/state'", path);
        else
            rc = read_state(f, path, st, err, errlen);
        if (rc == 0) rc = read_group(f, path, "model", model, n, err, errlen);
        if (rc == 0 && m) rc = read_group(f, path, "optim/m", m, n, err, errlen);
        if (rc == 0 && v) rc = read_group(f, path, "optim/v", v, n, err, errlen);
        H5Fclose(f);
    }
    h5u_quiet_end(&q);
    if (rc != 0) ckpt_state_free(st);
    return rc;
}

char *ckpt_read_config(const char *path, char *err, size_t errlen) {
    if (access(path, R_OK) != 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    H5uQuiet q;
    h5u_quiet_begin(&q);
    char *config = NULL;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        snprintf(err, errlen, "%s: not an HDF5 file", path);
    } else {
        config = h5u_attr_read_str(f, path, "/", "config", err, errlen);
        H5Fclose(f);
    }
    h5u_quiet_end(&q);
    return config;
}

int ckpt_resolve(const char *path, char *out, size_t outlen, char *err, size_t errlen) {
    struct stat sb;
    char e[2048], sub[2048];
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(out, outlen, "%s", path);
        return 0;
    }
    if (ckpt_latest(path, out, outlen, e, sizeof e) == 0) return 0;
    snprintf(sub, sizeof sub, "%s/ckpt", path);
    if (ckpt_latest(sub, out, outlen, e, sizeof e) == 0) return 0;
    snprintf(err, errlen, "%s: no checkpoint there (expected a step_NNNNNN.h5 file, a ckpt directory with a '%s' "
             "marker, or a run directory)", path, CKPT_LATEST);
    return -1;
}
