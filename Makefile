# tandem — build, test, benchmark.
#
#   make                 build build/tandem, build/libtandem.a (engine, images) and
#                        build/libtandem-service.a
#   make deps            install the Debian packages building and running need
#   make test-deps       ...and those the tests and benchmarks need (Debian, npm)
#   make test            every test (unit, model conformance vs ONNX Runtime, service)
#   make bench           the benchmarks (figures, with ratios against ONNX Runtime)
#   make SANITIZE=address,undefined test    the suite under ASan/UBSan (in build/san)
#   make fuzz            build the libFuzzer targets (clang) and run each briefly

CC ?= cc
SANITIZE ?=
ifeq ($(SANITIZE),)
BUILD ?= build
OPTFLAGS ?= -O2 -g
else
BUILD ?= build/san
OPTFLAGS ?= -O1 -g -fno-omit-frame-pointer -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
endif

PKGS := libprotobuf-c hiredis libmicrohttpd jansson libjpeg spng libsodium libcurl libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# Debian's libdnnl-dev ships CMake files but no .pc file.
DNNL_LIBS := $(shell pkg-config --libs dnnl 2>/dev/null || echo -ldnnl)

WARN := -Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-prototypes -Wshadow \
        -Wwrite-strings -Wno-unused-parameter
# The layers, bottom up (ARCHITECTURE.md): common, engine, image, service, cli.
LAYERS := common engine image service cli
CFLAGS_ALL := -std=c17 -D_GNU_SOURCE $(OPTFLAGS) $(WARN) -fopenmp -Iinclude \
              $(LAYERS:%=-Isrc/%) -I$(BUILD)/gen $(PKG_CFLAGS) $(CFLAGS)
LDLIBS_ALL := $(PKG_LIBS) $(DNNL_LIBS) -fopenmp -lm -lpthread $(LDLIBS)

PROTO := /usr/include/onnx/onnx.proto
GEN_C := $(BUILD)/gen/onnx.pb-c.c
GEN_H := $(BUILD)/gen/onnx.pb-c.h

# libtandem.a: the engine and the image library (with the ground floor they
# stand on); libtandem-service.a: the service and the command line, less
# the program's entry point.
MAIN_SRCS := src/cli/main.c
LIB_SRCS := $(wildcard src/common/*.c src/engine/*.c src/image/*.c)
SERVICE_SRCS := $(filter-out $(MAIN_SRCS),$(wildcard src/service/*.c src/cli/*.c))
LIB_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/onnx.pb-c.o
SERVICE_OBJS := $(SERVICE_SRCS:src/%.c=$(BUILD)/obj/%.o)
MAIN_OBJS := $(MAIN_SRCS:src/%.c=$(BUILD)/obj/%.o)
LIBS := $(BUILD)/libtandem-service.a $(BUILD)/libtandem.a
TEST_SRCS := $(wildcard tests/unit/*/test_*.c)
TEST_BINS := $(addprefix $(BUILD)/tests/,$(basename $(notdir $(TEST_SRCS))))

.PHONY: all deps test-deps test unit-test test-models bench fuzz models clean format print-cflags print-libs

all: $(BUILD)/tandem $(LIBS)

$(GEN_C) $(GEN_H) &: $(PROTO)
	@mkdir -p $(BUILD)/gen
	protoc-c --c_out=$(BUILD)/gen -I$(dir $(PROTO)) $(PROTO)

$(BUILD)/obj/onnx.pb-c.o: $(GEN_C)
	@mkdir -p $(dir $@)
	$(CC) -std=c17 $(OPTFLAGS) -I$(BUILD)/gen $(PKG_CFLAGS) -c $< -o $@

# Files built in with EMBED(sym, "path") (src/common/embed.h) are pulled in
# by the assembler, which -MMD does not see: each EMBED line adds the file to
# the object's .d (and an empty rule for it, as -MP does for headers).
$(BUILD)/obj/%.o: src/%.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@
	@sed -n 's|^EMBED([^,]*, *"\([^"]*\)");.*|$@: \1\n\1:|p' $< >> $(@:.o=.d)

$(BUILD)/libtandem.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libtandem-service.a: $(SERVICE_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/tandem: $(MAIN_OBJS) $(LIBS)
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

# Unit tests mirror src/: tests/unit/LAYER/test_NAME.c builds $(BUILD)/tests/test_NAME.
TEST_HDRS := tests/unit/test.h tests/unit/graph_build.h tests/unit/backend_run.h tests/unit/tiny_model.h
define test_rule
$$(BUILD)/tests/%: tests/unit/$(1)/%.c $$(TEST_HDRS) $$(LIBS)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS_ALL) -Itests/unit -o $$@ $$< $$(LIBS) $$(LDLIBS_ALL)
endef
$(foreach layer,$(LAYERS),$(eval $(call test_rule,$(layer))))

deps:
	scripts/deps.sh

test-deps:
	scripts/deps.sh --test

# Test models do not depend on the build flavour: one cache for all of them.
test-models:
	/usr/bin/python3 tools/gen_test_models.py build/test-models

models: $(BUILD)/tandem
	$(BUILD)/tandem models

unit-test: $(TEST_BINS)
	@set -e; for t in $(TEST_BINS); do echo "=== $$t"; $$t; done

test: all $(TEST_BINS) test-models $(BUILD)/pace
	BUILD=$(BUILD) tests/run_all.sh

bench: all test-models $(BUILD)/pace
	BUILD=$(BUILD) bench/run.sh

# The load generator of bench/service.sh (bench/pace.c says why it is C).
$(BUILD)/pace: bench/pace.c
	$(CC) $(CFLAGS_ALL) -o $@ $< $(PKG_LIBS)

fuzz:
	BUILD=$(BUILD) fuzz/run.sh

format:
	clang-format -i src/*/*.c src/*/*.h include/tandem/*.h tests/unit/*/*.c tests/unit/*.h fuzz/*.c

clean:
	rm -rf build

-include $(wildcard $(BUILD)/obj/*/*.d)

# For scripts that build outside make (fuzz/run.sh).
print-cflags:
	@echo $(CFLAGS_ALL)
print-libs:
	@echo $(LDLIBS_ALL)
