#!/usr/bin/env bash
# Classify every video of a directory with the bundled model and keep one JSON line per file.
# Files that fail are reported on stderr and make the exit code 1; the others are still done.
# Rerunning after an interruption (Ctrl-C, a crash) continues where it stopped (--resume).
#   usage: examples/classify_dir.sh VIDEO_DIR [OUT.jsonl] [JOBS]
set -uo pipefail
dir=${1:?usage: $0 VIDEO_DIR [OUT.jsonl] [JOBS]}
out=${2:-labels.jsonl}
jobs=${3:-1}
avscene classify "$dir" --offline --jsonl "$out" --resume --jobs "$jobs" --json > /dev/null
status=$?
echo "$(wc -l < "$out") records in $out (exit $status)" >&2
# e.g. the files predicted to contain a violin:
#   python -c 'import json,sys; [print(r["file"]) for r in map(json.loads, open(sys.argv[1])) if "violin" in r.get("predicted", [])]' "$out"
exit $status
