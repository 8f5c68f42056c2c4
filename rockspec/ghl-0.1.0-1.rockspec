rockspec_format = "3.0"
package = "ghl"
version = "0.1.0-1"
source = {
   url = "git+https://example.invalid/ghl.git",
   tag = "v0.1.0",
}
description = {
   summary = "HighLevel (LeadConnector) Conversations API for Lua, in C with libcurl",
   detailed = [[
ghl.get_message(id) fetches GET /conversations/messages/{id} with libcurl and
returns the message as a Lua table, enums as strings. Clients keep their
connection; errors come back as nil, errmsg, info. Adapters for OpenResty
(ghl.resty) and Neovim (ghl.nvim) run requests without blocking their host.
]],
   license = "MIT",
   labels = { "http", "api", "libcurl", "openresty", "neovim" },
}
dependencies = {
   "lua >= 5.1, < 5.5",
   "lua-cjson >= 2.1.0",
}
external_dependencies = {
   CURL = { header = "curl/curl.h", library = "curl" },
   -- libcrypto (OpenSSL 3) verifies webhook signatures: ghl.verify_webhook
   OPENSSL = { header = "openssl/evp.h", library = "crypto" },
}
build = {
   -- the Makefile builds with -fvisibility=hidden so only luaopen_ghl is exported
   type = "make",
   build_target = "rock",
   build_variables = {
      CFLAGS = "$(CFLAGS)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      CURL_INCDIR = "$(CURL_INCDIR)",
      CURL_LIBDIR = "$(CURL_LIBDIR)",
      OPENSSL_INCDIR = "$(OPENSSL_INCDIR)",
      OPENSSL_LIBDIR = "$(OPENSSL_LIBDIR)",
   },
   install_target = "rock-install",
   install_variables = {
      INST_LIBDIR = "$(LIBDIR)",
      INST_LUADIR = "$(LUADIR)",
   },
}
