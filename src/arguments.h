/* A method's arguments read into a request (request.h): the ids of its path,
 * its query or body, client:request's method, path and args. One reader for
 * every transport: the libcurl client (client.c) and the Lua transports'
 * exchanges (exchange.c) take the same arguments and raise the same errors.
 * The encoded query and body are pushed and stay on the stack, where the
 * request points into them, until the caller owns a copy. */
#ifndef GHL_ARGUMENTS_H
#define GHL_ARGUMENTS_H

#include "compat.h"
#include "request.h"

/* The row of the client method called name (ghl_endpoints), or NULL. */
const ghl_endpoint *ghl_find_row(const char *name);

/* Reads a row's arguments from arg on (ids, then query or body) into r.
 * Returns the index of the per-call options. */
int ghl_read_row_arguments(lua_State *L, const ghl_endpoint *e, int arg, ghl_request *r);

/* Reads client:request's arguments from arg on (method, path, args) into
 * r; own becomes the row made for this request. Returns the index of the
 * per-call options. */
int ghl_read_request(lua_State *L, int arg, ghl_request *r, ghl_endpoint *own);

/* Reads the arguments of the method called name (get_message, request, or
 * a row's) from arg on into r. Returns the index of the per-call options;
 * an unknown name raises. */
int ghl_read_call(lua_State *L, const char *name, int arg, ghl_request *r, ghl_endpoint *own);

/* ghl.oauth_token's opts at idx: raises for a key it does not take. */
void ghl_check_oauth_options(lua_State *L, int idx);

/* Reads ghl.oauth_token's form (the table at idx) into r: its row, the body
 * form-encoded (pushed). */
void ghl_read_oauth_form(lua_State *L, int idx, ghl_request *r);

/* The form fields (and the answer's field) that must never come back in an
 * error, ended by NULL. */
extern const char *const ghl_oauth_secrets[];

#endif
