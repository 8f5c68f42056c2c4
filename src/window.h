/* The rate-limit window the server reports (X-RateLimit-Remaining, -Max,
 * -Interval-Milliseconds), and whether one more request may start in it.
 * Shared by every transport that runs requests side by side: libcurl's multi
 * handle (batch.c) and the cosocket threads of ghl.resty. Plain C, no Lua. */
#ifndef GHL_WINDOW_H
#define GHL_WINDOW_H

#include "response.h"

typedef struct ghl_window {
    long remaining;      /* the lowest X-RateLimit-Remaining seen in it; < 0: unknown */
    long max;            /* X-RateLimit-Max, what a fresh window holds; < 0: unknown */
    double interval;     /* seconds */
    double started;      /* when the first figure for it came */
    double paused_until; /* remaining reached 0: start nothing before then; 0: no pause */
} ghl_window;

/* A window that knows nothing yet. */
void ghl_window_init(ghl_window *w);

/* Whether the window's count is known and its interval has not run out. */
int ghl_window_current(const ghl_window *w, double now);

/* Takes in one response's figures. Responses on parallel connections arrive
 * in any order, so within a window only a lower count is news. A pause at 0
 * lasts the interval, but never longer than max_delay: then the run goes on
 * and lets the API answer 429. */
void ghl_window_take(ghl_window *w, const ghl_ratelimit *rl, double now, double max_delay);

/* Ends a pause that has run out: a fresh window holds max, if that is known
 * and not 0 (else the count is unknown again). */
void ghl_window_turn_over(ghl_window *w, double now);

/* Whether one more request may start, given those in flight. */
int ghl_window_has_room(const ghl_window *w, int running);

#endif
