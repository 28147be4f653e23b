#!/bin/sh
# seed_expr.sh DIR FILE... — seeds for fuzz_expr: the `step` equations and
# the `loss` of each model file, one input per file, in the harness's line
# format (equations as they are, "loss: EXPR", "out: NAME").
dir=$1; shift
mkdir -p "$dir"
for f in "$@"; do
  b=$(basename "$f" .yaml)
  awk '
    /^step:/ { in_step = 1; next }
    /^[a-z_]+:/ { in_step = 0 }
    in_step && /^ *- / { sub(/^ *- */, ""); sub(/ *#.*/, ""); print }
    /^loss:/ { sub(/^loss: */, ""); sub(/ *#.*/, ""); print "loss: " $0 }
    /^outputs:/ { s = $0; sub(/^outputs: *\[/, "", s); sub(/\].*/, "", s); n = split(s, o, / *, */);
                  for (i = 1; i <= n; i++) if (o[i] != "") print "out: " o[i] }
  ' "$f" > "$dir/$b.txt"
  [ -s "$dir/$b.txt" ] || rm -f "$dir/$b.txt"
done
printf 'const: input + hidden * 2\ninit: uniform(-0.5, 0.5)\ninit: normal(0, hidden / 4)\ninit: xavier\n' > "$dir/const.txt"
