#!/bin/bash
# valgrind.sh BUILD — the commands of README.md, models/README.md and examples/README.md
# (tapegrad grad, check, run, dump, train (short), sample, resume) on the
# shipped models and examples/data, and every program in BUILD/examples,
# each under valgrind memcheck.  Any memory error, or any definitely or
# indirectly lost block, fails the run (exit status 1) and names the command.
# `make valgrind` runs it on the float build with OPENBLAS_NUM_THREADS=1.
set -u
build=${1:-build/float}
tool=$build/tapegrad
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tapegrad-valgrind-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export OPENBLAS_NUM_THREADS=1
vg=(valgrind --quiet --error-exitcode=101 --leak-check=full --errors-for-leak-kinds=definite,indirect
    --show-leak-kinds=definite,indirect --suppressions=tests/valgrind.supp --log-file="$tmp/vg.%p.log")
fail=0 n=0

# run EXPECTED-STATUS CMD ARGS... (stdout of the command goes to $tmp/out)
run() {
  local want=$1; shift
  n=$((n + 1))
  rm -f "$tmp"/vg.*.log
  "${vg[@]}" "$@" > "$tmp/out" 2> "$tmp/err"
  local rc=$?
  if [ $rc -eq 101 ] || [ -n "$(cat "$tmp"/vg.*.log 2>/dev/null)" ]; then
    echo "valgrind: FAIL (memory errors or leaks): $*"; cat "$tmp"/vg.*.log; fail=1
  elif [ $rc -ne "$want" ]; then
    echo "valgrind: FAIL (exit status $rc, expected $want): $*"; tail -5 "$tmp/err"; fail=1
  else
    echo "valgrind: ok: $*"
  fi
}

seed="--data examples/data/seed.yaml --params examples/data/seed-params.yaml"
# models/README.md: grad, check, run
run 0 $tool grad models/elman.yaml $seed
run 0 $tool grad models/elman.yaml $seed --format json
run 0 $tool run models/elman.yaml $seed
run 0 $tool run models/elman.yaml $seed --format json
for m in models/elman.yaml models/lstm.yaml models/gru.yaml models/stacked.yaml models/mlp.yaml; do
  run 0 $tool check $m --steps 4 --batch 2
done
run 0 $tool check models/elman.yaml $seed
run 0 $tool check models/elman.yaml --steps 50 --batch 4
# dump, with gradients, in every format, and the norms
run 0 $tool dump models/elman.yaml $seed --grads
run 0 $tool dump models/elman.yaml $seed --grads --format dot
run 0 $tool dump models/lstm.yaml --steps 3 --format json --grads
run 0 $tool dump models/gru.yaml --steps 3 --format dot --fold --grads
run 0 $tool dump models/stacked.yaml --steps 4 --norms --norms-csv "$tmp/norms.csv"
run 4 $tool dump tests/data/overflow.yaml --data tests/data/overflow-data.yaml --detect-anomaly
run 4 $tool dump tests/data/overflow.yaml --data tests/data/overflow-data.yaml --detect-anomaly --grads
# examples/README.md 1: the lecture's sequence, trained briefly, saved, resumed, run
run 0 $tool train models/elman.yaml $seed --epochs 30 --lr 0.05 --save "$tmp/seed.params" --quiet
run 0 $tool train models/elman.yaml --data examples/data/seed.yaml --resume "$tmp/seed.params" --epochs 40 --quiet
run 0 $tool run models/elman.yaml --data examples/data/seed.yaml --params "$tmp/seed.params"
# 2: sine wave
run 0 $build/examples/gen_sine 16 40 20 1
cp "$tmp/out" "$tmp/sine.csv"
run 0 $tool train models/elman.yaml --dim input=1 --data "$tmp/sine.csv" --batch 16 --epochs 3 --lr 0.01 \
      --save "$tmp/sine.params" --quiet
run 0 $build/examples/gen_sine 1 12 20 7 yaml
cp "$tmp/out" "$tmp/sine-test.yaml"
run 0 $tool run models/elman.yaml --dim input=1 --data "$tmp/sine-test.yaml" --params "$tmp/sine.params"
# 3: the adding problem, a few steps with each optimizer
run 0 $build/examples/gen_adding 64 50 1
cp "$tmp/out" "$tmp/adding.csv"
for opt in adam sgd momentum rmsprop; do
  run 0 $tool train examples/adding/lstm.yaml --data "$tmp/adding.csv" --batch 32 --epochs 1 --lr 0.01 --clip 1 \
        --optimizer $opt --quiet
done
run 0 $tool train examples/adding/elman.yaml --data "$tmp/adding.csv" --batch 32 --epochs 1 --lr 0.01 --clip 1 \
      --bptt 10 --quiet
# 4: characters (a small text), then sampling
head -c 3000 models/README.md > "$tmp/text.txt"
run 0 $tool train models/char_rnn.yaml --dim hidden=16 --data "$tmp/text.txt" --batch 4 --bptt 16 --epochs 1 --steps 20 \
      --lr 0.003 --clip 5 --save "$tmp/char.tgckpt" --quiet
run 0 $tool sample "$tmp/char.tgckpt" --length 100 --temperature 0.7
run 0 $tool export "$tmp/char.tgckpt" --params "$tmp/char.yaml"
# errors are reported, not leaked: a malformed model, data and params
run 3 $tool grad tests/malformed/17-matmul-shapes.yaml --data examples/data/seed.yaml
run 3 $tool grad models/elman.yaml --data tests/data/out-of-range-data.yaml --params tests/data/out-of-range-params.yaml
run 2 $tool train models/elman.yaml --data examples/data/seed.yaml --epochs 1 --optimizer adamw
# every example program
for ex in "$build"/examples/*; do
  case $(basename "$ex") in
    gen_sine) run 0 "$ex" 2 5 20 1 ;;
    gen_adding) run 0 "$ex" 4 10 1 ;;
    train_char) run 0 "$ex" models/char_rnn.yaml "$tmp/text.txt" "$tmp/train_char.tgckpt" ;;
    *) run 0 "$ex" ;;
  esac
done
echo "valgrind: $n commands, $([ $fail = 0 ] && echo 'no errors, no leaks' || echo 'FAILED')"
exit $fail
