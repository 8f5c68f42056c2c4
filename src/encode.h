/* Query strings and JSON bodies made from Lua tables, by the contract's
 * rules. Only raw table access: no metamethod, so no Lua code, runs while a
 * table is read; the text is built in a luaL_Buffer, so an error raised on a
 * bad value frees everything. */
#ifndef GHL_ENCODE_H
#define GHL_ENCODE_H

#include "compat.h"

/* Pushes the query string (no '?') of the table at idx: keys sorted
 * bytewise, names and values percent-encoded, sequences comma-joined,
 * integers without a fraction, booleans as true/false. A bad key or value
 * raises, naming the key. what names the argument in errors ("query"). */
void ghl_push_query(lua_State *L, int idx, const char *what);

/* Pushes the JSON text of the value at idx: an empty table is {}, a
 * sequence an array, ghl.null null, integers without a fraction. A value JSON
 * cannot hold raises, naming where it is ("body.attachments[2]"). */
void ghl_push_json(lua_State *L, int idx, const char *what);

#endif
