/* ghl.verify_webhook: checks a webhook's signature (Ed25519 in
 * X-GHL-Signature; RSA PKCS#1 v1.5 SHA-256 in the legacy X-WH-Signature when
 * asked for) with OpenSSL's libcrypto, then decodes the body with shape.h's
 * JSON rules. Keys live in userdata whose __gc frees them, so a Lua error
 * raised mid-call leaks nothing. The built-in key is parsed once per Lua
 * state and held as the function's upvalue, beside a small per-state cache
 * of the keys given in opts. No network, no global mutable state. */
#ifndef GHL_WEBHOOK_H
#define GHL_WEBHOOK_H

#include "compat.h"

/* HighLevel's published webhook key (SPKI, base64). */
#define GHL_WEBHOOK_PUBLIC_KEY "MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg="

/* Sets verify_webhook in the module table on top of the stack. */
void ghl_webhook_open(lua_State *L);

#endif
