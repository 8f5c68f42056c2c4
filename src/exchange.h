/* One request done by a transport written in Lua (ghl.resty's cosockets).
 * The transport only moves bytes; this unit does the rest the libcurl path
 * does: what to connect to, the request bytes, the headers ghl reads, the
 * body limit, the retry rule and its waits, and the three returns, shaped
 * by shape.c with the secrets cut out. Also the rate-limit window, for a
 * Lua batch that paces its starts as batch.c does.
 *
 * Internal interface, registered as ghl._exchange_call, ghl._exchange and
 * ghl._window; the README's "Internal interface for transports" has every
 * method. The ones a transport's attempt uses:
 *
 *   ex = ghl._exchange_call(name, opts, token, batch, ...)  a client method's
 *                   request, its arguments checked as the C client does
 *   ex:target()     scheme, host, port, server_name, pool_key, repeat_safe,
 *                   connect_timeout, timeout (seconds, one attempt), and the
 *                   request bytes ex:request() gives
 *   ex:request()    the request bytes (request line, Host, every header, body)
 *   ex:feed(bytes)  the next bytes read from the connection (http1.c reads
 *                   the response from them) -> nil: more are needed; true,
 *                   keep: the response is whole (keep: the connection may
 *                   carry another); false: stop reading, the attempt failed
 *                   (too large, or not HTTP: then ex:fail is done already)
 *   ex:closed()     the connection ended -> true: the response is whole (its
 *                   body ran to the end); false: cut short (ex:fail done)
 *   ex:fail(what, text)  no whole response; what is one of resolve, connect,
 *                   timeout, send, recv, closed, tls, verify, protocol
 *   ex:next_attempt([with_result])  the seconds to wait before the next
 *                   attempt, or nil when the exchange is done (the C retry
 *                   rule); with with_result, nil and ex:result()'s returns
 *   ex:result()     message, nil, info  or  nil, errmsg, info
 *   ex:batch()      concurrency, max_retry_delay (get_messages' settings)
 *   ex:release()    frees what the exchange holds (any time; from a
 *                   finalizer that runs inside one of its own methods, once
 *                   that method returns) -> whether the handle is empty now
 *                   (false: freed later, or by the collector; not reusable)
 *   ex:reuse(name, opts, token, batch, ...)  _exchange_call's exchange on
 *                   a released handle (no new userdata, no finalizer)
 *
 *   w = ghl._window(max_retry_delay)
 *   w:take(ex)      takes in ex's last response's rate-limit figures
 *   w:room(running) whether one more may start; else the seconds to wait
 *                   before asking again
 */
#ifndef GHL_EXCHANGE_H
#define GHL_EXCHANGE_H

#include "compat.h"
#include "options.h"
#include "redact.h"
#include "http1.h"
#include "request.h"
#include "response.h"
#include "window.h"

#define GHL_EXCHANGE_MT "ghl.exchange"
#define GHL_WINDOW_MT "ghl.window"
#define GHL_EXCHANGE_BODY 4096
#define GHL_EXCHANGE_STORE 2048

typedef struct ghl_exchange {
    ghl_options options; /* its own copies of the strings */
    ghl_request request; /* points at the copies below */
    ghl_endpoint own;    /* client:request's row */
    char *owned;         /* path, query, body and version, one block (in store if it fits); NULL: none */
    ghl_response response;
    ghl_http1 reader;    /* this attempt's response, read from the bytes fed */
    ghl_buffer scratch;  /* the request bytes while they are made; wiped */
    ghl_buffer target;   /* the request target (path prefix, path, query) */
    int attempts;        /* attempts finished */
    int answered;        /* a status line came in this attempt */
    int done;            /* next_attempt said no more */
    int renewed;         /* has had its one repeat with a new token */
    int had_response;    /* some attempt got a status: last_ratelimit holds its figures */
    int busy;            /* methods in progress that may run Lua code: release waits */
    int release_pending; /* ex:release() came while busy */
    int secret_answer;   /* the answer holds secrets (oauth_token's): wiped when freed */
    ghl_ratelimit last_ratelimit;
    unsigned long rng;
    /* not zeroed when made (written as used): */
    ghl_secrets secrets;
    char args[GHL_MAX_PATH_ARGS][GHL_MAX_ID_LEN + 1];
    size_t store_used;                    /* bytes of store taken */
    char store[GHL_EXCHANGE_STORE];       /* the copies of the option strings and of owned while they fit */
    char body_storage[GHL_EXCHANGE_BODY]; /* a body up to this size needs no allocation of its own */
} ghl_exchange;

/* Registers the two metatables and sets _exchange and _window in the
 * module table on top of the stack. */
void ghl_exchange_open(lua_State *L);

#endif
