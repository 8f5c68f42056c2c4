#include "webhook.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "shape.h"

#define KEY_METATABLE "ghl.webhook_key"
#define ED25519_SIGNATURE_LEN 64
#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192
#define MAX_SIGNATURE_LEN (RSA_MAX_BITS / 8)
#define MAX_KEY_TEXT (16 * 1024)
#define MAX_KEY_BASE64 4096
#define MAX_CACHED_KEYS 16

/* Stack slots of verify_webhook, after its three arguments. */
enum { ARG_BODY = 1, ARG_HEADERS, ARG_OPTS, SLOT_KEY, SLOT_RSA_KEY, SLOT_SIG, SLOT_WH_SIG, SLOT_LAST = SLOT_WH_SIG };

typedef struct key_box {
    EVP_PKEY *pkey;
} key_box;

static void key_box_free(key_box *box) {
    if (box->pkey != NULL) {
        EVP_PKEY_free(box->pkey);
        box->pkey = NULL;
    }
}

static int key_gc(lua_State *L) {
    key_box_free((key_box *)luaL_checkudata(L, 1, KEY_METATABLE));
    return 0;
}

/* Pushes an empty key box (its metatable set before any key is put in it). */
static key_box *push_key_box(lua_State *L) {
    key_box *box = lua_newuserdata(L, sizeof *box);
    box->pkey = NULL;
    luaL_setmetatable(L, KEY_METATABLE);
    return box;
}

/* ---- base64, standard alphabet ---------------------------------------- */

/* 1 when a < b, else 0; a and b below 2^31. No branch. */
static uint32_t ct_lt(uint32_t a, uint32_t b) {
    return (a - b) >> 31;
}

/* 1 when lo <= c <= hi, else 0. No branch. */
static uint32_t ct_in(uint32_t c, uint32_t lo, uint32_t hi) {
    return (ct_lt(c, lo) ^ 1) & ct_lt(c, hi + 1);
}

/* The 6-bit value of a base64 character; *bad gets a non-zero bit when it is
 * not one. No branch and no table lookup on the character. */
static uint32_t ct_b64_value(uint32_t c, uint32_t *bad) {
    uint32_t upper = ct_in(c, 'A', 'Z'), lower = ct_in(c, 'a', 'z'), digit = ct_in(c, '0', '9');
    uint32_t plus = ct_in(c, '+', '+'), slash = ct_in(c, '/', '/');
    uint32_t v = ((0u - upper) & (c - 'A')) | ((0u - lower) & (c - 'a' + 26)) | ((0u - digit) & (c - '0' + 52)) |
                 ((0u - plus) & 62u) | ((0u - slash) & 63u);
    *bad |= (upper | lower | digit | plus | slash) ^ 1;
    return v & 63u;
}

/* The base64 text lengths that hold exactly want bytes. */
static size_t b64_unpadded_len(size_t want) {
    return (want * 4 + 2) / 3;
}
static size_t b64_padded_len(size_t want) {
    return (want + 2) / 3 * 4;
}

/* Decodes the base64 text s[0..n), n being b64_padded_len(want) or
 * b64_unpadded_len(want), into out[0..want). Constant time in the text's
 * bytes: the loops and branches depend on the lengths only. Returns 0 when
 * the text is well-formed (the standard alphabet, '=' only as padding, the
 * unused low bits zero), -1 otherwise. */
static int ct_b64_decode_exact(const unsigned char *s, size_t n, unsigned char *out, size_t want) {
    size_t chars = b64_unpadded_len(want), i, o = 0;
    uint32_t bad = 0, acc = 0;
    int bits = 0;
    for (i = 0; i < chars; i++) {
        acc = (acc << 6) | ct_b64_value(s[i], &bad);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    bad |= acc; /* the bits after the last byte */
    for (; i < n; i++) bad |= (uint32_t)(s[i] ^ '=');
    return -(int)((bad | (0u - bad)) >> 31);
}

/* Lenient decoding, for keys and for telling why a signature of the wrong
 * length is wrong: the standard alphabet with optional padding. Returns the
 * number of bytes (out may be NULL to count), or -1 when it is not base64. */
static long b64_decode(const unsigned char *s, size_t n, unsigned char *out) {
    size_t i, pad = 0;
    long o = 0;
    uint32_t acc = 0, bad = 0;
    int bits = 0;
    while (pad < 2 && n > 0 && s[n - 1] == '=') {
        n--;
        pad++;
    }
    if (pad > 0 && (n + pad) % 4 != 0) return -1;
    if (n % 4 == 1) return -1;
    for (i = 0; i < n; i++) {
        acc = (acc << 6) | ct_b64_value(s[i], &bad);
        if (bad) return -1;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (out != NULL) out[o] = (unsigned char)(acc >> bits);
            o++;
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) return -1;
    return o;
}

/* ---- keys --------------------------------------------------------------- */

static int no_password(char *buf, int size, int rwflag, void *u) {
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A public key from PEM ("-----BEGIN PUBLIC KEY-----") or base64 DER
 * SubjectPublicKeyInfo. Returns it, or NULL with *why set. Plain C: no Lua. */
static EVP_PKEY *read_public_key(const char *text, size_t n, int pem_only, const char **why) {
    EVP_PKEY *pkey = NULL;
    while (n > 0 && is_space((unsigned char)*text)) {
        text++;
        n--;
    }
    while (n > 0 && is_space((unsigned char)text[n - 1])) n--;
    if (n == 0) {
        *why = "is empty";
        return NULL;
    }
    if (n > MAX_KEY_TEXT) {
        *why = "is too long to be a public key";
        return NULL;
    }
    if (n >= 11 && memcmp(text, "-----BEGIN ", 11) == 0) {
        BIO *bio = BIO_new_mem_buf(text, (int)n);
        if (bio != NULL) {
            pkey = PEM_read_bio_PUBKEY(bio, NULL, no_password, NULL);
            BIO_free(bio);
        }
        if (pkey == NULL) *why = "is not a PEM public key (-----BEGIN PUBLIC KEY-----)";
    } else if (pem_only) {
        *why = "must be a PEM public key (-----BEGIN PUBLIC KEY-----)";
    } else if (n > MAX_KEY_BASE64) {
        *why = "is too long to be a base64 SubjectPublicKeyInfo";
    } else {
        unsigned char der[MAX_KEY_BASE64 / 4 * 3 + 3];
        long len = b64_decode((const unsigned char *)text, n, der);
        if (len > 0) {
            const unsigned char *p = der;
            pkey = d2i_PUBKEY(NULL, &p, len);
            if (pkey != NULL && p != der + len) { /* bytes after the key */
                EVP_PKEY_free(pkey);
                pkey = NULL;
            }
        }
        if (pkey == NULL) *why = "is neither a PEM public key nor a base64 SubjectPublicKeyInfo";
        OPENSSL_cleanse(der, sizeof der);
    }
    ERR_clear_error(); /* leave nothing in this thread's queue for the host's own OpenSSL use */
    return pkey;
}

/* Checks that the key is of the wanted type (and, for RSA, size); frees it
 * and sets *why when not. */
static EVP_PKEY *check_key_type(EVP_PKEY *pkey, int rsa, const char **why) {
    int id;
    if (pkey == NULL) return NULL;
    id = EVP_PKEY_get_base_id(pkey);
    if (!rsa && id != EVP_PKEY_ED25519) {
        *why = id == EVP_PKEY_RSA ? "is an RSA key, not an Ed25519 public key" : "is not an Ed25519 public key";
    } else if (rsa && id != EVP_PKEY_RSA) {
        *why = id == EVP_PKEY_ED25519 ? "is an Ed25519 key, not an RSA public key" : "is not an RSA public key";
    } else if (rsa && (EVP_PKEY_get_bits(pkey) < RSA_MIN_BITS || EVP_PKEY_get_bits(pkey) > RSA_MAX_BITS)) {
        *why = "is an RSA key outside 2048 to 8192 bits";
    } else {
        return pkey;
    }
    EVP_PKEY_free(pkey);
    return NULL;
}

/* Reads opts[name] (a string) into a key box at slot; raises when it is not
 * a valid key of that kind. Parsed keys are kept in the cache table at
 * upvalue `cache` (key text -> box; OpenSSL 3 takes a few hundred
 * microseconds to parse one), at most MAX_CACHED_KEYS of them: a full cache
 * is replaced by an empty one. Its count is kept under the key `true`. */
static void load_option_key(lua_State *L, const char *name, int rsa, int slot, int cache) {
    const char *why = NULL, *text;
    size_t n;
    lua_Integer count;
    key_box *box;
    lua_pushstring(L, name);
    lua_rawget(L, ARG_OPTS); /* check_options made sure it is a string or nil */
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    lua_pushvalue(L, -1);
    lua_rawget(L, lua_upvalueindex(cache));
    if (!lua_isnil(L, -1)) {
        lua_replace(L, slot);
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    text = lua_tolstring(L, -1, &n);
    box = push_key_box(L);
    lua_replace(L, slot);
    box->pkey = check_key_type(read_public_key(text, n, rsa, &why), rsa, &why);
    if (box->pkey == NULL) luaL_error(L, "ghl: option '%s' %s", name, why);
    lua_pushboolean(L, 1);
    lua_rawget(L, lua_upvalueindex(cache));
    count = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (count >= MAX_CACHED_KEYS) {
        lua_createtable(L, 0, MAX_CACHED_KEYS + 1);
        lua_replace(L, lua_upvalueindex(cache));
        count = 0;
    }
    lua_pushvalue(L, slot);
    lua_rawset(L, lua_upvalueindex(cache)); /* [text] = box; pops the text */
    lua_pushboolean(L, 1);
    lua_pushinteger(L, count + 1);
    lua_rawset(L, lua_upvalueindex(cache));
}

/* Checks opts: only public_key and legacy_rsa_key, both strings. Raw reads
 * only, so no metamethod runs. */
static void check_options(lua_State *L) {
    int t = lua_type(L, ARG_OPTS);
    if (t == LUA_TNIL || t == LUA_TNONE) return;
    if (t != LUA_TTABLE) luaL_error(L, "ghl: options must be a table (got %s)", luaL_typename(L, ARG_OPTS));
    lua_pushnil(L);
    while (lua_next(L, ARG_OPTS) != 0) {
        size_t n;
        const char *key;
        if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "ghl: option names must be strings");
        key = lua_tolstring(L, -2, &n);
        if (!(n == 10 && memcmp(key, "public_key", 10) == 0) && !(n == 14 && memcmp(key, "legacy_rsa_key", 14) == 0))
            luaL_error(L, "ghl: unknown option '%s'", key);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "ghl: option '%s' must be a string (got %s)", key, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
}

/* ---- headers ------------------------------------------------------------ */

static int ascii_lower(int c) {
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Whether the string key equals the lower-case name, ignoring ASCII case. */
static int header_is(const char *key, size_t n, const char *name, size_t name_len) {
    size_t i;
    if (n != name_len) return 0;
    for (i = 0; i < n; i++)
        if (ascii_lower((unsigned char)key[i]) != name[i]) return 0;
    return 1;
}

/* Finds X-GHL-Signature and X-WH-Signature in the headers table, in any
 * case, by raw traversal (no metamethod runs). The first value found goes
 * to its slot; counts[0] and counts[1] say how many keys named each. */
static void find_signature_headers(lua_State *L, int counts[2]) {
    lua_pushnil(L);
    while (lua_next(L, ARG_HEADERS) != 0) {
        int slot = 0;
        if (lua_type(L, -2) == LUA_TSTRING) {
            size_t n;
            const char *key = lua_tolstring(L, -2, &n);
            if (header_is(key, n, "x-ghl-signature", 15))
                slot = SLOT_SIG;
            else if (header_is(key, n, "x-wh-signature", 14))
                slot = SLOT_WH_SIG;
        }
        if (slot != 0 && counts[slot - SLOT_SIG]++ == 0) {
            lua_pushvalue(L, -1);
            lua_replace(L, slot);
        }
        lua_pop(L, 1);
    }
}

/* ---- returns ------------------------------------------------------------ */

/* Pushes nil, "ghl: <prefix><detail>", {kind = kind[, algorithm = ...]}. */
static int push_failure(lua_State *L, const char *kind, const char *algorithm, const char *fmt, const char *a) {
    lua_pushnil(L);
    lua_pushfstring(L, fmt, a);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    if (algorithm != NULL) {
        lua_pushstring(L, algorithm);
        lua_setfield(L, -2, "algorithm");
    }
    return 3;
}

/* The signature header's value as a string: a string, or a table holding
 * exactly one string (some servers give every header as a list). Returns
 * NULL when the header was given more than once (count keys named it, or a
 * table of several values). A value of another type raises. */
static const char *signature_text(lua_State *L, int slot, int count, const char *name, size_t *n) {
    int t = lua_type(L, slot);
    if (count > 1) return NULL;
    if (t == LUA_TTABLE) {
        if (lua_rawlen(L, slot) != 1) return NULL;
        lua_rawgeti(L, slot, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "ghl: bad argument 'headers' (%s must be a string, got a table holding a %s)", name,
                       luaL_typename(L, -1));
        lua_replace(L, slot);
        t = LUA_TSTRING;
    }
    if (t != LUA_TSTRING)
        luaL_error(L, "ghl: bad argument 'headers' (%s must be a string, got %s)", name, luaL_typename(L, slot));
    return lua_tolstring(L, slot, n);
}

/* Verifies sig over msg with pkey (md NULL for Ed25519). Returns 1 when it
 * verifies, 0 when not, -1 when libcrypto ran out of memory. Plain C. */
static int verify_signature(EVP_PKEY *pkey, const EVP_MD *md, const unsigned char *sig, size_t sig_len,
                            const unsigned char *msg, size_t msg_len) {
    int ok;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) return -1;
    ok = EVP_DigestVerifyInit(ctx, NULL, md, NULL, pkey) == 1 && EVP_DigestVerify(ctx, sig, sig_len, msg, msg_len) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

/* ghl.verify_webhook(body, headers [, opts]) */
static int ghl_verify_webhook(lua_State *L) {
    unsigned char sig[MAX_SIGNATURE_LEN];
    const char *body, *text, *name, *algorithm, *why;
    size_t body_len, text_len, sig_len;
    EVP_PKEY *pkey;
    const EVP_MD *md;
    int slot, ok, counts[2] = {0, 0};

    lua_settop(L, ARG_OPTS); /* a missing argument is nil */
    if (lua_type(L, ARG_BODY) != LUA_TSTRING)
        luaL_error(L, "ghl: bad argument 'body' (string expected, got %s)", luaL_typename(L, ARG_BODY));
    if (lua_type(L, ARG_HEADERS) != LUA_TTABLE)
        luaL_error(L, "ghl: bad argument 'headers' (table expected, got %s)", luaL_typename(L, ARG_HEADERS));
    check_options(L);
    lua_settop(L, SLOT_LAST); /* the key and header slots, all nil */
    if (!lua_isnil(L, ARG_OPTS)) {
        load_option_key(L, "public_key", 0, SLOT_KEY, 2);
        load_option_key(L, "legacy_rsa_key", 1, SLOT_RSA_KEY, 3);
    }
    find_signature_headers(L, counts);
    luaL_checkstack(L, 8, "ghl");

    if (!lua_isnil(L, SLOT_SIG)) {
        slot = SLOT_SIG;
        name = "X-GHL-Signature";
        algorithm = "ed25519";
        md = NULL;
        pkey = lua_isnil(L, SLOT_KEY) ? ((key_box *)lua_touserdata(L, lua_upvalueindex(1)))->pkey
                                      : ((key_box *)lua_touserdata(L, SLOT_KEY))->pkey;
        sig_len = ED25519_SIGNATURE_LEN;
    } else if (!lua_isnil(L, SLOT_WH_SIG) && !lua_isnil(L, SLOT_RSA_KEY)) {
        slot = SLOT_WH_SIG;
        name = "X-WH-Signature";
        algorithm = "rsa-sha256";
        md = EVP_sha256();
        pkey = ((key_box *)lua_touserdata(L, SLOT_RSA_KEY))->pkey;
        sig_len = (size_t)EVP_PKEY_get_size(pkey);
    } else if (!lua_isnil(L, SLOT_WH_SIG)) {
        return push_failure(L, "signature", NULL,
                            "ghl: webhook signature: no X-GHL-Signature header (an X-WH-Signature is %s)",
                            "accepted only with opts.legacy_rsa_key");
    } else {
        return push_failure(L, "signature", NULL, "ghl: webhook signature: no %s header",
                            lua_isnil(L, SLOT_RSA_KEY) ? "X-GHL-Signature" : "X-GHL-Signature or X-WH-Signature");
    }

    text = signature_text(L, slot, counts[slot - SLOT_SIG], name, &text_len);
    if (text == NULL)
        return push_failure(L, "signature", algorithm, "ghl: webhook signature: %s given more than once", name);
    /* A text of a length that can hold the signature is decoded in constant
     * time; only a failure, or another length, is looked at again to say why. */
    if ((text_len != b64_padded_len(sig_len) && text_len != b64_unpadded_len(sig_len)) ||
        ct_b64_decode_exact((const unsigned char *)text, text_len, sig, sig_len) != 0) {
        long got = b64_decode((const unsigned char *)text, text_len, NULL);
        if (got < 0 || (size_t)got == sig_len)
            return push_failure(L, "signature", algorithm, "ghl: webhook signature: %s is not valid base64", name);
        lua_pushnil(L);
        lua_pushfstring(L, "ghl: webhook signature: %s decodes to %d bytes, not the %d of %s signature", name,
                        (int)(got > INT_MAX ? INT_MAX : got), (int)sig_len,
                        md == NULL ? "an Ed25519" : "the RSA key's");
        lua_createtable(L, 0, 2);
        lua_pushliteral(L, "signature");
        lua_setfield(L, -2, "kind");
        lua_pushstring(L, algorithm);
        lua_setfield(L, -2, "algorithm");
        return 3;
    }

    lua_tolstring(L, ARG_BODY, &body_len);
    body = lua_tostring(L, ARG_BODY);
    ok = verify_signature(pkey, md, sig, sig_len, (const unsigned char *)body, body_len);
    if (ok < 0) luaL_error(L, "ghl: out of memory");
    if (ok == 0) return push_failure(L, "signature", algorithm, "ghl: webhook signature: %s does not verify", name);

    why = ghl_decode_json(L, body, body_len);
    if (why == NULL && lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        why = "the body is not a JSON object";
    }
    if (why == NULL) {
        /* cjson makes a table of [] and {} alike: the text tells them apart */
        size_t i = 0;
        while (i < body_len && is_space((unsigned char)body[i])) i++;
        if (body[i] != '{') {
            lua_pop(L, 1);
            why = "the body is not a JSON object";
        }
    }
    if (why != NULL) return push_failure(L, "decode", algorithm, "ghl: cannot decode the webhook: %s", why);
    lua_pushnil(L);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, algorithm);
    lua_setfield(L, -2, "algorithm");
    return 3;
}

void ghl_webhook_open(lua_State *L) {
    static const char builtin[] = GHL_WEBHOOK_PUBLIC_KEY;
    const char *why = NULL;
    key_box *box;
    if (luaL_newmetatable(L, KEY_METATABLE)) {
        lua_pushcfunction(L, key_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, "ghl.webhook_key");
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    box = push_key_box(L);
    box->pkey = check_key_type(read_public_key(builtin, sizeof builtin - 1, 0, &why), 0, &why);
    if (box->pkey == NULL) luaL_error(L, "ghl: the built-in webhook key %s", why);
    lua_newtable(L); /* the Ed25519 keys of opts.public_key, parsed */
    lua_newtable(L); /* the RSA keys of opts.legacy_rsa_key */
    lua_pushcclosure(L, ghl_verify_webhook, 3);
    lua_setfield(L, -2, "verify_webhook");
}
