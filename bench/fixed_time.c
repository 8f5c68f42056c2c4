/* Preloaded into the programs bench/run counts instructions of: time() always
 * says the second in BENCH_FIXED_TIME (bench/run sets it once, after making
 * the certificates, so TLS still finds them valid). Lua 5.4 mixes time(NULL)
 * into the seed of its string hash, and the hash decides how often table
 * lookups collide: with the real clock the count of one fetch moves by about
 * 0.3% between runs a second apart, which the difference of two runs (N1 and
 * N2 fetches) must not see. With it, repeated runs agree to a few
 * instructions per fetch. */
#include <stdlib.h>
#include <time.h>

time_t time(time_t *t) {
    static time_t fixed = -1;
    if (fixed < 0) {
        const char *s = getenv("BENCH_FIXED_TIME");
        fixed = s != NULL ? (time_t)strtoll(s, NULL, 10) : 0;
    }
    if (t != NULL) *t = fixed;
    return fixed;
}
