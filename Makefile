# tapegrad — library, command-line tool, examples, tests, install.
#   make                 float32 build in build/float
#   make REAL=double     float64 build in build/double
#   make check           the whole test suite: float, double, then ASan+UBSan
#   make install PREFIX=/usr/local
REAL    ?= float
SAN     ?=
PREFIX  ?= /usr/local
CC      ?= cc
SHELL   := /bin/bash
BUILD   ?= build/$(REAL)$(if $(SAN),-san)
VERSION := 0.1.0

ifeq ($(REAL),double)
  REALDEF := -DTG_REAL_DOUBLE
  LIBNAME := tapegrad64
else ifeq ($(REAL),float)
  REALDEF :=
  LIBNAME := tapegrad
else
  $(error REAL must be float or double)
endif

DEPS_CFLAGS := $(shell pkg-config --cflags yaml-0.1 openblas 2>/dev/null)
DEPS_LIBS   := $(shell pkg-config --libs yaml-0.1 openblas 2>/dev/null) -lm
# -O3: GCC 12 vectorises none of the elementwise loops at -O2.
OPT     ?= -O3
WARN    := -Wall -Wextra -Wshadow -Wno-unused-parameter
CFLAGS  += -std=c11 -D_POSIX_C_SOURCE=200809L $(OPT) -g -fPIC $(WARN) $(REALDEF) \
           -Icore -Iops -Imodels $(DEPS_CFLAGS)
ifneq ($(SAN),)
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif

LIB_SRC  := $(wildcard core/*.c) $(wildcard ops/*.c) $(wildcard models/*.c)
CLI_SRC  := $(wildcard cli/*.c)
TEST_SRC := $(wildcard tests/*.c)
EX_SRC   := $(wildcard examples/*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
EX_BIN   := $(EX_SRC:examples/%.c=$(BUILD)/examples/%)

STATIC   := $(BUILD)/lib$(LIBNAME).a
SHARED   := $(BUILD)/lib$(LIBNAME).so
TOOL     := $(BUILD)/tapegrad
TESTS    := $(BUILD)/tests/tapegrad-tests

.PHONY: bench-convergence demo install-check all lib check test test-float test-double sanitize install uninstall clean examples
all: lib $(if $(CLI_SRC),$(TOOL)) $(EX_BIN)
lib: $(STATIC) $(SHARED)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(STATIC): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(SHARED): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,lib$(LIBNAME).so.0 $(LDFLAGS) -o $@ $^ $(DEPS_LIBS)

$(TOOL): $(CLI_OBJ) $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(STATIC) $(DEPS_LIBS)

$(BUILD)/examples/%: examples/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(STATIC) $(LDFLAGS) $(DEPS_LIBS)

$(TESTS): $(TEST_OBJ) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) $(STATIC) $(DEPS_LIBS) $(shell pkg-config --libs criterion)

# The test binary finds the tool and examples of its own build through these.
TEST_ENV = TG_TOOL=$(abspath $(TOOL)) TG_EXAMPLES=$(abspath $(BUILD)/examples) TG_ROOT=$(CURDIR) \
           TG_REAL=$(REAL)
# Criterion ignores how a test's process exits, so a sanitizer report inside a
# passing test would go unseen: the log is scanned for one as well.
test: all $(TESTS)
	@set -o pipefail; $(TEST_ENV) $(TESTS) --jobs 2 $(TESTFLAGS) 2>&1 | tee $(BUILD)/test.log
	@! grep -n -E "LeakSanitizer|AddressSanitizer|runtime error:" $(BUILD)/test.log || \
	  { echo "sanitizer reports above: failing"; exit 1; }

# The main job a newcomer runs after building: see README.
demo: all
	$(BUILD)/examples/seed_bptt

# Convergence of the examples (steps, seconds, final loss): measured, not a test.
bench-convergence: all
	bench/convergence.sh $(BUILD)

# Every precision, then the sanitizers (leak checking is on by default in ASan).
check:
	$(MAKE) REAL=float test
	$(MAKE) REAL=double test
	$(MAKE) REAL=double SAN=1 OPT=-O1 test
	$(MAKE) install-check

sanitize:
	$(MAKE) SAN=1 OPT=-O1 test

# ---- install: header, static + shared library, pkg-config file, the tool ----
DESTDIR ?=
LIBDIR  := $(DESTDIR)$(PREFIX)/lib
INCDIR  := $(DESTDIR)$(PREFIX)/include
PCDIR   := $(LIBDIR)/pkgconfig
install: all
	install -d $(LIBDIR) $(INCDIR) $(PCDIR) $(DESTDIR)$(PREFIX)/bin
	install -m 644 core/tapegrad.h $(INCDIR)/tapegrad.h
	install -m 644 $(STATIC) $(LIBDIR)/
	install -m 755 $(SHARED) $(LIBDIR)/lib$(LIBNAME).so.0
	ln -sf lib$(LIBNAME).so.0 $(LIBDIR)/lib$(LIBNAME).so
	$(if $(CLI_SRC),install -m 755 $(TOOL) $(DESTDIR)$(PREFIX)/bin/$(if $(filter double,$(REAL)),tapegrad64,tapegrad))
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBNAME@|$(LIBNAME)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@CFLAGS@|$(REALDEF)|' core/tapegrad.pc.in > $(PCDIR)/$(LIBNAME).pc

uninstall:
	rm -f $(INCDIR)/tapegrad.h $(LIBDIR)/lib$(LIBNAME).a $(LIBDIR)/lib$(LIBNAME).so* \
	      $(PCDIR)/$(LIBNAME).pc $(DESTDIR)$(PREFIX)/bin/tapegrad $(DESTDIR)$(PREFIX)/bin/tapegrad64

# Installs into a scratch prefix and builds an example against it through
# pkg-config alone, as an embedding program would.
install-check:
	rm -rf $(BUILD)/prefix
	$(MAKE) install PREFIX=$(abspath $(BUILD)/prefix)
	$(CC) -o $(BUILD)/seed_bptt_installed examples/seed_bptt.c \
	    $$(PKG_CONFIG_PATH=$(abspath $(BUILD)/prefix)/lib/pkgconfig pkg-config --cflags --libs $(LIBNAME)) \
	    -Wl,-rpath,$(abspath $(BUILD)/prefix)/lib
	$(BUILD)/seed_bptt_installed > /dev/null && echo "install-check: example built with pkg-config runs"

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)

clean:
	rm -rf build

# ---- benchmark (issue 6): one training step of models/elman.yaml at four sizes,
# the LSTM and GRU, PyTorch beside them when python3 has torch; see bench/run.sh
# for its settings (BENCH_SIZES, BENCH_SECONDS, ...).  Builds in build/bench.
.PHONY: bench
bench:
	BENCH_OPT='$(OPT)' bench/run.sh
