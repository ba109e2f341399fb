#!/usr/bin/env bash
# Every bad input and fault of issue 13 as a user meets it, through the reidlab command:
# prints, per case, what was tried, the exit code and the last line on stderr. Runs from
# the repository root in a few minutes on 2 CPU cores; everything goes to a temporary
# folder (kept, and named at the end).
#   bash scripts/bad_input_tour.sh
set -u
cd "$(dirname "$0")/.."
B=$(mktemp -d -t reidlab-tour-XXXX)
export OMP_NUM_THREADS=1
T="data.root=$B/data data.train=[synthetic] data.test=[] data.synthetic.ids=12 data.height=64 data.width=32 data.batch_size=8 data.num_instances=4 data.num_workers=0 model.backbone=resnet18 model.width=8 solver.epochs=2 solver.warmup_epochs=0 solver.milestones=[] test.raw_pixel_baseline=false"
n=0
try() {  # try TITLE CMD...
  n=$((n+1)); local title=$1; shift
  "$@" > $B/out.$n 2> $B/err.$n; local rc=$?
  local line; line=$(tr '\r' '\n' < $B/err.$n | grep -o 'reidlab: .*\|[A-Za-z]*Error: .*' | tail -1)
  [ -z "$line" ] && line=$(tr '\r' '\n' < $B/err.$n | grep -v '^\s*$' | grep -v '%|' | tail -1)
  [ -z "$line" ] && line=$(grep -v '^\s*$' $B/out.$n | tail -1)  # data check reports on stdout
  printf '%s\t%s\t%s\n' "$title" "$rc" "$line"
}
reidlab train $T output_dir=$B/run > /dev/null 2>&1 || echo "reference run failed"
snap() { find $B/run -type f -newer $B/stamp -not -path "*/test-*" 2>/dev/null; }
touch $B/stamp; sleep 1
try "resume a finished run" reidlab train $T resume=$B/run
try "train into a folder holding a finished run" reidlab train $T output_dir=$B/run
try "test into a training run's folder" reidlab test $T model.weights=$B/run output_dir=$B/run
try "resume with solver.epochs below the finished epochs" reidlab train $T resume=$B/run solver.epochs=1
try "resume changing another setting (solver.lr)" reidlab train $T resume=$B/run solver.epochs=3 solver.lr=1e-2
echo "files of the finished run changed by the five commands above (its test-* folder aside): $(snap | wc -l)"
try "negative lr" reidlab train $T solver.lr=-1 output_dir=$B/neg
try "batch not divisible by instances" reidlab train $T data.batch_size=10 output_dir=$B/bat
try "instances above the smallest identity" reidlab train $T data.num_instances=64 data.batch_size=128 output_dir=$B/inst
try "milestone beyond the epochs" reidlab train $T solver.milestones=[5] output_dir=$B/mil
try "solver.eval_period=0" reidlab train $T solver.eval_period=0 output_dir=$B/ev0
try "unknown key" reidlab train $T solver.lrr=1 output_dir=$B/key
try "missing resume path" reidlab train $T resume=$B/nope
try "output_dir is a file" bash -c "touch $B/afile && reidlab train $T output_dir=$B/afile"
try "unwritable output_dir (/proc refuses even root)" reidlab train $T output_dir=/proc/reidlab-run
echo "run folders left by the refused commands: $(ls -d $B/neg $B/bat $B/inst $B/mil $B/ev0 $B/key 2>/dev/null | wc -l)"
head -c 1000 $B/run/checkpoints/$(ls $B/run/checkpoints | grep best | head -1) > $B/trunc.pt
head -c 5000 /dev/urandom > $B/random.pt
try "truncated checkpoint as model.weights" reidlab test $T model.weights=$B/trunc.pt output_dir=$B/t1
try "random bytes as model.weights" reidlab test $T model.weights=$B/random.pt output_dir=$B/t2
try "checkpoint of another backbone" reidlab test $T model.backbone=resnet50 model.weights=$B/run output_dir=$B/t3
cp -r $B/data/synthetic-12ids-seed0 $B/bad 2>/dev/null || cp -r $B/data/* $B/bad
g=$(ls $B/bad/bounding_box_test/*.jpg | head -1); : > "$g"
q=$(ls $B/bad/query/*.jpg | head -1); head -c 300 "$(ls $B/bad/query/*.jpg | tail -1)" > "$q"
t=$(ls $B/bad/bounding_box_train/*.jpg | head -1); echo "not an image" > "$t"
try "data check on a set with a zero-byte, a truncated and a text file" reidlab data check --dataset market1501 --root $B/bad
try "training on that set" reidlab train $T data.train=[market1501] data.root=$B/bad output_dir=$B/badrun
try "testing on that set" reidlab test $T data.test=[market1501] data.root=$B/bad model.weights=$B/run output_dir=$B/badtest
reidlab synth $B/mine --ids 8 > /dev/null 2>&1
before=$(find $B/mine -type f | wc -l)
try "data info on a synth --ids 8 folder" reidlab data info --dataset synthetic --root $B/mine
echo "files in the --ids 8 folder before / after: $before / $(find $B/mine -type f | wc -l)"
try "an override after a flag (test --visualize 2 output_dir=...)" reidlab test $T model.weights=$B/run --visualize 2 output_dir=$B/vis
nan_case() {  # a gallery whose non-matching rows are NaN (mAP 100% before issue 13)
python - "$1" <<'PY'
import sys
import numpy as np
from reidlab.evaluation import evaluate, rank
d = np.array([[0.1, np.nan, np.nan], [np.nan, 0.2, np.nan]])
q, g = np.array([1, 2]), np.array([1, 2, 3])
qc, gc = np.array([0, 0]), np.array([1, 1, 1])
try:
    if sys.argv[1] == "rank":
        rank(d, q, g, qc, gc)
    else:
        f = np.ones((3, 4)); f[2] = np.inf
        evaluate(np.ones((2, 4)), f, q, g, qc, gc)
except Exception as e:
    print(f"{type(e).__name__}: {e}", file=sys.stderr); sys.exit(1)
PY
}
try "rank() of a distance matrix with NaN at non-matches" nan_case rank
try "evaluate() with an infinite gallery feature" nan_case evaluate
sigint_case() {  # Ctrl-C 20 seconds into a 200-epoch run
  reidlab train $T solver.epochs=200 output_dir=$B/int > /dev/null 2> $B/int.err &
  local pid=$!; sleep 20; kill -INT $pid; wait $pid; local rc=$?
  grep -v '^\s*$' $B/int.err | tail -1 >&2
  return $rc
}
try "Ctrl-C during training" sigint_case
newest=$(ls -t $B/int/checkpoints/checkpoint_*.pt 2>/dev/null | head -1)
[ -n "$newest" ] && head -c 2000 "$newest" > $B/x && mv $B/x "$newest"
damaged_case() {  # resume (stopped again by SIGINT after 15 s), the lines about the states
  timeout -s INT 15 reidlab train $T solver.epochs=200 resume=$B/int 2>&1 | tr '\r' '\n' |
    grep -i 'skipping\|newest full state' >&2
  return 0
}
try "resume after the newest full state was truncated" damaged_case
try "a non-finite loss (solver.lr=1e30)" reidlab train $T solver.lr=1e30 output_dir=$B/nan
echo "metrics.json of that run: $(ls $B/nan/metrics.json 2>/dev/null || echo none)"
echo "done: $n cases in $B"
