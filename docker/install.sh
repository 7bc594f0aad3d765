#!/usr/bin/env bash
# Install galaxy-codae and its pinned dependencies into the current Python environment.
#
# The ONE install path: the Dockerfile, docker/apptainer.def, the README's setup
# commands and CI all call this script, so their install steps cannot drift apart.
#
#   docker/install.sh [--editable] [--extras LIST] [--dry-run] cpu|cuda
#
#   cpu    PyTorch CPU wheel (development machines, CI)
#   cuda   PyTorch CUDA wheel from the PyTorch index (GPU nodes, the container image);
#          the wheel bundles the CUDA runtime, so the host needs only an NVIDIA driver
#
#   --editable     install the project in development mode (pip install -e)
#   --extras LIST  optional dependency groups, e.g. "test"
#   --dry-run      print the commands instead of running them
#
# Environment:
#   PYTHON       interpreter whose environment receives the packages (default: python3;
#                activate a venv first, or point this at the venv's python)
#   TORCH_CUDA   CUDA tag of the PyTorch wheel index for the cuda variant (default: cu128;
#                cu128 wheels need NVIDIA driver >= 570 and cover Volta..Blackwell)
#   TORCH_INDEX  full PyTorch wheel index URL, overriding the one chosen by the variant
#
# torch's version comes from requirements/lock-cpu.txt (the tested pin set); every other
# package is constrained by the same file.  torch is installed first, without dependencies,
# from the PyTorch index; the project's install then resolves torch's own dependencies from
# the normal index under the lock, and `pip check` confirms the result is consistent.
set -euo pipefail

usage() {
    sed -n '7,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

variant=""
editable=0
extras=""
dry_run=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        cpu | cuda) variant="$1" ;;
        --editable | -e) editable=1 ;;
        --extras)
            [[ $# -ge 2 ]] || usage
            extras="$2"
            shift
            ;;
        --dry-run) dry_run=1 ;;
        -h | --help) usage 0 ;;
        *)
            echo "install.sh: error: unknown argument '$1'" >&2
            usage
            ;;
    esac
    shift
done
[[ -n "$variant" ]] || {
    echo "install.sh: error: give the torch variant, cpu or cuda" >&2
    usage
}

# Run from the repository root whatever the caller's directory.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
lock="requirements/lock-cpu.txt"
[[ -f "$lock" ]] || {
    echo "install.sh: error: $lock not found in $PWD" >&2
    exit 2
}
torch_version="$(sed -n 's/^torch==\([^ ;#]*\).*/\1/p' "$lock")"
[[ -n "$torch_version" ]] || {
    echo "install.sh: error: no torch== pin in $lock" >&2
    exit 2
}

# cpu: plain `pip install torch==X` (the instruction for these machines, where pip finds the
# CPU wheel on disk); elsewhere set TORCH_INDEX=https://download.pytorch.org/whl/cpu to avoid
# PyPI's CUDA build.  cuda: the PyTorch CUDA index.
case "$variant" in
    cpu) default_index="" ;;
    cuda) default_index="https://download.pytorch.org/whl/${TORCH_CUDA:-cu128}" ;;
esac
torch_index="${TORCH_INDEX:-$default_index}"
index_flag=()
[[ -n "$torch_index" ]] && index_flag=(--index-url "$torch_index")

target="."
[[ -n "$extras" ]] && target=".[${extras}]"
editable_flag=()
[[ "$editable" -eq 1 ]] && editable_flag=(--editable)

python="${PYTHON:-python3}"

run() {
    echo "+ $*"
    if [[ "$dry_run" -eq 0 ]]; then
        "$@"
    fi
}

run "$python" -m pip install --no-deps "${index_flag[@]}" "torch==${torch_version}"
run "$python" -m pip install --constraint "$lock" "${editable_flag[@]}" "$target"
run "$python" -m pip check
