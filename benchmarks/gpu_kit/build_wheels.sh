#!/usr/bin/env bash
# Rebuild the folder the GPU kit carries (default .whl/, git-ignored): wheels for Python 3.12 on
# manylinux x86_64 from requirements.txt beside this script, and in sources/ the pinned
# fish-speech tarballs (from ../shared/vendor beside the repository: the GPU machine gets only
# the working tree and carried paths). Prints its size. Usage:
#   bash benchmarks/gpu_kit/build_wheels.sh [DEST]        (or: make gpu-wheels)
# A package PyPI has only as a source archive is built here into a wheel, and kept only if that
# wheel is pure Python (py3-none-any): anything else would not run on the GPU machine.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${1:-$here/../../.whl}"
pip="${PIP:-python3 -m pip}"
rm -rf "$dest" && mkdir -p "$dest"
export PIP_DISABLE_PIP_VERSION_CHECK=1
target=(--python-version 3.12 --implementation cp --abi cp312 --platform manylinux_2_28_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
grep -oE '^[A-Za-z0-9_.-]+==[^ ]+' "$here/requirements.txt" | while read -r requirement; do
  if ! timeout 300 $pip download -q --no-deps --only-binary=:all: "${target[@]}" -d "$dest" \
      "$requirement" 2>/dev/null; then
    timeout 300 $pip wheel -q --no-deps -w "$dest" "$requirement"
    name="${requirement%%==*}"
    built="$(ls "$dest" | grep -i "^${name//-/_}-" || true)"
    case "$built" in
      *-py3-none-any.whl|*-py2.py3-none-any.whl) ;;
      *) echo "error: $requirement has no wheel for the GPU machine (built: $built)" >&2; exit 1;;
    esac
  fi
done
mkdir -p "$dest/sources"
cp "$here/../../../shared/vendor"/fish-speech-{d3df505,3dd1f85}.tar.gz "$dest/sources/"
count="$(ls "$dest"/*.whl | wc -l)"
echo "$dest: $count wheels and 2 sources, $(du -sb "$dest" | awk '{printf "%.1f MiB", $1 / 1048576}')"
