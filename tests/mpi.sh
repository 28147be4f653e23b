#!/usr/bin/env bash
# mpi.sh BUILD — `tapegrad-mpi train` on Open MPI (issue 16), run by `make test`
# when mpicc and mpirun exist.  MPIRUN is the launcher with its flags (the
# Makefile adds --oversubscribe, and --allow-run-as-root as root).
#
#  1. equality: the loss and every parameter after K steps on N = 2 and 4
#     ranks equal the single-process `tapegrad train` with the same global
#     batch, to TOL relative (float 1e-5, double 1e-12): sequences (SGD, with
#     truncated BPTT and a short last batch) and text (Adam, B streams);
#  2. a checkpoint saved mid-text by 2 ranks resumes on 4 ranks and in plain
#     tapegrad, both ending where the uninterrupted run ends;
#  3. refusals: ranks that start from different parameters are stopped by the
#     checksum; a batch smaller than the ranks is refused;
#  4. faults: a rank killed (SIGKILL) or hanging (SIGSTOP) stops the job with a
#     clear message, and the checkpoint saved before stays valid.
# Not bit-exact: one process sums each parameter's gradient over all B
# columns inside one product; N ranks sum their B/N columns each, then
# MPI_Allreduce adds the N partial sums, so the additions are grouped
# differently and round differently (docs/distributed.md).
set -u
B=${1:?usage: tests/mpi.sh BUILD}
cd "$(dirname "$0")/.."
ROOT=$PWD
TG=$ROOT/$B/tapegrad
TGM=$ROOT/$B/tapegrad-mpi
MPIRUN=${MPIRUN:-mpirun --oversubscribe}
# Open MPI keeps memory from MPI_Init to exit on purpose; under AddressSanitizer
# that is not a leak of ours (the trainer's leaks are checked by the Criterion
# tests, tests/test_shard.c among them).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
REAL=$("$TG" --version | sed -n 's/.*(\(.*\)).*/\1/p')
# (the dumps print parameters in full; the summaries print the loss with 9
# significant digits, so the loss is held to 1e-8 at best)
if [ "$REAL" = double ]; then TOL=1e-12; else TOL=1e-5; fi
W=$(mktemp -d /tmp/tg-mpi-XXXXXX)
trap 'rm -rf "$W"' EXIT
fails=0 n=0
ok() { n=$((n + 1)); echo "mpi: ok   $1"; }
bad() { n=$((n + 1)); fails=$((fails + 1)); echo "mpi: FAIL $1"; [ -n "${2:-}" ] && sed 's/^/    | /' "$2" | tail -20; }

# ---- data: 9 sequences of 6 steps (batch 4: batches of 4, 4 and 1), a text
python3 - "$W" <<'EOF'
import math, sys, random
w = sys.argv[1]
with open(f"{w}/seqs.csv", "w") as f:
    f.write("x[0],x[1],y\n")
    for s in range(9):
        if s: f.write("\n")
        for t in range(6):
            f.write(f"{math.sin(s + 0.3 * t):.6f},{math.cos(2 * s - t):.6f},{0.5 * math.sin(s * t + 1):.6f}\n")
r = random.Random(5)
words = ["tape ", "grad ", "rnn ", "step ", "loss\n"]
with open(f"{w}/text.txt", "w") as f:
    f.write("".join(r.choice(words) for _ in range(700)))
EOF

# compare A B: the loss in two --format json summaries and every parameter
# of two checkpoints (read back through `tapegrad dump --values 1000`).
compare() { # compare NAME JSON_A CKPT_A JSON_B CKPT_B MODEL DIMS...
    local name=$1 ja=$2 ca=$3 jb=$4 cb=$5 model=$6
    shift 6
    "$TG" dump "$model" "$@" --params "$ca" --steps 1 --values 1000 --format json > "$W/pa.json" 2> "$W/dump.err" &&
    "$TG" dump "$model" "$@" --params "$cb" --steps 1 --values 1000 --format json > "$W/pb.json" 2>> "$W/dump.err" ||
        { bad "$name: dump failed" "$W/dump.err"; return; }
    if python3 - "$ja" "$W/pa.json" "$jb" "$W/pb.json" "$TOL" > "$W/cmp.out" 2>&1 <<'EOF'
import json, sys
ja, pa, jb, pb, tol = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
la, lb = json.load(open(ja))["loss"], json.load(open(jb))["loss"]
dl = abs(la - lb) / max(1, abs(lb))
worst, where, count = 0, "-", 0
for a, b in zip(json.load(open(pa))["params"], json.load(open(pb))["params"]):
    va, vb = a["value"]["values"], b["value"]["values"]
    assert a["name"] == b["name"] and len(va) == len(vb)
    for i, (x, y) in enumerate(zip(va, vb)):
        count += 1
        d = abs(x - y) / max(1, abs(y))
        if d > worst: worst, where = d, f"{a['name']}[{i}]"
print(f"loss {la:.9g} vs {lb:.9g}; {count} parameters; worst relative difference {worst:.3g} at {where} (tolerance {tol:g})")
sys.exit(0 if worst <= tol and dl <= max(tol, 1e-8) and count > 0 else 1)
EOF
    then ok "$name: $(cat "$W/cmp.out")"; else bad "$name" "$W/cmp.out"; fi
}

SEQ=(models/elman.yaml --dim hidden=5 --data "$W/seqs.csv" --batch 4 --bptt 4 --epochs 3 --optimizer sgd --lr 0.1
     --threads 1 --format json)
TXT=(models/char_rnn.yaml --dim hidden=12 --data "$W/text.txt" --batch 8 --bptt 16 --epochs 2 --steps 40 --lr 0.01
     --threads 1 --format json)

# ---- 1. equality with one process --------------------------------------------
"$TG" train "${SEQ[@]}" --save "$W/seq1.ckpt" > "$W/seq1.json" 2> "$W/err" || bad "sequences, 1 process" "$W/err"
"$TG" train "${TXT[@]}" --save "$W/txt1.ckpt" > "$W/txt1.json" 2> "$W/err" || bad "text, 1 process" "$W/err"
VOCAB=$(python3 -c "import sys; print(len(set(open(sys.argv[1]).read())))" "$W/text.txt")
for np in 2 4; do
    if $MPIRUN -np $np "$TGM" train "${SEQ[@]}" --save "$W/seq$np.ckpt" > "$W/seq$np.json" 2> "$W/err"; then
        compare "sequences (SGD, bptt 4, last batch of 1 column) on $np ranks = 1 process" \
            "$W/seq$np.json" "$W/seq$np.ckpt" "$W/seq1.json" "$W/seq1.ckpt" models/elman.yaml --dim hidden=5
    else bad "sequences on $np ranks: mpirun failed" "$W/err"; fi
    if $MPIRUN -np $np "$TGM" train "${TXT[@]}" --save "$W/txt$np.ckpt" > "$W/txt$np.json" 2> "$W/err"; then
        compare "text (Adam, 8 streams, bptt 16) on $np ranks = 1 process" \
            "$W/txt$np.json" "$W/txt$np.ckpt" "$W/txt1.json" "$W/txt1.ckpt" models/char_rnn.yaml \
            --dim hidden=12 --dim vocab="$VOCAB"
    else bad "text on $np ranks: mpirun failed" "$W/err"; fi
done
# only rank 0 prints: one summary line
lines=$(grep -c '"model"' "$W/txt4.json" 2>/dev/null)
[ "$lines" = 1 ] && ok "4 ranks print one summary" || bad "4 ranks printed $lines summaries" "$W/txt4.json"

# ---- 2. a checkpoint from 2 ranks, mid-text, resumes on 4 ranks and in plain tapegrad
if $MPIRUN -np 2 "$TGM" train "${TXT[@]}" --steps 13 --save "$W/half.ckpt" > /dev/null 2> "$W/err"; then
    cp "$W/half.ckpt" "$W/half2.ckpt"
    R=(models/char_rnn.yaml --dim hidden=12 --data "$W/text.txt" --steps 40 --threads 1 --format json)
    if $MPIRUN -np 4 "$TGM" train "${R[@]}" --resume "$W/half.ckpt" > "$W/res4.json" 2> "$W/err"; then
        compare "2 ranks to step 13, then 4 ranks to 40 = 1 process to 40" "$W/res4.json" "$W/half.ckpt" \
            "$W/txt1.json" "$W/txt1.ckpt" models/char_rnn.yaml --dim hidden=12 --dim vocab="$VOCAB"
    else bad "resume on 4 ranks failed" "$W/err"; fi
    if "$TG" train "${R[@]}" --resume "$W/half2.ckpt" > "$W/res1.json" 2> "$W/err"; then
        compare "2 ranks to step 13, then plain tapegrad to 40 = 1 process to 40" "$W/res1.json" "$W/half2.ckpt" \
            "$W/txt1.json" "$W/txt1.ckpt" models/char_rnn.yaml --dim hidden=12 --dim vocab="$VOCAB"
    else bad "resume in plain tapegrad failed" "$W/err"; fi
else bad "2 ranks to step 13 failed" "$W/err"; fi

# ---- 3. refusals ----------------------------------------------------------------
# ranks started from different weights (--seed differs): the first checksum stops them
$MPIRUN -np 1 "$TGM" train "${SEQ[@]}" --seed 1 : -np 1 "$TGM" train "${SEQ[@]}" --seed 2 > /dev/null 2> "$W/err"
rc=$?
if [ $rc -eq 4 ] && grep -q "tapegrad-mpi: the ranks' parameters differ before step 1 (checksums from" "$W/err" &&
   grep -q "they no longer train one model" "$W/err"; then
    ok "ranks with different --seed: stopped at the first checksum (exit 4)"
else bad "different seeds: exit $rc" "$W/err"; fi
$MPIRUN -np 4 "$TGM" train "${TXT[@]}" --batch 2 > /dev/null 2> "$W/err"
rc=$?
if [ $rc -eq 2 ] && grep -q "tapegrad-mpi train: --batch 2 is smaller than the 4 ranks, so some would have nothing to do; give every rank at least one column (--batch 4 or more)" "$W/err" &&
   [ "$(grep -c 'is smaller than' "$W/err")" = 1 ]; then
    ok "--batch 2 on 4 ranks: refused once, exit 2"
else bad "--batch 2 on 4 ranks: exit $rc" "$W/err"; fi

# ---- 4. faults: a rank killed, a rank hanging --------------------------------------
LONG=(models/char_rnn.yaml --dim hidden=12 --data "$W/text.txt" --batch 8 --bptt 16 --epochs 100000 --lr 0.01
      --threads 1 --save-every 5 --print-every 1000000)
# fault SIGNAL TIMEOUT_FLAG...: starts 2 ranks, waits for a checkpoint, sends
# SIGNAL to one rank; sets rc, secs and leaves mpirun's stderr in $W/err
fault() {
    local sig=$1
    shift
    rm -f "$W/f.ckpt"
    $MPIRUN -np 2 "$TGM" train "${LONG[@]}" --save "$W/f.ckpt" "$@" > /dev/null 2> "$W/err" &
    local mp=$! k
    for ((k = 0; k < 600; k++)); do [ -s "$W/f.ckpt" ] && break; sleep 0.1; done
    local rank
    rank=$(pgrep -P $mp -n) # the newest child of mpirun: one of the ranks
    local t0=$SECONDS
    [ -n "$rank" ] && kill -"$sig" "$rank"
    # the others must stop by themselves; 120 s is only this script's guard
    for ((k = 0; k < 1200; k++)); do kill -0 $mp 2> /dev/null || break; sleep 0.1; done
    if kill -0 $mp 2> /dev/null; then kill -KILL $mp; fi
    wait $mp
    rc=$? secs=$((SECONDS - t0))
    [ -n "$rank" ] && kill -CONT "$rank" 2> /dev/null
    cp "$W/f.ckpt" "$W/f-$sig.ckpt" 2> /dev/null
}
fault KILL --timeout 60
if [ $rc -ne 0 ] && [ $secs -lt 60 ] && grep -q "exited on signal 9 (Killed)" "$W/err"; then
    ok "a rank killed: mpirun stopped the job in ${secs}s (exit $rc)"
else bad "a rank killed: exit $rc after ${secs}s" "$W/err"; fi
# (saved every 5 steps; the signal follows the first save)
if "$TG" train models/char_rnn.yaml --dim hidden=12 --data "$W/text.txt" --resume "$W/f-KILL.ckpt" --steps 200 \
       --save "$W/after.ckpt" --threads 1 --quiet > "$W/valid.out" 2>&1 &&
   "$TG" sample "$W/f-KILL.ckpt" --length 20 >> "$W/valid.out" 2>&1; then
    ok "the checkpoint from before the kill is valid (plain tapegrad resumes it to step 200; sample reads it)"
else bad "the checkpoint from before the kill" "$W/valid.out"; fi
fault STOP --timeout 3
if [ $rc -ne 0 ] && [ $secs -lt 60 ] &&
   # (whichever collective the stopped rank missed: the gradients, the checksum, a checkpoint's states)
   grep -q "tapegrad-mpi: rank [01] of 2: no answer from the other ranks for 3 s in the .* of step [0-9]*: a rank hangs or died; stopping (the last checkpoint saved stays valid)" "$W/err"; then
    ok "a rank hanging (SIGSTOP), --timeout 3: the other stopped in ${secs}s (exit $rc)"
else bad "a rank hanging: exit $rc after ${secs}s" "$W/err"; fi
# (saved every 5 steps; the signal follows the first save)
if "$TG" train models/char_rnn.yaml --dim hidden=12 --data "$W/text.txt" --resume "$W/f-STOP.ckpt" --steps 200 \
       --save "$W/after.ckpt" --threads 1 --quiet > "$W/valid.out" 2>&1 &&
   "$TG" sample "$W/f-STOP.ckpt" --length 20 >> "$W/valid.out" 2>&1; then
    ok "the checkpoint from before the hang is valid (plain tapegrad resumes it to step 200; sample reads it)"
else bad "the checkpoint from before the hang" "$W/valid.out"; fi

echo "mpi: $((n - fails)) of $n passed (tolerance $TOL, $REAL)"
[ $fails -eq 0 ]
