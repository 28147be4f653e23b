#!/usr/bin/env bash
# profile.sh — the measurements behind bench/PROFILE.md: instruction counts
# per part of a step from callgrind (tiny, small: exact and repeatable, whatever
# else the machine does), timed phase and per-op breakdowns (small, medium,
# large, at 1 and 2 OpenBLAS threads), and the step's products shape by shape
# (bench/gemm_shapes.c).  perf is not used: `perf stat -e instructions true`
# says "not supported" on this kind of machine.  Takes ~10 minutes.
# Output: build/bench/profile/.
set -u
cd "$(dirname "$0")/.."
B=${BENCH_BUILD:-build/bench}
P=$B/profile
OPTFLAGS=${BENCH_OPT:--O3}
mkdir -p "$P"
${MAKE:-make} --no-print-directory -s BUILD="$B" REAL=float SAN= OPT="$OPTFLAGS" lib || exit 1
CFL="-std=c11 -D_GNU_SOURCE $OPTFLAGS -g -Wall -Wextra -Icore -Iops $(pkg-config --cflags openblas)"
LIBS="$(pkg-config --libs openblas yaml-0.1) -lm"
${CC:-cc} $CFL -o "$B/step" bench/step.c "$B/libtapegrad.a" $LIBS || exit 1
${CC:-cc} $CFL -o "$B/gemm_shapes" bench/gemm_shapes.c $LIBS || exit 1

# the model file, as bench/run.sh picks it
ELMAN=models/elman.yaml
if ! "$B/step" --model "$ELMAN" --size small --seconds 0 --no-replay >/dev/null 2>&1; then
    sed -E 's/init: \[\[[^]]*\](, *\[[^]]*\])*\]/init: xavier/' "$ELMAN" >"$B/elman-sized.yaml"
    ELMAN=$B/elman-sized.yaml
fi

idle_pct() { # the machine's idle share over one second
    local a b t=0 i
    read -r -a a < /proc/stat
    sleep 1
    read -r -a b < /proc/stat
    for i in 1 2 3 4 5 6 7 8; do t=$((t + b[i] - a[i])); done
    echo $((t > 0 ? 100 * ((b[4] - a[4]) + (b[5] - a[5])) / t : 100))
}
wait_quiet() { # up to BENCH_WAIT (60) seconds for >= 90% idle
    local k p=100
    for ((k = 0; k < ${BENCH_WAIT:-60}; k++)); do
        p=$(idle_pct)
        [ "$p" -ge 90 ] && return 0
    done
    echo "   (machine busy: only $p% idle; the timings below are disturbed)"
}

echo "== callgrind: instructions per training step (warm-up steps included in the count)"
for cfg in "tiny yaml 2000" "tiny api 2000" "small yaml 100" "small api 100"; do
    set -- $cfg
    out=$P/callgrind.$1.$2
    valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect=train_step \
        "$B/step" --model "$ELMAN" --engine "$2" --size "$1" --steps "$3" --threads 1 >/dev/null 2>&1
    # the count covers the 3 warm-up steps as well as the N profiled ones
    python3 bench/cg_summary.py "$out" $(($3 + 3)) | tee "$out.txt"
done

echo "== timed breakdown (bench/step.c --breakdown)"
for cfg in "small 2" "medium 1" "medium 2" "large 1" "large 2"; do
    set -- $cfg
    echo "-- $1, $2 OpenBLAS thread(s)"
    wait_quiet
    "$B/step" --model "$ELMAN" --size "$1" --threads "$2" --breakdown --seconds 3 | grep '^bd_' |
        tee "$P/breakdown.$1.t$2.txt"
done

echo "== the products of one step, shape by shape"
for s in medium large; do
    wait_quiet
    "$B/gemm_shapes" --size "$s" --seconds 0.5 | tee "$P/gemm_shapes.$s.txt"
done
echo "(raw output in $P)"
