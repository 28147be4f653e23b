#!/bin/sh
# convergence.sh — trains each example of examples/README.md until it reaches
# its target loss (or its budget of epochs runs out) and prints a table of
# the steps and seconds it took and the final loss.  Measured here, not in
# the test suite.  The long character-model run uses tinyshakespeare from
# ../shared/data/ when it is there (loss in nats per character).
#
#   make && bench/convergence.sh [BUILD_DIR]     (default build/float)
#   make bench-convergence                       (the same)
set -eu
cd "$(dirname "$0")/.."
B=${1:-build/float}
T=$B/tapegrad
E=$B/examples
for f in "$T" "$E/gen_sine" "$E/gen_adding"; do
    [ -x "$f" ] || { echo "convergence.sh: $f is missing: run make first" >&2; exit 2; }
done
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT INT TERM
FORTUNES=/usr/share/games/fortunes/fortunes
SHAKESPEARE=../shared/data/tinyshakespeare.txt

"$E/gen_sine" 16 40 20 1 > "$W/sine.csv"
"$E/gen_adding" 1024 50 1 > "$W/adding.csv"

printf '%-30s %-16s %-10s %-8s %7s %9s %12s\n' example model target reached steps seconds "final loss"
printf '%-30s %-16s %-10s %-8s %7s %9s %12s\n' ------- ----- ------ ------- ----- ------- ----------

# row NAME TARGET UNIT MODEL ARGS...: one training run, one line of the table
row() {
    name=$1 target=$2 unit=$3 model=$4
    shift 4
    if ! "$T" train "$model" "$@" --target "$target" --log "$W/log.csv" --save "$W/p.params" \
        >"$W/out" 2>"$W/err"; then
        echo "convergence.sh: $name failed:" >&2
        cat "$W/err" >&2
        exit 1
    fi
    last=$(tail -n 1 "$W/log.csv")
    steps=$(echo "$last" | cut -d, -f1)
    secs=$(echo "$last" | cut -d, -f5)
    loss=$(sed -n 's/.*; loss \([^ ]*\) .*/\1/p' "$W/out")
    if grep -q 'reached --target' "$W/out"; then reached=yes; else reached=no; fi
    printf '%-30s %-16s %-10s %-8s %7s %9.2f %12s %s\n' "$name" "$(echo "$model" | sed 's|\.yaml$||; s|^.*/\([^/]*/[^/]*\)$|\1|')" "< $target" \
        "$reached" "$steps" "$secs" "$loss" "$unit"
}

row "1 lecture sequence" 1e-4 "" models/elman.yaml \
    --data examples/data/seed.yaml --params examples/data/seed-params.yaml --epochs 20000 --lr 0.05
row "2 sine, next value" 0.07 "" models/elman.yaml --dim input=1 \
    --data "$W/sine.csv" --batch 16 --epochs 20000 --lr 0.01
row "3 adding T=50, LSTM" 0.005 "" examples/adding/lstm.yaml \
    --data "$W/adding.csv" --batch 32 --epochs 200 --lr 0.01 --clip 1
row "3 adding T=50, Elman" 0.005 "" examples/adding/elman.yaml \
    --data "$W/adding.csv" --batch 32 --epochs 200 --lr 0.01 --clip 1
if [ -r "$FORTUNES" ]; then
    row "4 chars: fortunes" 1.1 nats/char models/char_rnn.yaml \
        --data "$FORTUNES" --batch 16 --bptt 64 --epochs 400 --lr 0.003 --clip 5
    cp "$W/p.params" "$W/fortunes.params"
fi
if [ -r "$SHAKESPEARE" ]; then
    row "4 chars: tinyshakespeare" 1.7 nats/char models/char_rnn.yaml \
        --data "$SHAKESPEARE" --batch 32 --bptt 64 --epochs 10 --lr 0.003 --clip 5
fi
echo
echo "losses: the model's loss per sequence (sum over its steps), averaged over the last epoch;"
echo "the adding problem's is the squared error at the last step (predicting 0.5 always: ~0.042)."
echo "steps are optimizer steps; seconds are training time on this machine ($(nproc) CPUs, $B)."
if [ -r "$FORTUNES" ]; then
    echo
    echo "a sample of the fortunes model (temperature 0.7):"
    "$T" sample "$W/fortunes.params" --length 300 --temperature 0.7 --seed 1
fi
