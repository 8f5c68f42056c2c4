#include "json.h"

#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NOT_JSON "the body is not valid JSON"
#define MAX_DEPTH 1000                        /* as deep as lua-cjson goes */
#define MAX_EXACT_INTEGER 9007199254740991ULL /* 2^53 - 1 */
#define SHORT_NUMBER 64                       /* a number token copied on the C stack */

typedef struct parser {
    lua_State *L;
    const char *p, *end;
    char *scratch; /* the unescaped bytes of a string: a userdata, NULL when the text has no '\' */
    int array_mt;  /* the stack index of a metatable for arrays, 0: none */
    int depth;
    int out_of_range; /* a number beyond a double was read (as an infinity) */
} parser;

static int parse_value(parser *ps);

static void skip_space(parser *ps) {
    const char *p = ps->p, *end = ps->end;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    ps->p = p;
}

/* The number rule: integral values within +-(2^53 - 1) are integers on 5.3+. */
static void push_double(lua_State *L, double d) {
#if GHL_HAS_INTEGERS
    if (d == floor(d) && fabs(d) <= (double)MAX_EXACT_INTEGER) {
        lua_pushinteger(L, (lua_Integer)d);
        return;
    }
#endif
    lua_pushnumber(L, d);
}

/* strtod over a copy of the token with '.' as the C library's decimal point
 * (a host may have set LC_NUMERIC: Neovim does), NUL-terminated. */
static double token_to_double(lua_State *L, const char *s, size_t n) {
    const char *point = localeconv()->decimal_point;
    char stack[SHORT_NUMBER], *copy = stack, *o;
    size_t plen, i;
    double d;
    if (point == NULL || point[0] == '\0') point = ".";
    plen = strlen(point);
    if (n + plen >= sizeof stack) copy = (char *)lua_newuserdata(L, n + plen + 1); /* rare: a long token */
    for (o = copy, i = 0; i < n; i++) {
        if (s[i] == '.') {
            memcpy(o, point, plen);
            o += plen;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    d = strtod(copy, NULL);
    if (copy != stack) lua_pop(L, 1);
    return d;
}

static int is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* A number (RFC 8259's grammar, no more): short integers are read here,
 * anything else by strtod. */
static int parse_number(parser *ps) {
    const char *start = ps->p, *p = start, *end = ps->end, *digits;
    uint64_t v = 0;
    int integral = 1;
    if (*p == '-') p++;
    digits = p;
    if (p >= end) return -1;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && is_digit(*p)) {
            if (p - digits < 19) v = v * 10 + (uint64_t)(*p - '0');
            p++;
        }
    } else {
        return -1;
    }
    if (p < end && *p == '.') {
        integral = 0;
        p++;
        if (p >= end || !is_digit(*p)) return -1;
        while (p < end && is_digit(*p)) p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integral = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || !is_digit(*p)) return -1;
        while (p < end && is_digit(*p)) p++;
    }
    ps->p = p;
    if (integral && p - digits < 19 && v <= MAX_EXACT_INTEGER) {
#if GHL_HAS_INTEGERS
        lua_pushinteger(ps->L, *start == '-' ? -(lua_Integer)v : (lua_Integer)v);
#else
        lua_pushnumber(ps->L, *start == '-' ? -(double)v : (double)v);
#endif
    } else {
        double d = token_to_double(ps->L, start, (size_t)(p - start));
        if (isinf(d)) ps->out_of_range = 1;
        push_double(ps->L, d);
    }
    return 0;
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    int i;
    for (i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static char *put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xc0 | (cp >> 6));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xe0 | (cp >> 12));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *o++ = (char)(0xf0 | (cp >> 18));
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    }
    return o;
}

/* The first '"' or '\\' in [q, end), or end: eight bytes at a time while
 * none is in them (a word has a byte equal to c when (w ^ c...) has a zero
 * byte), then byte by byte. */
static const char *find_quote_or_backslash(const char *q, const char *end) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (end - q >= 8) {
        uint64_t w, a, b;
        memcpy(&w, q, 8);
        a = w ^ (ones * '"');
        b = w ^ (ones * '\\');
        if ((((a - ones) & ~a) | ((b - ones) & ~b)) & highs) break;
        q += 8;
    }
    while (q < end && *q != '"' && *q != '\\') q++;
    return q;
}

/* The rest of a string from its first '\' at q: unescaped into the scratch
 * buffer (never longer than the text), then pushed. A \u escape of a
 * surrogate must be a high one followed by a low one. */
static int parse_escaped_string(parser *ps, const char *q) {
    const char *end = ps->end;
    char *o = ps->scratch;
    memcpy(o, ps->p, (size_t)(q - ps->p));
    o += q - ps->p;
    while (q < end && *q != '"') {
        if (*q != '\\') {
            const char *run = find_quote_or_backslash(q, end);
            memcpy(o, q, (size_t)(run - q));
            o += run - q;
            q = run;
            continue;
        }
        if (end - q < 2) return -1;
        switch (q[1]) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, low;
            if (end - q < 6 || hex4(q + 2, &cp) != 0) return -1;
            if (cp >= 0xdc00 && cp <= 0xdfff) return -1;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (end - q < 12 || q[6] != '\\' || q[7] != 'u' || hex4(q + 8, &low) != 0) return -1;
                if (low < 0xdc00 || low > 0xdfff) return -1;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
                q += 6;
            }
            o = put_utf8(o, cp);
            q += 4;
            break;
        }
        default: return -1;
        }
        q += 2;
    }
    if (q >= end) return -1;
    ps->p = q + 1;
    lua_pushlstring(ps->L, ps->scratch, (size_t)(o - ps->scratch));
    return 0;
}

/* A string from just past its opening quote. Raw control characters are
 * taken as they are, as lua-cjson takes them. */
static int parse_string(parser *ps) {
    const char *q = find_quote_or_backslash(ps->p, ps->end), *end = ps->end;
    if (q >= end) return -1;
    if (*q == '\\') return parse_escaped_string(ps, q);
    lua_pushlstring(ps->L, ps->p, (size_t)(q - ps->p));
    ps->p = q + 1;
    return 0;
}

/* After a member or an element: 1 when a ',' says another follows (space
 * after it skipped), 0 when `close` ends the object or array, -1 else. */
static int after_item(parser *ps, char close) {
    skip_space(ps);
    if (ps->p >= ps->end) return -1;
    if (*ps->p == ',') {
        ps->p++;
        skip_space(ps);
        return 1;
    }
    if (*ps->p != close) return -1;
    ps->p++;
    ps->depth--;
    return 0;
}

/* A table's members (or elements) wait on the stack, up to PENDING_MAX of
 * them, so that the table is made with its size known: no rehash while it
 * fills. Only the outer PENDING_DEPTH levels wait, which keeps the stack of
 * a deep text short. */
#define PENDING_MAX 32
#define PENDING_DEPTH 16

/* Moves the n key/value pairs above base + 1 into the object there, made
 * now (sized for them) if *t is 0. In text order, so that a later member of
 * a name wins (and a null one, a nil value, clears an earlier one). */
static void flush_members(lua_State *L, int base, int *t, int n) {
    int i;
    if (*t == 0) {
        lua_createtable(L, 0, n);
        lua_insert(L, base + 1);
        *t = base + 1;
    }
    for (i = 0; i < n; i++) {
        lua_pushvalue(L, *t + 1 + 2 * i);
        lua_pushvalue(L, *t + 2 + 2 * i);
        lua_rawset(L, *t);
    }
    lua_settop(L, *t);
}

/* Moves the n values above base + 1 into the array there (made now, sized
 * for them, if *t is 0) after its first `had` elements. */
static void flush_elements(parser *ps, int base, int *t, int had, int n) {
    lua_State *L = ps->L;
    if (*t == 0) {
        lua_createtable(L, n, 0);
        if (ps->array_mt != 0) {
            lua_pushvalue(L, ps->array_mt);
            lua_setmetatable(L, -2);
        }
        lua_insert(L, base + 1);
        *t = base + 1;
    }
    for (; n > 0; n--) lua_rawseti(L, *t, had + n);
}

/* Members from just past '{'; a null one is left out (and clears an
 * earlier member of the same name). */
static int parse_object(parser *ps) {
    lua_State *L = ps->L;
    int base = lua_gettop(L), t = 0, pending = 0, r;
    int waits = ps->depth < PENDING_DEPTH;
    if (++ps->depth > MAX_DEPTH || !lua_checkstack(L, 4)) return -1;
    if (waits && !lua_checkstack(L, 2 * PENDING_MAX + 4)) waits = 0;
    skip_space(ps);
    if (!waits || (ps->p < ps->end && *ps->p == '}')) {
        lua_createtable(L, 0, 0);
        t = base + 1;
    }
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        ps->depth--;
        return 0;
    }
    for (;;) {
        if (ps->p >= ps->end || *ps->p != '"') return -1;
        ps->p++;
        if (parse_string(ps) != 0) return -1;
        skip_space(ps);
        if (ps->p >= ps->end || *ps->p != ':') return -1;
        ps->p++;
        skip_space(ps);
        r = parse_value(ps);
        if (r < 0) return -1;
        if (r == 1) {
            lua_pop(L, 1);
            lua_pushnil(L);
        }
        if (!waits) {
            lua_rawset(L, t);
        } else if (++pending == PENDING_MAX) {
            flush_members(L, base, &t, pending);
            pending = 0;
        }
        r = after_item(ps, '}');
        if (r < 0) return -1;
        if (r == 0) {
            if (waits) flush_members(L, base, &t, pending);
            return 0;
        }
    }
}

/* Elements from just past '['; a null one is ghl.null. */
static int parse_array(parser *ps) {
    lua_State *L = ps->L;
    int base = lua_gettop(L), t = 0, n = 0, pending = 0, r;
    int waits = ps->depth < PENDING_DEPTH;
    if (++ps->depth > MAX_DEPTH || !lua_checkstack(L, 3)) return -1;
    if (waits && !lua_checkstack(L, PENDING_MAX + 3)) waits = 0;
    skip_space(ps);
    if (!waits || (ps->p < ps->end && *ps->p == ']')) flush_elements(ps, base, &t, 0, 0);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        ps->depth--;
        return 0;
    }
    for (;;) {
        if (parse_value(ps) < 0) return -1;
        if (!waits) {
            lua_rawseti(L, t, ++n);
        } else if (++pending == PENDING_MAX) {
            flush_elements(ps, base, &t, n, pending);
            n += pending;
            pending = 0;
        }
        r = after_item(ps, ']');
        if (r < 0) return -1;
        if (r == 0) {
            if (waits) flush_elements(ps, base, &t, n, pending);
            return 0;
        }
    }
}

static int parse_literal(parser *ps, const char *word, size_t n) {
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return -1;
    ps->p += n;
    return 0;
}

/* One value at ps->p (no space before it). Returns 0 (pushed), 1 (pushed
 * null) or -1 (not JSON; the stack above the caller's is left to it). */
static int parse_value(parser *ps) {
    if (ps->p >= ps->end) return -1;
    switch (*ps->p) {
    case '"': ps->p++; return parse_string(ps);
    case '{': ps->p++; return parse_object(ps);
    case '[': ps->p++; return parse_array(ps);
    case 't':
        if (parse_literal(ps, "true", 4) != 0) return -1;
        lua_pushboolean(ps->L, 1);
        return 0;
    case 'f':
        if (parse_literal(ps, "false", 5) != 0) return -1;
        lua_pushboolean(ps->L, 0);
        return 0;
    case 'n':
        if (parse_literal(ps, "null", 4) != 0) return -1;
        lua_pushlightuserdata(ps->L, NULL);
        return 1;
    default:
        if (*ps->p == '-' || is_digit(*ps->p)) return parse_number(ps);
        return -1;
    }
}

const char *ghl_json_decode(lua_State *L, const char *text, size_t len, int array_mt, int *out_of_range) {
    parser ps;
    int base = lua_gettop(L);
    memset(&ps, 0, sizeof ps);
    ps.L = L;
    ps.p = text;
    ps.end = text + len;
    ps.array_mt = array_mt;
    if (!lua_checkstack(L, 4)) return NOT_JSON;
    if (memchr(text, '\\', len) != NULL) ps.scratch = (char *)lua_newuserdata(L, len);
    skip_space(&ps);
    if (parse_value(&ps) < 0) {
        lua_settop(L, base);
        return NOT_JSON;
    }
    skip_space(&ps);
    if (ps.p != ps.end) {
        lua_settop(L, base);
        return NOT_JSON;
    }
    *out_of_range = ps.out_of_range;
    if (ps.scratch != NULL) lua_replace(L, base + 1); /* the value where the scratch was */
    return NULL;
}
