#!/usr/bin/env bash
# run.sh — `make bench`: times one full training step (forward over T, loss,
# backward, SGD) of models/elman.yaml at four sizes, each size in its own
# process, beside the same step in PyTorch when python3 can import torch, then
# the LSTM and GRU of models/ at the medium size, and `tapegrad train` at the
# benchmark's speed.  Prints the tables; raw key=value output of every run
# is kept under build/bench/results/.
#
# Settings (environment): BENCH_SIZES ("tiny small medium large"),
# BENCH_SECONDS (1.5, timed per run), BENCH_THREADS (2), BENCH_THREAD_CONFIG
# (tapegrad: what the library recommends, tapegrad's own BENCH_THREADS
# threads with OpenBLAS on one (tg_ctx_set_threads, `tapegrad --threads`);
# blas: the old way, tapegrad on one thread and OpenBLAS on BENCH_THREADS),
# BENCH_TORCH_CONFIGS
# ("2:1 1:2": PyTorch intra-op threads : OpenBLAS threads; each run, the best
# kept), BENCH_WAIT (30: seconds to wait for an idle machine before each size),
# BENCH_PYTHON (a python3 with torch and numpy; found by itself), BENCH_OPT
# (compiler flags of the library and step; `make bench` passes the Makefile's
# OPT).  BENCH_REPORT=DIR prints the tables of an earlier run's raw output
# without measuring anything.
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are left as they are and printed.
# KANN (github.com/attractivechaos/kann, not shipped): TG_BENCH_KANN=/path/to/a/checkout
# compiles bench/kann_step.c with its kann.c and kautodiff.c in $B and times the
# same Elman step; BENCH_KANN_CONFIGS ("kann:2 cblas:2:1 cblas:1:2": KANN's own
# sgemm or OpenBLAS's : kann_mt threads [: OpenBLAS threads]; the best kept).
# The long-sequence table (Elman 16-256-16, full BPTT and a memory budget):
# BENCH_LONG (1; 0 skips it), BENCH_LONG_T ("1000 10000 100000 1000000"),
# BENCH_LONG_B ("1 32"), BENCH_LONG_MEMORY (256M), BENCH_LONG_SECONDS (2: per
# configuration, at least two steps), BENCH_LONG_ONE (30: a first step longer
# than this is the only one), BENCH_LONG_MAX_GIB (12: full BPTT projected to
# need more is skipped), BENCH_LONG_MAX_S (300: a configuration projected to
# take longer is skipped).  bench/README.md says more.
set -u
cd "$(dirname "$0")/.."
B=${BENCH_BUILD:-build/bench}
SECS=${BENCH_SECONDS:-1.5}
THREADS=${BENCH_THREADS:-2}
THREAD_CONFIG=${BENCH_THREAD_CONFIG:-tapegrad}
case $THREAD_CONFIG in
tapegrad) TG_THREAD_ARGS=(--threads "$THREADS") TRAIN_THREAD_ARGS=(--threads "$THREADS") BLAS_ENV=1
          THREAD_DESC="tapegrad's $THREADS threads, OpenBLAS on 1" ;;
blas) TG_THREAD_ARGS=(--blas-threads "$THREADS") TRAIN_THREAD_ARGS=(--threads 1) BLAS_ENV=$THREADS
      THREAD_DESC="tapegrad on 1 thread, OpenBLAS on $THREADS" ;;
*) echo "BENCH_THREAD_CONFIG must be tapegrad or blas, not '$THREAD_CONFIG'"; exit 2 ;;
esac
SIZES=${BENCH_SIZES:-tiny small medium large}
TORCH_CFGS=${BENCH_TORCH_CONFIGS:-2:1 1:2}
WAIT=${BENCH_WAIT:-30}
OPTFLAGS=${BENCH_OPT:--O2}
MK=${MAKE:-make}
REPORT=${BENCH_REPORT:-}
OUT=${REPORT:-$B/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
GATED=${BENCH_GATED_SIZE:-medium}
TRAIN_SIZES=${BENCH_TRAIN_SIZES:-small medium}
KANN_DIR=${TG_BENCH_KANN:-}
KANN_CFGS=${BENCH_KANN_CONFIGS:-kann:2 cblas:2:1 cblas:1:2}
LONG=${BENCH_LONG:-1}
LONG_T=${BENCH_LONG_T:-1000 10000 100000 1000000}
LONG_B=${BENCH_LONG_B:-1 32}
LONG_MEMORY=${BENCH_LONG_MEMORY:-256M}
LONG_SECS=${BENCH_LONG_SECONDS:-2}
LONG_ONE=${BENCH_LONG_ONE:-30}
LONG_MAX_GIB=${BENCH_LONG_MAX_GIB:-12}
LONG_MAX_S=${BENCH_LONG_MAX_S:-300}
LONG_SHAPE_IHO=${BENCH_LONG_SHAPE:-16,256,16}
SIZE_TABLE='tiny 2 2 1 3 1
small 16 32 8 50 1
medium 64 256 64 100 32
large 256 1024 256 100 64'

# ---- helpers -------------------------------------------------------------------
kv() { # kv FILE KEY: the value of KEY=... in FILE, or "-"
    local v
    v=$(awk -v k="$2" 'index($0, k "=") == 1 { print substr($0, length(k) + 2); exit }' "$1" 2>/dev/null)
    echo "${v:--}"
}
calc() { awk "BEGIN { x = $1; print x }" 2>/dev/null; }
isnum() { [[ "$1" =~ ^[-+]?[0-9.]+([eE][-+]?[0-9]+)?$ ]]; }
least() { # least A B ...: the smallest positive number among the arguments, or "-"
    local x m=-
    for x in "$@"; do
        isnum "$x" && awk -v a="$x" -v b="$m" 'BEGIN { exit !(a > 0 && (b == "-" || a < b + 0)) }' && m=$x
    done
    echo "$m"
}
ms() { # a time in ms, 4 significant digits, or "-"
    isnum "$1" && awk -v x="$1" 'BEGIN { printf("%.4g", x) }' || echo "-"
}
agree() { # agree A B TOL: "yes" if |A - B| <= TOL * |B|
    isnum "$1" && isnum "$2" || { echo "-"; return; }
    awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b;
        printf("%s (%.1e)", d <= t * m ? "yes" : "NO", m > 0 ? d / m : d) }'
}
idle_pct() { # the machine's idle share over one second
    local a b
    read -r -a a < /proc/stat
    sleep 1
    read -r -a b < /proc/stat
    local t=0 i
    for i in 1 2 3 4 5 6 7 8; do t=$((t + b[i] - a[i])); done
    echo $((t > 0 ? 100 * ((b[4] - a[4]) + (b[5] - a[5])) / t : 100))
}
wait_quiet() { # up to WAIT seconds for >= 90% idle (5 once a wait was in vain)
    local k p=100
    for ((k = 0; k < WAIT; k++)); do
        p=$(idle_pct)
        [ "$p" -ge 90 ] && return 0
    done
    echo "   (machine busy: only $p% idle after ${WAIT}s of waiting; timings below are disturbed)"
    WAIT=$((WAIT < 5 ? WAIT : 5))
}

if [ -z "$REPORT" ]; then # ---- measure ------------------------------------------
# ---- build: the library as `make` builds it, in its own directory -----------
echo "== building the library and bench/step.c in $B ($OPTFLAGS)"
$MK --no-print-directory -s BUILD="$B" REAL=float SAN= OPT="$OPTFLAGS" lib || exit 1
have_cli=0
if ls cli/*.c >/dev/null 2>&1 && $MK --no-print-directory -s BUILD="$B" REAL=float SAN= OPT="$OPTFLAGS" "$B/tapegrad"; then
    have_cli=1
fi
${CC:-cc} -std=c11 -D_GNU_SOURCE $OPTFLAGS -g -Wall -Wextra -pthread -Icore -Iops $(pkg-config --cflags openblas) \
    -o "$B/step" bench/step.c "$B/libtapegrad.a" $(pkg-config --libs openblas yaml-0.1) -lm -pthread || exit 1

# KANN, from the checkout TG_BENCH_KANN names, built here and never in the project:
# kann_step-kann with KANN's own sgemm, kann_step-cblas with OpenBLAS's
# (-DHAVE_CBLAS, as KANN's Makefile does with CBLAS=); both with -DHAVE_PTHREAD
# (kann_mt) and this benchmark's compiler flags.  KANN's headers are
# -isystem: their warnings are theirs.
have_kann=0
if [ -n "$KANN_DIR" ]; then
    if [ -f "$KANN_DIR/kann.c" ] && [ -f "$KANN_DIR/kautodiff.c" ] && [ -f "$KANN_DIR/kann.h" ]; then
        mkdir -p "$B/kann"
        ok=1
        for v in kann cblas; do
            extra=
            [ $v = cblas ] && extra="-DHAVE_CBLAS $(pkg-config --cflags openblas)"
            ${CC:-cc} -std=gnu11 $OPTFLAGS $extra -DHAVE_PTHREAD -w -I"$KANN_DIR" -c -o "$B/kann/kann-$v.o" "$KANN_DIR/kann.c" &&
            ${CC:-cc} -std=gnu11 $OPTFLAGS $extra -DHAVE_PTHREAD -w -I"$KANN_DIR" -c -o "$B/kann/kautodiff-$v.o" "$KANN_DIR/kautodiff.c" &&
            ${CC:-cc} -std=c11 -D_GNU_SOURCE $OPTFLAGS $extra -DHAVE_PTHREAD -g -Wall -Wextra -pthread -isystem "$KANN_DIR" \
                -o "$B/kann_step-$v" bench/kann_step.c "$B/kann/kann-$v.o" "$B/kann/kautodiff-$v.o" \
                $(pkg-config --libs openblas) -lm -pthread || ok=0
        done
        [ $ok = 1 ] && have_kann=1 || echo "NOTE: KANN from $KANN_DIR did not build: its column stays empty"
    else
        echo "NOTE: TG_BENCH_KANN=$KANN_DIR has no kann.c, kautodiff.c and kann.h: KANN is not run"
    fi
fi

PY=
for cand in ${BENCH_PYTHON:-} python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import torch, numpy' 2>/dev/null; then
        PY=$cand
        break
    fi
done

# The model file of the reference task.  A literal `init:` in it fixes its
# shape and so blocks the size overrides; the benchmark's own init replaces
# every parameter anyway, so then a copy without the literal is used (said so).
ELMAN=models/elman.yaml
if ! "$B/step" --model "$ELMAN" --size small --seconds 0 --no-replay >"$OUT/probe.txt" 2>&1; then
    if grep -q "init of" "$OUT/probe.txt"; then
        sed -E 's/init: \[\[[^]]*\](, *\[[^]]*\])*\]/init: xavier/' "$ELMAN" >"$B/elman-sized.yaml"
        echo "NOTE: $ELMAN cannot take the size overrides: $(grep -o 'elman.yaml:[0-9:]* .*' "$OUT/probe.txt" | head -1)"
        echo "      using $B/elman-sized.yaml, the same file with literal inits replaced by xavier"
        echo "      (the benchmark overwrites every parameter with its own deterministic init)."
        ELMAN=$B/elman-sized.yaml
    else
        echo "models/elman.yaml does not load:"; cat "$OUT/probe.txt"; exit 1
    fi
fi

run_tg() { # run_tg NAME ARGS...: one process of bench/step.c
    local name=$1
    shift
    "$B/step" "${TG_THREAD_ARGS[@]}" --seconds "$SECS" "$@" >"$OUT/$name.txt" 2>"$OUT/$name.err" ||
        echo "   $name failed: $(tail -1 "$OUT/$name.err")"
}
run_torch() { # run_torch NAME IMPL SIZE: every thread configuration, the best kept as NAME.txt
    local name=$1 impl=$2 size=$3 cfg best=
    [ -n "$PY" ] || return 0
    for cfg in $TORCH_CFGS; do
        local tt=${cfg%%:*} bt=${cfg##*:} f="$OUT/$name.t${cfg%%:*}b${cfg##*:}.txt"
        OPENBLAS_NUM_THREADS=$bt OMP_NUM_THREADS=$tt "$PY" bench/torch_step.py --impl "$impl" --size "$size" \
            --threads "$tt" --seconds "$SECS" >"$f" 2>"$f.err" || { echo "   $name ($cfg) failed: $(tail -1 "$f.err")"; continue; }
        echo "cfg=torch ${tt}t + blas ${bt}t" >>"$f"
        if [ -z "$best" ] || awk -v a="$(kv "$f" ms_median)" -v b="$(kv "$best" ms_median)" 'BEGIN { exit !(a < b) }'; then
            best=$f
        fi
    done
    [ -n "$best" ] && cp "$best" "$OUT/$name.txt"
}

run_kann() { # run_kann NAME SIZE: every KANN configuration, the best kept as NAME.txt
    local name=$1 size=$2 cfg best=
    [ "$have_kann" = 1 ] || return 0
    for cfg in $KANN_CFGS; do
        local impl=${cfg%%:*} rest=${cfg#*:} kt bt
        kt=${rest%%:*} bt=${rest#*:}
        [ "$bt" = "$rest" ] && bt=1
        local f="$OUT/$name.$impl$kt.b$bt.txt"
        OPENBLAS_NUM_THREADS=$bt "$B/kann_step-$impl" --size "$size" --threads "$kt" --seconds "$SECS" >"$f" 2>"$f.err" ||
            { echo "   $name ($cfg) failed: $(tail -1 "$f.err")"; continue; }
        if [ -z "$best" ] || awk -v a="$(kv "$f" ms_median)" -v b="$(kv "$best" ms_median)" 'BEGIN { exit !(a < b) }'; then
            best=$f
        fi
    done
    [ -n "$best" ] && cp "$best" "$OUT/$name.txt"
}

# ---- environment -----------------------------------------------------------------
echo "== environment"
echo "   $(uname -srm), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "   OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-(unset)}" \
     "OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-(unset)} (the runs set their own)"
echo "   tapegrad's threads: $THREAD_DESC (BENCH_THREAD_CONFIG=$THREAD_CONFIG)"
wait_quiet
"$B/step" --calibrate --threads "$THREADS" --seconds 3 >"$OUT/calibrate.txt" 2>&1
PEAK=$(kv "$OUT/calibrate.txt" sgemm_peak_gflops)
echo "   OpenBLAS: $(kv "$OUT/calibrate.txt" blas_config); core $(kv "$OUT/calibrate.txt" corename)," \
     "$(kv "$OUT/calibrate.txt" blas_threads | cut -d' ' -f1) threads"
echo "   sgemm through the same CBLAS, $THREADS threads: 1024^3 $(kv "$OUT/calibrate.txt" sgemm_square_1024_gflops)," \
     "1536^3 $(kv "$OUT/calibrate.txt" sgemm_square_1536_gflops), 2048^3 $(kv "$OUT/calibrate.txt" sgemm_square_2048_gflops)" \
     "GFLOP/s -> machine limit $PEAK GFLOP/s"
if [ -n "$PY" ]; then
    echo "   PyTorch: $("$PY" -c 'import torch; print(torch.__version__)') ($PY); thread configurations tried" \
         "(intra-op:OpenBLAS): $TORCH_CFGS, the faster kept per run"
else
    echo "   PyTorch: not importable by python3 or /usr/bin/python3: its columns stay empty"
fi
if [ "$have_kann" = 1 ]; then
    echo "   KANN: $KANN_DIR ($(sed -n 's/^#define KANN_VERSION "\(.*\)"/\1/p' "$KANN_DIR/kann.h")," \
         "MIT licence, built in $B, not shipped); configurations (sgemm:kann_mt threads[:OpenBLAS threads]):" \
         "$KANN_CFGS, the faster kept per run"
    echo "kann_dir=$KANN_DIR" >"$OUT/kann.txt"
else
    echo "   KANN: not run (set TG_BENCH_KANN=/path/to/kann)"
fi

# ---- the runs ------------------------------------------------------------------------
for s in $SIZES; do
    echo "== $s"
    wait_quiet
    run_tg "elman-$s" --model "$ELMAN" --size "$s"
    run_tg "api-$s" --engine api --size "$s" --no-replay
    run_torch "torch-op-$s" op "$s"
    run_torch "torch-rnn-$s" rnn "$s"
    run_kann "kann-$s" "$s"
done
for m in lstm gru; do
    echo "== $m ($GATED)"
    wait_quiet
    run_tg "$m-$GATED" --model "models/$m.yaml" --size "$GATED"
    run_torch "torch-$m-op-$GATED" "$m-op" "$GATED"
    run_torch "torch-$m-nn-$GATED" "$m-nn" "$GATED"
done

# `tapegrad train` on the same data and sizes: ms per step from its loss log
if [ "$have_cli" = 1 ]; then
    for s in $TRAIN_SIZES; do
        echo "== tapegrad train ($s)"
        read -r I H O T Bt <<<"$(awk -v s="$s" '$1 == s { print $2, $3, $4, $5, $6 }' <<<"$SIZE_TABLE")"
        "$B/step" --model "$ELMAN" --size "$s" --write-data "$OUT/data-$s.yaml" >/dev/null 2>"$OUT/train-$s.err"
        # the same weights as the tool's (the model file's init, seed 1), timed just before it
        run_tg "elman-modelinit-$s" --model "$ELMAN" --size "$s" --init model --no-replay
        n=$(awk -v x="$(kv "$OUT/elman-$s.txt" ms_median)" 'BEGIN { n = int(2000 / (x > 0 ? x : 1)); print ((n < 20) ? 20 : (n > 20000) ? 20000 : n) }')
        OPENBLAS_NUM_THREADS=$BLAS_ENV "$B/tapegrad" train "${TRAIN_THREAD_ARGS[@]}" "$ELMAN" --data "$OUT/data-$s.yaml" --dim input="$I" \
            --dim hidden="$H" --dim output="$O" --batch "$Bt" --epochs "$n" --optimizer sgd --lr 0.0001 \
            --log "$OUT/train-$s.csv" --quiet >"$OUT/train-$s.out" 2>>"$OUT/train-$s.err" ||
            echo "   tapegrad train failed: $(tail -1 "$OUT/train-$s.err")"
    done
fi

# ---- the long-sequence table: each configuration in its own process --------------
# Full BPTT runs first at each T; its peak RSS and time per step, with those at
# the T before, project the next T's: a configuration projected past
# BENCH_LONG_MAX_GIB or BENCH_LONG_MAX_S is skipped and says what it would need.
if [ "$LONG" != 0 ]; then
    echo "== long sequences (Elman $LONG_SHAPE_IHO, T = $LONG_T, B = $LONG_B, budget $LONG_MEMORY)"
    for b in $LONG_B; do
        fT0= fR0= fT1= fR1= fPer= bPer= # the last two full runs' T and RSS; s/step per time step, full and budget
        for t in $LONG_T; do
            for mode in full budget; do
                f=$OUT/long-B$b-T$t-$mode.txt
                mem=0
                [ $mode = budget ] && mem=$LONG_MEMORY
                skip=
                if [ $mode = full ] && [ -n "$fT1" ]; then
                    # RSS grows linearly in T: the slope of the last two points (or RSS/T)
                    need=$(awk -v t="$t" -v t1="$fT1" -v r1="$fR1" -v t0="${fT0:-0}" -v r0="${fR0:-0}" \
                        'BEGIN { s = (r1 - r0) / (t1 - t0); printf("%.1f", (r1 + s * (t - t1)) / 1024) }')
                    awk -v n="$need" -v m="$LONG_MAX_GIB" 'BEGIN { exit !(n > m) }' &&
                        skip="needs ~$need GiB"
                fi
                per=$fPer
                [ $mode = budget ] && [ -n "$bPer" ] && per=$bPer
                if [ -z "$skip" ] && [ -n "$per" ]; then
                    # time: linear in T; two steps unless one takes longer than BENCH_LONG_ONE
                    est=$(awk -v p="$per" -v t="$t" -v one="$LONG_ONE" \
                        'BEGIN { x = p * t; printf("%.0f", x > one ? x : 2 * x) }')
                    [ "$est" -gt "$LONG_MAX_S" ] && skip="would take ~$est s"
                fi
                if [ -n "$skip" ]; then
                    printf 'T=%s\nB=%s\nmode=%s\nskipped=%s\n' "$t" "$b" "$mode" "$skip" >"$f"
                    echo "   B=$b T=$t $mode: skipped ($skip)"
                    continue
                fi
                wait_quiet
                echo "   B=$b T=$t $mode"
                "$B/step" "${TG_THREAD_ARGS[@]}" --long --model "$ELMAN" --shape "$LONG_SHAPE_IHO,$t,$b" --memory "$mem" \
                    --seconds "$LONG_SECS" --one-step "$LONG_ONE" >"$f" 2>"$f.err"
                rc=$?
                printf 'mode=%s\nrc=%s\n' "$mode" "$rc" >>"$f"
                [ $rc = 0 ] || echo "   B=$b T=$t $mode failed: $(tail -1 "$f.err")"
                v=$(kv "$f" s_step)
                isnum "$v" || continue
                if [ $mode = full ]; then
                    fPer=$(awk -v s="$v" -v t="$t" 'BEGIN { print s / t }')
                    fT0=$fT1 fR0=$fR1 fT1=$t fR1=$(kv "$f" rss_mib)
                    [ -n "$fT0" ] || fT0=0 fR0=0 # one point: RSS/T
                else
                    bPer=$(awk -v s="$v" -v t="$t" 'BEGIN { print s / t }')
                fi
            done
        done
    done
fi

fi # ---- end of measuring ---------------------------------------------------------

# ---- the tables ----------------------------------------------------------------------
PEAK=$(kv "$OUT/calibrate.txt" sgemm_peak_gflops)
TORCH_VERSION=$(kv "$OUT/torch-op-tiny.txt" torch)
[ "$TORCH_VERSION" = - ] && TORCH_VERSION=$(kv "$OUT/torch-op-$GATED.txt" torch)
[ "$TORCH_VERSION" = - ] && TORCH_VERSION=
have_cli=0
ls "$OUT"/train-*.csv >/dev/null 2>&1 && have_cli=1
echo
echo "== Elman network (models/elman.yaml), one training step = forward over T + loss + backward + SGD,"
f0=$OUT/elman-${SIZES%% *}.txt # the thread configuration the runs used, as they printed it
case $(kv "$f0" thread_config) in
tapegrad) THREAD_DESC="tapegrad's $(kv "$f0" tg_threads) threads, OpenBLAS on 1" ;;
blas) THREAD_DESC="tapegrad on 1 thread, OpenBLAS on $(kv "$f0" blas_threads | cut -d' ' -f1)" ;;
*) THREAD_DESC="$(kv "$f0" blas_threads | cut -d' ' -f1) OpenBLAS threads" ;; # output from before tapegrad had threads
esac
echo "   float32, tape re-recorded every step; each size in its own process; $THREAD_DESC"
echo "   FLOP/step = 2mkn for every product the step computes (forward, and backward for each operand"
echo "   that needs a gradient), read off the tape; elementwise work is not counted."
printf "%-7s %-16s %-30s %9s %8s %10s %8s %7s %10s %9s %7s\n" size "I-H-O T B" "tapegrad ms/step med [min, max]" \
    steps/s RSS_MiB MFLOP/step GFLOP/s %sgemm mm-only_ms api_ms others%
for s in $SIZES; do
    f=$OUT/elman-$s.txt
    printf "%-7s %-16s %-30s %9s %8s %10s %8s %7s %10s %9s %7s\n" "$s" \
        "$(kv "$f" I)-$(kv "$f" H)-$(kv "$f" O) $(kv "$f" T) $(kv "$f" B)" \
        "$(ms "$(kv "$f" ms_median)") [$(ms "$(kv "$f" ms_min)"), $(ms "$(kv "$f" ms_max)")]" \
        "$(kv "$f" steps_per_s)" "$(kv "$f" rss_mib)" "$(calc "$(kv "$f" flop_step) / 1e6")" \
        "$(kv "$f" gflops | cut -c1-7)" "$(calc "int(1000 * $(kv "$f" gflops) / $PEAK) / 10")" \
        "$(ms "$(kv "$f" matmul_only_ms)")" "$(ms "$(kv "$OUT/api-$s.txt" ms_median)")" "$(kv "$f" others_cpu_pct)"
done
echo "   mm-only = the same products alone, replayed through cblas_sgemm (tapegrad's floor with this BLAS);"
echo "   api = the same network recorded by hand through tg_matmul/tg_add/tg_tanh (no unroller);"
echo "   others% = CPU share other processes took during the timing (0-100 over all cores)."

if [ -n "$TORCH_VERSION" ]; then
    echo
    echo "== the same step in PyTorch $TORCH_VERSION, same weights and data, in this run"
    printf "%-7s %10s %-30s %-30s %9s %9s %8s %-12s %-12s %-16s %-16s\n" size tapegrad_ms "torch op-by-op ms (threads)" \
        "torch nn.RNN ms (threads)" best_peer tg/best torchRSS loss0_tg loss0_torch "op agrees" "nn.RNN agrees"
    for s in $SIZES; do
        f=$OUT/elman-$s.txt o=$OUT/torch-op-$s.txt r=$OUT/torch-rnn-$s.txt
        tg=$(kv "$f" ms_median) to=$(kv "$o" ms_median) tr=$(kv "$r" ms_median)
        best=$(awk -v a="$to" -v b="$tr" 'BEGIN { if (a + 0 > 0 && (b + 0 <= 0 || a + 0 < b + 0)) print a; else if (b + 0 > 0) print b; else print "-" }')
        rss=$(awk -v a="$(kv "$o" rss_mib)" -v b="$(kv "$r" rss_mib)" 'BEGIN { print (a > b ? a : b) }')
        printf "%-7s %10s %-30s %-30s %9s %9s %8s %-12s %-12s %-16s %-16s\n" "$s" "$(ms "$tg")" \
            "$(ms "$to") ($(kv "$o" cfg | sed 's/^torch //'))" "$(ms "$tr") ($(kv "$r" cfg | sed 's/^torch //'))" \
            "$(ms "$best")" "$(isnum "$best" && calc "int(1000 * $tg / $best) / 1000" || echo -)" "$rss" \
            "$(kv "$f" loss0)" "$(kv "$o" loss0)" "$(agree "$(kv "$f" loss0)" "$(kv "$o" loss0)" 1e-5)" \
            "$(agree "$(kv "$f" loss0)" "$(kv "$r" loss0)" 1e-5)"
    done
    echo "   loss0 = the loss before the first update; agree = relative difference <= 1e-5."
    echo "   After one SGD update (loss1): $(for s in $SIZES; do echo -n "$s $(agree "$(kv "$OUT/elman-$s.txt" loss1)" "$(kv "$OUT/torch-op-$s.txt" loss1)" 1e-4)  "; done)"
fi

echo
if [ -s "$OUT/kann.txt" ]; then
    echo "== the same step in KANN $(sed -n 's/^#define KANN_VERSION "\(.*\)"/\1/p' "$(kv "$OUT/kann.txt" kann_dir)/kann.h" 2>/dev/null)" \
         "($(kv "$OUT/kann.txt" kann_dir)), same weights and data, in this run"
    printf "%-7s %10s %-34s %9s %9s %9s %8s %-12s %-16s %-16s\n" size tapegrad_ms "KANN ms (configuration)" tg/KANN \
        best_peer tg/best kannRSS loss0_kann "loss0 agrees" "loss1 agrees"
    for s in $SIZES; do
        f=$OUT/elman-$s.txt k=$OUT/kann-$s.txt
        tg=$(kv "$f" ms_median) tk=$(kv "$k" ms_median)
        best=$(least "$(kv "$OUT/torch-op-$s.txt" ms_median)" "$(kv "$OUT/torch-rnn-$s.txt" ms_median)" "$tk")
        printf "%-7s %10s %-34s %9s %9s %9s %8s %-12s %-16s %-16s\n" "$s" "$(ms "$tg")" "$(ms "$tk") ($(kv "$k" cfg))" \
            "$(isnum "$tk" && calc "int(1000 * $tg / $tk) / 1000" || echo -)" "$(ms "$best")" \
            "$(isnum "$best" && calc "int(1000 * $tg / $best) / 1000" || echo -)" "$(kv "$k" rss_mib)" "$(kv "$k" loss0)" \
            "$(agree "$(kv "$f" loss0)" "$(kv "$k" loss0)" 1e-5)" "$(agree "$(kv "$f" loss1)" "$(kv "$k" loss1)" 1e-4)"
    done
    echo "   KANN: kann_layer_rnn (tanh, h0 = 0) + kann_layer_dense + kad_tanh, kad_mse per step, kann_unroll over T,"
    echo "   float32; one step = kann_cost(ua, 0, 1) (forward, backward, KANN zeroes the gradients) + the SGD loop."
    echo "   KANN's cost is the mean (tapegrad's sum / (T*B*O)): its lr is scaled by T*B*O and its losses back, so"
    echo "   loss0 and loss1 compare.  Threads: kann_mt N copies the unrolled network and splits the batch"
    echo "   (N <= B: one thread at B = 1); sgemm = KANN's own kad_sgemm_simple (kann) or OpenBLAS (cblas);"
    echo "   best_peer = the fastest of PyTorch op by op, torch.nn.RNN and KANN."
else
    echo "== KANN: not run (set TG_BENCH_KANN=/path/to/kann, a checkout of github.com/attractivechaos/kann)"
fi

echo
echo "== gated models at the $GATED size ($(awk -v s="$GATED" '$1 == s { print "I=" $2 ", H=" $3 ", O=" $4 ", T=" $5 ", B=" $6 }' <<<"$SIZE_TABLE"))"
printf "%-5s %-30s %8s %8s %10s %8s %7s %10s %-28s %-28s %9s %-16s\n" model "tapegrad ms/step med [min, max]" steps/s \
    RSS_MiB MFLOP/step GFLOP/s %sgemm mm-only_ms "torch op-by-op ms (threads)" "torch.nn.X ms (threads)" tg/best "loss0 agrees"
for m in lstm gru; do
    f=$OUT/$m-$GATED.txt o=$OUT/torch-$m-op-$GATED.txt n=$OUT/torch-$m-nn-$GATED.txt
    tg=$(kv "$f" ms_median) to=$(kv "$o" ms_median) tn=$(kv "$n" ms_median)
    best=$(awk -v a="$to" -v b="$tn" 'BEGIN { if (a + 0 > 0 && (b + 0 <= 0 || a + 0 < b + 0)) print a; else if (b + 0 > 0) print b; else print "-" }')
    printf "%-5s %-30s %8s %8s %10s %8s %7s %10s %-28s %-28s %9s %-16s\n" "$m" \
        "$(ms "$tg") [$(ms "$(kv "$f" ms_min)"), $(ms "$(kv "$f" ms_max)")]" "$(kv "$f" steps_per_s)" "$(kv "$f" rss_mib)" \
        "$(calc "$(kv "$f" flop_step) / 1e6")" "$(kv "$f" gflops | cut -c1-7)" \
        "$(calc "int(1000 * $(kv "$f" gflops) / $PEAK) / 10")" "$(ms "$(kv "$f" matmul_only_ms)")" \
        "$(ms "$to") ($(kv "$o" cfg | sed 's/^torch //'))" "$(ms "$tn") ($(kv "$n" cfg | sed 's/^torch //'))" \
        "$(isnum "$best" && calc "int(1000 * $tg / $best) / 1000" || echo -)" \
        "$(agree "$(kv "$f" loss0)" "$(kv "$o" loss0)" 1e-5)"
done
echo "   op-by-op = models/lstm.yaml and gru.yaml equation by equation (same weights, so the losses agree);"
echo "   torch.nn.LSTM/GRU + Linear use PyTorch's own gate equations (nn.GRU: r * (W h + b)), timed only."

if [ "$have_cli" = 1 ]; then
    echo
    echo "== tapegrad train (the command-line tool) on the same data and weights, sgd, $THREAD_DESC"
    for s in $TRAIN_SIZES; do
        c=$OUT/train-$s.csv
        [ -s "$c" ] || { echo "   $s: no log ($(tail -1 "$OUT/train-$s.err" 2>/dev/null))"; continue; }
        # per-step times from the cumulative seconds column, after the first 3 steps
        med=$(awk -F, 'NR > 1 { t[NR] = $5 } END { for (i = 5; i <= NR; i++) print (t[i] - t[i-1]) * 1000 }' "$c" |
            sort -g | awk '{ d[++n] = $1 } END { print n ? (n % 2 ? d[(n + 1) / 2] : (d[n / 2] + d[n / 2 + 1]) / 2) : "-" }')
        f=$OUT/elman-modelinit-$s.txt what="the same weights"
        [ -s "$f" ] || f=$OUT/elman-$s.txt what="the benchmark's weights"
        tg=$(kv "$f" ms_median)
        echo "   $s: train $(ms "$med") ms/step (median of $(($(wc -l <"$c") - 4)) steps) vs bench/step.c with" \
             "$what $(ms "$tg") ms/step: ratio $(isnum "$med" && isnum "$tg" && calc "int(100 * $med / $tg) / 100" || echo -)" \
             "(others $(kv "$f" others_cpu_pct)%)"
    done
fi

# ---- the long-sequence table -----------------------------------------------------------
cell() { # cell FILE: "s/step, RSS" of a long-sequence run, or why there is none
    if [ ! -s "$1" ]; then echo "no run"
    elif [ "$(kv "$1" skipped)" != - ]; then echo "skipped ($(kv "$1" skipped))"
    elif [ "$(kv "$1" rc)" != 0 ] || ! isnum "$(kv "$1" s_step)"; then
        echo "FAILED (error below)"
    else
        local n=$(kv "$1" steps_run)
        echo "$(ms "$(kv "$1" s_step)") s$([ "$n" = 1 ] && echo '*'), $(kv "$1" rss_mib) MiB"
    fi
}
# A first step alone pays the tape's first growth (page faults over all of it),
# which the fastest of later steps does not: the two do not compare.
one_step() { [ "$(kv "$1" steps_run)" = 1 ] && echo 1 || echo 0; }
comparable() { [ "$(one_step "$1")" = "$(one_step "$2")" ]; }
long_files=$(ls "$OUT"/long-B*-T*-full.txt 2>/dev/null)
if [ -n "$long_files" ]; then
    LB=$(for f in $long_files; do kv "$f" B; done | sort -n -u)
    LT=$(for f in $long_files; do kv "$f" T; done | sort -n -u)
    lshape=$(for f in $long_files; do [ "$(kv "$f" H)" != - ] && echo "$(kv "$f" I)-$(kv "$f" H)-$(kv "$f" O)" && break; done)
    budget_name=$(for f in "$OUT"/long-B*-T*-budget.txt; do kv "$f" memory_text; done | grep -v '^-$' | head -1)
    echo
    echo "== long sequences: Elman ${lshape:-16-256-16} (models/elman.yaml), one step = forward over T + loss + backward"
    echo "   + SGD + zero_grad, float32, $THREAD_DESC; each configuration in its own process"
    printf "%-3s %-8s %9s  %-30s %-30s %10s  %-40s %11s %8s\n" B T data_MiB "full BPTT: s/step, peak RSS" \
        "budget ${budget_name:-$LONG_MEMORY}: s/step, RSS" RSS-data "schedule (segment x segments, snapshots)" budget/full others%
    for b in $LB; do
        for t in $LT; do
            ff=$OUT/long-B$b-T$t-full.txt fb=$OUT/long-B$b-T$t-budget.txt
            [ -s "$ff" ] || [ -s "$fb" ] || continue
            data=$(kv "$ff" data_mib)
            [ "$data" = - ] && data=$(kv "$fb" data_mib)
            [ "$data" = - ] && data=$(awk -v t="$t" -v b="$b" -v s="${lshape:-16-256-16}" \
                'BEGIN { split(s, d, "-"); printf("%.1f", (d[1] + d[3]) * t * b * 4 / 1048576) }')
            over=- sched=- ratio=-
            isnum "$(kv "$fb" rss_mib)" && over=$(calc "$(kv "$fb" rss_mib) - $data")
            [ "$(kv "$fb" plan_segment)" != - ] &&
                sched="$(kv "$fb" plan_segment) x $(kv "$fb" plan_segments), $(kv "$fb" plan_snapshots) snap, +$(kv "$fb" plan_recomputed) steps"
            if isnum "$(kv "$fb" s_step)" && isnum "$(kv "$ff" s_step)"; then
                if comparable "$ff" "$fb"; then ratio=$(calc "int(100 * $(kv "$fb" s_step) / $(kv "$ff" s_step)) / 100")
                else ratio="n/c"; fi
            fi
            printf "%-3s %-8s %9s  %-30s %-30s %10s  %-40s %11s %8s\n" "$b" "$t" "$data" "$(cell "$ff")" "$(cell "$fb")" \
                "$over" "$sched" "$ratio" "$(kv "$ff" others_cpu_pct)/$(kv "$fb" others_cpu_pct)"
        done
    done
    for f in "$OUT"/long-B*-T*-*.txt; do
        [ "$(cell "$f")" = "FAILED (error below)" ] &&
            echo "   FAILED B=$(kv "$f" B) T=$(kv "$f" T) $(kv "$f" mode): $(tail -1 "$f.err" 2>/dev/null)"
    done
    echo "   data = the inputs and targets the process holds ((I + O) * T * B floats), part of its peak RSS"
    echo "   (ru_maxrss); RSS-data = the budgeted run's peak RSS less its data; * = a single (first) step was timed,"
    echo "   else the fastest step after the first.  skipped: projected from the measured runs (peak RSS linear in"
    echo "   T; BENCH_LONG_MAX_GIB=$LONG_MAX_GIB, BENCH_LONG_MAX_S=$LONG_MAX_S).  +N steps = time steps recorded again;"
    echo "   others% = the CPU share other processes took (full/budget).  A single step also pays the first growth"
    echo "   of the tape (page faults over full BPTT's whole tape), which later steps reuse; so budget/full says"
    echo "   n/c (not comparable) when only one side is a first step alone."
fi

# ---- the targets of issue 15 ------------------------------------------------------------
echo
echo "== targets (issue 15), from this run"
goal() { printf "   target %-52s %-44s %s\n" "$1" "$2" "$3"; }
pass() { awk "BEGIN { exit !($1) }" 2>/dev/null && echo met || echo "not met"; }
v=$(kv "$OUT/elman-large.txt" ms_median)
best_of() { least "$(kv "$OUT/torch-op-$1.txt" ms_median)" "$(kv "$OUT/torch-rnn-$1.txt" ms_median)" "$(kv "$OUT/kann-$1.txt" ms_median)"; }
for st in "large 0.5" "medium 0.35"; do
    read -r s lim <<<"$st"
    tg=$(kv "$OUT/elman-$s.txt" ms_median) best=$(best_of "$s")
    if isnum "$tg" && isnum "$best"; then
        goal "$s <= ${lim}x the best peer" "$(calc "int(1000 * $tg / $best) / 1000")x of $(ms "$best") ms" "$(pass "$tg <= $lim * $best")"
    else goal "$s <= ${lim}x the best peer" "not measured" "-"; fi
done
g=$(kv "$OUT/elman-large.txt" gflops)
if isnum "$g" && isnum "$PEAK"; then
    goal "large within 1.1x of the sgemm-rate bound ($PEAK GFLOP/s)" "$(calc "int(100 * $PEAK / $g) / 100")x the bound" \
         "$(pass "$PEAK <= 1.1 * $g")"
else goal "large within 1.1x of the sgemm-rate bound" "not measured" "-"; fi
tg=$(kv "$OUT/elman-small.txt" ms_median) tk=$(kv "$OUT/kann-small.txt" ms_median)
if isnum "$tg" && isnum "$tk"; then
    goal "small <= 0.3x KANN" "$(calc "int(1000 * $tg / $tk) / 1000")x of $(ms "$tk") ms ($(calc "$tg * 1000") us)" \
         "$(pass "$tg <= 0.3 * $tk")"
elif [ -s "$OUT/kann.txt" ]; then goal "small <= 0.3x KANN" "not measured" "-"
else goal "small <= 0.3x KANN" "KANN not run (set TG_BENCH_KANN)" "-"; fi
v=$(kv "$OUT/elman-tiny.txt" ms_median)
if isnum "$v"; then goal "tiny <= 1 us per step" "$(calc "$v * 1000") us" "$(pass "$v <= 0.001")"
else goal "tiny <= 1 us per step" "not measured" "-"; fi
ff=$OUT/long-B32-T100000-full.txt fb=$OUT/long-B32-T100000-budget.txt
if isnum "$(kv "$fb" rss_mib)"; then
    d=$(kv "$fb" data_mib)
    goal "T=100000 B=32 budget: peak RSS <= data + 300 MiB" "$(kv "$fb" rss_mib) MiB, data $d MiB" \
         "$(pass "$(kv "$fb" rss_mib) <= $d + 300")"
elif [ -s "$fb" ]; then goal "T=100000 B=32 budget: peak RSS <= data + 300 MiB" "$(cell "$fb")" "not met"
else goal "T=100000 B=32 budget: peak RSS <= data + 300 MiB" "not measured" "-"; fi
if isnum "$(kv "$fb" s_step)" && isnum "$(kv "$ff" s_step)" && ! comparable "$ff" "$fb"; then
    goal "T=100000 B=32 budget: time <= 1.3x full BPTT's" "budget: $(cell "$fb"); full: $(cell "$ff")" \
         "not comparable (* = a first step alone; raise BENCH_LONG_ONE)"
elif isnum "$(kv "$fb" s_step)" && isnum "$(kv "$ff" s_step)"; then
    goal "T=100000 B=32 budget: time <= 1.3x full BPTT's" \
         "$(calc "int(100 * $(kv "$fb" s_step) / $(kv "$ff" s_step)) / 100")x ($(ms "$(kv "$fb" s_step)") s / $(ms "$(kv "$ff" s_step)") s)" \
         "$(pass "$(kv "$fb" s_step) <= 1.3 * $(kv "$ff" s_step)")"
elif [ -s "$fb" ]; then goal "T=100000 B=32 budget: time <= 1.3x full BPTT's" "budget: $(cell "$fb"); full: $(cell "$ff")" "not met"
else goal "T=100000 B=32 budget: time <= 1.3x full BPTT's" "not measured" "-"; fi
f1=$OUT/long-B1-T1000000-budget.txt f2=$OUT/long-B1-T1000000-full.txt
if isnum "$(kv "$f1" s_step)" || isnum "$(kv "$f2" s_step)"; then
    goal "T=1000000 B=1 runs" "budget: $(cell "$f1"); full: $(cell "$f2")" met
elif [ -s "$f1" ] || [ -s "$f2" ]; then goal "T=1000000 B=1 runs" "budget: $(cell "$f1"); full: $(cell "$f2")" "not met"
else goal "T=1000000 B=1 runs" "not measured" "-"; fi
worst=$(cat "$OUT"/elman-*.txt "$OUT"/long-*.txt 2>/dev/null | awk -F= '$1 == "others_cpu_pct" && $2 > w { w = $2 } END { print w + 0 }')
[ "$worst" -gt 10 ] && echo "   WARNING: other processes took up to $worst% of the CPU during these timings: rerun on a quiet machine"
echo "   (raw output: $OUT)"
