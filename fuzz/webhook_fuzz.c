/* libFuzzer target: ghl.verify_webhook(body, headers, opts) on arbitrary
 * signature headers, keys and bodies.
 *
 * Built by scripts/fuzz (`make fuzz`) with ghl's sources linked in and
 * -fsanitize=fuzzer,address,undefined, like decode_fuzz.c. At start it makes
 * one Lua 5.4 state, a fixed Ed25519 test key (from a constant seed) and an
 * RSA 2048 key for the legacy path.
 *
 * An input is: byte 0 the mode, bytes 1-2 the length n of the header text
 * (big-endian, mod 1024, cut to what is there), n bytes of header text, then
 * the body. Modes (byte 0 mod 6):
 *   0  X-GHL-Signature = the header text, the test key as opts.public_key
 *      (base64 SPKI): never a success unless the text is the body's true
 *      signature, base64 with or without padding.
 *   1  X-GHL-Signature = the body's true signature (padded or not by bit 0
 *      of byte 1), under a name whose letters' case the header text picks:
 *      never kind "signature".
 *   2  X-GHL-Signature = a list of (byte 1 mod 4) true signatures: one
 *      verifies, any other count is kind "signature".
 *   3  X-WH-Signature = the header text with the RSA key as
 *      opts.legacy_rsa_key: never a success.
 *   4  opts.public_key = the header text, X-GHL-Signature the true
 *      signature: may raise, then only "ghl: option 'public_key' ...".
 *   5  the body with one byte changed (which and how: the header text's
 *      first two bytes), X-GHL-Signature the true signature of the body as
 *      it was: always kind "signature".
 * Every return must be the contract's: `event, nil, {algorithm}` with the
 * body decoded by the section-1 rules, or `nil, "ghl: ..." (one line),
 * {kind = "signature" | "decode", ...}`. Anything else aborts. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

int luaopen_ghl(lua_State *L);

#define DEFAULT_CPATH                                                                 \
    "/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;/usr/lib/aarch64-linux-gnu/lua/5.4/?.so;" \
    "/usr/local/lib/lua/5.4/?.so;/usr/lib/lua/5.4/?.so"
#define MAX_SAFE_INTEGER 9007199254740991.0

static lua_State *L;
static int verify_ref = LUA_NOREF;
static EVP_PKEY *ed_key;
static char ed_spki[128];
static char rsa_pem[4096];

static void die(const char *what, const char *detail) {
    fprintf(stderr, "webhook_fuzz: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

#define CHECK(cond, what)             \
    do {                              \
        if (!(cond)) die(what, NULL); \
    } while (0)

static void make_keys(void) {
    static const unsigned char seed[32] = "ghl webhook fuzz fixed test key";
    static const unsigned char spki_prefix[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                                  0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
    unsigned char der[44];
    size_t pub_len = 32;
    EVP_PKEY *rsa = NULL;
    EVP_PKEY_CTX *ctx;
    BIO *bio;
    long n;
    char *p;

    ed_key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof seed);
    CHECK(ed_key != NULL, "no Ed25519 key");
    memcpy(der, spki_prefix, sizeof spki_prefix);
    CHECK(EVP_PKEY_get_raw_public_key(ed_key, der + 12, &pub_len) == 1 && pub_len == 32, "no public key");
    CHECK(EVP_EncodeBlock((unsigned char *)ed_spki, der, sizeof der) == 60, "SPKI base64");

    ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, NULL);
    CHECK(ctx != NULL && EVP_PKEY_keygen_init(ctx) == 1 && EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048) == 1 &&
              EVP_PKEY_keygen(ctx, &rsa) == 1,
          "no RSA key");
    EVP_PKEY_CTX_free(ctx);
    bio = BIO_new(BIO_s_mem());
    CHECK(bio != NULL && PEM_write_bio_PUBKEY(bio, rsa) == 1, "RSA PEM");
    n = BIO_get_mem_data(bio, &p);
    CHECK(n > 0 && (size_t)n < sizeof rsa_pem, "RSA PEM size");
    memcpy(rsa_pem, p, (size_t)n);
    rsa_pem[n] = '\0';
    BIO_free(bio);
    EVP_PKEY_free(rsa);
}

/* The body's true signature by the test key, base64 with its padding. */
static void true_signature(const unsigned char *body, size_t len, char out[89]) {
    unsigned char sig[64];
    size_t sig_len = sizeof sig;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    CHECK(ctx != NULL && EVP_DigestSignInit(ctx, NULL, NULL, NULL, ed_key) == 1 &&
              EVP_DigestSign(ctx, sig, &sig_len, len ? body : (const unsigned char *)"", len) == 1 && sig_len == 64,
          "signing failed");
    EVP_MD_CTX_free(ctx);
    CHECK(EVP_EncodeBlock((unsigned char *)out, sig, 64) == 88, "signature base64");
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *cpath = getenv("GHL_FUZZ_CPATH");
    (void)argc;
    (void)argv;
    make_keys();
    L = luaL_newstate();
    CHECK(L != NULL, "no Lua state");
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushstring(L, cpath != NULL && cpath[0] != '\0' ? cpath : DEFAULT_CPATH);
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
    lua_pushcfunction(L, luaopen_ghl);
    if (lua_pcall(L, 0, 1, 0) != 0) die("luaopen_ghl failed", lua_tostring(L, -1));
    lua_getfield(L, -1, "verify_webhook");
    CHECK(lua_type(L, -1) == LUA_TFUNCTION, "ghl.verify_webhook is not a function");
    verify_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    return 0;
}

/* The decoded event: no null object members, integral numbers within
 * +-(2^53 - 1) as integers, nothing but JSON's types. */
static void check_value(int idx, int depth) {
    int t = lua_type(L, idx);
    CHECK(depth < 2000, "nesting deeper than the decoder allows");
    if (t == LUA_TNUMBER) {
        double d = lua_tonumber(L, idx);
        CHECK(d == d && d - d == 0, "a number that is NaN or infinite");
        if (d >= -MAX_SAFE_INTEGER && d <= MAX_SAFE_INTEGER && d == floor(d))
            CHECK(lua_isinteger(L, idx), "an integral number left as a float");
        return;
    }
    if (t != LUA_TTABLE) {
        CHECK(t == LUA_TSTRING || t == LUA_TBOOLEAN || (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL),
              "a value of a type JSON does not make");
        return;
    }
    luaL_checkstack(L, 4, "webhook_fuzz");
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) == LUA_TSTRING)
            CHECK(!(lua_type(L, -1) == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == NULL),
                  "a null object member kept");
        else
            CHECK(lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1, "a key that is not a string nor an index");
        check_value(-1, depth + 1);
        lua_pop(L, 1);
    }
}

/* Checks the three returns; returns 1 for a success, else 0 with *kind set. */
static int check_returns(const char **kind, const unsigned char *body, size_t len) {
    CHECK(lua_gettop(L) == 3, "not three returns");
    CHECK(lua_type(L, 3) == LUA_TTABLE, "info is not a table");
    lua_getfield(L, 3, "body");
    CHECK(lua_isnil(L, -1), "info.body");
    lua_pop(L, 1);
    if (!lua_isnil(L, 1)) {
        size_t i = 0;
        CHECK(lua_type(L, 1) == LUA_TTABLE, "an event that is not a table");
        CHECK(lua_isnil(L, 2), "an event and an errmsg");
        lua_getfield(L, 3, "kind");
        CHECK(lua_isnil(L, -1), "info.kind on success");
        lua_pop(L, 1);
        lua_getfield(L, 3, "algorithm");
        CHECK(lua_type(L, -1) == LUA_TSTRING, "no info.algorithm on success");
        lua_pop(L, 1);
        while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r')) i++;
        CHECK(i < len && body[i] == '{', "a success for a body that is not an object");
        check_value(1, 0);
        *kind = NULL;
        return 1;
    }
    {
        size_t n;
        const char *errmsg;
        CHECK(lua_type(L, 2) == LUA_TSTRING, "errmsg is not a string");
        errmsg = lua_tolstring(L, 2, &n);
        CHECK(n >= 5 && memcmp(errmsg, "ghl: ", 5) == 0, "errmsg does not start with \"ghl: \"");
        CHECK(memchr(errmsg, '\n', n) == NULL && memchr(errmsg, '\r', n) == NULL, "errmsg is more than one line");
        lua_getfield(L, 3, "kind");
        CHECK(lua_type(L, -1) == LUA_TSTRING, "info.kind is not a string");
        *kind = lua_tostring(L, -1);
        CHECK(strcmp(*kind, "signature") == 0 || strcmp(*kind, "decode") == 0,
              "info.kind is neither signature nor decode");
        lua_pop(L, 1); /* the string stays alive: it is a literal interned by the module */
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char name[] = "x-ghl-signature";
    const unsigned char *text, *body;
    size_t text_len, body_len, i;
    char sig[89], sig_unpadded[89];
    const char *kind;
    int mode, status, ok;

    if (size < 3) return 0;
    mode = data[0] % 6;
    text_len = ((size_t)data[1] << 8 | data[2]) % 1024;
    if (text_len > size - 3) text_len = size - 3;
    text = data + 3;
    body = text + text_len;
    body_len = size - 3 - text_len;
    true_signature(body, body_len, sig);
    memcpy(sig_unpadded, sig, 86);
    sig_unpadded[86] = '\0';

    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, verify_ref);
    if (mode == 5) {
        size_t at;
        unsigned char *changed;
        if (body_len == 0) return 0;
        at = (text_len > 0 ? text[0] : 0) % body_len;
        changed = (unsigned char *)lua_newuserdata(L, body_len); /* freed by the collection below */
        memcpy(changed, body, body_len);
        changed[at] ^= (unsigned char)(1 + (text_len > 1 ? text[1] : 0) % 255);
        lua_pushlstring(L, (const char *)changed, body_len);
        lua_remove(L, -2);
    } else {
        lua_pushlstring(L, (const char *)body, body_len);
    }
    lua_newtable(L); /* headers */
    lua_newtable(L); /* opts */
    switch (mode) {
    case 0:
        lua_pushlstring(L, (const char *)text, text_len);
        lua_setfield(L, 3, "X-GHL-Signature");
        lua_pushstring(L, ed_spki);
        lua_setfield(L, 4, "public_key");
        break;
    case 1: {
        char cased[sizeof name];
        for (i = 0; i < sizeof name - 1; i++) {
            int upper = i < text_len && (text[i] & 1) && name[i] >= 'a' && name[i] <= 'z';
            cased[i] = upper ? (char)(name[i] - 'a' + 'A') : name[i];
        }
        cased[sizeof name - 1] = '\0';
        lua_pushstring(L, (data[1] & 1) ? sig : sig_unpadded);
        lua_setfield(L, 3, cased);
        lua_pushstring(L, ed_spki);
        lua_setfield(L, 4, "public_key");
        break;
    }
    case 2: {
        int k, copies = data[1] % 4;
        lua_createtable(L, copies, 0);
        for (k = 1; k <= copies; k++) {
            lua_pushstring(L, sig);
            lua_rawseti(L, -2, k);
        }
        lua_setfield(L, 3, "X-GHL-Signature");
        lua_pushstring(L, ed_spki);
        lua_setfield(L, 4, "public_key");
        break;
    }
    case 3:
        lua_pushlstring(L, (const char *)text, text_len);
        lua_setfield(L, 3, "X-WH-Signature");
        lua_pushstring(L, rsa_pem);
        lua_setfield(L, 4, "legacy_rsa_key");
        break;
    case 4:
        lua_pushstring(L, sig);
        lua_setfield(L, 3, "x-ghl-signature");
        lua_pushlstring(L, (const char *)text, text_len);
        lua_setfield(L, 4, "public_key");
        break;
    default:
        lua_pushstring(L, sig);
        lua_setfield(L, 3, "X-Ghl-Signature");
        lua_pushstring(L, ed_spki);
        lua_setfield(L, 4, "public_key");
        break;
    }

    status = lua_pcall(L, 3, 3, 0);
    if (status != 0) {
        const char *err = lua_tostring(L, -1);
        CHECK(mode == 4, "verify_webhook raised");
        CHECK(err != NULL && strncmp(err, "ghl: option 'public_key' ", 25) == 0, "raised something else");
        lua_settop(L, 0);
        return 0;
    }
    ok = check_returns(&kind, body, body_len);
    switch (mode) {
    case 0:
        if (ok || strcmp(kind, "decode") == 0)
            CHECK((text_len == 88 && memcmp(text, sig, 88) == 0) || (text_len == 86 && memcmp(text, sig, 86) == 0),
                  "a signature that is not the body's verified");
        break;
    case 1: CHECK(ok || strcmp(kind, "decode") == 0, "the body's own signature did not verify"); break;
    case 2:
        if (data[1] % 4 == 1)
            CHECK(ok || strcmp(kind, "decode") == 0, "a list of one signature did not verify");
        else
            CHECK(!ok && strcmp(kind, "signature") == 0, "a list of several (or no) signatures verified");
        break;
    case 3: CHECK(!ok && strcmp(kind, "signature") == 0, "an RSA signature verified"); break;
    case 5: CHECK(!ok && strcmp(kind, "signature") == 0, "a changed body verified"); break;
    default: break;
    }
    lua_settop(L, 0);
    /* a full collection after each input: what a run allocated is freed in
     * it, so libFuzzer's leak check (which runs LeakSanitizer's whole-heap
     * scan whenever a run's mallocs and frees differ) stays quiet and fast */
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
