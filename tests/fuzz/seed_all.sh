#!/bin/sh
# seed_all.sh DIR — seeds for fuzz_all that join a model, data and params in
# the harness's format (MODEL, "#%data", DATA, "#%params", PARAMS).
dir=$1
mkdir -p "$dir"
{ cat models/elman.yaml; printf '\n#%%data\n'; cat examples/data/seed.yaml
  printf '\n#%%params\n'; cat examples/data/seed-params.yaml; } > "$dir/seed-elman.txt"
{ cat tests/data/overflow.yaml; printf '\n#%%data\n'; cat tests/data/overflow-data.yaml; } > "$dir/seed-overflow.txt"
{ cat models/mlp.yaml; printf '\n#%%data\n'
  printf -- '- x: [[1, 2, 3, 4], [0, 1, 0, 1]]\n  y: [[1, 0, 0], [0, 0, 1]]\n- x: [[[1, 0], [0, 1], [1, 1], [0, 0]]]\n'; } > "$dir/seed-mlp.txt"
