# ghl: build, test, demo. `make help` lists the targets.

RUNTIMES   ?= lua5.1 lua5.2 lua5.3 lua5.4 luajit
RUNTIME    ?= lua5.4
CC         ?= cc
CFLAGS     ?= -O2 -g
CPPFLAGS   ?=
LDFLAGS    ?=
PKG_CONFIG ?= pkg-config
GHL_CFLAGS  = -std=c99 -fPIC -Wall -Wextra -fvisibility=hidden -D_POSIX_C_SOURCE=200809L
SOURCES     = $(wildcard src/*.c)
HEADERS     = $(wildcard src/*.h)
LUA_FILES   = $(wildcard src/ghl/*.lua)
# The one place the version is written; everything else follows it (spec/07-package_spec.lua).
VERSION    := $(shell sed -n 's/^\#define GHL_VERSION "\(.*\)"$$/\1/p' src/options.h)

# libcurl's and libcrypto's header and library flags from pkg-config (Debian keeps curl.h
# under a multiarch directory); the plain names where pkg-config does not know them.
DEP_CFLAGS := $(shell $(PKG_CONFIG) --cflags libcurl libcrypto 2>/dev/null)
DEP_LIBS   := $(or $(shell $(PKG_CONFIG) --libs libcurl libcrypto 2>/dev/null),-lcurl -lcrypto)
LDLIBS      = $(DEP_LIBS) -pthread

# The Lua headers of a runtime, from pkg-config (lua5.1 ... lua5.4); LuaJIT hosts (OpenResty,
# Neovim) load modules built against the Lua 5.1 headers.
lua_pc      = $(if $(filter luajit,$(1)),lua5.1,$(1))
lua_cflags  = $(or $(shell $(PKG_CONFIG) --cflags-only-I $(call lua_pc,$(1)) 2>/dev/null),-I/usr/include/$(call lua_pc,$(1)))

# make install: LUA_VERSION picks the runtime (5.1 is also LuaJIT's); the directories are the
# ones that Lua's interpreter searches under PREFIX (its package.cpath and package.path), else
# PREFIX/lib/lua/V and PREFIX/share/lua/V. INSTALL_CMOD / INSTALL_LMOD override them.
PREFIX      ?= /usr/local
DESTDIR     ?=
LUA_VERSION ?= 5.4
LUA         ?= $(if $(filter 5.1 5.2 5.3 5.4,$(LUA_VERSION)),lua$(LUA_VERSION),$(error LUA_VERSION must be 5.1, 5.2, 5.3 or 5.4))
INSTALL_RUNTIME = $(if $(filter luajit%,$(notdir $(LUA))),luajit,lua$(LUA_VERSION))
lua_dir     = $(shell scripts/lua-dir '$(LUA)' '$(PREFIX)' $(1))
INSTALL_CMOD ?= $(or $(call lua_dir,cpath,so),$(PREFIX)/lib/lua/$(LUA_VERSION))
INSTALL_LMOD ?= $(or $(call lua_dir,path,lua),$(PREFIX)/share/lua/$(LUA_VERSION))

.PHONY: all help deps build test test-one demo clean rock rock-install check-rock bench check-memory fuzz \
	install uninstall dist lint

all: build

help:
	@echo "make build               build build/<runtime>/ghl.so for: $(RUNTIMES)"
	@echo "make test                install what is missing, build, run the spec on every runtime"
	@echo "make test-one RUNTIME=x  run the spec on one runtime (lua5.1 ... lua5.4, luajit)"
	@echo "make demo                fetch a message from the local test server and print it"
	@echo "make install             install ghl.so and ghl/*.lua for LUA_VERSION (5.4; 5.1 for LuaJIT)"
	@echo "                         under PREFIX (/usr/local), DESTDIR; make uninstall removes them"
	@echo "make dist                build/dist/: the release tarball, its rockspec, a source rock"
	@echo "make check-rock          luarocks make the rockspec and install the source rock into a"
	@echo "                         scratch tree, and load them"
	@echo "make lint                luacheck and clang-format --dry-run over the tree"
	@echo "make bench               time ghl against C floors, curl and LuaSocket on a local nginx;"
	@echo "                         count its instructions per fetch (callgrind), batch retries"
	@echo "make check-memory        the spec under valgrind and ASan+UBSan, with an aggressive GC, and a short fuzz run"
	@echo "make fuzz                fuzz ghl.decode_message for FUZZ_SECONDS (default 60)"
	@echo "make clean               remove build/"

# core: build and spec; hosts: nginx with the Lua module and Neovim, for their specs; rocks:
# luarocks, for the README's install blocks (spec/95-readme_install_spec.lua)
deps:
	@scripts/install-deps core hosts rocks

build: $(foreach r,$(RUNTIMES),build/$(r)/ghl.so)

build/%/ghl.so: $(SOURCES) $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(GHL_CFLAGS) $(call lua_cflags,$*) $(DEP_CFLAGS) -shared $(LDFLAGS) \
	  -o $@ $(SOURCES) $(LDLIBS)

# Into $(DESTDIR)$(INSTALL_CMOD)/ghl.so and $(DESTDIR)$(INSTALL_LMOD)/ghl/*.lua.
install: build/$(INSTALL_RUNTIME)/ghl.so
	install -d "$(DESTDIR)$(INSTALL_CMOD)" "$(DESTDIR)$(INSTALL_LMOD)/ghl"
	install -m 755 build/$(INSTALL_RUNTIME)/ghl.so "$(DESTDIR)$(INSTALL_CMOD)/ghl.so"
	install -m 644 $(LUA_FILES) "$(DESTDIR)$(INSTALL_LMOD)/ghl/"

uninstall:
	rm -f "$(DESTDIR)$(INSTALL_CMOD)/ghl.so" $(addprefix "$(DESTDIR)$(INSTALL_LMOD)/ghl/,$(addsuffix ",$(notdir $(LUA_FILES))))
	-rmdir "$(DESTDIR)$(INSTALL_LMOD)/ghl" 2>/dev/null

test: deps
	@$(MAKE) --no-print-directory build
	@scripts/run-spec $(RUNTIMES)

test-one: build/$(RUNTIME)/ghl.so
	@scripts/run-spec $(RUNTIME)

demo:
	@scripts/install-deps core
	@$(MAKE) --no-print-directory build/lua5.4/ghl.so
	@scripts/demo

# luarocks' make backend (rockspec/): Lua headers and install paths come from luarocks.
# libcurl's and libcrypto's paths come from pkg-config as above; CURL_INCDIR, CURL_LIBDIR,
# OPENSSL_INCDIR, OPENSSL_LIBDIR are added when given (a libcurl that pkg-config does not know).
rock:
	@mkdir -p build/rock
	$(CC) $(CPPFLAGS) $(CFLAGS) $(GHL_CFLAGS) -I$(LUA_INCDIR) $(if $(CURL_INCDIR),-I$(CURL_INCDIR)) \
	  $(if $(OPENSSL_INCDIR),-I$(OPENSSL_INCDIR)) $(DEP_CFLAGS) -shared $(LDFLAGS) -o build/rock/ghl.so \
	  $(SOURCES) $(if $(CURL_LIBDIR),-L$(CURL_LIBDIR)) $(if $(OPENSSL_LIBDIR),-L$(OPENSSL_LIBDIR)) $(LDLIBS)

rock-install:
	install -d $(INST_LIBDIR) $(INST_LUADIR)/ghl
	install -m 755 build/rock/ghl.so $(INST_LIBDIR)/ghl.so
	for f in src/ghl/*.lua; do [ ! -e "$$f" ] || install -m 644 "$$f" $(INST_LUADIR)/ghl/; done

# build/dist/: ghl-V.tar.gz (the tracked files, with uncommitted changes to them), the rockspec
# that names it, and ghl-V-1.src.rock, made by `luarocks pack` from them: it holds the tarball
# and installs offline with `luarocks install ghl-V-1.src.rock`.
DIST = build/dist
dist:
	@command -v luarocks >/dev/null || scripts/install-deps rocks
	rm -rf $(DIST) && mkdir -p $(DIST)/pack
	tree=$$(git stash create); git archive --format=tar.gz --prefix=ghl-$(VERSION)/ \
	  -o $(DIST)/ghl-$(VERSION).tar.gz $${tree:-HEAD}
	cp rockspec/ghl-$(VERSION)-1.rockspec $(DIST)/
	sed 's|^   url = "ghl-$(VERSION).tar.gz",|   url = "file://$(abspath $(DIST))/ghl-$(VERSION).tar.gz",|' \
	  rockspec/ghl-$(VERSION)-1.rockspec >$(DIST)/pack/ghl-$(VERSION)-1.rockspec
	cd $(DIST) && luarocks pack pack/ghl-$(VERSION)-1.rockspec
	rm -rf $(DIST)/pack
	@ls $(DIST)

# luacheck (.luacheckrc) over the Lua, clang-format (.clang-format) over the C; installs both.
LINT_LUA = src spec examples bench lua plugin types
LINT_C   = $(wildcard src/*.c src/*.h fuzz/*.c bench/*.c bench/*.h spec/support/*.c)
lint:
	@scripts/install-deps lint
	luacheck $(wildcard $(LINT_LUA))
	clang-format --dry-run -Werror $(LINT_C)

check-rock: deps
	@scripts/check-rock

# Not part of `make test`: a timing and instruction-count report against a local nginx (bench/run).
bench:
	@bench/run

# Installs valgrind and clang itself (scripts/install-deps memory).
check-memory:
	@scripts/check-memory

fuzz:
	@FUZZ_SECONDS=$(or $(FUZZ_SECONDS),60) scripts/fuzz

clean:
	rm -rf build spec/tmp
