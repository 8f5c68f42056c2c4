/* failmalloc: an LD_PRELOAD shim that makes one chosen allocation fail.
 *
 * Built by spec/16-alloc_failure_spec.lua at test time:
 *     cc -shared -fPIC -O1 -o failmalloc.so failmalloc.c -ldl
 * and preloaded into one child interpreter only.
 *
 * It wraps malloc, calloc and realloc (glibc's own strdup, strndup, ...
 * call malloc through the interposable symbol, so they are covered too).
 * Nothing is counted until the process arms it, and the count stops when it
 * disarms, so the window is exactly the code between the two:
 *
 *   FAILMALLOC_CTL  a file of at least CTL_SIZE bytes, mapped shared. Its
 *                   first byte is 'A' while armed, anything else otherwise;
 *                   the process under test arms and disarms by writing that
 *                   byte (write() and a shared mapping see the same page).
 *   FAILMALLOC_N    the allocation, counting from 1 after arming, that
 *                   returns NULL (once). 0 or unset: none fails, only count.
 *
 * Back in the file, for the caller to read after the process ends (4-byte
 * little-endian unsigned integers):
 *   offset 64  how many allocations were made while armed
 *   offset 68  N, when the N-th allocation was made to fail; else 0
 *
 * realloc(p, 0) frees and is not counted. dlsym can allocate (calloc, for
 * its error state) while the real functions are being looked up: those
 * calls are served from a small static buffer, never freed to libc. */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CTL_SIZE 4096
#define OFF_COUNT 64
#define OFF_FAILED 68

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);

static volatile unsigned char *ctl; /* the mapped file, or NULL: never fail */
static unsigned long fail_at;       /* FAILMALLOC_N */
static unsigned long counted;       /* allocations made while armed */
static int initializing;

static _Alignas(16) unsigned char early[8192];
static size_t early_used;

static int is_early(const void *p) {
    return (const unsigned char *)p >= early && (const unsigned char *)p < early + sizeof early;
}

static void *early_alloc(size_t n) {
    size_t at = (early_used + 15) & ~(size_t)15;
    if (n > sizeof early - at) return NULL;
    early_used = at + n;
    return early + at;
}

static void put_u32(size_t off, unsigned long v) {
    ctl[off] = (unsigned char)(v & 0xff);
    ctl[off + 1] = (unsigned char)((v >> 8) & 0xff);
    ctl[off + 2] = (unsigned char)((v >> 16) & 0xff);
    ctl[off + 3] = (unsigned char)((v >> 24) & 0xff);
}

static void init(void) {
    const char *path, *n;
    if (real_malloc != NULL || initializing) return;
    initializing = 1;
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    n = getenv("FAILMALLOC_N");
    fail_at = n != NULL ? strtoul(n, NULL, 10) : 0;
    path = getenv("FAILMALLOC_CTL");
    if (path != NULL) {
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd >= 0) {
            void *m = mmap(NULL, CTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            close(fd);
            if (m != MAP_FAILED) ctl = m;
        }
    }
    /* last: the other wrappers treat a set real_malloc as "ready" */
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    initializing = 0;
}

__attribute__((constructor)) static void failmalloc_init(void) {
    init();
}

/* Whether this allocation is the one to fail. */
static int should_fail(void) {
    unsigned long k;
    if (ctl == NULL || ctl[0] != 'A') return 0;
    k = __atomic_add_fetch(&counted, 1, __ATOMIC_RELAXED);
    put_u32(OFF_COUNT, k);
    if (k != fail_at) return 0;
    put_u32(OFF_FAILED, k);
    return 1;
}

void *malloc(size_t n) {
    if (real_malloc == NULL) {
        init();
        if (real_malloc == NULL) return early_alloc(n);
    }
    if (should_fail()) return NULL;
    return real_malloc(n);
}

void *calloc(size_t k, size_t n) {
    if (real_malloc == NULL) {
        void *p;
        init();
        if (real_malloc == NULL) {
            if (n != 0 && k > (size_t)-1 / n) return NULL;
            p = early_alloc(k * n);
            if (p != NULL) memset(p, 0, k * n);
            return p;
        }
    }
    if (should_fail()) return NULL;
    return real_calloc(k, n);
}

void *realloc(void *p, size_t n) {
    if (real_malloc == NULL) {
        init();
        if (real_malloc == NULL) {
            void *q = early_alloc(n);
            if (q != NULL && p != NULL) memcpy(q, p, n); /* early blocks only grow from early ones */
            return q;
        }
    }
    if (p != NULL && is_early(p)) {
        /* an early block: copy out (its size is unknown; at most what is left) */
        size_t room = (size_t)(early + sizeof early - (unsigned char *)p);
        void *q;
        if (n == 0) return NULL;
        if (should_fail()) return NULL;
        q = real_malloc(n);
        if (q != NULL) memcpy(q, p, n < room ? n : room);
        return q;
    }
    if (n == 0 && p != NULL) return real_realloc(p, 0); /* a free */
    if (should_fail()) return NULL;
    return real_realloc(p, n);
}

void free(void *p) {
    if (p == NULL || is_early(p)) return;
    if (real_free == NULL) init();
    if (real_free != NULL) real_free(p);
}
