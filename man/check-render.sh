#!/bin/sh
# check-render.sh PAGE.scd: renders a page with scdoc and groff and fails on
# any error or warning (exit 77, "skipped", when a tool is missing).
set -u
command -v scdoc >/dev/null 2>&1 || { echo "scdoc not installed"; exit 77; }
command -v groff >/dev/null 2>&1 || { echo "groff not installed"; exit 77; }
out=$(scdoc < "$1" 2>&1 >/dev/null) || { echo "scdoc: $1: $out"; exit 1; }
warnings=$(scdoc < "$1" | groff -man -ww -z 2>&1)
if [ -n "$warnings" ]; then
        echo "groff: $1:"
        echo "$warnings"
        exit 1
fi
exit 0
