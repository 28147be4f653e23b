#!/bin/sh
# corpus.sh DIR — the seed corpora of the six harnesses, copied from the
# repository's own files into DIR/NAME (a file's path, with / as _, is its
# name there, so examples/adding/elman.yaml does not overwrite
# models/elman.yaml).  Run from the repository root; what earlier runs added
# to DIR stays.
set -e
dir=$1
for n in model expr data params all ckpt csv text; do mkdir -p "$dir/corpus/$n" "$dir/artifacts/$n"; done
put() { # put HARNESS FILE...
  h=$1; shift
  for f in "$@"; do cp "$f" "$dir/corpus/$h/$(echo "$f" | tr / _)"; done
}
models="models/*.yaml examples/adding/*.yaml tests/malformed/*.yaml tests/data/overflow.yaml"
put model $models
put data examples/data/*.yaml tests/data/*.yaml
put params examples/data/*.yaml tests/data/*.yaml
put csv tests/data/series.csv
put text README.md docs/limits.md models/char_rnn.yaml
tests/fuzz/seed_expr.sh "$dir/corpus/expr" $models
tests/fuzz/seed_all.sh "$dir/corpus/all"
# checkpoints: the harness writes its own seeds; the checked-in fixtures join them
FUZZ_CKPT_SEEDS="$dir/corpus/ckpt" build/fuzz/fuzz_ckpt
for f in tests/data/*.tgckpt; do if [ -e "$f" ]; then put ckpt "$f"; fi; done
