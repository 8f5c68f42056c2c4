rockspec_format = "3.0"
package = "ghl"
version = "0.1.0-1"
-- The release tarball that `make dist` writes beside the source rock (build/dist/); `luarocks
-- pack` of this file run in that directory makes the source rock from it, and that rock
-- installs offline. `luarocks make` builds the working tree and never reads this.
source = {
   url = "ghl-0.1.0.tar.gz",
   dir = "ghl-0.1.0",
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
}
-- libcurl and libcrypto (OpenSSL 3, for ghl.verify_webhook) are found by the Makefile with
-- pkg-config, which knows Debian's multiarch directories; luarocks' own header search does
-- not, so they are not listed as external_dependencies. Where pkg-config does not know them,
-- pass CURL_INCDIR, CURL_LIBDIR, OPENSSL_INCDIR, OPENSSL_LIBDIR.
build = {
   -- the Makefile builds with -fvisibility=hidden so only luaopen_ghl is exported
   type = "make",
   build_target = "rock",
   build_variables = {
      CFLAGS = "$(CFLAGS)",
      LUA_INCDIR = "$(LUA_INCDIR)",
   },
   install_target = "rock-install",
   install_variables = {
      INST_LIBDIR = "$(LIBDIR)",
      INST_LUADIR = "$(LUADIR)",
   },
}
