/* Turning one response (or a body given by the caller) into the module's
 * returns: `result, nil, info` or `nil, errmsg, info`. Each piece (the info
 * table, the error message, the unwrap, the type rule) is its own function;
 * ghl_shape_push only calls them. Lua code may run while tables are made:
 * nothing here holds a pointer into memory Lua can free. */
#ifndef GHL_SHAPE_H
#define GHL_SHAPE_H

#include "compat.h"
#include "redact.h"
#include "request.h"
#include "response.h"

typedef struct ghl_shape {
    const ghl_request *request; /* NULL: a body given by the caller (no "(GET ...)") */
    const ghl_response *response;
    int attempts; /* 0: not from a request */
    int convert_enums;
    const ghl_secrets *secrets; /* cut out of info.body; NULL: none */
} ghl_shape;

/* Pushes the three return values. An error raised by Lua code that runs
 * meanwhile (a finalizer, a hook) propagates; only the decoder's own
 * complaints become kind "decode". */
void ghl_shape_push(lua_State *L, const ghl_shape *s);

/* The three returns of request req's response r after `attempts`: an error
 * body's text reaches errmsg and info.message, so the secrets are cut out of
 * it first (a 2xx body reaches info only as info.body, which the shaper
 * cuts). Raises on out of memory. */
void ghl_shape_push_answer(lua_State *L, const ghl_request *req, ghl_response *r, int attempts, int convert_enums,
                           const ghl_secrets *secrets);

/* Pushes {max=..., remaining=..., ...}, or nil when none was present. */
void ghl_push_ratelimit(lua_State *L, const ghl_ratelimit *rl);

/* Decodes a JSON text by the module's rules, nothing unwrapped or renamed:
 * null object members removed, null array elements ghl.null, integral
 * numbers within +-(2^53 - 1) integers on 5.3+. Pushes the value and returns
 * NULL, or pushes nothing and returns why the text is not JSON (empty, a NUL
 * byte, not UTF-8, not JSON, a number beyond a double). An error raised by
 * Lua code that runs meanwhile propagates. */
const char *ghl_decode_json(lua_State *L, const char *body, size_t len);

/* Whether the table at idx carries the host lua-cjson's array_mt or
 * empty_array_mt (OpenResty's cjson has them): a JSON array even when empty. */
int ghl_json_array_marked(lua_State *L, int idx);

/* Applies the `type` rule to the message table at idx. */
void ghl_convert_type(lua_State *L, int idx);

/* Puts the MESSAGE_TYPES table into the registry, and on top of the stack;
 * takes the host lua-cjson's array marks, if it loads and has them. */
void ghl_shape_open(lua_State *L);

/* Whether the bytes are well-formed UTF-8 (no overlongs, no surrogates). */
int ghl_utf8_valid(const char *s, size_t n);

#endif
