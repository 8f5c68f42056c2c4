#include "retry.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/* A 401 whose message is "Command timed out" is the gateway timing out, not
 * the token failing: look for "message" : "Command timed out" in the body. */
static const char *skip_json_space(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    return p;
}

int ghl_command_timed_out(const ghl_response *r) {
    static const char key[] = "\"message\"", value[] = "\"Command timed out\"";
    const char *p = r->body.data, *end;
    if (p == NULL) return 0;
    end = p + r->body.len;
    for (; end - p >= (long)(sizeof key - 1); p++) {
        const char *v;
        if (memcmp(p, key, sizeof key - 1) != 0) continue;
        v = skip_json_space(p + sizeof key - 1, end);
        if (v >= end || *v++ != ':') continue;
        v = skip_json_space(v, end);
        if (end - v >= (long)(sizeof value - 1) && memcmp(v, value, sizeof value - 1) == 0) return 1;
    }
    return 0;
}

int ghl_retry_wanted(const ghl_response *r, int repeat_safe) {
    if (r->too_large || r->out_of_memory) return 0;
    if (r->failure != GHL_FAIL_NONE) return r->retryable && (repeat_safe || r->unsent);
    switch (r->status) {
    case 429: return 1;
    case 500:
    case 502:
    case 503:
    case 504:
    case 524: return repeat_safe;
    case 401: return repeat_safe && ghl_command_timed_out(r);
    default: return 0;
    }
}

/* xorshift: good enough for jitter, and each client has its own state. */
static double next_uniform(unsigned long *rng) {
    unsigned long x = *rng ? *rng : 0x9e3779b9UL;
    x ^= (x << 13) & 0xffffffffUL;
    x ^= x >> 17;
    x ^= (x << 5) & 0xffffffffUL;
    *rng = x & 0xffffffffUL;
    return (double)*rng / 4294967296.0;
}

double ghl_retry_delay(const ghl_response *r, int n, double max_delay, unsigned long *rng) {
    double delay;
    if (r->retry_after >= 0) {
        delay = r->retry_after;
    } else if (r->status == 429 && (r->ratelimit.present & GHL_RL_REMAINING) && r->ratelimit.remaining == 0 &&
               (r->ratelimit.present & GHL_RL_INTERVAL)) {
        delay = r->ratelimit.interval_ms / 1000.0;
    } else {
        double ceiling = 0.5;
        int i;
        for (i = 1; i < n && ceiling < max_delay; i++) ceiling *= 2;
        delay = next_uniform(rng) * ceiling;
    }
    return delay < max_delay ? delay : max_delay;
}

void ghl_sleep(double seconds) {
    struct timespec left;
    if (seconds <= 0) return;
    left.tv_sec = (time_t)seconds;
    left.tv_nsec = (long)((seconds - (double)left.tv_sec) * 1e9);
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {
    }
}

double ghl_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}
