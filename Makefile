# heapscope — see README.md. `make demo` and `make test` do all the set-up.
PREFIX ?= /usr/local
BUILD ?= build
CC ?= gcc
VERSION := 0.1

WARN := -Wall -Wextra -Werror
BASE_CFLAGS := -std=gnu11 -O2 -g $(WARN) -pthread -I/usr/include/x86_64-linux-gnu
CFLAGS ?=

AGENT_SRC := $(wildcard src/agent/*.c)
REPORT_SRC := $(wildcard src/report/*.c) $(BUILD)/gen/profile.pb-c.c
# The CLI only parses options, checks files and execs the program: no libdw,
# libelf or libstdc++ to load (1.4 ms of every run's start-up here).
CLI_SRC := $(wildcard src/cli/*.c) src/agent/options.c src/agent/log.c src/agent/arena.c \
           src/report/suppress.c src/report/buf.c
HEADERS := $(wildcard src/*/*.h include/*.h)

AGENT := $(BUILD)/libheapscope.so
REPORT := $(BUILD)/libheapscope_report.so
CLI := $(BUILD)/heapscope
CLI_ASAN := $(BUILD)/asan/heapscope

all: $(AGENT) $(REPORT) $(CLI)

# The agent: exports only the interposed symbols and the public API.
$(AGENT): $(AGENT_SRC) $(HEADERS) | $(BUILD)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -fexceptions -shared \
	  -Wl,-z,nodelete -o $@ $(AGENT_SRC) -lunwind -ldl -lm

# Loaded by the agent only when it reports: symbolization (libdw), suppressions, JSON.
$(REPORT): $(REPORT_SRC) $(HEADERS) | $(BUILD)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -I$(BUILD)/gen -fPIC -fvisibility=hidden -shared -o $@ $(REPORT_SRC) \
	  -lprotobuf-c -lz -ldw -lelf -ldl

# pprof's profile.proto, compiled with protoc-c
$(BUILD)/gen/profile.pb-c.c: src/report/profile.proto
	mkdir -p $(BUILD)/gen
	protoc-c --c_out=$(BUILD)/gen --proto_path=src/report $<

$(CLI): $(CLI_SRC) $(HEADERS) | $(BUILD)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -DHS_VERSION='"$(VERSION)"' -DHS_LIBDIR='"$(PREFIX)/lib/heapscope"' \
	  -o $@ $(CLI_SRC)

# The CLI under AddressSanitizer and UBSan, used by the test suite.
$(CLI_ASAN): $(CLI_SRC) $(HEADERS) | $(BUILD)
	mkdir -p $(BUILD)/asan
	$(CC) $(BASE_CFLAGS) -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	  -fno-omit-frame-pointer -DHS_VERSION='"$(VERSION)"' -o $@ $(CLI_SRC)

$(BUILD):
	mkdir -p $(BUILD)

deps:
	@sh scripts/deps.sh build

demo:
	@sh scripts/deps.sh build
	@$(MAKE) --no-print-directory all $(BUILD)/examples/leaky
	@echo "== heapscope run -- $(BUILD)/examples/leaky"
	-$(CLI) run --report=$(BUILD)/leaky-report.json -- $(BUILD)/examples/leaky
	@echo "== JSON report written to $(BUILD)/leaky-report.json"

$(BUILD)/examples/leaky: examples/leaky.c | $(BUILD)
	mkdir -p $(BUILD)/examples
	$(CC) -O2 -g -pthread -o $@ $<

test:
	@sh scripts/deps.sh test
	@$(MAKE) --no-print-directory all $(CLI_ASAN) $(BUILD)/examples/leaky
	@sh tests/run.sh

bench:
	@sh scripts/deps.sh bench
	@$(MAKE) --no-print-directory all
	@bash bench/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/heapscope $(DESTDIR)$(PREFIX)/include
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/heapscope
	install -m 755 $(AGENT) $(REPORT) $(DESTDIR)$(PREFIX)/lib/heapscope/
	install -m 644 include/heapscope.h $(DESTDIR)$(PREFIX)/include/

clean:
	rm -rf $(BUILD)

.PHONY: all deps demo test bench install clean
