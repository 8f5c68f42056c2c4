/* A JSON text to Lua values by the module's rules, in one pass: object
 * members that are null are left out, null array elements are ghl.null,
 * integral numbers within +-(2^53 - 1) are integers on 5.3+. Lua code may
 * run while tables and strings are made (a finalizer, a hook); the parser
 * keeps nothing Lua can free: the text belongs to the caller and the one
 * scratch buffer (for strings with escapes) is a userdata on the stack. */
#ifndef GHL_JSON_H
#define GHL_JSON_H

#include <stddef.h>

#include "compat.h"

/* Pushes the value of the text and returns NULL, setting *out_of_range to
 * whether a number in it is beyond a double (pushed as an infinity), or
 * pushes nothing and returns "the body is not valid JSON". array_mt: the
 * stack index of a metatable every array gets (lua-cjson's array_mt), or 0.
 * The text must be UTF-8 without NUL bytes (the caller checks). An error
 * raised by Lua code that runs meanwhile propagates. */
const char *ghl_json_decode(lua_State *L, const char *text, size_t len, int array_mt, int *out_of_range);

#endif
