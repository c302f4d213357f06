#!/usr/bin/env bash
# Prepare the folder that benchmarks/gpu_suite.sh installs from on a machine with no package
# registry (the lent GPU machine: Python 3.12, a CUDA build of torch, lightning, numpy, pandas,
# scikit-learn, safetensors, tensorboard, matplotlib, tqdm, pyyaml, requests already there).
# Run it here, where pip reaches PyPI:
#
#   bash benchmarks/wheels.sh [--dest DIR] [--python-version 3.12] [--no-data]
#
# It downloads into DIR (default .whl/ at the repository root, git-ignored) the wheels of what
# vaekit needs and that machine lacks, one by one with --no-deps, for CPython 3.12 on manylinux
# x86_64, at the versions installed in this checkout's .venv (the versions the tests ran with;
# the newest when .venv lacks one). Never torch, triton or an nvidia-* wheel: the machine's CUDA
# build of torch must stay, and the script fails if one turns up in DIR. It also copies
# binarized_mnist (about 3 MB) from $VAEKIT_DATA or ../shared/data into DIR/data/, since the
# device machine gets the checkout and carried folders only, not ../shared (--no-data skips it).
# Each needed wheel here is pure Python (py3-none-any), so the set is the same for every
# Python 3; the script says so, or names the ones that are not.
#
# To refresh, delete DIR first: two versions of one wheel there can stop the install.
# Then, on the GPU machine, with DIR carried:  bash benchmarks/gpu_suite.sh --wheels DIR
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=$ROOT/.whl
PYV=3.12
DATA=1
while (($#)); do
    case $1 in
        --dest) DEST=$2; shift 2 ;;
        --python-version) PYV=$2; shift 2 ;;
        --no-data) DATA=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "wheels.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
PY=${PYTHON:-$ROOT/.venv/bin/python}
[[ -x $PY ]] || PY=python3

# What vaekit's pyproject.toml needs beyond the GPU image, each with the reason; what the image has
# (numpy, pyyaml, safetensors, tensorboard, matplotlib, tqdm, scikit-learn, requests, fsspec,
# aiohttp) is not here. packaging and typing-extensions are small fallbacks, used only if the
# image's are older than lightning-fabric / typeshed-client need.
NEEDED=(
    zuko                 # vaekit
    lightning-fabric     # vaekit (the image's pytorch-lightning ships the module, not the distribution)
    lightning-utilities  # lightning-fabric
    jsonargparse         # vaekit: jsonargparse[signatures]
    docstring-parser     # jsonargparse[signatures]
    typeshed-client      # jsonargparse[signatures]
    pooch                # vaekit
    platformdirs         # pooch
    packaging            # lightning-fabric, pooch (fallback)
    typing-extensions    # lightning-fabric, typeshed-client (fallback)
    setuptools           # build backend of `pip install -e .` (pyproject.toml: setuptools>=77)
)
mapfile -t SPECS < <("$PY" - "${NEEDED[@]}" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version

for name in sys.argv[1:]:
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        print(name)
EOF
)
mkdir -p "$DEST"
echo "downloading into $DEST for CPython $PYV, manylinux x86_64: ${SPECS[*]}"
"$PY" -m pip download --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEST" "${SPECS[@]}"

shopt -s nullglob nocaseglob
forbidden=("$DEST"/torch-*.whl "$DEST"/torch_*.whl "$DEST"/triton-*.whl "$DEST"/nvidia_*.whl "$DEST"/nvidia-*.whl)
if ((${#forbidden[@]})); then
    echo "wheels.sh: $DEST holds ${forbidden[*]}: remove them (the GPU machine's torch must stay)" >&2
    exit 1
fi
wheels=("$DEST"/*.whl)
echo "$DEST holds ${#wheels[@]} wheels, $(du -sh "$DEST" | cut -f1) in all:"
printf '  %s\n' "${wheels[@]##*/}"
impure=()
for w in "${wheels[@]}"; do [[ $w == *-none-any.whl ]] || impure+=("${w##*/}"); done
if ((${#impure[@]})); then
    echo "not pure Python (built for one Python/platform): ${impure[*]}"
else
    echo "all pure Python (py3-none-any): the same set serves every Python 3"
fi

if ((DATA)); then
    src=""
    for d in "${VAEKIT_DATA:-}" "$ROOT/../shared/data"; do
        [[ -n $d && -d $d/binarized_mnist ]] && { src=$d/binarized_mnist; break; }
    done
    if [[ -z $src ]]; then
        echo "wheels.sh: no binarized_mnist in \$VAEKIT_DATA or ../shared/data to copy (--no-data to skip)" >&2
        exit 1
    fi
    mkdir -p "$DEST/data"
    cp -r "$src" "$DEST/data/"
    echo "copied $src to $DEST/data/binarized_mnist ($(du -sh "$DEST/data" | cut -f1))"
fi
