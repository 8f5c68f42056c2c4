#include "buffer.h"

#include <stdlib.h>
#include <string.h>

int ghl_buffer_reserve(ghl_buffer *b, size_t n) {
    if (n >= (size_t)-1 - b->len) return -1;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *grown;
        while (cap < b->len + n + 1) {
            if (cap > (size_t)-1 / 2) return -1;
            cap *= 2;
        }
        grown = b->borrowed ? malloc(cap) : realloc(b->data, cap);
        if (grown == NULL) return -1;
        if (b->borrowed) memcpy(grown, b->data, b->len + 1);
        b->data = grown;
        b->cap = cap;
        b->borrowed = 0;
    }
    return 0;
}

int ghl_buffer_append(ghl_buffer *b, const char *bytes, size_t n) {
    if (ghl_buffer_reserve(b, n) != 0) return -1;
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

void ghl_buffer_borrow(ghl_buffer *b, char *storage, size_t cap) {
    b->data = storage;
    b->cap = cap;
    b->len = 0;
    b->borrowed = 1;
    storage[0] = '\0';
}

void ghl_buffer_reset(ghl_buffer *b, size_t keep) {
    if (b->cap > keep && !b->borrowed) ghl_buffer_free(b);
    b->len = 0;
    if (b->data != NULL) b->data[0] = '\0';
}

void ghl_buffer_free(ghl_buffer *b) {
    if (!b->borrowed) free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->borrowed = 0;
}
