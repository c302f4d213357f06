#!/usr/bin/env bash
# vaekit's GPU measurements in one script, for a short lease of a GPU machine (about 15 minutes,
# nothing reachable from it): installs what vaekit needs from a carried wheel folder, then times
# training (train_throughput.py and the `vaekit fit` CLI), IWAE, AIS and local optimisation, each
# step under its own time limit and all within one budget (8 minutes by default, install included).
#
#   bash benchmarks/gpu_suite.sh [--device cuda|cpu] [--quick] [--out DIR] [--wheels DIR]
#                                [--data DIR] [--budget SECONDS] [--archive FILE.tar.gz] [--install-only]
#
#   --device cuda|cpu  cuda (default) times at the sizes below; cpu is a dry run at tiny sizes
#                      (like --quick: under 90 s on 2 cores) that checks the whole script
#   --quick            tiny sizes on any device: checks the pipeline, measures nothing worth keeping
#   --out DIR          where the results go: default benchmarks/results/ (CSV rows appended, the
#                      *_<device>.md tables replaced); with --quick or --device cpu a new temporary
#                      folder, and never benchmarks/results/
#   --wheels DIR       the wheel folder made by benchmarks/wheels.sh (default .whl/ at the repo root)
#   --data DIR         a folder holding binarized_mnist/; default the first of $VAEKIT_DATA,
#                      ../shared/data (beside the repo root) and <wheels>/data that holds it
#   --budget SECONDS   the whole run, install included (default 480); each step gets at most
#                      its own limit and what is left of the budget, and is skipped when under 20 s are left
#   --archive FILE     also pack DIR into FILE (tar.gz): one file to bring back from the machine
#   --install-only     only the install step (used by the suite itself, and to check an install)
#
# Install: when `import vaekit` fails, pip installs the missing requirements of pyproject.toml
# (all but torch) offline from the wheel folder, with the installed torch, triton and nvidia-*
# pinned (a folder holding any of their wheels is refused), then `pip install --no-deps -e .`; it
# prints what changed. If pip cannot resolve them it installs, without dependencies, each wheel of
# the folder whose distribution is not installed. When vaekit is importable it installs nothing.
# Make the folder first, here: `bash benchmarks/wheels.sh` (.whl/: about 2.5 MB of wheels and
# binarized_mnist, 3 MB). On the lent machine (the device tool), carry .whl and run:
#
#   bash benchmarks/gpu_suite.sh --out /tmp/gpu_suite --archive $OUT/gpu_suite.tar.gz
#
# Steps and sizes on CUDA (printed as they run; each command names the device in its results):
#   install          limit 120 s
#   train_throughput limit 210 s  train_throughput.py --methods plain plain-ondevice vaekit
#                                 vaekit-compile vaekit-graph --steps 300 --repeats 3 (vaekit-graph
#                                 only where train_throughput.py offers it)
#   iwae             limit  90 s  iwae_speed.py --n-images 10000 --k 5000 --repeat 3
#   fit              limit 150 s  `vaekit fit` on examples/configs/cremer_mlp_binarized_mnist.yaml,
#                                 batch 100, 3 epochs, compile on; median samples/s of metrics.csv
#                                 from the second epoch on -> fit_throughput_<device>.md
#   ais              limit  90 s  ais_speed.py --n-points 1000 --chains 100 --steps 100 --leapfrog 10
#                                 (99M gradient evaluations: results/ais_speed.csv has 67k/s on one
#                                 CPU thread, so under 30 s even at 50 times that)
#   local_opt        limit  90 s  local_opt_speed.py --n-points 1000 --steps 500 --k 10 (a step of
#                                 q*_FFG / q*_AF at 2 points, overhead only, took 2 / 9 ms on a CPU)
# Results in DIR: train_throughput_<device>*.md, fit_throughput_<device>.md (+ _metrics.csv),
# iwae_speed_<device>.md, ais_speed_<device>.md, local_opt_speed_<device>.md, the scripts' CSVs,
# logs/<step>.log (a temporary folder when DIR is benchmarks/results/), and gpu_suite_<device>.md: every step's status and time, all the tables, and
# the end of each failed step's log. A failed or timed-out step is reported and the suite goes
# on; it exits 1 if any step failed, 2 on bad arguments or missing data.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEVICE=cuda QUICK=0 OUT="" WHEELS="$ROOT/.whl" DATA="" BUDGET=480 ARCHIVE="" INSTALL_ONLY=0
ARGS=("$@")
die() { echo "gpu_suite.sh: $*" >&2; exit 2; }
while (($#)); do
    case $1 in
        --device) DEVICE=${2:-}; shift 2 || die "--device needs a value" ;;
        --quick) QUICK=1; shift ;;
        --out) OUT=${2:-}; shift 2 || die "--out needs a value" ;;
        --wheels) WHEELS=${2:-}; shift 2 || die "--wheels needs a value" ;;
        --data) DATA=${2:-}; shift 2 || die "--data needs a value" ;;
        --budget) BUDGET=${2:-}; shift 2 || die "--budget needs a value" ;;
        --archive) ARCHIVE=${2:-}; shift 2 || die "--archive needs a value" ;;
        --install-only) INSTALL_ONLY=1; shift ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ $DEVICE == cuda || $DEVICE == cpu ]] || die "--device must be cuda or cpu, not '$DEVICE'"
[[ $BUDGET =~ ^[0-9]+$ ]] || die "--budget must be a whole number of seconds, not '$BUDGET'"
[[ $DEVICE == cpu ]] && QUICK=1
PY=${PYTHON:-$ROOT/.venv/bin/python}
[[ -x $PY ]] || PY=python3
WHEELS=$(cd "$WHEELS" 2>/dev/null && pwd || echo "$WHEELS")
cd "$ROOT" || exit 2

# ---------------------------------------------------------------------------------------- install
install_vaekit() {
    if "$PY" -c "import vaekit" 2>/dev/null; then
        echo "vaekit importable from $("$PY" -c 'import os, vaekit; print(os.path.dirname(vaekit.__file__))'):" \
             "nothing installed"
        return 0
    fi
    [[ -d $WHEELS ]] || { echo "no wheel folder $WHEELS: make it with benchmarks/wheels.sh where pip reaches PyPI"; return 1; }
    local bad
    bad=$(find "$WHEELS" -maxdepth 1 -iname '*.whl' \( -iname 'torch[-_]*' -o -iname 'triton[-_]*' -o -iname 'nvidia[-_]*' \))
    [[ -z $bad ]] || { echo "refusing $WHEELS: it holds ${bad//$'\n'/ } (the machine's torch must stay)"; return 1; }
    local torch_before before cons
    torch_before=$("$PY" -c "import torch; print(torch.__version__)") || { echo "no torch in $PY"; return 1; }
    before=$("$PY" -m pip freeze --all | sort)
    cons=$(mktemp)
    grep -iE '^(torch|triton|nvidia[-_][a-z0-9_-]+)==' <<<"$before" >"$cons"
    mapfile -t reqs < <("$PY" -c '
import re, tomllib
for r in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    if re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() != "torch":
        print(r)')
    echo "$PY ($("$PY" -V 2>&1)), torch $torch_before; pinned: $(tr '\n' ' ' <"$cons")"
    echo "pip install --no-index --find-links $WHEELS -c <pins> ${reqs[*]}"
    if ! "$PY" -m pip install -q --no-index --find-links "$WHEELS" -c "$cons" "${reqs[@]}"; then
        echo "pip could not resolve them from $WHEELS; installing, without dependencies, each wheel there whose" \
             "distribution is missing"
        mapfile -t missing < <("$PY" - "$WHEELS" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

for w in sorted(Path(sys.argv[1]).glob("*.whl")):
    try:
        version(w.name.split("-")[0])
    except PackageNotFoundError:
        print(w)
EOF
)
        ((${#missing[@]} == 0)) || "$PY" -m pip install -q --no-index --no-deps "${missing[@]}" || return 1
    fi
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" --no-deps -e "$ROOT" \
        || echo "editable install of vaekit failed: the suite runs it from src/ (PYTHONPATH)"
    echo "installed or changed (pip freeze, after vs before):"
    comm -13 <(echo "$before") <("$PY" -m pip freeze --all | sort) | sed 's/^/  /'
    local torch_after
    torch_after=$("$PY" -c "import torch; print(torch.__version__)")
    [[ $torch_after == "$torch_before" ]] || { echo "torch changed: $torch_before -> $torch_after"; return 1; }
    echo "torch unchanged: $torch_after"
    rm -f "$cons"
    "$PY" -c "import vaekit" || { echo "vaekit does not import after the install"; return 1; }
}

if ((INSTALL_ONLY)); then
    install_vaekit
    exit
fi

# ------------------------------------------------------------------------------------ the set-up
if ((QUICK)) && [[ -n $OUT && -d $OUT && $(cd "$OUT" && pwd) == "$ROOT/benchmarks/results" ]]; then  # before any other check
    die "--quick and --device cpu never write into benchmarks/results (their numbers are no measurements)"
fi
if [[ -n $DATA ]]; then
    [[ -d $DATA/binarized_mnist ]] || die "--data $DATA holds no binarized_mnist/"
else
    for d in "${VAEKIT_DATA:-}" "$ROOT/../shared/data" "$WHEELS/data"; do
        [[ -n $d && -d $d/binarized_mnist ]] && { DATA=$d; break; }
    done
fi
DATA=$(cd "${DATA:-.}" && pwd)
[[ -d $DATA/binarized_mnist ]] || die "no binarized_mnist/ in \$VAEKIT_DATA (${VAEKIT_DATA:-unset}), \
$ROOT/../shared/data or $WHEELS/data: pass --data DIR, or copy it there with benchmarks/wheels.sh"
if [[ -z $OUT ]]; then
    if ((QUICK)); then OUT=$(mktemp -d "${TMPDIR:-/tmp}/gpu_suite.XXXXXX"); else OUT=$ROOT/benchmarks/results; fi
fi
mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)
LOGS=$OUT/logs
if [[ $OUT == "$ROOT/benchmarks/results" ]]; then
    LOGS=$(mktemp -d "${TMPDIR:-/tmp}/gpu_suite_logs.XXXXXX")  # keeps the committed folder to results
fi
mkdir -p "$LOGS"
export VAEKIT_DATA=$DATA PYTHONUNBUFFERED=1
((QUICK)) && [[ $DEVICE == cpu ]] && export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # steadier on a shared CPU

T0=$(date +%s)
DEADLINE=$((T0 + BUDGET))
RESERVE=15   # seconds kept for the summary and for `timeout --kill-after=10`
MIN_STEP=20  # a step with less than this left is skipped
NAMES=() STATUS=() SECS=() LIMITS=() CMDS=() FAILED=()

# run_step NAME LIMIT EXPECTED_GLOB COMMAND...: COMMAND under `timeout`, its output in logs/NAME.log
run_step() {
    local name=$1 limit=$2 expect=$3 left rc status t0 secs
    shift 3
    left=$((DEADLINE - $(date +%s) - RESERVE))
    ((limit <= left)) || limit=$left
    NAMES+=("$name") LIMITS+=("$limit") CMDS+=("${SHOW:-$*}")
    if ((limit < MIN_STEP)); then
        echo "== $name: skipped, ${left}s of the budget left"
        STATUS+=("skipped: budget spent") SECS+=(0) FAILED+=("$name")
        return
    fi
    echo "== $name (limit ${limit}s): ${SHOW:-$*}"
    t0=$(date +%s%N)
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$LOGS/$name.log"
    rc=${PIPESTATUS[0]}
    secs=$(( ($(date +%s%N) - t0) / 1000000 ))
    secs=$(printf '%d.%03d' $((secs / 1000)) $((secs % 1000)))
    if ((rc == 124 || rc == 137)); then
        status="timed out after ${limit}s"
    elif ((rc != 0)); then
        status="failed (exit $rc)"
    elif [[ -n $expect ]] && ! compgen -G "$OUT/$expect" >/dev/null; then
        status="failed: wrote no $expect"
    else
        status=ok
    fi
    echo "== $name: $status in ${secs}s"
    STATUS+=("$status") SECS+=("$secs")
    [[ $status == ok ]] || FAILED+=("$name")
}

summary() {
    local md=$OUT/gpu_suite_$DEVICE.md i f
    {
        echo "# vaekit GPU suite: $DEVICE (${DEVICE_NAME:-unknown})"
        echo
        echo "- date $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'),"
        echo "  \`bash benchmarks/gpu_suite.sh ${ARGS[*]}\`"
        echo "- device: $DEVICE (${DEVICE_NAME:-unknown}), torch ${TORCH_VERSION:-?}, $("$PY" -V 2>&1)"
        echo "- $( ((QUICK)) && echo 'QUICK sizes: a check of the pipeline, not measurements' || echo 'full sizes')," \
             "budget ${BUDGET}s, $(( $(date +%s) - T0 ))s in all; ${#FAILED[@]} step(s) failed${FAILED:+: ${FAILED[*]}}"
        echo "- data: $VAEKIT_DATA"
        echo
        echo "| step | status | seconds | limit s | command |"
        echo "|---|---|---|---|---|"
        for i in "${!NAMES[@]}"; do
            echo "| ${NAMES[i]} | ${STATUS[i]} | ${SECS[i]} | ${LIMITS[i]} | \`${CMDS[i]//|/\\|}\` |"
        done
        for f in "$OUT"/train_throughput_"$DEVICE"*.md "$OUT"/{fit_throughput,iwae_speed,ais_speed,local_opt_speed}_"$DEVICE".md; do
            [[ -f $f ]] || continue
            echo
            sed 's/^# /## /' "$f"
        done
        for i in "${!NAMES[@]}"; do
            [[ ${STATUS[i]} == ok || ! -f $LOGS/${NAMES[i]}.log ]] && continue
            printf '\n## log of %s (%s), last 30 lines\n\n```\n' "${NAMES[i]}" "${STATUS[i]}"
            tail -n 30 "$LOGS/${NAMES[i]}.log"
            printf '```\n'
        done
    } >"$md"
    echo
    cat "$md"
    echo
    echo "results in $OUT"
    if [[ -n $ARCHIVE ]]; then
        mkdir -p "$(dirname "$ARCHIVE")" && tar -czf "$ARCHIVE" -C "$OUT" . && echo "packed into $ARCHIVE"
    fi
}

finish() {
    summary
    ((${#FAILED[@]} == 0)) || { echo "failed: ${FAILED[*]}"; exit 1; }
    exit 0
}

echo "gpu_suite: device $DEVICE, $( ((QUICK)) && echo quick || echo full) sizes, results in $OUT," \
     "data $VAEKIT_DATA, python $PY, budget ${BUDGET}s"

# ------------------------------------------------------------------------------------------ steps
run_step install 120 "" env PYTHON="$PY" bash "$0" --install-only --wheels "$WHEELS"
if ! "$PY" -c "import vaekit" 2>/dev/null; then
    export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
    "$PY" -c "import vaekit" || { echo "vaekit does not import: stopping"; FAILED+=(import); finish; }
    echo "vaekit runs from $ROOT/src (PYTHONPATH)"
fi
# the device and its name, before spending the budget on it
if ! read -r TORCH_VERSION DEVICE_NAME < <("$PY" - "$DEVICE" <<'EOF'
import sys

import torch

sys.path.insert(0, "benchmarks")
from iwae_speed import device_name

if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no CUDA device")
print(torch.__version__, device_name(torch.device(sys.argv[1])))
EOF
); then
    echo "device $DEVICE unusable: stopping"
    FAILED+=(device)
    finish
fi
echo "device: $DEVICE ($DEVICE_NAME), torch $TORCH_VERSION"

B=benchmarks
if ((QUICK)); then
    TRAIN=(--steps 20 --warmup-steps 5 --repeats 1 --block 10 --profile-steps 1 --n-train 2000)
    IWAE=(--n-images 20 --k 100 --repeat 1)
    AIS=(--n-points 8 --chains 4 --steps 10 --leapfrog 2 --repeat 2)
    LOCAL=(--n-points 8 --steps 5 --k 2)
    FIT=(2 600)  # epochs, max steps (500 steps an epoch: two 50-step rows of the second epoch)
else
    TRAIN=(--steps 300 --repeats 3)
    IWAE=(--n-images 10000 --k 5000 --repeat 3)
    AIS=(--n-points 1000 --chains 100 --steps 100 --leapfrog 10 --repeat 10)
    LOCAL=(--n-points 1000 --steps 500 --k 10)
    FIT=(3 0)
fi
METHODS=(plain plain-ondevice vaekit)
if [[ $DEVICE == cuda ]]; then
    METHODS+=(vaekit-compile)  # on 2 CPU cores compiling made a 600-step `vaekit fit` take 56 s, not 9 s
    if [[ $("$PY" $B/train_throughput.py --help 2>/dev/null) == *vaekit-graph* ]]; then
        METHODS+=(vaekit-graph)
    else
        echo "train_throughput.py offers no vaekit-graph here: timing without it"
    fi
fi
FIT_COMPILE=$([[ $DEVICE == cuda ]] && echo true || echo false)
THREADS=()
[[ $DEVICE == cpu ]] && THREADS=(--threads 1)

run_step train_throughput 210 "train_throughput_$DEVICE*.md" \
    "$PY" $B/train_throughput.py --device "$DEVICE" --methods "${METHODS[@]}" "${TRAIN[@]}" "${THREADS[@]}" \
    --isolation in-process --out-dir "$OUT"
run_step iwae 90 "iwae_speed_$DEVICE.md" \
    "$PY" $B/iwae_speed.py --device "$DEVICE" "${IWAE[@]}" --out "$OUT/iwae_speed.csv" --md "$OUT/iwae_speed_$DEVICE.md"
# `vaekit fit` as a user runs it; the samples/s rows of its metrics.csv (one per 50 steps) after the first epoch
SHOW="vaekit fit --config examples/configs/cremer_mlp_binarized_mnist.yaml --trainer.max_epochs ${FIT[0]}\
$( ((FIT[1])) && echo " --trainer.max_steps ${FIT[1]}") --trainer.compile $FIT_COMPILE (batch 100, $DEVICE)" \
run_step fit 150 "fit_throughput_$DEVICE.md" "$PY" - "$OUT" "$DEVICE" "${FIT[@]}" "$FIT_COMPILE" <<'EOF'
import csv
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, "benchmarks")
from iwae_speed import device_name, git_commit

out, device, epochs, max_steps, compile_ = sys.argv[1:]
config = "examples/configs/cremer_mlp_binarized_mnist.yaml"
root = tempfile.mkdtemp(prefix="vaekit_fit_")
cmd = [sys.executable, "-m", "vaekit", "fit", "--config", config, "--trainer.max_epochs", epochs,
       "--trainer.batch_size", "100", "--trainer.compile", compile_, "--trainer.progress_bar", "false",
       "--trainer.accelerator", device, "--trainer.devices", "1", "--trainer.root_dir", root]
if max_steps != "0":
    cmd += ["--trainer.max_steps", max_steps]
shown = shlex.join(["vaekit", *cmd[3:]])
print("$", shown, flush=True)
t0 = time.perf_counter()
subprocess.run(cmd, check=True)
wall = time.perf_counter() - t0
metrics = next(Path(root).rglob("metrics.csv"))
rows = [(int(r["epoch"]), float(r["value"])) for r in csv.DictReader(open(metrics))
        if r["split"] == "train" and r["name"] == "samples_per_s"]
first = min(e for e, _ in rows)
later = [v for e, v in rows if e > first]
if not later:
    sys.exit(f"no samples_per_s row after the first epoch in {metrics}")
firsts = [v for e, v in rows if e == first]
(Path(out) / f"fit_throughput_{device}_metrics.csv").write_text(metrics.read_text())
shutil.rmtree(root, ignore_errors=True)
name = device_name(torch.device(device))
md = "\n".join([
    "# `vaekit fit` throughput, Cremer et al. MNIST VAE (binarized MNIST), batch 100", "",
    f"- date {datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}, commit {git_commit() or '?'}, `{shown}`",
    f"- device: {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads",
    "- samples/s: the `samples_per_s` rows (split train, one per 50 steps) of the run's metrics.csv after the "
    "first epoch, which holds the warm-up and compilation; the whole command's wall time includes start-up "
    "and the final checkpoint", "",
    "| compile | epochs | rows after epoch 1 | median samples/s | min | max | median, epoch 1 | command wall s |",
    "|---|---|---|---|---|---|---|---|",
    f"| {compile_} | {epochs}{f' (max {max_steps} steps)' if max_steps != '0' else ''} | {len(later)} | "
    f"{statistics.median(later):.0f} | {min(later):.0f} | {max(later):.0f} | {statistics.median(firsts):.0f} | "
    f"{wall:.1f} |", ""])
(Path(out) / f"fit_throughput_{device}.md").write_text(md)
print(md)
EOF
run_step ais 90 "ais_speed_$DEVICE.md" \
    "$PY" $B/ais_speed.py --device "$DEVICE" "${AIS[@]}" "${THREADS[@]}" --out "$OUT/ais_speed.csv" \
    --md "$OUT/ais_speed_$DEVICE.md"
run_step local_opt 90 "local_opt_speed_$DEVICE.md" \
    "$PY" $B/local_opt_speed.py --device "$DEVICE" "${LOCAL[@]}" "${THREADS[@]}" --out "$OUT/local_opt_speed.csv" \
    --md "$OUT/local_opt_speed_$DEVICE.md"
finish
