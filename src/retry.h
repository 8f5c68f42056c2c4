/* When to try a request again, and how long to wait first. Plain C, no Lua. */
#ifndef GHL_RETRY_H
#define GHL_RETRY_H

#include "response.h"

/* Whether one attempt's outcome is worth another: 429, 500, 502, 503, 504,
 * 524, a 401 "Command timed out", timeouts and failed connections. A request
 * that is not safe to repeat (POST, PATCH) is tried again only when it
 * provably did not reach the API: it was never sent, or the answer was 429. */
int ghl_retry_wanted(const ghl_response *r, int repeat_safe);

/* Whether the response is the gateway's 401 "Command timed out". */
int ghl_command_timed_out(const ghl_response *r);

/* Seconds to wait before retry number n (1 for the first): Retry-After when
 * the response had it; after a 429 with nothing remaining, the rate-limit
 * interval; else backoff with full jitter, uniform in [0, 0.5 * 2^(n-1)].
 * Always capped by max_delay. rng is the caller's own generator state, and
 * advances. */
double ghl_retry_delay(const ghl_response *r, int n, double max_delay, unsigned long *rng);

void ghl_sleep(double seconds);

/* Monotonic clock, in seconds. */
double ghl_now(void);

#endif
