/* safetensors.h — read and write Hugging Face safetensors files.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON header
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]},
 *  ..., "__metadata__": {"k": "v"}}, then the data section; offsets are
 * relative to the data section's start.
 *
 * Reading validates strictly before any tensor is used: header length within
 * the file, header is a JSON object, every entry has a known dtype, a shape of
 * non-negative ints, offsets inside the data section with end - begin equal to
 * the shape's element count times the dtype size, and no two tensors overlap.
 * A broken file is an error naming the file, the tensor and the problem.
 *
 * A model directory holds either model.safetensors or a sharded set named by
 * model.safetensors.index.json ({"weight_map": {"tensor": "file"}}); st_open_dir
 * opens either and looks tensors up across shards.
 *
 * Files are mapped read-only (mmap), so opening a 8 GB checkpoint costs
 * nothing until tensors are converted.
 */
#ifndef TAU2_MODEL_SAFETENSORS_H
#define TAU2_MODEL_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I8, ST_U8, ST_BOOL } StDtype;

#define ST_MAX_DIMS 8

typedef struct {
    const char *name; /* owned by the file */
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const void *data; /* inside the mapping; may be unaligned */
    size_t nbytes;
} StTensor;

typedef struct StFile StFile; /* one mapped .safetensors file */
typedef struct StDir StDir;   /* a model directory: one file or an index of shards */

/* "F32", "BF16", ...; st_dtype_parse returns -1 for an unknown name. */
const char *st_dtype_name(StDtype dt);
int st_dtype_parse(const char *name);
size_t st_dtype_size(StDtype dt);

/* Open and validate one file. NULL with err filled (path, tensor, problem). */
StFile *st_open(const char *path, char *err, size_t errlen);
/* Parse a safetensors image already in memory (data must outlive the file);
 * name is used in messages. NULL with err filled, as st_open. */
StFile *st_open_buffer(const void *data, size_t len, const char *name, char *err, size_t errlen);
void st_close(StFile *f);
int st_count(const StFile *f);
const StTensor *st_tensor_at(const StFile *f, int i); /* header order */
const StTensor *st_find(const StFile *f, const char *name);
/* The "__metadata__" value for key, or NULL. */
const char *st_metadata(const StFile *f, const char *key);

/* Open a model directory (model.safetensors, or model.safetensors.index.json
 * and its shards). NULL with err filled. */
StDir *st_open_dir(const char *dir, char *err, size_t errlen);
void st_close_dir(StDir *d);
const StTensor *st_dir_find(const StDir *d, const char *name);
/* All tensors across shards, in index order (for unused-tensor checks). */
int st_dir_count(const StDir *d);
const StTensor *st_dir_tensor_at(const StDir *d, int i);

/* Convert a tensor's elements (any float dtype) to fp32: numel floats into out.
 * Returns 0, or -1 with err filled when the dtype is not a float type. */
int st_to_f32(const StTensor *t, float *out, char *err, size_t errlen);

/* fp32 <-> bf16 (round to nearest even, NaN kept quiet) and fp16. */
uint16_t st_f32_to_bf16(float x);
float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float x);
float st_f16_to_f32(uint16_t h);

/* Writing: collect tensors, then write atomically (temp name, fsync, rename).
 * Data is converted from fp32 to the writer's dtype (F32, BF16 or F16). */
typedef struct StWriter StWriter;
StWriter *st_writer_new(StDtype dtype);
/* Add a tensor; data (numel fp32 values) is copied/converted at add time. */
void st_writer_add(StWriter *w, const char *name, const int64_t *shape, int ndim, const float *data);
void st_writer_metadata(StWriter *w, const char *key, const char *value);
/* Header entries sorted by name, data in the same order, 8-byte aligned
 * header as the reference writer pads it. Returns 0, or -1 with err. */
int st_writer_save(StWriter *w, const char *path, char *err, size_t errlen);
void st_writer_free(StWriter *w);

#endif
