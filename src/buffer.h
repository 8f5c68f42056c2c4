/* A growable byte buffer. Plain C, no Lua: used from libcurl callbacks. */
#ifndef GHL_BUFFER_H
#define GHL_BUFFER_H

#include <stddef.h>

typedef struct ghl_buffer {
    char *data;
    size_t len;
    size_t cap;
    int borrowed; /* data is storage of the caller's (ghl_buffer_borrow), never freed here */
} ghl_buffer;

/* Starts b empty on storage of cap bytes that the caller owns: no
 * allocation until b outgrows it, and then b moves to memory of its own. */
void ghl_buffer_borrow(ghl_buffer *b, char *storage, size_t cap);

/* Appends n bytes; returns 0 on success, -1 when memory runs out (the buffer
 * is left as it was). data stays NUL-terminated after every append. */
int ghl_buffer_append(ghl_buffer *b, const char *bytes, size_t n);

/* Makes room for n more bytes (and the NUL) without writing them; returns
 * 0, or -1 when memory runs out. */
int ghl_buffer_reserve(ghl_buffer *b, size_t n);

/* Empties the buffer for reuse, giving back memory above keep bytes (a
 * borrowed storage is kept). */
void ghl_buffer_reset(ghl_buffer *b, size_t keep);

void ghl_buffer_free(ghl_buffer *b);

#endif
