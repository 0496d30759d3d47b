#!/usr/bin/env bash
# Set up nextvox on a fresh Debian 12 machine, as root: the Debian packages it needs and a
# virtual environment in .venv/ at the repository root with the project installed in it.
# `--test` adds what the test suite needs (Debian's chromium and axe-core from npm for the web page's tests).
# Safe to run again: what is already there is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
for_tests=false
[ "${1:-}" = "--test" ] && for_tests=true

# Speech voices (real recorded speakers) the demo library sings with, the MIDI synthesizer and
# its General MIDI soundfont for the accompaniment, and codecs for the library's formats.
DEBIAN_PACKAGES=(
  festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-ca-ona-hts festvox-ru
  flite espeak-ng fluidsynth fluid-soundfont-gm ffmpeg sox libsndfile1 gcc
)
$for_tests && DEBIAN_PACKAGES+=(chromium mpd)  # mpd: the MPD integration is tested against the real daemon
# npm installs axe-core for the page's accessibility test. A Node.js from another source (such as
# NodeSource's, which bundles npm) conflicts with Debian's npm package, so ask for it only when
# no npm is on the PATH.
$for_tests && ! command -v npm >/dev/null 2>&1 && DEBIAN_PACKAGES+=(nodejs npm)
PYTHON=${PYTHON:-python3}
# A bare Debian python3 lacks venv and the headers that webrtcvad (resemblyzer) compiles against.
if ! "$PYTHON" -c "import ensurepip, sysconfig, os; assert os.path.exists(sysconfig.get_paths()['include'] + '/Python.h')" 2>/dev/null; then
  DEBIAN_PACKAGES+=(python3-venv python3-dev)
fi
missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch first and pinned: anything that asks for a looser torch would pull a CUDA build.
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
extras=""
$for_tests && extras="[test]"
.venv/bin/python -m pip install -q -c scripts/constraints.txt -e ".$extras"
# librosa's numba kernels, cached beside its code, may have been written by two processes at
# once before nextvox compiled them ahead of its workers (numba issue 10128): such a cache
# crashes every call. Dropping it is safe; the next run compiles it again, in one process.
find .venv/lib/python3*/site-packages/librosa -name '*.nb[ic]' -delete 2>/dev/null || true
if .venv/bin/python -m pip list 2>/dev/null | grep -qiE '^(torchaudio|nvidia-)'; then
  echo "setup: a CUDA or torchaudio package was installed; remove it (see scripts/constraints.txt)" >&2
  exit 1
fi
# The web page's accessibility test runs axe-core (npm) in Chromium; it looks in build/npm.
if $for_tests && [ ! -f build/npm/node_modules/axe-core/axe.min.js ]; then
  npm install --no-audit --no-fund --prefix build/npm axe-core@4.14.1
fi
echo "nextvox is set up: .venv/bin/nextvox"
