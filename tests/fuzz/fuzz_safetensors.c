/* fuzz_safetensors.c — libFuzzer target for the safetensors reader.
 *
 * Any input must either open as a file whose every tensor lies inside the
 * input and converts (float dtypes) without touching memory outside it, or
 * fail with a message that names the file; never crash or leak.
 * Seeds: tests/fuzz/corpus/safetensors plus tests/fixtures/safetensors.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"

/* Parse from memory; defined in src/model/safetensors.c. */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[1024];
    /* A private copy, so reads past the input's end are caught by ASan. */
    uint8_t *copy = malloc(size ? size : 1);
    if (size) memcpy(copy, data, size);
    StFile *f = st_open_buffer(copy, size, "fuzz.safetensors", err, sizeof err);
    if (!f) {
        if (strncmp(err, "fuzz.safetensors:", 17) != 0) {
            fprintf(stderr, "error message without the file name: %s\n", err);
            abort();
        }
        free(copy);
        return 0;
    }
    for (int i = 0; i < st_count(f); i++) {
        const StTensor *t = st_tensor_at(f, i);
        const uint8_t *p = t->data;
        if (st_find(f, t->name) != t) abort();
        if (p < copy || p + t->nbytes > copy + size) abort();
        if ((size_t)t->numel * st_dtype_size(t->dtype) != t->nbytes) abort();
        float *out = malloc(((size_t)t->numel + 1) * sizeof *out);
        int rc = st_to_f32(t, out, err, sizeof err);
        int is_float = t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16 || t->dtype == ST_F64;
        if ((rc == 0) != is_float) abort();
        free(out);
    }
    (void)st_metadata(f, "format");
    st_close(f);
    free(copy);
    return 0;
}
