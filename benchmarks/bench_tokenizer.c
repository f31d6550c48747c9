/* bench_tokenizer.c — encode throughput of the C tokenizer, one core.
 *
 *   bench_tokenizer [--tokenizer PATH] [--seconds S] [NAME=FILE[,FILE...] ...]
 *
 * Without NAME=FILE arguments it measures two corpora from the tau2-bench
 * data ($TAU2_DATA_DIR, else ../shared/tau2-data): "english" (every policy
 * .md) and "json" (the airline and retail db.json, the records tools return).
 * Each corpus is encoded as one text, repeatedly for at least S seconds (the
 * word cache is warm after the first pass, as Hugging Face's is); the first
 * pass is also reported on its own ("cold"). Times are process CPU time, so
 * the figures are MB per CPU-second of one core. One line per corpus:
 *   RESULT name bytes tokens cold_mb_s warm_mb_s
 */
#include "core/error.h"
#include "core/sbuf.h"
#include "text/tokenizer.h"

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Process CPU time: throughput per core, steady on a busy machine. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void append_file(SBuf *b, const char *path) {
    char err[512];
    size_t len;
    char *s = file_read_all(path, &len, err, sizeof err);
    if (!s) die_input("%s", err);
    sbuf_put(b, s, len);
    free(s);
}

static void bench(Tokenizer *tok, const char *name, const SBuf *text, double seconds) {
    TokIds ids = {0};
    double t0 = now_s();
    tok_encode_append(tok, text->data, text->len, TOK_ENCODE_SPECIAL, &ids);
    double cold = now_s() - t0;
    size_t ntok = ids.n, reps = 0;
    double start = now_s(), el = 0;
    do {
        ids.n = 0;
        tok_encode_append(tok, text->data, text->len, TOK_ENCODE_SPECIAL, &ids);
        reps++;
        el = now_s() - start;
    } while (el < seconds || reps < 3);
    double mb = (double)text->len / 1e6;
    printf("%-8s %9zu bytes %8zu tokens  %.2f bytes/token  cold %7.2f MB/s  warm %7.2f MB/s per core\n", name,
           text->len, ntok, (double)text->len / (double)(ntok ? ntok : 1), mb / cold, mb * (double)reps / el);
    printf("RESULT %s %zu %zu %.4f %.4f\n", name, text->len, ntok, mb / cold, mb * (double)reps / el);
    tok_ids_free(&ids);
}

static void glob_append(SBuf *b, const char *pattern) {
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0) die_input("no files match %s", pattern);
    for (size_t i = 0; i < g.gl_pathc; i++) append_file(b, g.gl_pathv[i]);
    globfree(&g);
}

int main(int argc, char **argv) {
    const char *data = getenv("TAU2_DATA_DIR");
    if (!data) data = "../shared/tau2-data";
    char tok_default[4096];
    snprintf(tok_default, sizeof tok_default, "%s/../qwen3-tokenizer/tokenizer.json", data);
    const char *tok_path = tok_default;
    double seconds = 2.0;
    int first_corpus = argc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc) tok_path = argv[++i];
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) seconds = atof(argv[++i]);
        else if (strchr(argv[i], '=')) {
            first_corpus = i;
            break;
        } else die_input("usage: bench_tokenizer [--tokenizer PATH] [--seconds S] [NAME=FILE[,FILE...] ...]");
    }
    char err[512];
    double t0 = now_s();
    Tokenizer *tok = tok_load(tok_path, err, sizeof err);
    if (!tok) die_input("%s", err);
    printf("loaded %s in %.3f s (vocabulary %d)\n", tok_path, now_s() - t0, tok_vocab_size(tok));

    if (first_corpus == argc) {
        char pat[4096];
        SBuf en, js;
        sbuf_init(&en);
        sbuf_init(&js);
        snprintf(pat, sizeof pat, "%s/domains/*/*.md", data);
        glob_append(&en, pat);
        snprintf(pat, sizeof pat, "%s/domains/airline/db.json", data);
        append_file(&js, pat);
        snprintf(pat, sizeof pat, "%s/domains/retail/db.json", data);
        append_file(&js, pat);
        bench(tok, "english", &en, seconds);
        bench(tok, "json", &js, seconds);
        sbuf_free(&en);
        sbuf_free(&js);
    }
    for (int i = first_corpus; i < argc; i++) {
        char *spec = xstrdup(argv[i]);
        char *eq = strchr(spec, '=');
        if (!eq) die_input("expected NAME=FILE[,FILE...], got %s", argv[i]);
        *eq = 0;
        SBuf text;
        sbuf_init(&text);
        for (char *f = strtok(eq + 1, ","); f; f = strtok(NULL, ",")) append_file(&text, f);
        bench(tok, spec, &text, seconds);
        sbuf_free(&text);
        free(spec);
    }
    tok_free(tok);
    return 0;
}
