/* h5util.c — HDF5 helpers for the io modules (see h5util.h). */
#include "io/h5util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"

/* Elements per chunk of compressed 1-D datasets: 256 KB of int32. */
#define H5U_CHUNK 65536

void h5u_quiet_begin(H5uQuiet *q) {
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void h5u_quiet_end(const H5uQuiet *q) {
    H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

hid_t h5u_string_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

/* ------------------------------------------------------------ writing */

int h5u_write(hid_t loc, const char *file, const char *name, hid_t ftype, hid_t mtype, int ndim,
              const int64_t *dims, const void *data, bool compress, char *err, size_t errlen) {
    hsize_t hd[8];
    hsize_t total = 1;
    for (int i = 0; i < ndim; i++) {
        hd[i] = (hsize_t)dims[i];
        total *= hd[i];
    }
    hid_t space = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, hd, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (compress && ndim == 1 && total > 0 && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) {
        hsize_t chunk = total < H5U_CHUNK ? total : H5U_CHUNK;
        H5Pset_chunk(dcpl, 1, &chunk);
        H5Pset_shuffle(dcpl);
        H5Pset_deflate(dcpl, 1);
    }
    hid_t d = H5Dcreate2(loc, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    int rc = -1;
    if (d < 0) {
        snprintf(err, errlen, "%s: cannot create dataset '%s'", file, name);
    } else if (total > 0 && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        snprintf(err, errlen, "%s: cannot write dataset '%s'", file, name);
    } else {
        rc = 0;
    }
    if (d >= 0 && H5Dclose(d) < 0 && rc == 0) {
        snprintf(err, errlen, "%s: cannot write dataset '%s'", file, name);
        rc = -1;
    }
    H5Pclose(dcpl);
    H5Sclose(space);
    return rc;
}

int h5u_write_strings(hid_t loc, const char *file, const char *name, int64_t n, const char *const *s,
                      bool compress, char *err, size_t errlen) {
    /* HDF5 reads a NULL pointer as an empty string but h5py chokes on it. */
    const char **v = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = s[i] ? s[i] : "";
    hid_t t = h5u_string_type();
    int rc = h5u_write(loc, file, name, t, t, 1, &n, v, compress, err, errlen);
    H5Tclose(t);
    free(v);
    return rc;
}

static int attr_write(hid_t obj, const char *file, const char *name, hid_t type, const void *v, char *err,
                      size_t errlen) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a >= 0 && H5Awrite(a, type, v) >= 0) ? 0 : -1;
    if (a >= 0 && H5Aclose(a) < 0) rc = -1;
    H5Sclose(space);
    if (rc != 0) snprintf(err, errlen, "%s: cannot write attribute '%s'", file, name);
    return rc;
}

int h5u_attr_write_i64(hid_t obj, const char *file, const char *name, int64_t v, char *err, size_t errlen) {
    return attr_write(obj, file, name, H5T_NATIVE_INT64, &v, err, errlen);
}

int h5u_attr_write_str(hid_t obj, const char *file, const char *name, const char *s, char *err, size_t errlen) {
    hid_t t = h5u_string_type();
    const char *p = s ? s : "";
    int rc = attr_write(obj, file, name, t, &p, err, errlen);
    H5Tclose(t);
    return rc;
}

/* ------------------------------------------------------------ reading */

static const char *kind_found(hid_t t, char *buf, size_t n) {
    H5T_class_t c = H5Tget_class(t);
    size_t size = H5Tget_size(t);
    if (c == H5T_INTEGER)
        snprintf(buf, n, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", size * 8);
    else if (c == H5T_FLOAT)
        snprintf(buf, n, "float%zu", size * 8);
    else if (c == H5T_STRING)
        snprintf(buf, n, "%s string", H5Tis_variable_str(t) > 0 ? "variable-length" : "fixed-length");
    else
        snprintf(buf, n, "HDF5 type class %d", (int)c);
    return buf;
}

static bool kind_matches(hid_t t, H5uKind kind, size_t size) {
    H5T_class_t c = H5Tget_class(t);
    switch (kind) {
    case H5U_INT:
        return c == H5T_INTEGER && H5Tget_sign(t) == H5T_SGN_2 && H5Tget_size(t) == size;
    case H5U_UINT:
        return c == H5T_INTEGER && H5Tget_sign(t) == H5T_SGN_NONE && H5Tget_size(t) == size;
    case H5U_FLOAT:
        return c == H5T_FLOAT && H5Tget_size(t) == size;
    case H5U_STRING:
        return c == H5T_STRING && H5Tis_variable_str(t) > 0;
    }
    return false;
}

hid_t h5u_open_checked(hid_t loc, const char *file, const char *name, H5uKind kind, size_t size,
                       const char *what_dtype, int ndim, int64_t *dims, char *err, size_t errlen) {
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0) {
        snprintf(err, errlen, "%s: missing dataset '%s'", file, name);
        return -1;
    }
    hid_t d = H5Oopen(loc, name, H5P_DEFAULT);
    if (d < 0 || H5Iget_type(d) != H5I_DATASET) {
        snprintf(err, errlen, "%s: '%s' is not a dataset", file, name);
        if (d >= 0) H5Oclose(d);
        return -1;
    }
    hid_t t = H5Dget_type(d);
    if (!kind_matches(t, kind, size)) {
        char found[64];
        snprintf(err, errlen, "%s: dataset '%s': expected %s, found %s", file, name, what_dtype,
                 kind_found(t, found, sizeof found));
        H5Tclose(t);
        H5Dclose(d);
        return -1;
    }
    H5Tclose(t);
    hid_t space = H5Dget_space(d);
    int nd = H5Sget_simple_extent_ndims(space);
    hsize_t hd[8];
    if (nd != ndim || nd > 8) {
        snprintf(err, errlen, "%s: dataset '%s': expected %d dimension%s, found %d", file, name, ndim,
                 ndim == 1 ? "" : "s", nd);
        H5Sclose(space);
        H5Dclose(d);
        return -1;
    }
    H5Sget_simple_extent_dims(space, hd, NULL);
    for (int i = 0; i < nd; i++) dims[i] = (int64_t)hd[i];
    H5Sclose(space);
    return d;
}

int h5u_read_all(hid_t dset, const char *file, const char *name, hid_t mtype, void *out, char *err,
                 size_t errlen) {
    hid_t space = H5Dget_space(dset);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    H5Sclose(space);
    if (n > 0 && H5Dread(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        snprintf(err, errlen, "%s: cannot read dataset '%s'", file, name);
        return -1;
    }
    return 0;
}

char **h5u_read_strings(hid_t dset, const char *file, const char *name, int64_t n, char *err, size_t errlen) {
    char **raw = xcalloc((size_t)(n > 0 ? n : 1), sizeof *raw);
    hid_t t = h5u_string_type();
    if (h5u_read_all(dset, file, name, t, raw, err, errlen) != 0) {
        H5Tclose(t);
        free(raw);
        return NULL;
    }
    /* copy out of HDF5's allocations so callers free() as usual */
    char **s = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *s);
    for (int64_t i = 0; i < n; i++) s[i] = xstrdup(raw[i] ? raw[i] : "");
    if (n > 0) {
        hid_t space = H5Dget_space(dset);
#if H5_VERSION_GE(1, 12, 0)
        H5Treclaim(t, space, H5P_DEFAULT, raw);
#else
        H5Dvlen_reclaim(t, space, H5P_DEFAULT, raw);
#endif
        H5Sclose(space);
    }
    H5Tclose(t);
    free(raw);
    return s;
}

static hid_t attr_open(hid_t obj, const char *file, const char *objname, const char *name, char *err,
                       size_t errlen) {
    if (H5Aexists(obj, name) <= 0) {
        snprintf(err, errlen, "%s: %s: missing attribute '%s'", file, objname, name);
        return -1;
    }
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) snprintf(err, errlen, "%s: %s: cannot open attribute '%s'", file, objname, name);
    return a;
}

int h5u_attr_read_i64(hid_t obj, const char *file, const char *objname, const char *name, int64_t *out,
                      char *err, size_t errlen) {
    hid_t a = attr_open(obj, file, objname, name, err, errlen);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    hid_t space = H5Aget_space(a);
    int ok = H5Tget_class(t) == H5T_INTEGER && H5Sget_simple_extent_npoints(space) == 1;
    H5Sclose(space);
    if (!ok) {
        char found[64];
        snprintf(err, errlen, "%s: %s: attribute '%s': expected one integer, found %s", file, objname, name,
                 kind_found(t, found, sizeof found));
        H5Tclose(t);
        H5Aclose(a);
        return -1;
    }
    H5Tclose(t);
    int rc = H5Aread(a, H5T_NATIVE_INT64, out) < 0 ? -1 : 0;
    if (rc) snprintf(err, errlen, "%s: %s: cannot read attribute '%s'", file, objname, name);
    H5Aclose(a);
    return rc;
}

char *h5u_attr_read_str(hid_t obj, const char *file, const char *objname, const char *name, char *err,
                        size_t errlen) {
    hid_t a = attr_open(obj, file, objname, name, err, errlen);
    if (a < 0) return NULL;
    hid_t t = H5Aget_type(a);
    hid_t space = H5Aget_space(a);
    int ok = H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0 && H5Sget_simple_extent_npoints(space) == 1;
    char *out = NULL;
    if (!ok) {
        char found[64];
        snprintf(err, errlen, "%s: %s: attribute '%s': expected a variable-length string, found %s", file,
                 objname, name, kind_found(t, found, sizeof found));
    } else {
        hid_t st = h5u_string_type();
        char *raw = NULL;
        if (H5Aread(a, st, &raw) < 0) {
            snprintf(err, errlen, "%s: %s: cannot read attribute '%s'", file, objname, name);
        } else {
            out = xstrdup(raw ? raw : "");
#if H5_VERSION_GE(1, 12, 0)
            H5Treclaim(st, space, H5P_DEFAULT, &raw);
#else
            H5Dvlen_reclaim(st, space, H5P_DEFAULT, &raw);
#endif
        }
        H5Tclose(st);
    }
    H5Sclose(space);
    H5Tclose(t);
    H5Aclose(a);
    return out;
}

/* ------------------------------------------------------------ files */

hid_t h5u_create_mem(const char *path, char *err, size_t errlen) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, 1 << 20, 0);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) snprintf(err, errlen, "%s: cannot create an HDF5 file in memory", path);
    return f;
}

int h5u_save_mem(hid_t f, const char *path, const char *tmp, char *err, size_t errlen) {
    int rc = -1;
    unsigned char *img = NULL;
    ssize_t n = -1;
    if (H5Fflush(f, H5F_SCOPE_LOCAL) >= 0) n = H5Fget_file_image(f, NULL, 0);
    if (n < 0) {
        snprintf(err, errlen, "%s: cannot build the file image", path);
    } else {
        img = xmalloc((size_t)n);
        if (H5Fget_file_image(f, img, (size_t)n) != n) snprintf(err, errlen, "%s: cannot build the file image", path);
        else rc = 0;
    }
    /* nothing is written at close: the core driver has no backing store */
    H5Fclose(f);
    if (rc != 0) {
        free(img);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        free(img);
        return -1;
    }
    size_t done = 0;
    while (done < (size_t)n) {
        ssize_t w = write(fd, img + done, (size_t)n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            snprintf(err, errlen, "%s: cannot write: %s", path, w < 0 ? strerror(errno) : "no progress");
            rc = -1;
            break;
        }
        done += (size_t)w;
    }
    if (close(fd) != 0 && rc == 0) {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        rc = -1;
    }
    free(img);
    return rc;
}

int h5u_reserve(hid_t f, const char *tmp, int64_t bytes, char *err, size_t errlen) {
    void *handle = NULL;
    if (bytes <= 0 || H5Fget_vfd_handle(f, H5P_DEFAULT, &handle) < 0 || !handle) return 0;
    int fd = *(int *)handle; /* the sec2 driver's handle is its descriptor */
    /* mode 0 (not KEEP_SIZE) so that file size limits are checked too; HDF5
     * cuts the file back to its real end when it closes it */
    if (fallocate(fd, 0, 0, (off_t)bytes) == 0) return 0;
    if (errno == EOPNOTSUPP || errno == ENOSYS) return 0;
    snprintf(err, errlen, "%s: cannot reserve %lld bytes: %s", tmp, (long long)bytes, strerror(errno));
    return -1;
}

char *h5u_tmp_name(const char *path) {
    size_t n = strlen(path) + 32;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    return tmp;
}

static int fsync_path(const char *path, int flags) {
    int fd = open(path, flags);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    /* some filesystems refuse fsync on a directory; that is not a failure */
    if (rc != 0 && (flags & O_DIRECTORY) && (errno == EINVAL || errno == EBADF)) rc = 0;
    close(fd);
    return rc;
}

int h5u_publish(const char *tmp, const char *path, char *err, size_t errlen) {
    if (fsync_path(tmp, O_RDONLY) != 0) {
        snprintf(err, errlen, "%s: cannot sync: %s", tmp, strerror(errno));
        return -1;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        return -1;
    }
    char *dir = xstrdup(path);
    fsync_path(dirname(dir), O_RDONLY | O_DIRECTORY);
    free(dir);
    return 0;
}
