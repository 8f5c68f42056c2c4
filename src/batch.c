/* client:get_messages(ids [, opts]): many messages over one libcurl multi
 * handle, up to `concurrency` at once (HTTP/2 multiplexing where offered),
 * within the rate limit the server reports, with the same retry rules as
 * get_message for each id. libcurl is driven from here; Lua is touched only
 * between libcurl calls, to store finished results. */
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "decode.h"
#include "retry.h"

enum { ITEM_QUEUED, ITEM_RUNNING, ITEM_WAITING, ITEM_DONE };

typedef struct batch_item {
    const char *id; /* a string in the ids table, which stays on the stack */
    size_t len;
    int state;
    int attempts;
    double due; /* ITEM_WAITING: when to try again */
} batch_item;

/* What the server has said of its rate-limit window. */
typedef struct window {
    long remaining;      /* the lowest X-RateLimit-Remaining seen in it; < 0: unknown */
    long max;            /* X-RateLimit-Max, what a fresh window holds; < 0: unknown */
    double interval;     /* seconds */
    double started;      /* when the first figure for it came */
    double paused_until; /* remaining reached 0: start nothing before then */
} window;

typedef struct batch {
    ghl_client *c;
    const ghl_options *call;
    batch_item *items;
    int count, next_fresh, done, running, waiting;
    window win;
    int messages, failures; /* result tables on the stack */
} batch;

void ghl_batch_release(ghl_client *c) {
    int i;
    for (i = 0; i < c->pool_size; i++) {
        if (c->multi != NULL) curl_multi_remove_handle(c->multi, c->pool[i]->easy);
        ghl_transfer_cleanup(c->pool[i]);
        free(c->pool[i]);
        c->pool[i] = NULL;
    }
    c->pool_size = 0;
    if (c->multi != NULL) curl_multi_cleanup(c->multi);
    c->multi = NULL;
}

/* Makes sure the client has a multi handle and n transfers, all idle; raises
 * on failure (whatever was made stays owned by the client). */
static void ensure_pool(lua_State *L, ghl_client *c, int n) {
    int i;
    if (c->multi == NULL) {
        c->multi = curl_multi_init();
        if (c->multi == NULL) luaL_error(L, "ghl: libcurl could not make a multi handle");
        curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    }
    /* a previous call cut short by an error may have left transfers attached */
    for (i = 0; i < c->pool_size; i++) {
        curl_multi_remove_handle(c->multi, c->pool[i]->easy);
        c->pool[i]->item = NULL;
    }
    while (c->pool_size < n) {
        ghl_transfer *t = calloc(1, sizeof *t);
        if (t == NULL) luaL_error(L, "ghl: out of memory");
        if (ghl_transfer_init(t, &c->config) != 0) {
            free(t);
            luaL_error(L, "ghl: libcurl could not make a handle");
        }
        c->pool[c->pool_size++] = t;
    }
    curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)n);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)n);
}

/* Reads ids (checked, duplicates dropped) into a userdata array on the stack. */
static batch_item *read_ids(lua_State *L, int idx, int *count) {
    int i, n, unique = 0;
    batch_item *items;
    luaL_checktype(L, idx, LUA_TTABLE);
    n = (int)lua_rawlen(L, idx);
    items = lua_newuserdata(L, (size_t)(n > 0 ? n : 1) * sizeof *items);
    lua_createtable(L, 0, n); /* seen ids */
    for (i = 1; i <= n; i++) {
        size_t len;
        const char *id;
        lua_rawgeti(L, idx, i);
        id = ghl_check_id(L, -1, &len);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (lua_isnil(L, -1)) {
            lua_pushvalue(L, -2);
            lua_pushboolean(L, 1);
            lua_rawset(L, -5);
            memset(&items[unique], 0, sizeof items[unique]);
            items[unique].id = id; /* kept alive by the ids table */
            items[unique].len = len;
            unique++;
        }
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    *count = unique;
    return items;
}

/* Whether the window's count is known and its interval has not run out. */
static int window_current(const window *w, double now) {
    return w->remaining >= 0 && now < w->started + w->interval;
}

/* Takes in one response's figures. Responses on parallel connections arrive
 * in any order, so within a window only a lower count is news. */
static void window_update(window *w, const ghl_ratelimit *rl, double now) {
    int current;
    if (!(rl->present & GHL_RL_REMAINING)) return;
    if (rl->present & GHL_RL_MAX) w->max = rl->max;
    if (rl->present & GHL_RL_INTERVAL) w->interval = rl->interval_ms / 1000.0;
    current = window_current(w, now);
    if (!current) w->started = now;
    if (!current || rl->remaining < w->remaining) w->remaining = rl->remaining;
    if (w->remaining == 0 && w->paused_until == 0) w->paused_until = now + w->interval;
}

/* Whether one more request may start now, given those in flight. */
static int window_allows(window *w, int running, double now) {
    if (w->paused_until > 0) {
        if (now < w->paused_until) return 0;
        /* the window has turned over: a fresh one holds max */
        w->paused_until = 0;
        w->remaining = w->max;
        w->started = now;
    }
    return w->remaining < 0 || w->remaining - running > 0;
}

static batch_item *next_item(batch *b, double now) {
    batch_item *best = NULL;
    int i;
    for (i = 0; b->waiting > 0 && i < b->count; i++) {
        batch_item *it = &b->items[i];
        if (it->state == ITEM_WAITING && it->due <= now && (best == NULL || it->due < best->due))
            best = it;
    }
    if (best != NULL) {
        b->waiting--;
        return best;
    }
    while (b->next_fresh < b->count && b->items[b->next_fresh].state != ITEM_QUEUED) b->next_fresh++;
    return b->next_fresh < b->count ? &b->items[b->next_fresh] : NULL;
}

static void start_transfers(batch *b, double now) {
    ghl_client *c = b->c;
    int i;
    for (i = 0; i < c->pool_size && b->running < b->call->concurrency; i++) {
        ghl_transfer *t = c->pool[i];
        batch_item *it;
        if (t->item != NULL) continue;
        if (!window_allows(&b->win, b->running, now)) return;
        it = next_item(b, now);
        if (it == NULL) return;
        ghl_transfer_prepare(t, ghl_client_url(c, it->id, it->len), ghl_ms(b->call->timeout),
                             ghl_ms(b->call->connect_timeout));
        t->item = it;
        it->state = ITEM_RUNNING;
        it->attempts++;
        b->running++;
        curl_multi_add_handle(c->multi, t->easy);
    }
}

static void finish_transfer(lua_State *L, batch *b, ghl_transfer *t, CURLcode code, double now) {
    ghl_client *c = b->c;
    batch_item *it = t->item;
    curl_multi_remove_handle(c->multi, t->easy);
    ghl_transfer_finish(t);
    t->item = NULL;
    b->running--;
    if (t->status > 0) window_update(&b->win, &t->ratelimit, now);

    if (it->attempts <= b->call->retries && ghl_retry_wanted(code, t)) {
        it->state = ITEM_WAITING;
        it->due = now + ghl_retry_delay(t, it->attempts, c->max_retry_delay, &c->rng);
        b->waiting++;
        return;
    }
    it->state = ITEM_DONE;
    b->done++;
    lua_pushlstring(L, it->id, it->len);
    ghl_client_url(c, it->id, it->len);
    ghl_client_push_outcome(L, c, t, code, it->attempts, c->url + c->base_len);
    if (!lua_isnil(L, -3)) { /* id, message, nil, info */
        lua_pop(L, 2);
        lua_rawset(L, b->messages);
    } else { /* id, nil, errmsg, info */
        lua_insert(L, -2);
        lua_setfield(L, -2, "errmsg");
        lua_remove(L, -2);
        lua_rawset(L, b->failures);
    }
}

/* How long to wait for something to do, in ms: a retry falling due, the
 * window turning over, or (with transfers running) at most a second. */
static int wait_ms(const batch *b, double now) {
    double until = now + 1.0;
    int i;
    for (i = 0; b->waiting > 0 && i < b->count; i++)
        if (b->items[i].state == ITEM_WAITING && b->items[i].due < until) until = b->items[i].due;
    if (b->win.paused_until > 0 && b->win.paused_until < until) until = b->win.paused_until;
    if (until <= now) return 0;
    return (int)((until - now) * 1000.0) + 1;
}

int ghl_client_get_messages(lua_State *L) {
    ghl_client *c = ghl_client_check(L, 1);
    ghl_options call;
    batch b;
    double now;

    lua_settop(L, 3); /* opts may be absent: keep slot 3 for it */
    memset(&b, 0, sizeof b);
    b.items = read_ids(L, 2, &b.count);
    ghl_client_call_options(L, c, 3, &call, GHL_OPT_PER_CALL | GHL_OPT_BATCH);
    b.c = c;
    b.call = &call;
    lua_newtable(L);
    b.messages = lua_gettop(L);
    lua_newtable(L);
    b.failures = lua_gettop(L);
    if (b.count == 0) return 2;

    /* the client's last response may already have told the count */
    now = ghl_now();
    b.win.remaining = b.win.max = -1;
    b.win.interval = 10.0;
    if (c->last_ratelimit_at > 0) window_update(&b.win, &c->last_ratelimit, c->last_ratelimit_at);
    if (!window_current(&b.win, now) && b.win.paused_until == 0)
        b.win.remaining = -1; /* too old to trust */

    ensure_pool(L, c, call.concurrency < b.count ? call.concurrency : b.count);
    while (b.done < b.count) {
        CURLMsg *msg;
        int left, still_running, finished = 0;
        start_transfers(&b, ghl_now());
        curl_multi_perform(c->multi, &still_running);
        while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
            ghl_transfer *t = NULL;
            if (msg->msg != CURLMSG_DONE) continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
            finish_transfer(L, &b, t, msg->data.result, ghl_now());
            finished++;
        }
        if (b.done == b.count) break;
        if (finished > 0) continue; /* refill the freed slots before any wait */
        now = ghl_now();
        if (b.running > 0) curl_multi_poll(c->multi, NULL, 0, wait_ms(&b, now), NULL);
        else ghl_sleep(wait_ms(&b, now) / 1000.0);
    }
    return 2;
}
