# ghl: build, test, demo. `make help` lists the targets.

RUNTIMES   ?= lua5.1 lua5.2 lua5.3 lua5.4 luajit
RUNTIME    ?= lua5.4
CC         ?= cc
CFLAGS     ?= -O2 -g
GHL_CFLAGS  = -std=c99 -fPIC -Wall -Wextra -fvisibility=hidden -D_POSIX_C_SOURCE=200809L
LDLIBS      = -lcurl -lcrypto -pthread
SOURCES     = $(wildcard src/*.c)
HEADERS     = $(wildcard src/*.h)

# LuaJIT hosts (OpenResty, Neovim) load modules built against the Lua 5.1 headers.
lua_include = /usr/include/$(if $(filter luajit,$(1)),lua5.1,$(1))

.PHONY: all help deps build test test-one demo clean rock rock-install check-rock bench check-memory fuzz

all: build

help:
	@echo "make build               build build/<runtime>/ghl.so for: $(RUNTIMES)"
	@echo "make test                install what is missing, build, run the spec on every runtime"
	@echo "make test-one RUNTIME=x  run the spec on one runtime (lua5.1 ... lua5.4, luajit)"
	@echo "make demo                fetch a message from the local test server and print it"
	@echo "make check-rock          luarocks make the rockspec into a scratch tree and load it"
	@echo "make bench               time ghl against C floors, curl and LuaSocket on a local nginx;"
	@echo "                         count its instructions per fetch (callgrind), batch retries"
	@echo "make check-memory        the spec under valgrind and ASan+UBSan, with an aggressive GC, and a short fuzz run"
	@echo "make fuzz                fuzz ghl.decode_message for FUZZ_SECONDS (default 60)"
	@echo "make clean               remove build/"

# core: build and spec; hosts: nginx with the Lua module and Neovim, for their specs
deps:
	@scripts/install-deps core hosts

build: $(foreach r,$(RUNTIMES),build/$(r)/ghl.so)

build/%/ghl.so: $(SOURCES) $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(GHL_CFLAGS) -I$(call lua_include,$*) -shared -o $@ $(SOURCES) $(LDLIBS)

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
rock:
	@mkdir -p build/rock
	$(CC) $(CFLAGS) $(GHL_CFLAGS) -I$(LUA_INCDIR) $(if $(CURL_INCDIR),-I$(CURL_INCDIR)) \
	  $(if $(OPENSSL_INCDIR),-I$(OPENSSL_INCDIR)) -shared -o build/rock/ghl.so $(SOURCES) \
	  $(if $(CURL_LIBDIR),-L$(CURL_LIBDIR)) $(if $(OPENSSL_LIBDIR),-L$(OPENSSL_LIBDIR)) $(LDLIBS)

rock-install:
	install -d $(INST_LIBDIR) $(INST_LUADIR)/ghl
	install -m 755 build/rock/ghl.so $(INST_LIBDIR)/ghl.so
	for f in src/ghl/*.lua; do [ ! -e "$$f" ] || install -m 644 "$$f" $(INST_LUADIR)/ghl/; done

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
