/* h5util.h — HDF5 helpers shared by the io modules (rollout buffers,
 * checkpoints): typed datasets written and read back with their type and
 * shape checked, variable-length UTF-8 strings, scalar attributes, and the
 * temp-file-then-rename publication of a finished file.
 *
 * Every reading helper checks what it reads against what the caller
 * expects and, on a mismatch, fills err with "<file>: <object>: <what was
 * expected, what was found>" and returns -1 (or NULL). HDF5's own error-
 * stack printing is switched off between h5u_quiet_begin and
 * h5u_quiet_end; the messages here replace it.
 *
 * Files are opened with the default (serial) property lists: one rank
 * writes each file. The linked library is parallel HDF5; that is fine.
 */
#ifndef TAU2_IO_H5UTIL_H
#define TAU2_IO_H5UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hdf5.h>

/* Saved HDF5 error-printing state. */
typedef struct {
    H5E_auto2_t func;
    void *data;
} H5uQuiet;
void h5u_quiet_begin(H5uQuiet *q);
void h5u_quiet_end(const H5uQuiet *q);

/* A variable-length UTF-8 string type (close with H5Tclose). */
hid_t h5u_string_type(void);

/* ---- writing (0, or -1 with err naming file and object) ---- */

/* A dataset of ndim dims (0: a scalar) of file type ftype from memory of
 * type mtype. compress: chunked, shuffle + gzip level 1 (1-D only; empty or
 * uncompressible-by-filter datasets are written contiguous). */
int h5u_write(hid_t loc, const char *file, const char *name, hid_t ftype, hid_t mtype, int ndim,
              const int64_t *dims, const void *data, bool compress, char *err, size_t errlen);
/* n strings (NULL is written as ""). */
int h5u_write_strings(hid_t loc, const char *file, const char *name, int64_t n, const char *const *s,
                      bool compress, char *err, size_t errlen);
int h5u_attr_write_i64(hid_t obj, const char *file, const char *name, int64_t v, char *err, size_t errlen);
int h5u_attr_write_str(hid_t obj, const char *file, const char *name, const char *s, char *err, size_t errlen);

/* ---- reading ---- */

typedef enum { H5U_INT, H5U_UINT, H5U_FLOAT, H5U_STRING } H5uKind;

/* Open dataset name under loc and check its kind, element size (ignored for
 * strings) and rank; its dims go to dims (up to 8). Returns the dataset id
 * (close it), or -1 with err. what_dtype is how the dtype is named in
 * messages ("int32", "float32", "string", ...). */
hid_t h5u_open_checked(hid_t loc, const char *file, const char *name, H5uKind kind, size_t size,
                       const char *what_dtype, int ndim, int64_t *dims, char *err, size_t errlen);
/* Read all of a dataset as mtype (0, or -1 with err). */
int h5u_read_all(hid_t dset, const char *file, const char *name, hid_t mtype, void *out, char *err,
                 size_t errlen);
/* Read a 1-D string dataset of n elements into n new xstrdup'd strings. */
char **h5u_read_strings(hid_t dset, const char *file, const char *name, int64_t n, char *err, size_t errlen);
int h5u_attr_read_i64(hid_t obj, const char *file, const char *objname, const char *name, int64_t *out,
                      char *err, size_t errlen);
/* A new string (free()), or NULL with err. */
char *h5u_attr_read_str(hid_t obj, const char *file, const char *objname, const char *name, char *err,
                        size_t errlen);

/* ---- files ---- */

/* HDF5 1.10 cannot survive a failed H5Fclose: the file id stays behind
 * half-closed and the library crashes at exit when it tries again. So no
 * write error may reach H5Fclose. Two ways out, one per file size:
 *
 * h5u_create_mem makes a file in memory (the core driver, no backing
 * store); h5u_save_mem closes it after copying its image to disk with plain
 * write() calls, whose errors are ordinary. For small files (rollout
 * buffers). -1 from h5u_create_mem with err on failure.
 *
 * h5u_reserve asks the filesystem for bytes of space for an open file
 * (fallocate) before HDF5 writes into it, so a full disk, quota or file
 * size limit shows up here rather than inside HDF5. Filesystems without
 * fallocate skip the check. For large files (checkpoints). */
hid_t h5u_create_mem(const char *path, char *err, size_t errlen);
int h5u_save_mem(hid_t f, const char *path, const char *tmp, char *err, size_t errlen);
int h5u_reserve(hid_t f, const char *tmp, int64_t bytes, char *err, size_t errlen);

/* "<path>.tmp.<pid>", new string. */
char *h5u_tmp_name(const char *path);
/* fsync a closed file, rename it over path, fsync the directory.
 * 0, or -1 with err (the temp file is left to the caller to remove). */
int h5u_publish(const char *tmp, const char *path, char *err, size_t errlen);

#endif
