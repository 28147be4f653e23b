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
DEPS_LIBS   := $(shell pkg-config --libs yaml-0.1 openblas 2>/dev/null) -lm -pthread
# -O3: GCC 12 vectorises none of the elementwise loops at -O2.
OPT     ?= -O3
WARN    := -Wall -Wextra -Wshadow -Wno-unused-parameter
CFLAGS  += -std=c11 -D_POSIX_C_SOURCE=200809L $(OPT) -g -fPIC -pthread $(WARN) $(REALDEF) \
           -Icore -Iops -Imodels -Itrain $(DEPS_CFLAGS)
ifneq ($(SAN),)
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif

LIB_SRC  := $(wildcard core/*.c) $(wildcard ops/*.c) $(wildcard models/*.c) $(wildcard train/*.c)
CLI_SRC  := $(filter-out cli/mpi_main.c,$(wildcard cli/*.c))
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

# Open MPI (issue 16, docs/distributed.md): found when its compiler wrapper
# answers; MPICC=false builds as a machine without it would.  Only the files
# that include mpi.h are compiled with its flags, by $(CC) like the rest.
MPICC      ?= mpicc
MPIRUN     ?= mpirun
MPI_CFLAGS := $(shell $(MPICC) --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell $(MPICC) --showme:link 2>/dev/null)
HAVE_MPI   := $(if $(MPI_LIBS),yes)
# As root Open MPI refuses to start without --allow-run-as-root; the tests
# run more ranks than the machine has cores.
MPIRUN_FLAGS ?= --oversubscribe $(if $(filter 0,$(shell id -u)),--allow-run-as-root)
MPI_TOOL   := $(if $(HAVE_MPI),$(BUILD)/tapegrad-mpi)

.PHONY: bench-convergence demo install-check all lib check test test-float test-double sanitize install uninstall clean examples
all: lib $(if $(CLI_SRC),$(TOOL)) $(MPI_TOOL) $(EX_BIN)
lib: $(STATIC) $(SHARED)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# The shared library exports only what tapegrad.h declares (TG_API); the
# static library keeps every symbol linkable for the tool, tests and bench.
$(LIB_OBJ): CFLAGS += -fvisibility=hidden

$(STATIC): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/tapegrad.map: core/tapegrad.h tests/exports.sh
	@mkdir -p $(dir $@)
	tests/exports.sh --map core/tapegrad.h > $@

$(SHARED): $(LIB_OBJ) $(BUILD)/tapegrad.map
	$(CC) -shared -Wl,-soname,lib$(LIBNAME).so.0 -Wl,--version-script=$(BUILD)/tapegrad.map $(LDFLAGS) \
	    -o $@ $(LIB_OBJ) $(DEPS_LIBS)

$(TOOL): $(CLI_OBJ) $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(STATIC) $(DEPS_LIBS)

# tapegrad-mpi: the train command of the tool's objects under an MPI main.
$(BUILD)/obj/cli/mpi_main.o: cli/mpi_main.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(MPI_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/tapegrad-mpi: $(BUILD)/obj/cli/mpi_main.o $(filter-out %/cli/main.o,$(CLI_OBJ)) $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(STATIC) $(MPI_LIBS) $(DEPS_LIBS)

$(BUILD)/examples/%: examples/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(STATIC) $(LDFLAGS) $(DEPS_LIBS)

$(TESTS): $(TEST_OBJ) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) $(STATIC) $(DEPS_LIBS) $(shell pkg-config --libs criterion)

# The test binary finds the tool and examples of its own build through these.
TEST_ENV = TG_TOOL=$(abspath $(TOOL)) TG_EXAMPLES=$(abspath $(BUILD)/examples) TG_ROOT=$(CURDIR) \
           TG_REAL=$(REAL) LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp
# Criterion ignores how a test's process exits, so a sanitizer report inside a
# passing test would go unseen: the log is scanned for one as well.
test: all $(TESTS)
	tests/exports.sh $(SHARED) core/tapegrad.h
	@set -o pipefail; $(TEST_ENV) $(TESTS) --jobs 2 $(TESTFLAGS) 2>&1 | tee $(BUILD)/test.log
	@! grep -n -E "LeakSanitizer|AddressSanitizer|runtime error:" $(BUILD)/test.log || \
	  { echo "sanitizer reports above: failing"; exit 1; }
	@if [ -n "$(MPI_TOOL)" ] && command -v $(MPIRUN) >/dev/null; then \
	  MPIRUN="$(MPIRUN) $(MPIRUN_FLAGS)" tests/mpi.sh $(BUILD); \
	else echo "tests/mpi.sh skipped: no Open MPI (mpicc and mpirun)"; fi
# The README quotes what the float build prints: its commands are run and compared.
	$(if $(and $(filter float,$(REAL)),$(if $(SAN),,y)),tests/readme.sh)

# The main job a newcomer runs after building (README): the lecture's BPTT
# example, the lecture's network trained on its sequence and its predictions,
# then a character model trained on a text and a sample of what it writes.
CORPUS ?= /usr/share/games/fortunes/fortunes
DEMO   := $(BUILD)/demo
demo: all
	@mkdir -p $(DEMO)
	@echo "== 1. the lecture's worked example: tape vs hand formulas vs finite differences"
	$(BUILD)/examples/seed_bptt
	@echo; echo "== 2. train the lecture's network on its sequence, then predict"
	$(TOOL) train models/elman.yaml --data examples/data/seed.yaml --params examples/data/seed-params.yaml \
	    --epochs 5000 --lr 0.05 --target 1e-4 --save $(DEMO)/seed.tgckpt
	$(TOOL) run $(DEMO)/seed.tgckpt --data examples/data/seed.yaml
	@echo; echo "== 3. a character-level model on $(CORPUS), then a sample"
	$(TOOL) train models/char_rnn.yaml --data $(CORPUS) --batch 16 --bptt 64 --epochs 30 \
	    --lr 0.003 --clip 5 --save $(DEMO)/chars.tgckpt
	$(TOOL) sample $(DEMO)/chars.tgckpt --temperature 0.7 --length 400

# Convergence of the examples (steps, seconds, final loss): measured, not a test.
bench-convergence: all
	bench/convergence.sh $(BUILD)

# Every precision, then the sanitizers (leak checking is on by default in ASan),
# the commands under valgrind and a short fuzz run of each harness (issue 7).
check:
	$(MAKE) REAL=float test
	$(MAKE) REAL=double test
	$(MAKE) test-python
	$(MAKE) REAL=double SAN=1 OPT=-O1 test
	$(MAKE) install-check
	$(MAKE) valgrind
	$(MAKE) fuzz-short FUZZ_SECONDS=$(CHECK_FUZZ_SECONDS)

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
	$(MAKE) install-python

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
	    -Wl,-rpath,$(abspath $(BUILD)/prefix)/lib -lm
	$(BUILD)/seed_bptt_installed > /dev/null && echo "install-check: example built with pkg-config runs"

# ---- Python (python/, docs/python.md): pure Python over the shared libraries
# through cffi, so `make` builds nothing for it but the float64 library that
# dtype="float64" loads.  The package installs beside the libraries, into
# PREFIX/lib/python3.X/dist-packages (on Debian's sys.path for /usr and
# /usr/local); PYDIR overrides the folder.
PYTHON ?= /usr/bin/python3
ifeq ($(BUILD)$(SAN)$(FUZZING),build/float)
all: python
endif
.PHONY: python test-python install-python
python:
	$(MAKE) REAL=double lib
test-python: all
	$(MAKE) REAL=double all
	cd python && $(PYTHON) -m pytest -q
install-python:
	d="$${PYDIR:-$(DESTDIR)$(PREFIX)/lib/python$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')/dist-packages}"; \
	install -d "$$d/tapegrad" && install -m 644 python/tapegrad/*.py "$$d/tapegrad/"

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BUILD)/obj/cli/mpi_main.d

clean:
	rm -rf build

# ---- benchmark (issue 6): one training step of models/elman.yaml at four sizes,
# the LSTM and GRU, PyTorch beside them when python3 has torch; see bench/run.sh
# for its settings (BENCH_SIZES, BENCH_SECONDS, ...).  Builds in build/bench.
.PHONY: bench
bench:
	BENCH_OPT='$(OPT)' bench/run.sh

# The time of one in-place MPI_Allreduce of a gradient buffer between two
# local ranks (bench/allreduce.c; docs/distributed.md uses its figures).
.PHONY: bench-allreduce
$(BUILD)/bench/allreduce: bench/allreduce.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 $(OPT) -g -Wall -Wextra $(MPI_CFLAGS) -o $@ $< $(MPI_LIBS)
bench-allreduce: $(BUILD)/bench/allreduce
	$(MPIRUN) $(MPIRUN_FLAGS) -np 2 $<

# bench/step.c alone, against this build's library (float only), as run.sh
# builds it: e.g. make BUILD=build/b OPT=-O2 build/b/step
$(BUILD)/step: bench/step.c $(STATIC)
	$(CC) -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -pthread -Icore -Iops $(DEPS_CFLAGS) \
	    -o $@ bench/step.c $(STATIC) $(DEPS_LIBS)

# bench/bptt_plan.c: tg_model_backprop's plans and times under memory budgets
# on one long sequence (docs/memory.md quotes it): make build/float/bptt_plan
$(BUILD)/bptt_plan: bench/bptt_plan.c $(STATIC)
	$(CC) -std=c11 $(OPT) $(REALDEF) -g -Wall -Wextra -pthread -Icore -o $@ bench/bptt_plan.c $(STATIC) $(DEPS_LIBS)

# ---- fuzzing (issue 7): libFuzzer harnesses in tests/fuzz/, built by clang with
# ASan + UBSan in build/fuzz (the library objects with -fsanitize=fuzzer-no-link).
#   make fuzz             build the harnesses
#   make fuzz-short       each harness FUZZ_SECONDS (default 30), as `make check` does
#   make fuzz-long        each harness 600 s (50 min); the summary is build/fuzz/logs/summary.txt
# Seed corpora are copied from models/, tests/malformed/, tests/data/ and
# examples/ into $(FUZZ_OUT)/corpus/NAME at run time (FUZZ_OUT defaults to
# build/fuzz); findings go to $(FUZZ_OUT)/artifacts/NAME, logs to
# $(FUZZ_OUT)/logs.  Every crash, hang or leak becomes a regression case in
# tests/malformed/ (models) or tests/data/ + tests/test_hostile.c (data, params).
.PHONY: fuzz fuzz-short fuzz-long fuzz-corpus fuzz-run valgrind
FUZZ_CC      ?= clang
FUZZ_BUILD   := build/fuzz
FUZZ_NAMES   := model expr data params all ckpt csv text
FUZZ_BINS    := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_OUT     ?= $(FUZZ_BUILD)
FUZZ_SECONDS ?= 30
# `make check` gives each harness this long: with eight harnesses, the README's
# two commands on a fresh clone took 10 min 37 s on the 2-core machine at 20 s
# each (make check about 9 of them), so 15 keeps the check under 10 minutes
CHECK_FUZZ_SECONDS ?= 15
FUZZ_RSS_MB  ?= 2048
FUZZ_FLAGS   ?= -timeout=10 -rss_limit_mb=$(FUZZ_RSS_MB) -max_len=65536 -print_final_stats=1
ifeq ($(FUZZING),1)
  CFLAGS += -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
            -fno-omit-frame-pointer
endif

fuzz:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) OPT=-O1 FUZZING=1 $(FUZZ_BUILD)/libtapegrad.a
	$(MAKE) $(FUZZ_BINS)

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h $(FUZZ_BUILD)/libtapegrad.a
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -O1 -g -Icore -Iops -Imodels -Itrain $(DEPS_CFLAGS) \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
	    -o $@ $< $(FUZZ_BUILD)/libtapegrad.a $(DEPS_LIBS)

# The seed corpora: copies of the repository's own files, made fresh each run
# by tests/fuzz/corpus.sh (the corpus directory also keeps what runs found).
fuzz-corpus:
	@tests/fuzz/corpus.sh $(FUZZ_OUT)

# Each harness for FUZZ_SECONDS; fails on any finding.  -fork is not used so
# that the final stats (executions, cov, ft, corpus) land in the log.
fuzz-run: fuzz fuzz-corpus
	@mkdir -p $(FUZZ_OUT)/logs; rm -f $(FUZZ_OUT)/logs/summary.txt; fail=0; \
	for n in $(FUZZ_NAMES); do \
	  log=$(FUZZ_OUT)/logs/$$n.log; \
	  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(FUZZ_BUILD)/fuzz_$$n $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) \
	    -dict=tests/fuzz/tapegrad.dict -artifact_prefix=$(FUZZ_OUT)/artifacts/$$n/ \
	    $(FUZZ_OUT)/corpus/$$n > $$log 2>&1 || { fail=1; echo "fuzz_$$n: FOUND SOMETHING, see $$log"; tail -40 $$log; }; \
	  tests/fuzz/summary.sh $$n $$log | tee -a $(FUZZ_OUT)/logs/summary.txt; \
	done; exit $$fail

fuzz-short:
	$(MAKE) fuzz-run FUZZ_SECONDS=$(FUZZ_SECONDS)

fuzz-long:
	$(MAKE) fuzz-run FUZZ_SECONDS=600

# ---- valgrind (issue 7): the README's commands and every example under memcheck;
# any error or definitely/indirectly lost block fails.  Part of `make check`
# (about 45 s on 2 cores).
valgrind: all
	tests/valgrind.sh $(BUILD)
