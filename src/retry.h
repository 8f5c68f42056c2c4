/* When to try a request again, and how long to wait first. Plain C, no Lua. */
#ifndef GHL_RETRY_H
#define GHL_RETRY_H

#include "transfer.h"

/* Whether the outcome of one attempt is worth another: 429, 500, 502, 503,
 * 504, 524, a 401 "Command timed out", timeouts and failed connections. */
int ghl_retry_wanted(CURLcode code, const ghl_transfer *t);

/* Seconds to wait before retry number n (1 for the first): Retry-After when
 * the response had it; after a 429 with nothing remaining, the rate-limit
 * interval; else backoff with full jitter, uniform in [0, 0.5 * 2^(n-1)].
 * Always capped by max_delay. rng is the caller's own generator state. */
double ghl_retry_delay(const ghl_transfer *t, int n, double max_delay, unsigned long *rng);

void ghl_sleep(double seconds);

#endif
