#!/usr/bin/env bash
# Install everything the test suite needs, idempotently and without questions:
#   - Debian packages (real e2fsprogs, zstd, shells, shellcheck, tmux, SLURM, munge, venv);
#     apt runs only when one of them is missing, and `apt-get update` at most once;
#   - a virtual environment at .venv in the repository (no system site packages) holding
#     condatainer in editable mode with its `test` extra (pytest, ruff, mypy, py-rattler, ...);
#     pip runs only when pyproject.toml changed since the last successful install.
#     The venv is made from $PYTHON when set, else from Debian's /usr/bin/python3 -- never from
#     whatever `python3` comes first on PATH (a pyenv shim, another venv): the suite must not
#     depend on what happens to be installed in the developer's interpreter.
#   - a second one at .venv-floor made from the oldest Python condatainer supports (3.9, the
#     system Python of RHEL 9): $PYTHON_FLOOR, else python3.9 on PATH, else a pyenv install;
#     tests/test_floor_python.py runs the package tiers with it (and fails under CI without it).
# Then prints the versions of the key tools.  Used by .ci/run and by developers alike:
#   ./.ci/setup-test-deps.sh && .venv/bin/python -m pytest
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(
    e2fsprogs zstd zsh shellcheck dash tmux util-linux procps slurm-wlm munge python3-venv strace
    squashfs-tools siftool fish
)
PYTHON=${PYTHON:-/usr/bin/python3}
VENV=.venv
STAMP=$VENV/.condatainer-test-deps
BASE_STAMP=$VENV/.condatainer-base-python

log() { printf '[setup-test-deps] %s\n' "$*"; }

# --- Debian packages ------------------------------------------------------------------------

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || {
            log "error: not root and no sudo; install as root: apt-get install ${missing[*]}"
            exit 1
        }
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "Debian packages: all present"
fi

# --- Python virtual environment -------------------------------------------------------------

if ! base=$(command -v "$PYTHON"); then
    log "error: no Python at $PYTHON; install python3-venv, or set PYTHON=/path/to/python3"
    exit 1
fi
base=$(realpath "$base")
if [ -x "$VENV/bin/python" ] && [ "$(cat "$BASE_STAMP" 2>/dev/null || true)" != "$base" ]; then
    log "$VENV was made from another Python; making it again from $base"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
    log "creating $VENV with $("$base" --version 2>&1) ($base)"
    "$base" -m venv --clear "$VENV"
    printf '%s\n' "$base" >"$BASE_STAMP"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
fi

# Reinstall only when the dependencies may have changed, or the editable install is gone.
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
have=$(cat "$STAMP" 2>/dev/null || true)
if [ "$want" != "$have" ] || ! "$VENV/bin/python" -c 'import condatainer, pytest' 2>/dev/null; then
    log "installing condatainer (editable) with its test extra into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
    printf '%s\n' "$want" >"$STAMP"
else
    log "$VENV: up to date with pyproject.toml"
fi

# --- the floor Python (requires-python) -----------------------------------------------------

FLOOR_VENV=.venv-floor
FLOOR_STAMP=$FLOOR_VENV/.condatainer-test-deps
# A candidate counts only if it runs and is 3.9 (a pyenv shim on PATH may be neither).
is_floor() {
    [ -x "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 9))' 2>/dev/null
}
floor_python() {
    if [ -n "${PYTHON_FLOOR:-}" ]; then command -v "$PYTHON_FLOOR"; return; fi
    for candidate in "$(command -v python3.9 || true)" \
                     "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.9.*/bin/python3.9 \
                     /root/.pyenv/versions/3.9.*/bin/python3.9 /opt/python/3.9*/bin/python3.9; do
        if is_floor "$candidate"; then printf '%s\n' "$candidate"; return; fi
    done
    return 1
}
if floor=$(floor_python); then
    if [ ! -x "$FLOOR_VENV/bin/python" ] || ! "$FLOOR_VENV/bin/python" -c '' 2>/dev/null; then
        log "creating $FLOOR_VENV with $("$floor" --version 2>&1) ($floor)"
        "$floor" -m venv --clear "$FLOOR_VENV"
    fi
    if [ "$want" != "$(cat "$FLOOR_STAMP" 2>/dev/null || true)" ] ||
        ! "$FLOOR_VENV/bin/python" -c 'import condatainer, pytest' 2>/dev/null; then
        log "installing condatainer (editable) with its floor-test extra into $FLOOR_VENV"
        "$FLOOR_VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[floor-test]'
        printf '%s\n' "$want" >"$FLOOR_STAMP"
    else
        log "$FLOOR_VENV: up to date with pyproject.toml"
    fi
else
    log "warning: no Python 3.9 found (set PYTHON_FLOOR=/path/to/python3.9); the floor tier"
    log "         (tests/test_floor_python.py) is skipped locally and fails under CI"
fi

# --- versions -------------------------------------------------------------------------------

first_line() { "$@" 2>&1 | head -n 1 || true; }

log "versions:"
version() { printf '    %-11s %s\n' "$1" "$(first_line "${@:2}")"; }
version python "$VENV/bin/python" --version
if [ -x "$FLOOR_VENV/bin/python" ]; then version floor "$FLOOR_VENV/bin/python" --version; fi
version pytest "$VENV/bin/python" -m pytest --version
version ruff "$VENV/bin/python" -m ruff --version
version mypy "$VENV/bin/python" -m mypy --version
version mke2fs /sbin/mke2fs -V
version zstd zstd --version
version bash bash --version
version zsh zsh --version
version fish fish --version
printf '    %-11s %s\n' shellcheck "$(shellcheck --version | sed -n 's/^version: //p')"
version tmux tmux -V
version slurm slurmd -V
version munge munge --version
