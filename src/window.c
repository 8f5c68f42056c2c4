#include "window.h"

#include <string.h>

void ghl_window_init(ghl_window *w) {
    memset(w, 0, sizeof *w);
    w->remaining = w->max = -1;
    w->interval = 10.0;
}

int ghl_window_current(const ghl_window *w, double now) {
    return w->remaining >= 0 && now < w->started + w->interval;
}

void ghl_window_take(ghl_window *w, const ghl_ratelimit *rl, double now, double max_delay) {
    int current;
    if (!(rl->present & GHL_RL_REMAINING)) return;
    if (rl->present & GHL_RL_MAX) w->max = rl->max;
    if (rl->present & GHL_RL_INTERVAL) w->interval = rl->interval_ms / 1000.0;
    current = ghl_window_current(w, now);
    if (!current) w->started = now;
    if (!current || rl->remaining < w->remaining) w->remaining = rl->remaining;
    if (w->remaining == 0 && w->paused_until == 0)
        w->paused_until = now + (w->interval < max_delay ? w->interval : max_delay);
}

void ghl_window_turn_over(ghl_window *w, double now) {
    if (w->paused_until == 0 || now < w->paused_until) return;
    w->paused_until = 0;
    w->remaining = w->max > 0 ? w->max : -1;
    w->started = now;
}

int ghl_window_has_room(const ghl_window *w, int running) {
    if (w->paused_until > 0) return 0;
    return w->remaining < 0 || w->remaining - running > 0;
}
