/* The differences between Lua 5.1 (and LuaJIT built against the 5.1 headers),
 * 5.2, 5.3 and 5.4 that ghl touches, kept in one place. */
#ifndef GHL_COMPAT_H
#define GHL_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM == 501
/* PUC 5.1 lacks these; LuaJIT 2.1 has them, but its hosts load modules built
 * against the plain 5.1 headers, where they are not declared either. */
static inline void ghl_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
    luaL_checkstack(L, nup + 1, "too many upvalues");
    for (; l->name != NULL; l++) {
        int i;
        for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}
#define luaL_setfuncs ghl_compat_setfuncs

#define luaL_setmetatable(L, name) (luaL_getmetatable(L, (name)), lua_setmetatable(L, -2))
#endif

#if LUA_VERSION_NUM == 501
#define lua_rawlen lua_objlen

/* The userdata at idx if it has the metatable `name`, else NULL. */
static inline void *ghl_compat_testudata(lua_State *L, int idx, const char *name) {
    void *p = lua_touserdata(L, idx);
    int same;
    if (p == NULL || !lua_getmetatable(L, idx)) return NULL;
    luaL_getmetatable(L, name);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same ? p : NULL;
}
#define luaL_testudata ghl_compat_testudata
#endif

/* Whether the collector runs. LuaJIT answers LUA_GCISRUNNING (9) though
 * its 5.1 headers do not name it; PUC 5.1 cannot tell, so there it counts
 * as stopped (nothing is changed). */
#ifndef LUA_GCISRUNNING
#define LUA_GCISRUNNING 9
#endif
#define ghl_gc_running(L) (lua_gc((L), LUA_GCISRUNNING, 0) == 1)

/* Whether an error raised by a finalizer reaches the code that allocated.
 * From 5.4 on it becomes a warning instead, so nothing can unwind through
 * C code (lua-cjson) from a finalizer, and the collector need not pause. */
#define GHL_FINALIZER_ERRORS_PROPAGATE (LUA_VERSION_NUM < 504)

/* A userdata's one Lua value (a table here: 5.1's environment and 5.2's
 * user value must be tables). */
#if LUA_VERSION_NUM == 501
#define ghl_setuservalue(L, idx) lua_setfenv((L), (idx))
#define ghl_getuservalue(L, idx) lua_getfenv((L), (idx))
#elif LUA_VERSION_NUM < 504
#define ghl_setuservalue(L, idx) lua_setuservalue((L), (idx))
#define ghl_getuservalue(L, idx) lua_getuservalue((L), (idx))
#else
#define ghl_setuservalue(L, idx) lua_setiuservalue((L), (idx), 1)
#define ghl_getuservalue(L, idx) lua_getiuservalue((L), (idx), 1)
#endif

/* Integers exist from 5.3 on; before that every number is a double. */
#if LUA_VERSION_NUM >= 503
#define GHL_HAS_INTEGERS 1
#else
#define GHL_HAS_INTEGERS 0
#endif

#endif
