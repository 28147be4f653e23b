#!/bin/bash
# readme.sh [README] — keeps the README's quotes true: runs every `$ command` of its
# indented code blocks from the repository's root (after `make`) and compares what the
# command prints (stdout and stderr, line-buffered, as a terminal shows them in order) with
# the lines quoted under it.  In a quote, a line `...` stands for any number of lines, and
# timings are masked on both sides ("in 5s (159 steps/s)", "172 steps/s  ETA 4s",
# "in 0.3s").  Commands write only into build/readme/, which the README creates.
# Prints a unified diff per command that differs, the command's whole output to paste
# into the README, and exits 1 if any differed.
set -u
cd "$(dirname "$0")/.." || exit 2
readme=${1:-README.md}
work=$(mktemp -d "${TMPDIR:-/tmp}/tapegrad-readme.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT

# Split the README into cases: N.cmd (the command, continuation lines joined), N.want
# (the quoted lines, indentation removed) and N.line (where it is).  Only blocks indented by
# four spaces count (``` fences are code to read, not to run).
awk -v dir="$work" '
function close_case() {
    if (n) { close(dir "/" n ".want"); close(dir "/" n ".cmd") }
    incase = 0
}
/^```/ { fence = !fence; close_case(); next }
fence { next }
/^    \$ / {
    n++; incase = 1; cont = 0
    print NR > (dir "/" n ".line"); close(dir "/" n ".line")
    printf "" > (dir "/" n ".want")
    cmd = substr($0, 7)
    cont = sub(/\\$/, "", cmd)
    printf "%s", cmd > (dir "/" n ".cmd")
    next
}
incase && cont {
    line = $0; sub(/^ +/, "", line)
    cont = sub(/\\$/, "", line)
    printf " %s", line > (dir "/" n ".cmd")
    next
}
incase && /^    / { print substr($0, 5) > (dir "/" n ".want"); next }
incase && /^$/ { print "" > (dir "/" n ".want"); next }
{ close_case() }
END { close_case(); print n + 0 > (dir "/count") }
' "$readme"

# Timings differ from run to run: masked on both sides before comparing.
mask() {
    sed -E -e 's/in [0-9.]+ ?(ms|s|min)\b/in TIME/g' \
           -e 's/\(?[0-9.]+ steps\/s\)?/RATE/g' \
           -e 's/ETA [0-9hms.]+/ETA TIME/g' \
           -e 's/[0-9.]+ (ms|s) per (step|epoch)/TIME per \2/g'
}

# match WANT GOT: 0 when GOT matches WANT, a line "..." in WANT standing for any number of
# lines (matched as few as possible, then retried longer).  Trailing blank lines ignored.
match() {
    awk '
    NR == FNR { w[++nw] = $0; next }
    { g[++ng] = $0 }
    function m(i, j,    k) {
        if (i > nw) return j > ng
        if (w[i] == "...") {
            for (k = j; k <= ng + 1; k++) if (m(i + 1, k)) return 1
            return 0
        }
        return j <= ng && w[i] == g[j] && m(i + 1, j + 1)
    }
    END {
        while (nw && w[nw] == "") nw--
        while (ng && g[ng] == "") ng--
        exit m(1, 1) ? 0 : 1
    }' "$1" "$2"
}

mkdir -p build/readme
count=$(cat "$work/count")
failed=0
for ((i = 1; i <= count; i++)); do
    cmd=$(cat "$work/$i.cmd")
    line=$(cat "$work/$i.line")
    stdbuf -oL -eL bash -c "$cmd" > "$work/$i.got" 2>&1 < /dev/null
    mask < "$work/$i.want" > "$work/$i.wm"
    mask < "$work/$i.got" > "$work/$i.gm"
    if match "$work/$i.wm" "$work/$i.gm"; then
        echo "readme: ok   $readme:$line: \$ ${cmd:0:90}"
    else
        failed=$((failed + 1))
        echo "readme: DIFF $readme:$line: \$ $cmd"
        echo "  (- the README's quote, + what the command prints; timings masked, '...' elides)"
        diff -u "$work/$i.wm" "$work/$i.gm" | tail -n +3 | sed 's/^/  /'
        echo "  the whole output, to quote:"
        sed 's/^/      /' "$work/$i.got"
    fi
done
echo "readme: $count commands, $failed differ from their quotes"
[ "$failed" -eq 0 ]
