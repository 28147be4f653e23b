#!/usr/bin/env python3
"""cg_summary.py - sorts the self cost (instructions) of a callgrind profile of
bench/step.c into the parts of a training step, per step.  Self costs
partition the total, so the parts add up.

usage: cg_summary.py CALLGRIND_OUT STEPS
(the profile comes from valgrind --tool=callgrind --toggle-collect=train_step,
which counts the warm-up steps too: pass their number in STEPS)."""
import re
import subprocess
import sys

def under(f, d):
    """f (absolute or relative to the repository) lies in directory d/"""
    return f.startswith(d + "/") or ("/" + d + "/") in f


PARTS = [  # (part, test on "file:function [object]"), first match wins
    ("BLAS compute kernel", lambda f, fn, o: "openblas" in o and fn.startswith("sgemm_kernel")),
    ("BLAS packing copies", lambda f, fn, o: "openblas" in o and "copy" in fn),
    ("BLAS beta scaling", lambda f, fn, o: "openblas" in o and "beta" in fn),
    ("BLAS call overhead (interface, buffer pool, locks)",
     lambda f, fn, o: "openblas" in o or fn.startswith("pthread_mutex") or fn.startswith("__pthread_mutex")),
    ("tanh/sigmoid/exp in libm", lambda f, fn, o: "/math/" in f or "libm" in o),
    ("memset (gradient zero-fill, zero inputs)", lambda f, fn, o: fn.startswith("__memset") or fn == "memset"),
    ("memcpy (input leaves)", lambda f, fn, o: fn.startswith("__memcpy") or fn.startswith("__memmove")),
    ("forward kernels (tapegrad, non-BLAS)",
     lambda f, fn, o: under(f, "ops") and ("forward" in fn or fn in ("combine",))),
    ("backward kernels (tapegrad, non-BLAS)",
     lambda f, fn, o: under(f, "ops") and ("backward" in fn or fn == "accumulate")),
    ("kernels in ops/, helpers (small products, vector loops)", lambda f, fn, o: under(f, "ops") and not (
        fn.endswith("_shape") or fn in ("same_two", "ops_check_inputs"))),
    ("recording: shape checks", lambda f, fn, o: fn.endswith("_shape") or fn in ("tg_broadcast_shape",
                                                                                  "ops_check_inputs",
                                                                                  "tg_op_check_args",
                                                                                  "same_two")),
    ("recording: tg_record/new_entry/push/tg_input", lambda f, fn, o: (f.endswith("core/tape.c") and
                                                                       fn != "tg_backward") or
     fn in ("tg_record", "input", "new_entry", "push", "tg_input", "tg_input_ref")),
    ("recording: arena", lambda f, fn, o: f.endswith("core/arena.c")),
    ("recording: typed op entry points", lambda f, fn, o: f.endswith("core/ops_api.c")),
    ("backward sweep bookkeeping (tg_backward itself)", lambda f, fn, o: fn == "tg_backward"),
    ("unroller (models/)", lambda f, fn, o: under(f, "models") or fn == "tg_params_find" or "strcmp" in fn),
    ("SGD loop + zero_grad", lambda f, fn, o: fn in ("train_step", "tg_params_zero_grad")),
]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, steps = sys.argv[1], int(sys.argv[2])
    text = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", path], capture_output=True, text=True).stdout
    parts = {p: 0 for p, _ in PARTS}
    other, total, detail = 0, 0, {}
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*?)(?: \[(.*)\])?$", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        cost = int(m.group(1).replace(",", ""))
        where, obj = m.group(2), m.group(3) or ""
        f, _, fn = where.rpartition(":")
        total += cost
        for part, test in PARTS:
            if test(f, fn, obj):
                parts[part] += cost
                detail.setdefault(part, {}).setdefault(fn, 0)
                detail[part][fn] += cost
                break
        else:
            other += cost
            detail.setdefault("other", {}).setdefault(fn, 0)
            detail["other"][fn] += cost
    print(f"{path}: {total / steps:,.0f} instructions per step")
    for part, _ in PARTS:
        if parts[part]:
            top = sorted(detail[part].items(), key=lambda kv: -kv[1])[:3]
            names = ", ".join(f"{fn} {c / steps:,.0f}" for fn, c in top)
            print(f"  {part:52s} {parts[part] / steps:12,.0f}  {100 * parts[part] / total:5.1f}%   ({names})")
    if other:
        top = sorted(detail["other"].items(), key=lambda kv: -kv[1])[:3]
        print(f"  {'other':52s} {other / steps:12,.0f}  {100 * other / total:5.1f}%   "
              f"({', '.join(f'{fn} {c / steps:,.0f}' for fn, c in top)})")


if __name__ == "__main__":
    main()
