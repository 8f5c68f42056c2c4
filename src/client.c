#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arguments.h"
#include "request.h"
#include "shape.h"

#define REG_CACHE "ghl.default_clients"
#define REG_LOOPED "ghl.looped_clients"

/* Upvalues of the methods and module functions: the metatable, then the
 * protected bodies, made once so that starting a call allocates nothing. */
enum {
    UP_METATABLE = 1,
    UP_RUN_ONE,
    UP_RUN_GET_MESSAGES,
    UP_RUN_STEP,
    UP_COUNT = UP_RUN_STEP,
    UP_ROW /* the endpoint row of a method that is nothing but its row */
};
#define CACHE_MAX 16

/* ---- life cycle ---- */

/* Frees the replaced header lists: only when no transfer can still use one. */
static void free_retired_headers(ghl_client *c) {
    while (c->retired_count > 0) curl_slist_free_all(c->retired[--c->retired_count]);
}

/* Frees every resource; safe on a client that was only partly built. */
static void release(ghl_client *c) {
    if (c->closed) return;
    c->closed = 1;
    c->close_pending = 0;
    /* in a forked child the sockets are the parent's too: let them go unused */
    if (c->pid != getpid()) ghl_sockets_orphan(&c->sockets);
    ghl_batch_free(&c->batch);
    free_retired_headers(c);
    free(c->retired);
    c->retired = NULL;
    c->retired_cap = 0;
    ghl_sockets_free(&c->sockets);
    curl_slist_free_all(c->transport.headers);
    c->transport.headers = NULL;
    ghl_secrets_free(&c->secrets);
    ghl_options_free(&c->options, NULL, 0);
}

/* Closes now, or when the call it is in ends. */
static void close_client(ghl_client *c) {
    if (c->busy)
        c->close_pending = 1;
    else
        release(c);
}

/* Pushes a new client made from checked options (token included). */
static ghl_client *new_client(lua_State *L, const ghl_options *o) {
    ghl_client *c = lua_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    c->closed = 1; /* nothing to free until the metatable is set */
    luaL_setmetatable(L, GHL_CLIENT_MT);
    c->closed = 0;
    c->options = *o;
    c->options.token_fn = 0;  /* a stack index of the caller's */
    lua_createtable(L, 0, 1); /* the user value: the token provider, a step's results */
    if (o->token_fn) {
        c->has_provider = 1;
        lua_pushvalue(L, o->token_fn);
        lua_setfield(L, -2, "token");
    }
    ghl_setuservalue(L, -2);
    if (ghl_options_own(&c->options, NULL, 0, NULL) != 0 ||
        ghl_secrets_init(&c->secrets, c->options.token, c->options.proxy) != 0 ||
        (c->options.token != NULL && (c->transport.headers = ghl_header_list(&c->options, NULL)) == NULL)) {
        release(c);
        luaL_error(L, "ghl: out of memory");
    }
    c->transport.options = &c->options;
    c->transport.base_url = c->options.base_url;
    c->transport.base_len = c->options.base_url_len;
    c->transport.cainfo = c->options.cainfo;
    c->transport.proxy = c->options.proxy;
    c->transport.ssl_verify = c->options.ssl_verify;
    c->transport.https = strncmp(c->options.base_url, "https://", 8) == 0;
    c->transport.max_body = c->options.max_body_size;
    c->transport.secrets = &c->secrets;
    c->transport.sockets = &c->sockets;
    ghl_batch_init(&c->batch, &c->transport, (unsigned long)time(NULL) ^ (unsigned long)(size_t)c);
    c->pid = getpid();
    return c;
}

/* ---- tokens from a provider function ----
 * The provider is called in the caller's state, inside the call, with the
 * client busy: lazily for the first token, and after a 401 with the token
 * that failed. A call of the same client from the provider raises busy,
 * which is a provider failure like any other. */

enum { TOKEN_NEW = 1, TOKEN_SAME, TOKEN_FAILED };

/* Makes tok (checked) the client's token: a new common header list (the
 * old one stays until no transfer can use it), secrets for old and new. */
static void install_token(lua_State *L, ghl_client *c, const char *tok, size_t n) {
    char *copy, *old = (char *)c->options.token;
    struct curl_slist *list;
    if (c->retired_count == c->retired_cap) { /* room to keep the list being replaced */
        int cap = c->retired_cap ? 2 * c->retired_cap : 4;
        struct curl_slist **grown = realloc(c->retired, (size_t)cap * sizeof *grown);
        if (grown == NULL) luaL_error(L, "ghl: out of memory");
        c->retired = grown;
        c->retired_cap = cap;
    }
    if ((copy = malloc(n + 1)) == NULL) luaL_error(L, "ghl: out of memory");
    memcpy(copy, tok, n + 1);
    c->options.token = copy;
    list = ghl_header_list(&c->options, NULL);
    if (list == NULL) {
        c->options.token = old;
        free(copy);
        luaL_error(L, "ghl: out of memory");
    }
    if (c->transport.headers != NULL) c->retired[c->retired_count++] = c->transport.headers;
    c->transport.headers = list;
    ghl_secrets_free(&c->secrets);
    if (ghl_secrets_init(&c->secrets, c->options.token, c->options.proxy) != 0 ||
        (old != NULL && ghl_secrets_add(&c->secrets, old, strlen(old)) != 0)) {
        if (old != NULL) memset(old, 0, strlen(old)), free(old);
        luaL_error(L, "ghl: out of memory");
    }
    if (old != NULL) memset(old, 0, strlen(old)), free(old);
    c->token_gen++;
    c->refusal = 0;
    ghl_batch_headers_changed(&c->batch, c->token_gen);
}

/* Pushes "ghl: token provider failed: <why>" with the secrets cut out. */
static void push_provider_error(lua_State *L, ghl_client *c, const char *why, size_t n) {
    ghl_buffer b = {NULL, 0, 0, 0};
    if (ghl_buffer_append(&b, why, n) != 0 || ghl_redact_buffer(&b, &c->secrets) != 0) {
        ghl_buffer_free(&b);
        luaL_error(L, "ghl: out of memory");
    }
    lua_pushliteral(L, "ghl: token provider failed: ");
    lua_pushlstring(L, b.len ? b.data : "", b.len);
    ghl_buffer_free(&b);
    lua_concat(L, 2);
}

/* Calls the provider of the client at cidx, with the token that failed (or
 * none for the first). TOKEN_NEW: a new valid token is installed;
 * TOKEN_SAME: it gave nil or the same token (only after a failure);
 * TOKEN_FAILED: it raised or gave something else, and the errmsg is pushed. */
static int ask_provider(lua_State *L, ghl_client *c, int cidx, int after_failure) {
    size_t n;
    const char *tok;
    int status;
    ghl_getuservalue(L, cidx);
    lua_getfield(L, -1, "token");
    lua_remove(L, -2);
    if (after_failure) lua_pushstring(L, c->options.token);
    status = lua_pcall(L, after_failure ? 1 : 0, 1, 0);
    if (status != 0) {
        const char *why = lua_tolstring(L, -1, &n);
        if (why == NULL) why = "(an error that is not a string)", n = strlen(why);
        push_provider_error(L, c, why, n);
        lua_remove(L, -2);
        return TOKEN_FAILED;
    }
    if (lua_isnil(L, -1) && after_failure) {
        lua_pop(L, 1);
        return TOKEN_SAME;
    }
    tok = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
    if (tok == NULL || !ghl_token_valid(tok, n)) {
        const char *what = lua_type(L, -1) == LUA_TSTRING ? "an empty string or one with spaces or control characters"
                                                          : luaL_typename(L, -1);
        lua_pop(L, 1);
        lua_pushfstring(L, "ghl: token provider failed: it returned %s, not a token", what);
        return TOKEN_FAILED;
    }
    if (after_failure && c->options.token != NULL && strcmp(tok, c->options.token) == 0) {
        lua_pop(L, 1);
        return TOKEN_SAME;
    }
    install_token(L, c, tok, n);
    lua_pop(L, 1);
    return TOKEN_NEW;
}

/* Pushes nil, errmsg (on top), {kind = "token"}: errmsg is replaced. */
static void push_token_failure(lua_State *L, int attempts) {
    lua_pushnil(L);
    lua_insert(L, -2);
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "token");
    lua_setfield(L, -2, "kind");
    if (attempts > 0) {
        lua_pushinteger(L, attempts);
        lua_setfield(L, -2, "attempts");
    }
}

/* Gets the first token from the provider, if the client has none yet.
 * Returns 1, or 0 with the errmsg pushed. */
static int ensure_token(lua_State *L, ghl_client *c, int cidx) {
    if (!c->has_provider || c->options.token != NULL) return 1;
    return ask_provider(L, c, cidx, 0) == TOKEN_NEW;
}

/* A job came back with a 401 a new token may cure: asks the provider once
 * per token (a job whose token was already replaced just goes again).
 * Returns 1 when the job went again; 0 when it is finished as it is (the
 * 401), or, with the errmsg pushed and *failed set, with kind token. */
static int renew_token_for(lua_State *L, ghl_client *c, int cidx, ghl_job *job, int *failed) {
    int got = TOKEN_NEW;
    *failed = 0;
    if (job->token_gen == c->token_gen && c->refusal != 0) { /* asked already: the same answer */
        got = c->refusal;
        if (got == TOKEN_FAILED) {
            ghl_getuservalue(L, cidx);
            lua_getfield(L, -1, "refusal");
            lua_remove(L, -2);
        }
    } else if (job->token_gen == c->token_gen) {
        got = ask_provider(L, c, cidx, 1);
        if (got != TOKEN_NEW) c->refusal = got;
        if (got == TOKEN_FAILED) { /* kept for the other requests of this call */
            ghl_getuservalue(L, cidx);
            lua_pushvalue(L, -2);
            lua_setfield(L, -2, "refusal");
            lua_pop(L, 1);
        }
    }
    if (got == TOKEN_NEW) {
        ghl_batch_repeat_now(&c->batch, job);
        return 1;
    }
    job->wants_token = 0;
    *failed = got == TOKEN_FAILED;
    return 0;
}

/* The open client at idx. Methods carry the metatable as upvalue 1, which
 * is cheaper to compare with than a registry lookup. */
static ghl_client *check_open(lua_State *L, int idx) {
    ghl_client *c = lua_touserdata(L, idx);
    int same = c != NULL && lua_getmetatable(L, idx);
    if (same) {
        same = lua_rawequal(L, -1, lua_upvalueindex(UP_METATABLE));
        lua_pop(L, 1);
    }
    if (!same) c = luaL_checkudata(L, idx, GHL_CLIENT_MT); /* raises the usual message */
    if (c->closed || c->close_pending) luaL_error(L, "ghl: the client is closed");
    return c;
}

/* ---- calls ---- */

/* What a protected call needs; lives on the C stack of the method. */
typedef struct call {
    ghl_client *c;
    ghl_run_settings settings;
    ghl_job job;      /* get_message */
    int pass;         /* a stack index whose value fn gets as its second argument; 0: none */
    int looped;       /* a step of a looped client: the run goes on after it */
    ghl_endpoint own; /* client:request's row, made for the call */
    int seen;         /* get_messages: our own table of the ids */
} call;

static void fill_limits(ghl_limits *l, const ghl_options *o) {
    l->retries = o->retries;
    l->timeout_ms = ghl_ms(o->timeout);
    l->connect_timeout_ms = ghl_ms(o->connect_timeout);
}

static void fill_settings(ghl_run_settings *s, const ghl_options *o, int concurrency, int paced) {
    s->concurrency = concurrency;
    fill_limits(&s->limits, o);
    s->max_retry_delay = o->max_retry_delay;
    s->paced = paced;
}

static void start_batch(lua_State *L, ghl_client *c, ghl_job *jobs, int *heap, int count, const ghl_run_settings *s) {
    CURLcode code = ghl_batch_start(&c->batch, jobs, heap, count, s);
    if (code == CURLE_OUT_OF_MEMORY) luaL_error(L, "ghl: out of memory");
    if (code != CURLE_OK) luaL_error(L, "ghl: libcurl could not make a handle: %s", curl_easy_strerror(code));
}

/* Shapes a finished job's response: pushes the three returns. */
static void push_result(lua_State *L, ghl_client *c, const ghl_job *job, ghl_response *r) {
    ghl_shape_push_answer(L, &job->request, r, job->attempts, c->options.convert_enums, &c->secrets);
}

/* One request: x->job. */
static int run_one(lua_State *L) {
    call *x = lua_touserdata(L, 1);
    ghl_response *r = NULL;
    int heap, failed = 0;
    ghl_job *job;
    if (!ensure_token(L, x->c, 2)) {
        push_token_failure(L, 0);
        return 3;
    }
    x->settings.renew_on_401 = x->c->has_provider;
    start_batch(L, x->c, &x->job, &heap, 1, &x->settings);
    while ((job = ghl_batch_next(&x->c->batch, &r)) != NULL)
        if (!job->wants_token || !renew_token_for(L, x->c, 2, job, &failed)) break;
    if (failed)
        push_token_failure(L, job->attempts);
    else
        push_result(L, x->c, job, r);
    return 3;
}

static int run_get_messages(lua_State *L) {
    call *x = lua_touserdata(L, 1);
    ghl_client *c = x->c;
    int i, count = 0, messages, failures;
    ghl_job *jobs, *job;
    int *heap;
    ghl_response *r;
    const int ids = 3;
    size_t n = lua_rawlen(L, ids);
    /* our own table of the ids, so that no Lua code can take a string away mid-call */
    lua_createtable(L, 0, (int)n);
    x->seen = lua_gettop(L);
    jobs = lua_newuserdata(L, (n > 0 ? n : 1) * (sizeof *jobs + sizeof *heap));
    heap = (int *)(jobs + (n > 0 ? n : 1));
    for (i = 1; i <= (int)n; i++) {
        size_t len;
        const char *id;
        lua_rawgeti(L, ids, i);
        id = ghl_check_id(L, -1, &len); /* again: a finalizer may have changed ids meanwhile */
        lua_pushvalue(L, -1);
        lua_rawget(L, x->seen);
        if (lua_isnil(L, -1)) {
            lua_pushvalue(L, -2);
            lua_pushboolean(L, 1);
            lua_rawset(L, x->seen);
            memset(&jobs[count], 0, sizeof jobs[count]);
            jobs[count].request.endpoint = &ghl_get_message_endpoint;
            jobs[count].request.args[0] = id; /* kept alive as a key of `seen` */
            jobs[count].request.arg_len[0] = len;
            count++;
        }
        lua_pop(L, 2);
    }
    lua_newtable(L);
    messages = lua_gettop(L);
    lua_newtable(L);
    failures = lua_gettop(L);
    if (count == 0) return 2;
    if (!ensure_token(L, c, 2)) { /* every id fails with the provider's error */
        int errmsg = lua_gettop(L);
        for (i = 0; i < count; i++) {
            lua_pushlstring(L, jobs[i].request.args[0], jobs[i].request.arg_len[0]);
            lua_pushvalue(L, errmsg);
            push_token_failure(L, 0);
            lua_insert(L, -2);
            lua_setfield(L, -2, "errmsg");
            lua_remove(L, -2);
            lua_rawset(L, failures);
        }
        lua_pop(L, 1);
        return 2;
    }
    x->settings.renew_on_401 = c->has_provider;
    start_batch(L, c, jobs, heap, count, &x->settings);
    while ((job = ghl_batch_next(&c->batch, &r)) != NULL) {
        int failed = 0;
        if (job->wants_token && renew_token_for(L, c, 2, job, &failed)) continue;
        lua_pushlstring(L, job->request.args[0], job->request.arg_len[0]);
        if (failed) {
            lua_insert(L, -2); /* id, errmsg */
            push_token_failure(L, job->attempts);
        } else {
            push_result(L, c, job, r);
        }
        if (!lua_isnil(L, -3)) { /* id, message, nil, info */
            lua_pop(L, 2);
            lua_rawset(L, messages);
        } else { /* id, nil, errmsg, info */
            lua_insert(L, -2);
            lua_setfield(L, -2, "errmsg");
            lua_remove(L, -2);
            lua_rawset(L, failures);
        }
    }
    return 2;
}

/* Runs the protected body held in upvalue `fn` with the client marked
 * busy. Whatever happens inside, even an error raised by Lua code that ran
 * meanwhile, the transfers are taken off, the client is free again (closed,
 * if close was asked for meanwhile), and only then does the error go on.
 * The pushes before it allocate nothing (the bodies are made once), so no
 * Lua code can run between the checks and lua_pcall, and nothing can raise
 * once the client is marked. Returns the number of results. */
static int call_busy(lua_State *L, ghl_client *c, int cidx, int fn, call *x) {
    int status, base = lua_gettop(L);
    pid_t pid = getpid();
    if (c->busy) luaL_error(L, "ghl: the client is busy");
    if (c->closed || c->close_pending) luaL_error(L, "ghl: the client is closed");
    if (c->looped != x->looped)
        luaL_error(L, c->looped ? "ghl: this client is driven by an event loop: use its adapter"
                                : "ghl: not a looped client");
    if (c->pid != pid && c->looped) luaL_error(L, "ghl: a looped client cannot be used after fork()");
    if (c->pid != pid) { /* after fork(): the connections are the parent's */
        ghl_batch_forget_connections(&c->batch);
        c->pid = pid;
    }
    x->c = c;
    if (!c->looped || ghl_batch_wait_ms(&c->batch) < 0) c->refusal = 0; /* a new call asks again */
    lua_pushvalue(L, lua_upvalueindex(fn));
    lua_pushlightuserdata(L, x);
    lua_pushvalue(L, cidx); /* the body's second argument: the client (its token provider) */
    if (x->pass) lua_pushvalue(L, x->pass);
    c->busy = 1;
    status = lua_pcall(L, x->pass ? 3 : 2, LUA_MULTRET, 0);
    if (c->looped) {
        ghl_batch_release_handed(&c->batch);
        if (ghl_batch_wait_ms(&c->batch) < 0) free_retired_headers(c); /* nothing in flight */
    } else {
        ghl_batch_end(&c->batch);
        free_retired_headers(c);
    }
    c->busy = 0;
    if (c->close_pending) release(c);
    if (status != 0) lua_error(L);
    return lua_gettop(L) - base;
}

/* A call's options: the client's, with the per-call table at idx over them. */
static void read_call_options(lua_State *L, const ghl_client *c, int idx, ghl_options *o, int scopes) {
    *o = c->options;
    ghl_options_read(L, idx, o, scopes);
}

/* client:get_message(id [, opts]) */
static int client_get_message(lua_State *L) {
    ghl_client *c = check_open(L, 1);
    ghl_options o;
    call x;
    memset(&x, 0, sizeof x);
    x.job.request.endpoint = &ghl_get_message_endpoint;
    x.job.request.args[0] = ghl_check_id(L, 2, &x.job.request.arg_len[0]);
    read_call_options(L, c, 3, &o, GHL_SCOPE_CALL);
    fill_settings(&x.settings, &o, 1, 0);
    return call_busy(L, c, 1, UP_RUN_ONE, &x);
}

/* client:get_messages(ids [, opts]) */
static int client_get_messages(lua_State *L) {
    ghl_client *c = check_open(L, 1);
    ghl_options o;
    call x;
    int i, n;
    lua_settop(L, 3);
    luaL_checktype(L, 2, LUA_TTABLE);
    n = (int)lua_rawlen(L, 2);
    for (i = 1; i <= n; i++) { /* an invalid id raises before anything is sent */
        lua_rawgeti(L, 2, i);
        ghl_check_id(L, -1, NULL);
        lua_pop(L, 1);
    }
    read_call_options(L, c, 3, &o, GHL_SCOPE_CALL | GHL_SCOPE_BATCH);
    memset(&x, 0, sizeof x);
    fill_settings(&x.settings, &o, o.concurrency, 1);
    x.pass = 2; /* the ids */
    return call_busy(L, c, 1, UP_RUN_GET_MESSAGES, &x);
}

/* ---- the endpoint rows: every method that is nothing but its row ---- */

/* client:<row's name>(ids..., [query | body,] [opts]); the row is upvalue UP_ROW. */
static int client_call_row(lua_State *L) {
    const ghl_endpoint *e = lua_touserdata(L, lua_upvalueindex(UP_ROW));
    ghl_client *c = check_open(L, 1);
    ghl_options o;
    call x;
    int opts;
    memset(&x, 0, sizeof x);
    opts = ghl_read_row_arguments(L, e, 2, &x.job.request);
    read_call_options(L, c, opts, &o, GHL_SCOPE_CALL);
    fill_settings(&x.settings, &o, 1, 0);
    return call_busy(L, c, 1, UP_RUN_ONE, &x);
}

/* ---- client:request(method, path [, args [, opts]]) ---- */

/* client:request(method, path [, args [, opts]]) */
static int client_request(lua_State *L) {
    ghl_client *c = check_open(L, 1);
    ghl_options o;
    call x;
    int opts;
    memset(&x, 0, sizeof x);
    opts = ghl_read_request(L, 2, &x.job.request, &x.own);
    read_call_options(L, c, opts, &o, GHL_SCOPE_CALL);
    fill_settings(&x.settings, &o, 1, 0);
    return call_busy(L, c, 1, UP_RUN_ONE, &x);
}

/* ---- iterators: page after page, as the loop asks ----
 * for item, err, info in client:each_message(id [, query [, opts]]) do
 * The state is a table; no coroutine, so a loop may run anywhere (an
 * OpenResty handler, across pcall). */

enum { IT_CLIENT = 1, IT_FETCH, IT_ID, IT_QUERY, IT_OPTS, IT_ITEMS, IT_INFO, IT_INDEX, IT_DONE, IT_LAST };

typedef struct pager {
    const char *iterator; /* the method */
    const char *fetch;    /* the page method it calls */
    int has_id;
    const char *items;     /* the page's list */
    const char *next;      /* the page's field that asks for the next one, or NULL */
    const char *more;      /* a boolean field that must be true for a next page, or NULL */
    const char *query_key; /* where next goes in the query */
} pager;

static const pager pagers[] = {
    {"each_message", "list_messages", 1, "messages", "last_message_id", "next_page", "lastMessageId"},
    {"each_conversation", "search_conversations", 0, "conversations", "next", NULL, "startAfterDate"},
    {NULL, NULL, 0, NULL, NULL, NULL, NULL},
};

/* The pager rule: whether the page at `page` has a page after it; if so,
 * what asks for it goes into the query table at `query`. An empty page is
 * the last. */
static int set_next_page_query(lua_State *L, const pager *p, int page, int query) {
    int n = 0, more;
    lua_getfield(L, page, p->items);
    if (lua_type(L, -1) == LUA_TTABLE) n = (int)lua_rawlen(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, page, p->next);
    more = n > 0 && !lua_isnil(L, -1);
    if (more && p->more != NULL) {
        lua_getfield(L, page, p->more);
        more = lua_type(L, -1) == LUA_TBOOLEAN && lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    if (more) {
        lua_pushstring(L, p->query_key);
        lua_insert(L, -2);
        lua_rawset(L, query);
    } else {
        lua_pop(L, 1);
    }
    return more;
}

/* Fetches the next page into the state at st. Returns the number of values
 * to return when the loop must see something now (the failure), else 0. */
static int fetch_page(lua_State *L, const pager *p, int st) {
    int page;
    lua_rawgeti(L, st, IT_FETCH);
    lua_rawgeti(L, st, IT_CLIENT);
    if (p->has_id) lua_rawgeti(L, st, IT_ID);
    lua_rawgeti(L, st, IT_QUERY);
    lua_rawgeti(L, st, IT_OPTS);
    lua_call(L, p->has_id ? 4 : 3, 3);
    if (lua_isnil(L, -3)) { /* the page failed: false, errmsg, info once, then the end */
        lua_pushboolean(L, 1);
        lua_rawseti(L, st, IT_DONE);
        lua_pushboolean(L, 0);
        lua_replace(L, -4);
        return 3;
    }
    page = lua_gettop(L) - 2;
    lua_rawseti(L, st, IT_INFO);
    lua_pop(L, 1);
    lua_getfield(L, page, p->items);
    lua_rawseti(L, st, IT_ITEMS);
    lua_pushinteger(L, 0);
    lua_rawseti(L, st, IT_INDEX);
    lua_rawgeti(L, st, IT_QUERY);
    if (!set_next_page_query(L, p, page, lua_gettop(L))) {
        lua_pushboolean(L, 1);
        lua_rawseti(L, st, IT_LAST);
    }
    lua_pop(L, 2); /* the query, the page */
    return 0;
}

/* ghl._check_id(id): raises as a method would for a bad id. */
static int ghl_check_id_fn(lua_State *L) {
    ghl_check_id(L, 1, NULL);
    return 0;
}

/* ghl._next_page(iterator, page, query): the pager rule for adapters that
 * fetch the pages themselves. */
static int ghl_next_page(lua_State *L) {
    const pager *p;
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    for (p = pagers; p->iterator != NULL && strcmp(p->iterator, name) != 0; p++) {
    }
    if (p->iterator == NULL) luaL_error(L, "ghl: no iterator '%s'", name);
    lua_pushboolean(L, set_next_page_query(L, p, 2, 3));
    return 1;
}

/* The iterator: (state) -> item, nil, info | false, errmsg, info | nil. */
static int each_next(lua_State *L) {
    const pager *p = lua_touserdata(L, lua_upvalueindex(1));
    int st = 1, n;
    lua_Integer i;
    luaL_checktype(L, st, LUA_TTABLE);
    for (;;) {
        lua_rawgeti(L, st, IT_DONE);
        if (lua_toboolean(L, -1)) return 0;
        lua_pop(L, 1);
        lua_rawgeti(L, st, IT_ITEMS);
        lua_rawgeti(L, st, IT_INDEX);
        i = lua_tointeger(L, -1);
        n = lua_type(L, -2) == LUA_TTABLE ? (int)lua_rawlen(L, -2) : 0;
        lua_pop(L, 1);
        if (i < n) {
            lua_pushinteger(L, i + 1);
            lua_rawseti(L, st, IT_INDEX);
            lua_rawgeti(L, -1, (int)i + 1);
            lua_pushnil(L);
            lua_rawgeti(L, st, IT_INFO);
            return 3;
        }
        lua_pop(L, 1);
        lua_rawgeti(L, st, IT_LAST);
        if (lua_toboolean(L, -1)) {
            lua_pushboolean(L, 1);
            lua_rawseti(L, st, IT_DONE);
            return 0;
        }
        lua_pop(L, 1);
        if ((n = fetch_page(L, p, st)) != 0) return n;
    }
}

/* client:each_message(conversation_id [, query [, opts]]),
 * client:each_conversation(query [, opts]): checks everything now, as the
 * page method would, and fetches nothing yet. */
static int client_each(lua_State *L) {
    const pager *p = lua_touserdata(L, lua_upvalueindex(UP_ROW));
    ghl_client *c = check_open(L, 1);
    const ghl_endpoint *e;
    ghl_options o;
    call x;
    int opts, st, query = p->has_id ? 3 : 2;
    e = ghl_find_row(p->fetch);
    memset(&x, 0, sizeof x);
    opts = ghl_read_row_arguments(L, e, 2, &x.job.request);
    read_call_options(L, c, opts, &o, GHL_SCOPE_CALL);
    lua_settop(L, query + 1);
    lua_pushvalue(L, lua_upvalueindex(UP_ROW + 1)); /* each_next with its pager */
    lua_createtable(L, IT_LAST, 0);
    st = lua_gettop(L);
    lua_pushvalue(L, 1);
    lua_rawseti(L, st, IT_CLIENT);
    lua_getfield(L, 1, p->fetch);
    lua_rawseti(L, st, IT_FETCH);
    if (p->has_id) {
        lua_pushvalue(L, 2);
        lua_rawseti(L, st, IT_ID);
    }
    lua_newtable(L); /* our own copy of the query: the next page's key goes in there */
    if (!lua_isnil(L, query)) {
        lua_pushnil(L);
        while (lua_next(L, query) != 0) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, -4);
        }
    }
    lua_rawseti(L, st, IT_QUERY);
    if (!lua_isnil(L, query + 1)) {
        lua_pushvalue(L, query + 1);
        lua_rawseti(L, st, IT_OPTS);
    }
    return 2;
}

/* client:rate_limit() */
static int client_rate_limit(lua_State *L) {
    ghl_client *c = check_open(L, 1);
    if (c->batch.last_at > 0)
        ghl_push_ratelimit(L, &c->batch.last_ratelimit);
    else
        lua_pushnil(L);
    return 1;
}

/* client:close(), __gc and __close: one idempotent function. */
static int client_close(lua_State *L) {
    close_client(luaL_checkudata(L, 1, GHL_CLIENT_MT));
    return 0;
}

static int client_tostring(lua_State *L) {
    ghl_client *c = luaL_checkudata(L, 1, GHL_CLIENT_MT);
    char base[GHL_MAX_BASE_URL + 1];
    /* a copy: pushing may run a finalizer that closes the client */
    if (c->closed)
        strcpy(base, "closed");
    else
        snprintf(base, sizeof base, "%s", c->options.base_url);
    lua_pushfstring(L, "ghl.client (%s%s): %p", base, c->busy ? ", busy" : "", (void *)c);
    return 1;
}

/* Reads the module-level options table at idx. */
static void read_module_options(lua_State *L, int idx, ghl_options *o) {
    ghl_options_defaults(o);
    ghl_options_read(L, idx, o, GHL_SCOPE_CLIENT | GHL_SCOPE_CALL);
    ghl_options_require_token(L, o);
}

/* ghl.new([opts]) */
static int ghl_new(lua_State *L) {
    ghl_options o;
    read_module_options(L, 1, &o);
    new_client(L, &o);
    return 1;
}

/* ---- the state's cached clients, for ghl.get_message ---- */

/* Makes room in the cache table at idx: closes the least recently used of
 * its clients that is not in a call, and takes it out. Returns whether
 * there was one. */
static int evict_one(lua_State *L, int idx) {
    ghl_client *oldest = NULL;
    lua_pushnil(L);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        ghl_client *c = luaL_testudata(L, -1, GHL_CLIENT_MT);
        lua_pop(L, 1);
        if (c != NULL && !c->busy && (oldest == NULL || c->used < oldest->used)) {
            oldest = c;
            lua_pushvalue(L, -1);
            lua_replace(L, -3); /* remember its key */
        }
    }
    if (oldest == NULL) {
        lua_pop(L, 1);
        return 0;
    }
    release(oldest);
    lua_pushnil(L);
    lua_rawset(L, idx);
    return 1;
}

/* Pushes the client ghl.get_message uses for these options: the state's
 * cached one, so a loop of calls keeps its connection (at most CACHE_MAX
 * option sets; past that the least recently used client is closed), or,
 * while that one is busy (a call from a finalizer or hook during another),
 * one of its own for this call alone. The cache's [0] counts its clients,
 * [-1] its calls. */
static ghl_client *push_default_client(lua_State *L, const ghl_options *o, int *temporary) {
    ghl_client *c;
    int cache;
    lua_Integer calls;
    *temporary = 0;
    lua_getfield(L, LUA_REGISTRYINDEX, REG_CACHE);
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 3);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, REG_CACHE);
    }
    cache = lua_gettop(L);
    ghl_options_push_key(L, o);
    lua_pushvalue(L, -1);
    lua_rawget(L, cache);
    c = luaL_testudata(L, -1, GHL_CLIENT_MT);
    if (c != NULL && c->busy) {
        lua_pop(L, 2);
        *temporary = 1;
        c = new_client(L, o);
    } else if (c == NULL) {
        lua_Integer n;
        lua_pop(L, 1);
        lua_rawgeti(L, cache, 0);
        n = lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (n >= CACHE_MAX && evict_one(L, cache)) n--;
        c = new_client(L, o);
        lua_pushvalue(L, -2);
        lua_pushvalue(L, -2);
        lua_rawset(L, cache);
        lua_pushinteger(L, n + 1);
        lua_rawseti(L, cache, 0);
        lua_remove(L, -2);
    } else {
        lua_remove(L, -2);
    }
    if (!*temporary) {
        lua_rawgeti(L, cache, -1);
        calls = lua_tointeger(L, -1) + 1;
        lua_pop(L, 1);
        lua_pushinteger(L, calls);
        lua_rawseti(L, cache, -1);
        c->used = calls;
    }
    lua_remove(L, cache); /* the client stays on the stack while it works */
    return c;
}

/* ghl.get_message(id [, opts]) */
static int ghl_get_message(lua_State *L) {
    ghl_options o;
    ghl_client *c;
    call x;
    int temporary, n;
    memset(&x, 0, sizeof x);
    x.job.request.endpoint = &ghl_get_message_endpoint;
    x.job.request.args[0] = ghl_check_id(L, 1, &x.job.request.arg_len[0]);
    read_module_options(L, 2, &o);
    fill_settings(&x.settings, &o, 1, 0);
    c = push_default_client(L, &o, &temporary);
    if (c->closed || c->close_pending) { /* a finalizer closed it just now */
        lua_pop(L, 1);
        c = new_client(L, &o);
        temporary = 1;
    }
    n = call_busy(L, c, lua_gettop(L), UP_RUN_ONE, &x);
    if (temporary) release(c);
    return n;
}

/* ---- looped clients, driven by the host's event loop (ghl.nvim) ----
 * Internal: ghl._looped_client(opts) gives one; client:_add(method, ...) queues
 * a call of that method (its own arguments follow) and returns its tag; the host watches client:_fd() for reading
 * and calls client:_step() when it is readable or when the wait _step gave
 * has passed. _step never blocks: it returns the finished fetches as
 * {tag, message, errmsg, info} tables and the most ms to wait before the next
 * step (nil: nothing left). If Lua code raised while a result was made,
 * client:_interrupted() tells that fetch's tag once; the results made before
 * it come with the next step. */

/* Pushes a new looped client. */
static void new_looped_client(lua_State *L, const ghl_options *o) {
    ghl_run_settings s;
    CURLcode code;
    ghl_client *c = new_client(L, o);
    fill_settings(&s, o, o->concurrency, 1); /* paced by the rate-limit window, as a batch */
    s.renew_on_401 = c->has_provider;
    c->looped = 1;
    code = ghl_batch_open_looped(&c->batch, &s);
    if (code != CURLE_OK) {
        release(c);
        luaL_error(L, "ghl: libcurl could not make a handle: %s", curl_easy_strerror(code));
    }
}

/* Takes the closed clients out of the cache table at idx. */
static void drop_closed_clients(lua_State *L, int idx) {
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        ghl_client *c = luaL_testudata(L, -1, GHL_CLIENT_MT);
        lua_pop(L, 1);
        if (c == NULL || c->closed) {
            lua_pushvalue(L, -1);
            lua_pushnil(L);
            lua_rawset(L, idx); /* clearing a field during lua_next is allowed */
        }
    }
}

/* ghl._looped_client([opts [, own]]): the state's looped client for these
 * options (one per option set, made on first use; the adapter closes those
 * it no longer needs); with own, a new one of the caller's alone, whose
 * calls take only the per-call options. */
static int ghl_looped_client(lua_State *L) {
    ghl_options o;
    int cache, own = lua_toboolean(L, 2);
    lua_settop(L, 1); /* the option strings are anchored above it */
    ghl_options_defaults(&o);
    ghl_options_read(L, 1, &o, GHL_SCOPE_CLIENT | GHL_SCOPE_CALL | GHL_SCOPE_BATCH);
    ghl_options_require_token(L, &o);
    if (own) {
        new_looped_client(L, &o);
        ((ghl_client *)lua_touserdata(L, -1))->strict_calls = 1;
        return 1;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, REG_LOOPED);
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, REG_LOOPED);
    }
    cache = lua_gettop(L);
    ghl_options_push_key(L, &o);
    lua_pushvalue(L, -1);
    lua_rawget(L, cache);
    {
        ghl_client *c = luaL_testudata(L, -1, GHL_CLIENT_MT);
        if (c != NULL && !c->closed && !c->close_pending) return 1;
    }
    lua_pop(L, 1);
    drop_closed_clients(L, cache);
    new_looped_client(L, &o);
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_rawset(L, cache);
    return 1;
}

static ghl_client *check_looped(lua_State *L, int idx) {
    ghl_client *c = check_open(L, idx);
    if (!c->looped) luaL_error(L, "ghl: not a looped client");
    return c;
}

/* The option keys a looped client's call takes: a client of the caller's
 * own takes the per-call ones; a shared one gets the whole table it was
 * chosen by, of which only the per-call keys count. */
static int looped_call_scopes(const ghl_client *c) {
    return c->strict_calls ? GHL_SCOPE_CALL | GHL_SCOPE_BATCH : GHL_SCOPE_CLIENT | GHL_SCOPE_CALL | GHL_SCOPE_BATCH;
}

/* client:_add(method, ...): the method's own arguments after its name */
static int client_add(lua_State *L) {
    ghl_client *c = check_looped(L, 1);
    ghl_options o;
    ghl_limits limits;
    call x;
    int opts;
    if (c->busy) luaL_error(L, "ghl: the client is busy");
    memset(&x, 0, sizeof x);
    opts = ghl_read_call(L, luaL_checkstring(L, 2), 3, &x.job.request, &x.own);
    read_call_options(L, c, opts, &o, looped_call_scopes(c));
    /* reading the options may have run Lua code */
    if (c->closed || c->close_pending) luaL_error(L, "ghl: the client is closed");
    if (c->busy) luaL_error(L, "ghl: the client is busy");
    if (c->pid != getpid()) luaL_error(L, "ghl: a looped client cannot be used after fork()");
    fill_limits(&limits, &o);
    if (ghl_batch_add(&c->batch, &x.job.request, &limits, c->tags + 1) == NULL) luaL_error(L, "ghl: out of memory");
    lua_pushinteger(L, (lua_Integer)++c->tags);
    return 1;
}

static int run_step(lua_State *L) {
    call *x = lua_touserdata(L, 1);
    ghl_client *c = x->c;
    ghl_job *job;
    ghl_response *r;
    long ms;
    int n;
    /* the results live in the user value until they are returned: an error
     * raised by Lua code in the middle of a step loses none of them */
    ghl_getuservalue(L, 2);
    lua_getfield(L, -1, "results");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "results");
    }
    lua_remove(L, -2);
    n = (int)lua_rawlen(L, -1);
    if (!ensure_token(L, c, 2)) { /* what waits for the first token fails with the provider's error */
        int errmsg = lua_gettop(L);
        while ((job = ghl_batch_take_unstarted(&c->batch)) != NULL) {
            lua_createtable(L, 4, 0);
            lua_pushinteger(L, (lua_Integer)job->tag);
            lua_rawseti(L, -2, 1);
            lua_pushvalue(L, errmsg);
            push_token_failure(L, 0);
            lua_rawseti(L, -4, 4);
            lua_rawseti(L, -3, 3);
            lua_pop(L, 1);
            lua_rawseti(L, errmsg - 1, ++n);
        }
        lua_pop(L, 1);
        ghl_getuservalue(L, 2);
        lua_pushnil(L);
        lua_setfield(L, -2, "results");
        lua_pop(L, 1);
        lua_pushnil(L);
        return 2;
    }
    while ((job = ghl_batch_next(&c->batch, &r)) != NULL) {
        int failed = 0;
        if (job->wants_token && renew_token_for(L, c, 2, job, &failed)) continue;
        c->shaping = job->tag;
        lua_createtable(L, 4, 0); /* above the errmsg, if it failed */
        lua_pushinteger(L, (lua_Integer)job->tag);
        lua_rawseti(L, -2, 1);
        if (failed) {
            lua_pushvalue(L, -2);
            push_token_failure(L, job->attempts);
        } else {
            push_result(L, c, job, r);
        }
        lua_rawseti(L, -4, 4);
        lua_rawseti(L, -3, 3);
        lua_rawseti(L, -2, 2);
        if (failed) lua_remove(L, -2);
        lua_rawseti(L, -2, ++n);
        c->shaping = 0;
    }
    ghl_getuservalue(L, 2);
    lua_pushnil(L);
    lua_setfield(L, -2, "results");
    lua_pop(L, 1);
    ms = ghl_batch_wait_ms(&c->batch);
    if (ms < 0)
        lua_pushnil(L);
    else
        lua_pushinteger(L, (lua_Integer)ms);
    return 2;
}

/* client:_step() */
static int client_step(lua_State *L) {
    ghl_client *c = check_looped(L, 1);
    call x;
    memset(&x, 0, sizeof x);
    x.looped = 1;
    return call_busy(L, c, 1, UP_RUN_STEP, &x);
}

/* client:_check_options(opts): raises as _add would for these per-call options. */
static int client_check_options(lua_State *L) {
    ghl_client *c = check_looped(L, 1);
    ghl_options o;
    read_call_options(L, c, 2, &o, looped_call_scopes(c));
    return 0;
}

/* client:_fd() */
static int client_fd(lua_State *L) {
    lua_pushinteger(L, ghl_batch_fd(&check_looped(L, 1)->batch));
    return 1;
}

/* client:_interrupted() */
static int client_interrupted(lua_State *L) {
    ghl_client *c = check_looped(L, 1);
    if (c->shaping == 0) return 0;
    lua_pushinteger(L, (lua_Integer)c->shaping);
    c->shaping = 0;
    return 1;
}

/* ghl.oauth_token(form [, opts]): POST /oauth/token, form-encoded, with a
 * client of its own for the one call. */
static int ghl_oauth_token(lua_State *L) {
    ghl_options o;
    ghl_client *c;
    call x;
    int i, n;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    ghl_check_oauth_options(L, 2);
    ghl_options_defaults(&o);
    ghl_options_read(L, 2, &o, GHL_SCOPE_CLIENT | GHL_SCOPE_CALL);
    memset(&x, 0, sizeof x);
    ghl_read_oauth_form(L, 1, &x.job.request);
    fill_settings(&x.settings, &o, 1, 0);
    c = new_client(L, &o);
    for (i = 0; ghl_oauth_secrets[i] != NULL; i++) { /* what must never come back in an error */
        size_t len;
        const char *v;
        lua_pushstring(L, ghl_oauth_secrets[i]);
        lua_rawget(L, 1); /* as the body reads the form */
        v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (v != NULL && ghl_secrets_add(&c->secrets, v, len) != 0) {
            release(c);
            luaL_error(L, "ghl: out of memory");
        }
        lua_pop(L, 1);
    }
    n = call_busy(L, c, lua_gettop(L), UP_RUN_ONE, &x);
    release(c);
    return n;
}

/* ghl.get_message_request(id [, opts]): what ghl.get_message would send. */
static int ghl_get_message_request(lua_State *L) {
    ghl_options o;
    ghl_request r;
    ghl_header h[GHL_MAX_HEADERS];
    char *path;
    int i, n;
    memset(&r, 0, sizeof r);
    r.endpoint = &ghl_get_message_endpoint;
    r.args[0] = ghl_check_id(L, 1, &r.arg_len[0]);
    read_module_options(L, 2, &o);
    if (o.token_fn) { /* what the first request would carry */
        size_t n;
        lua_pushvalue(L, o.token_fn);
        lua_call(L, 0, 1);
        o.token = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
        if (o.token == NULL || !ghl_token_valid(o.token, n))
            luaL_error(L, "ghl: option 'token': its function returned no valid token");
    }
    lua_createtable(L, 0, 3);
    lua_pushstring(L, r.endpoint->method);
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, o.base_url, o.base_url_len);
    path = lua_newuserdata(L, ghl_request_path_len(&r) + 1);
    ghl_request_write_path(&r, path);
    lua_pushstring(L, path);
    lua_remove(L, -2);
    lua_concat(L, 2);
    lua_setfield(L, -2, "url");
    n = ghl_request_headers(&o, &r, h);
    lua_createtable(L, 0, n);
    for (i = 0; i < n; i++) {
        lua_pushfstring(L, "%s%s", h[i].prefix, h[i].value);
        lua_setfield(L, -2, h[i].name);
    }
    lua_setfield(L, -2, "headers");
    return 1;
}

void ghl_client_open(lua_State *L) {
    const ghl_endpoint *row;
    const pager *pg;
    static const luaL_Reg methods[] = {
        {"get_message", client_get_message},
        {"get_messages", client_get_messages},
        {"request", client_request},
        {"rate_limit", client_rate_limit},
        {"close", client_close},
        {"_add", client_add},
        {"_step", client_step},
        {"_fd", client_fd},
        {"_check_options", client_check_options},
        {"_interrupted", client_interrupted},
        {NULL, NULL},
    };
    static const luaL_Reg meta[] = {
        {"__gc", client_close},
        {"__tostring", client_tostring},
#if LUA_VERSION_NUM >= 504
        {"__close", client_close},
#endif
        {NULL, NULL},
    };
    static const luaL_Reg functions[] = {
        {"new", ghl_new},
        {"get_message", ghl_get_message},
        {"get_message_request", ghl_get_message_request},
        {"oauth_token", ghl_oauth_token},
        {"_looped_client", ghl_looped_client},
        {"_next_page", ghl_next_page},
        {"_check_id", ghl_check_id_fn},
        {NULL, NULL},
    };
    luaL_newmetatable(L, GHL_CLIENT_MT);
    luaL_setfuncs(L, meta, 0);
    lua_pushliteral(L, GHL_CLIENT_MT);
    lua_setfield(L, -2, "__name");
    lua_newtable(L); /* the methods */
    lua_pushvalue(L, -2);
    lua_pushcfunction(L, run_one);
    lua_pushcfunction(L, run_get_messages);
    lua_pushcfunction(L, run_step);
    luaL_setfuncs(L, methods, UP_COUNT);
    for (row = ghl_endpoints; row->name != NULL; row++) { /* the same upvalues, and the row */
        lua_pushvalue(L, -2);
        lua_pushcfunction(L, run_one);
        lua_pushcfunction(L, run_get_messages);
        lua_pushcfunction(L, run_step);
        lua_pushlightuserdata(L, (void *)row);
        lua_pushcclosure(L, client_call_row, UP_ROW);
        lua_setfield(L, -2, row->name);
    }
    for (pg = pagers; pg->iterator != NULL; pg++) { /* the same upvalues, the pager, its step */
        lua_pushvalue(L, -2);
        lua_pushcfunction(L, run_one);
        lua_pushcfunction(L, run_get_messages);
        lua_pushcfunction(L, run_step);
        lua_pushlightuserdata(L, (void *)pg);
        lua_pushlightuserdata(L, (void *)pg);
        lua_pushcclosure(L, each_next, 1);
        lua_pushcclosure(L, client_each, UP_ROW + 1);
        lua_setfield(L, -2, pg->iterator);
    }
    lua_setfield(L, -2, "__index");
    /* the module functions (the metatable is on top) get the same upvalues */
    lua_pushcfunction(L, run_one);
    lua_pushcfunction(L, run_get_messages);
    lua_pushcfunction(L, run_step);
    luaL_setfuncs(L, functions, UP_COUNT);
}
