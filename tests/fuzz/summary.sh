#!/bin/sh
# summary.sh NAME LOG — one line from a libFuzzer log: executions, exec/s,
# coverage (cov = edges, ft = features), corpus size and whether it found
# anything.  Reads libFuzzer's last status line and its -print_final_stats.
name=$1 log=$2
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
last=$(grep -E '^#[0-9]+' "$log" | tail -1)
cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
corp=$(echo "$last" | sed -n 's/.*corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p')
found=none
grep -qE '^==[0-9]+==ERROR|^SUMMARY: |deadly signal|Test unit written' "$log" && found=$(grep -m1 -oE 'Test unit written to [^ ]*|SUMMARY: .*' "$log")
printf 'fuzz_%-7s runs %-10s exec/s %-6s cov %-6s ft %-7s corpus %-12s found: %s\n' \
  "$name" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$found"
