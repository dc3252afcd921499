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
# Then prints the versions of the key tools.  Used by .ci/run and by developers alike:
#   ./.ci/setup-test-deps.sh && .venv/bin/python -m pytest
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(
    e2fsprogs zstd zsh shellcheck dash tmux util-linux procps slurm-wlm munge python3-venv strace
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

# --- versions -------------------------------------------------------------------------------

first_line() { "$@" 2>&1 | head -n 1 || true; }

log "versions:"
version() { printf '    %-11s %s\n' "$1" "$(first_line "${@:2}")"; }
version python "$VENV/bin/python" --version
version pytest "$VENV/bin/python" -m pytest --version
version ruff "$VENV/bin/python" -m ruff --version
version mypy "$VENV/bin/python" -m mypy --version
version mke2fs /sbin/mke2fs -V
version zstd zstd --version
version bash bash --version
version zsh zsh --version
printf '    %-11s %s\n' shellcheck "$(shellcheck --version | sed -n 's/^version: //p')"
version tmux tmux -V
version slurm slurmd -V
version munge munge --version
