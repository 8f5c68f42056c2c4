/* One request done by a transport written in Lua (ghl.resty's cosockets).
 * The transport only moves bytes; this unit does the rest the libcurl path
 * does: what to connect to, the request bytes, the headers ghl reads, the
 * body limit, the retry rule and its waits, and the three returns, shaped
 * by shape.c with the secrets cut out. Also the rate-limit window, for a
 * Lua batch that paces its starts as batch.c does.
 *
 * Internal interface, registered as ghl._exchange and ghl._window (see the
 * README, "Internal interface for transports"):
 *
 *   ex = ghl._exchange(id, opts [, batch])  misuse raises, as ghl.get_message;
 *                                           batch: accept get_messages' keys
 *   ex:target()     scheme, host, port, server_name, pool_key
 *   ex:request()    the request bytes (request line, Host, every header)
 *   ex:timeouts()   connect_timeout, timeout (seconds, one attempt)
 *   ex:status(code) a status line came: a new response starts
 *   ex:header(line) one header line; false: the body would be too large
 *   ex:head(block)  status line and header lines at once (as status() and
 *                   header()) -> status, length (-1: none), chunked, keep;
 *                   false: too large; nil, why: not a response head
 *   ex:body(chunk)  body bytes; false: max_body_size passed (stop reading)
 *   ex:fail(what, text)  no whole response; what is one of resolve, connect,
 *                   timeout, send, recv, closed, tls, verify, protocol
 *   ex:next_attempt()  the seconds to wait before the next attempt, or nil
 *                   when the exchange is done (the C retry rule)
 *   ex:result()     message, nil, info  or  nil, errmsg, info
 *   ex:batch()      concurrency, max_retry_delay (get_messages' settings)
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
#include "request.h"
#include "response.h"
#include "window.h"

#define GHL_EXCHANGE_MT "ghl.exchange"
#define GHL_WINDOW_MT "ghl.window"

typedef struct ghl_exchange {
    int live;            /* owns what follows; 0 once freed */
    ghl_options options; /* its own copies of the strings */
    ghl_secrets secrets;
    ghl_request request;
    char id[GHL_MAX_ID_LEN + 1];
    ghl_response response;
    ghl_buffer scratch; /* the request bytes while they are made; wiped */
    ghl_buffer target;  /* the request target (path prefix, path, query) */
    int attempts;       /* attempts finished */
    int answered;       /* a status line came in this attempt */
    int done;           /* next_attempt said no more */
    unsigned long rng;
} ghl_exchange;

/* Registers the two metatables and sets _exchange and _window in the
 * module table on top of the stack. */
void ghl_exchange_open(lua_State *L);

#endif
