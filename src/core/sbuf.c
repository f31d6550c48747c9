#include "core/sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void sbuf_init(SBuf *b) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void sbuf_free(SBuf *b) {
    free(b->data);
    sbuf_init(b);
}

void sbuf_reserve(SBuf *b, size_t extra) {
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void sbuf_putc(SBuf *b, char c) {
    sbuf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void sbuf_put(SBuf *b, const char *s, size_t n) {
    sbuf_reserve(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void sbuf_puts(SBuf *b, const char *s) { sbuf_put(b, s, strlen(s)); }

void sbuf_printf(SBuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    sbuf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *sbuf_take(SBuf *b) {
    if (!b->data) sbuf_reserve(b, 0), b->data[0] = '\0';
    char *p = b->data;
    sbuf_init(b);
    return p;
}
