# Broker — see README.md. `make` builds, `make demo` runs the main job, `make test` tests.
CC      ?= cc
BUILD   ?= build
PKGS    := libh2o-evloop openssl libcurl jansson libpq
DEB_PKGS := build-essential pkg-config libh2o-evloop-dev libssl-dev libcurl4-openssl-dev libjansson-dev \
            libpq-dev libjwt-dev libcmocka-dev postgresql-15 postgresql-client-15 curl nghttp2-client \
            python3 python3-cryptography jq clang libclang-rt-14-dev openssl procps iproute2 valgrind

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla
HARDEN  := -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE -fno-strict-overflow
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -DH2O_USE_LIBUV=0 $(WARN) $(HARDEN) -pthread
ifeq ($(CI),true)
CFLAGS  += -Werror
endif
LDFLAGS += -pie -Wl,-z,relro,-z,now -pthread
ifneq ($(SANITIZE),)
BUILD   := build-san
CC      := clang
CFLAGS  := $(filter-out -D_FORTIFY_SOURCE=2,$(CFLAGS)) -O1 -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif

PKG_CFLAGS = $(filter-out -I/usr/include/x86_64-linux-gnu,$(shell pkg-config --cflags $(PKGS) 2>/dev/null))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

SRCS     := $(filter-out broker/main.c,$(wildcard broker/*.c))
OBJS     := $(SRCS:broker/%.c=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/libbroker.a
BIN      := $(BUILD)/broker
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
ITEST_SRC := $(wildcard tests/integration/test_*.c)
ITEST_BIN := $(ITEST_SRC:tests/integration/%.c=$(BUILD)/itests/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

.PHONY: all deps demo test test-unit test-integration test-san fuzz bench clean
all: $(BIN)

# Installs the Debian packages Broker needs; a no-op when they are present.
DEPS_STAMP := $(BUILD)/.deps
deps: $(DEPS_STAMP)
$(DEPS_STAMP):
	@missing=$$(for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@mkdir -p $(BUILD) && touch $@

$(BUILD)/obj/%.o: broker/%.c broker/*.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(LIB): $(OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/obj/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

$(BUILD)/tests/%: tests/unit/%.c $(LIB) tests/unit/*.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -iquote broker -iquote tests/unit -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS) -lcmocka -ljwt -lm

$(BUILD)/itests/%: tests/integration/%.c $(LIB) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -iquote broker -iquote tests/unit -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS) -lcmocka -lm

# the signer's microbenchmark is built here too, so CI's -Werror compiles it
test-unit: $(UNIT_BIN) $(BUILD)/bench/sign_batch
	@tests/run-unit.sh $(UNIT_BIN)

test-integration: $(BIN) $(ITEST_BIN)
	@BROKER_BIN=$(abspath $(BIN)) ITEST_DIR=$(abspath $(BUILD)/itests) tests/integration/run.sh

test: deps
	@$(MAKE) --no-print-directory all $(UNIT_BIN) $(ITEST_BIN)
	@$(MAKE) --no-print-directory test-unit
	@$(MAKE) --no-print-directory test-integration

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer (called by .ci/run).
test-san: deps
	@$(MAKE) --no-print-directory SANITIZE=address,undefined test-unit test-integration

fuzz: deps
	@tests/fuzz/run.sh $(FUZZ_SRC)

demo: deps all
	@tests/tools/demo.sh $(abspath $(BIN))

bench: deps all $(BUILD)/bench/sign_batch
	@tests/bench/bench.sh $(abspath $(BIN))
	@$(BUILD)/bench/sign_batch

$(BUILD)/bench/%: tests/bench/%.c $(LIB) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -iquote broker -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS)

clean:
	rm -rf build build-san build-fuzz
