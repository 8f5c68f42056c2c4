/* The client handle: its options, a batch engine (one multi handle, so one
 * connection cache) and what the calls need, all owned by a userdata so that
 * every resource is freed by close, __gc or __close. A client is busy while
 * it is in a call: Lua code that runs meanwhile (a finalizer, a hook) cannot
 * re-enter it, and a close it asks for waits for the call to end. */
#ifndef GHL_CLIENT_H
#define GHL_CLIENT_H

#include <sys/types.h>

#include "batch.h"
#include "compat.h"
#include "options.h"
#include "redact.h"
#include "transfer.h"

#define GHL_CLIENT_MT "ghl.client"

typedef struct ghl_client {
    int closed;                  /* resources freed; calls raise */
    int busy;                    /* in a call */
    int close_pending;           /* close() came during the call */
    pid_t pid;                   /* the process whose connections the engine holds */
    lua_Integer used;            /* a cached default client: when it last served a call */
    int looped;                  /* driven by the host's event loop: only the _add/_step calls */
    int strict_calls;            /* looped, the caller's own: a call's options are the per-call ones */
    int has_provider;            /* the token comes from a function, kept in the user value */
    unsigned long token_gen;     /* bumped at each token the provider gives */
    int refusal;                 /* in this call, the provider gave no new token for token_gen:
                                    * 0 none, else how (TOKEN_SAME, TOKEN_FAILED: its errmsg in the user value) */
    struct curl_slist **retired; /* header lists replaced while transfers may still use them */
    int retired_count, retired_cap;
    unsigned long tags;    /* looped: the last tag handed out */
    unsigned long shaping; /* looped: the tag whose result was being made, 0: none */
    ghl_options options;   /* the client's own copies of the strings */
    ghl_secrets secrets;
    ghl_sockets sockets;
    ghl_transport_config transport;
    ghl_batch batch;
} ghl_client;

/* Registers the client metatable and the module functions that make or use
 * clients (new, get_message, get_message_request); the module table is on
 * top. */
void ghl_client_open(lua_State *L);

#endif
