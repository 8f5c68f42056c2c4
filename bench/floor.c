/* The C floor for one fetch at a time: one reused libcurl easy handle,
 * curl_easy_perform, then the body decoded by cjson.decode in an embedded
 * Lua 5.4 state. It sends the same request headers as ghl, so the only
 * difference from client:get_message is what ghl does around libcurl.
 *
 * usage: floor [--accept-encoding=1|0] BASE_URL CAINFO|- N WARMUP
 * --accept-encoding=0 leaves CURLOPT_ACCEPT_ENCODING unset; 1 (the default)
 * sets it to "gzip, deflate" as ghl does: to measure what asking for
 * compression costs a request. (Both spellings have one length: a longer
 * argument moves the stack, and with it Lua's string-hash seed, which alone
 * moves the instruction count of a fetch by a few hundred.)
 * With BENCH_GC_STOP=1 in the environment, Lua's garbage collector is stopped
 * (bench/run's breakdown, to tell the collector's instructions from the rest).
 * prints: us=<wall microseconds per fetch> cpu=<this process's CPU microseconds per fetch>
 * The N timed fetches run in BLOCKS blocks; "us" is the median block's, so a
 * burst of outside load on the machine moves it less than a plain mean.
 */
#include "floor_common.h"

#define BLOCKS 10

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int gc_stopped(void) {
    const char *v = getenv("BENCH_GC_STOP");
    return v != NULL && strcmp(v, "1") == 0;
}

int main(int argc, char **argv) {
    const char *base, *cainfo;
    long n, warmup, i;
    char url[512], err[CURL_ERROR_SIZE];
    struct curl_slist *headers;
    buf body = {NULL, 0, 0};
    lua_State *L;
    int decode_ref;
    CURL *e;
    double t0 = 0, block[BLOCKS];
    clock_t c0 = 0;
    long per_block;
    const char *accept_encoding = FLOOR_ACCEPT_ENCODING;

    if (argc > 1 && strncmp(argv[1], "--accept-encoding=", 18) == 0) {
        if (strcmp(argv[1] + 18, "0") == 0)
            accept_encoding = NULL;
        else if (strcmp(argv[1] + 18, "1") != 0)
            argc = 0; /* neither: the usage below */
        argc--;
        argv++;
    }
    if (argc != 5) {
        fprintf(stderr, "usage: floor [--accept-encoding=1|0] BASE_URL CAINFO|- N WARMUP\n");
        return 2;
    }
    base = argv[1];
    cainfo = strcmp(argv[2], "-") == 0 ? NULL : argv[2];
    n = atol(argv[3]);
    warmup = atol(argv[4]);
    per_block = n / BLOCKS;
    if (per_block < 1) {
        fprintf(stderr, "floor: N must be at least %d\n", BLOCKS);
        return 2;
    }
    n = per_block * BLOCKS;

    L = open_decoder("floor", &decode_ref);
    if (L == NULL) return 1;
    if (gc_stopped()) lua_gc(L, LUA_GCSTOP);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    e = curl_easy_init();
    headers = request_headers();
    setup_easy(e, headers, cainfo, accept_encoding, &body);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, err);

    for (i = 0; i < warmup + n; i++) {
        CURLcode code;
        long status = 0;
        if (i >= warmup && (i - warmup) % per_block == 0) {
            double t = now();
            if (i == warmup)
                c0 = clock();
            else
                block[(i - warmup) / per_block - 1] = t - t0;
            t0 = t;
        }
        snprintf(url, sizeof url, "%s/conversations/messages/benchmsg%012ld", base, i % 64);
        curl_easy_setopt(e, CURLOPT_URL, url);
        body.len = 0;
        err[0] = '\0';
        code = curl_easy_perform(e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        if (code != CURLE_OK || status != 200) {
            fprintf(stderr, "floor: fetch %ld: curl %d (%s), HTTP %ld\n", i, (int)code, err, status);
            return 1;
        }
        if (decode_body(L, decode_ref, &body) != 0) {
            fprintf(stderr, "floor: decode failed\n");
            return 1;
        }
    }
    block[BLOCKS - 1] = now() - t0;
    {
        double cpu = (double)(clock() - c0) / CLOCKS_PER_SEC;
        qsort(block, BLOCKS, sizeof block[0], cmp_double);
        printf("us=%.3f cpu=%.3f\n", (block[BLOCKS / 2 - 1] + block[BLOCKS / 2]) / 2 * 1e6 / per_block,
               cpu * 1e6 / (double)n);
    }

    curl_easy_cleanup(e);
    curl_slist_free_all(headers);
    curl_global_cleanup();
    /* with the GC stopped, freeing everything here would count as the fetches' cost */
    if (!gc_stopped()) lua_close(L);
    free(body.data);
    return 0;
}
