/* client:get_messages(ids [, opts]): many messages over one libcurl multi
 * handle, up to `concurrency` at once (HTTP/2 multiplexing where offered),
 * within the rate limit the server reports, with the same retry rules as
 * get_message for each id. libcurl is driven from here; Lua is touched only
 * between libcurl calls, to store finished results. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void ghl_batch_release(ghl_client *c) {
    int i;
    for (i = 0; i < c->pool_size; i++) {
        if (c->multi != NULL && c->pool[i].easy != NULL)
            curl_multi_remove_handle(c->multi, c->pool[i].easy);
        ghl_transfer_cleanup(&c->pool[i]);
    }
    free(c->pool);
    c->pool = NULL;
    c->pool_size = 0;
    if (c->multi != NULL) curl_multi_cleanup(c->multi);
    c->multi = NULL;
}

/* Makes sure the client has a multi handle and n transfers; raises on failure
 * (everything made so far stays owned by the client). */
static void ensure_pool(lua_State *L, ghl_client *c, int n) {
    int i;
    if (c->multi == NULL) {
        c->multi = curl_multi_init();
        if (c->multi == NULL) luaL_error(L, "ghl: libcurl could not make a multi handle");
        curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    }
    /* a previous call cut short by an error may have left transfers attached */
    for (i = 0; i < c->pool_size; i++) curl_multi_remove_handle(c->multi, c->pool[i].easy);
    if (n > c->pool_size) {
        ghl_transfer *grown = realloc(c->pool, (size_t)n * sizeof *grown);
        if (grown == NULL) luaL_error(L, "ghl: out of memory");
        c->pool = grown;
        for (i = c->pool_size; i < n; i++) {
            memset(&c->pool[i], 0, sizeof c->pool[i]);
            if (ghl_transfer_init(&c->pool[i], &c->config) != 0)
                luaL_error(L, "ghl: libcurl could not make a handle");
            c->pool_size = i + 1;
        }
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

typedef struct batch {
    ghl_client *c;
    const ghl_options *call;
    batch_item *items;
    int count, next_fresh, done, running;
    long budget;        /* requests the rate limit still allows; < 0: unknown */
    double paused_until; /* the rate limit said 0 remain: wait for the window */
    int messages, failures; /* result tables on the stack */
} batch;

static batch_item *next_item(batch *b, double now) {
    batch_item *best = NULL;
    int i;
    for (i = 0; i < b->count; i++) {
        batch_item *it = &b->items[i];
        if (it->state == ITEM_WAITING && it->due <= now && (best == NULL || it->due < best->due))
            best = it;
    }
    if (best != NULL) return best;
    while (b->next_fresh < b->count && b->items[b->next_fresh].state != ITEM_QUEUED) b->next_fresh++;
    return b->next_fresh < b->count ? &b->items[b->next_fresh] : NULL;
}

static void start_transfers(batch *b, double now) {
    ghl_client *c = b->c;
    int i;
    if (b->paused_until > 0) {
        if (now < b->paused_until) return;
        b->paused_until = 0;
        b->budget = -1; /* a new window: the next response tells */
    }
    for (i = 0; i < c->pool_size && b->running < b->call->concurrency; i++) {
        ghl_transfer *t = &c->pool[i];
        batch_item *it;
        if (t->item != NULL) continue;
        if (b->budget == 0) return;
        it = next_item(b, now);
        if (it == NULL) return;
        ghl_transfer_prepare(t, ghl_client_url(c, it->id, it->len), ghl_ms(b->call->timeout),
                             ghl_ms(b->call->connect_timeout));
        t->item = it;
        it->state = ITEM_RUNNING;
        it->attempts++;
        if (b->budget > 0) b->budget--;
        b->running++;
        curl_multi_add_handle(c->multi, t->easy);
    }
}

static void finish_transfer(lua_State *L, batch *b, ghl_transfer *t, CURLcode code, double now) {
    ghl_client *c = b->c;
    batch_item *it = (batch_item *)t->item;
    curl_multi_remove_handle(c->multi, t->easy);
    ghl_transfer_finish(t);
    t->item = NULL;
    b->running--;

    if (t->status > 0 && (t->ratelimit.present & GHL_RL_REMAINING)) {
        long remaining = t->ratelimit.remaining;
        if (remaining == 0 && b->paused_until == 0)
            b->paused_until = now + ((t->ratelimit.present & GHL_RL_INTERVAL)
                                         ? t->ratelimit.interval_ms / 1000.0 : 10.0);
        /* requests still in flight may each use one of those that remain */
        b->budget = remaining > b->running ? remaining - b->running : 0;
    }
    if (b->budget == 0 && b->running == 0 && b->paused_until == 0)
        b->budget = -1; /* nothing in flight and no pause: the count is settled */

    if (it->attempts <= b->call->retries && ghl_retry_wanted(code, t)) {
        it->state = ITEM_WAITING;
        it->due = now + ghl_retry_delay(t, it->attempts, c->max_retry_delay, &c->rng);
        return;
    }
    it->state = ITEM_DONE;
    b->done++;
    lua_pushlstring(L, it->id, it->len);
    ghl_client_url(c, it->id, it->len);
    ghl_client_push_outcome(L, c, t, code, it->attempts, c->url + c->base_len);
    if (!lua_isnil(L, -3)) {
        lua_pop(L, 1);
        lua_pop(L, 1);
        lua_rawset(L, b->messages);
    } else {
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "errmsg");
        lua_remove(L, -2);
        lua_remove(L, -2);
        lua_rawset(L, b->failures);
    }
}

/* How long to let libcurl wait before the loop looks again, in ms. */
static int wait_ms(const batch *b, double now) {
    double until = now + 1.0;
    int i;
    for (i = 0; i < b->count; i++)
        if (b->items[i].state == ITEM_WAITING && b->items[i].due < until) until = b->items[i].due;
    if (b->paused_until > 0 && b->paused_until < until) until = b->paused_until;
    if (until <= now) return 0;
    return (int)((until - now) * 1000.0) + 1;
}

int ghl_client_get_messages(lua_State *L) {
    ghl_client *c = ghl_client_check(L, 1);
    ghl_options call;
    batch b;
    int slots;

    lua_settop(L, 3); /* opts may be absent: keep slot 3 for it */
    memset(&b, 0, sizeof b);
    b.items = read_ids(L, 2, &b.count);
    ghl_client_call_options(L, c, 3, &call, GHL_OPT_PER_CALL | GHL_OPT_BATCH);
    b.c = c;
    b.call = &call;
    b.budget = -1;
    lua_newtable(L);
    b.messages = lua_gettop(L);
    lua_newtable(L);
    b.failures = lua_gettop(L);
    if (b.count == 0) return 2;

    slots = call.concurrency < b.count ? call.concurrency : b.count;
    ensure_pool(L, c, slots);
    {
        int i;
        for (i = 0; i < c->pool_size; i++) c->pool[i].item = NULL;
    }
    while (b.done < b.count) {
        CURLMsg *msg;
        int left, still_running;
        double now = now_seconds();
        start_transfers(&b, now);
        curl_multi_perform(c->multi, &still_running);
        while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
            ghl_transfer *t = NULL;
            if (msg->msg != CURLMSG_DONE) continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
            finish_transfer(L, &b, t, msg->data.result, now_seconds());
        }
        if (b.done == b.count) break;
        now = now_seconds();
        if (b.running > 0) {
            curl_multi_poll(c->multi, NULL, 0, wait_ms(&b, now), NULL);
        } else {
            ghl_sleep(wait_ms(&b, now) / 1000.0);
        }
    }
    return 2;
}
