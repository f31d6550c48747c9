/* sbuf.h — a growable byte string. The owner frees it with sbuf_free. */
#ifndef TAU2_CORE_SBUF_H
#define TAU2_CORE_SBUF_H

#include <stddef.h>

typedef struct {
    char *data; /* always NUL-terminated once anything is appended */
    size_t len;
    size_t cap;
} SBuf;

void sbuf_init(SBuf *b);
void sbuf_free(SBuf *b);
void sbuf_reserve(SBuf *b, size_t extra);
void sbuf_putc(SBuf *b, char c);
void sbuf_put(SBuf *b, const char *s, size_t n);
void sbuf_puts(SBuf *b, const char *s);
void sbuf_printf(SBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hand the buffer to the caller (who frees it) and reset b. Never NULL. */
char *sbuf_take(SBuf *b);

#endif
