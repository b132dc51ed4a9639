#!/usr/bin/env bash
# One-line setup of datanas: everything a first run needs.
#
#   ./setup.sh             # system packages (where the system allows), then pip install -e ".[test]"
#   ./setup.sh --dry-run   # print the commands instead of running them
#
# System packages (Debian/Ubuntu apt-get, installed when run as root or with
# password-less sudo; otherwise a hint says what to install by hand):
#   dataset-fashion-mnist  Fashion-MNIST under /usr/share/datasets, read offline by the searches
#   graphviz               the `dot` program that draws cells (trainers.visualize, TensorBoard)
# Then the package itself, editable, with the test extras.  .ci/run calls this script.
# PYTHON picks the interpreter (default: python, else python3).
set -euo pipefail
cd "$(dirname "$0")"

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg'; allowed: --dry-run, --help" >&2; exit 2 ;;
  esac
done

run() {
  if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi
}

PYTHON="${PYTHON:-$(command -v python || command -v python3 || true)}"
if [ -z "$PYTHON" ]; then
  echo "setup.sh: no python or python3 on PATH; install Python 3.10+ first (or set PYTHON=...)" >&2
  exit 1
fi

# System packages still missing.
missing=()
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
command -v dot >/dev/null 2>&1 || missing+=(graphviz)

if [ "${#missing[@]}" -gt 0 ]; then
  hint="install by hand: sudo apt-get install ${missing[*]} (Debian/Ubuntu); elsewhere Graphviz \
via 'brew install graphviz' or 'conda install -c conda-forge graphviz', and Fashion-MNIST via \
--data_dir (see README 'Datasets')"
  sudo_cmd=()
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup.sh: apt-get is not available, so ${missing[*]} were not installed; $hint" >&2
    missing=()
  elif [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo_cmd=(sudo -n)
    else
      echo "setup.sh: not root (and no password-less sudo), so ${missing[*]} were not \
installed; $hint" >&2
      missing=()
    fi
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    run ${sudo_cmd[@]+"${sudo_cmd[@]}"} apt-get update -qq || echo "setup.sh: apt-get update failed; \
trying the install with the current package lists" >&2
    run ${sudo_cmd[@]+"${sudo_cmd[@]}"} apt-get install -y -qq "${missing[@]}"
  fi
fi

run "$PYTHON" -m pip install --quiet -e ".[test]"
echo "setup.sh: done. First search: python -m trainers.search_cifar --preset=cpu --model_dir=runs/search_fmnist"
