#!/bin/sh
# Install condatainer for the current user, from the directory this script lives in.
#
#   ./install.sh [--yes] [--prefix DIR] [--bin-dir DIR] [--python PY] [--no-rc]
#   ./install.sh --uninstall [--purge] [--yes] [--prefix DIR] [--bin-dir DIR] [--no-rc]
#
# What it does:
#   - makes a virtual environment at ${XDG_DATA_HOME:-$HOME/.local/share}/condatainer/venv
#     (or --prefix DIR) and pip-installs this checkout into it; re-running upgrades in place;
#     on a terminal, the pip step shows how long it has been running;
#   - links `condatainer` and `cnt` into ~/.local/bin (or --bin-dir DIR), replacing old links
#     but never a real file;
#   - writes the man page (generated from the installed parser) to <bin-dir>/../share/man/man1,
#     where man finds it whenever <bin-dir> is on PATH (man-db maps each PATH entry DIR to
#     DIR/../share/man);
#   - --uninstall removes the venv, exactly the links that point into it and the man pages it
#     wrote; --purge also removes what condatainer keeps for itself (its caches, the micromamba
#     it fetched, the base images it pulled, the allow list), after listing it with sizes --
#     never your images, and not your config file.
# Without --yes it asks on the terminal; with no terminal and no --yes it refuses (a script
# that edits your account should not guess).
#
# POSIX sh on purpose: it must run wherever the user's login shell is something else.

set -eu

PROG=condatainer
COMMANDS="condatainer cnt"

die() {
    printf '%s: error: %s\n' "install.sh" "$1" >&2
    [ "$#" -lt 2 ] || printf 'hint: %s\n' "$2" >&2
    exit 1
}

say() { printf '%s\n' "$*"; }

usage() {
    cat <<'EOF'
usage: install.sh [--yes] [--prefix DIR] [--bin-dir DIR] [--python PY] [--no-rc]
       install.sh --uninstall [--purge] [--yes] [--prefix DIR] [--bin-dir DIR] [--no-rc]

Install condatainer for the current user from this checkout.

  -y, --yes        do not ask; needed when there is no terminal
  --prefix DIR     the virtual environment (default: $XDG_DATA_HOME/condatainer/venv,
                   i.e. ~/.local/share/condatainer/venv)
  --bin-dir DIR    where to link condatainer and cnt (default: ~/.local/bin)
  --python PY      the Python to build the venv with (default: python3; needs >= 3.9)
  --no-rc          do not offer to set up shell integration (condatainer init)
  --uninstall      remove the venv, the links and the man page this script made
  --purge          with --uninstall: also condatainer's caches, its micromamba, the base
                   images it pulled and the allow list (listed with sizes first; never
                   your images or your config file)
  -h, --help       show this help
EOF
}

# --- arguments ----------------------------------------------------------------------------

YES=0
UNINSTALL=0
PURGE=0
NO_RC=0
PREFIX=
BIN_DIR=
PYTHON=${PYTHON:-python3}

need_value() {
    if [ "$#" -lt 2 ] || [ -z "$2" ]; then
        die "$1 needs a value" "see: install.sh --help"
    fi
}

while [ "$#" -gt 0 ]; do
    case $1 in
        -y | --yes) YES=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --purge) PURGE=1 ;;
        --no-rc) NO_RC=1 ;;
        --prefix) need_value "$@"; PREFIX=$2; shift ;;
        --prefix=*) PREFIX=${1#*=} ;;
        --bin-dir) need_value "$@"; BIN_DIR=$2; shift ;;
        --bin-dir=*) BIN_DIR=${1#*=} ;;
        --python) need_value "$@"; PYTHON=$2; shift ;;
        --python=*) PYTHON=${1#*=} ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; printf 'install.sh: error: unknown argument: %s\n' "$1" >&2; exit 2 ;;
    esac
    shift
done

[ -n "${HOME:-}" ] || die "HOME is not set"
if [ "$PURGE" -eq 1 ] && [ "$UNINSTALL" -eq 0 ]; then
    die "--purge goes with --uninstall" "install.sh --uninstall --purge"
fi

# An absolute path without a trailing slash, so link targets compare reliably.
absolute() {
    case $1 in
        /*) p=$1 ;;
        *) p=$(pwd)/$1 ;;
    esac
    while [ "$p" != / ] && [ "${p%/}" != "$p" ]; do p=${p%/}; done
    printf '%s\n' "$p"
}

data_home=${XDG_DATA_HOME:-}
case $data_home in /*) ;; *) data_home=$HOME/.local/share ;; esac
PREFIX=$(absolute "${PREFIX:-$data_home/$PROG/venv}")
BIN_DIR=$(absolute "${BIN_DIR:-$HOME/.local/bin}")
MAN_DIR=$(dirname -- "$BIN_DIR")/share/man/man1
SRC_DIR=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd -P)

# --- helpers ------------------------------------------------------------------------------

# confirm QUESTION: yes with --yes; ask on a terminal; refuse without one.
confirm() {
    [ "$YES" -eq 1 ] && return 0
    if [ ! -t 0 ]; then
        die "no terminal to ask on" "run again with --yes to proceed without asking"
    fi
    printf '%s [y/N] ' "$1"
    read -r answer || answer=
    case $answer in
        [yY] | [yY][eE][sS]) return 0 ;;
        *) return 1 ;;
    esac
}

# is_our_link PATH: a symlink whose target lies inside our venv.
is_our_link() {
    [ -L "$1" ] || return 1
    target=$(readlink -- "$1") || return 1
    case $target in
        "$PREFIX"/*) return 0 ;;
        *) return 1 ;;
    esac
}

on_path() {
    case ":${PATH:-}:" in
        *":$1:"* | *":$1/:"*) return 0 ;;
        *) return 1 ;;
    esac
}

is_venv() { [ -f "$1/pyvenv.cfg" ]; }

check_python() {
    command -v "$PYTHON" >/dev/null 2>&1 ||
        die "$PYTHON not found" "install Python 3.9 or newer (Debian/Ubuntu: apt-get install python3 python3-venv; on a cluster: module load python), or pass --python PATH"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null ||
        die "$("$PYTHON" -c 'import sys; print(sys.executable, "is Python", sys.version.split()[0])' 2>/dev/null || printf '%s' "$PYTHON") but condatainer needs 3.9 or newer" \
            "on a cluster: module load python (3.9+), then run install.sh --python python3.X"
    # Debian splits venv and ensurepip out of python3 (package python3-venv).
    "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null ||
        die "$PYTHON has no working venv module (venv/ensurepip missing)" \
            "Debian/Ubuntu: apt-get install python3-venv; or use another Python with --python"
}

# progress TITLE: on a terminal, TITLE at once on stderr, then the seconds since, redrawn in
# place once a second by a background loop, until `progress_done`.  Nothing on a pipe.
TICKER=
progress() {
    [ -t 2 ] || return 0
    printf '%s' "$1" >&2
    (
        trap 'exit 0' TERM
        seconds=0
        while sleep 1; do
            seconds=$((seconds + 1))
            printf '\r\033[K%s · %ss' "$1" "$seconds" >&2
        done
    ) &
    TICKER=$!
}

progress_done() {
    [ -n "$TICKER" ] || return 0
    kill "$TICKER" 2>/dev/null || :
    wait "$TICKER" 2>/dev/null || :
    TICKER=
    printf '\r\033[K' >&2
}

# is_our_man_page PATH: a page this script wrote (removed by --uninstall, replaced by install).
is_our_man_page() {
    [ -f "$1" ] && [ ! -L "$1" ] || return 1
    case $(sed -n 1p -- "$1") in
        '.TH CONDATAINER 1 '* | '.so man1/condatainer.1') return 0 ;;
        *) return 1 ;;
    esac
}

install_man_page() {
    for page in condatainer.1 cnt.1; do
        if [ -e "$MAN_DIR/$page" ] && ! is_our_man_page "$MAN_DIR/$page"; then
            say "left $MAN_DIR/$page alone: it is not condatainer's man page"
            return 0
        fi
    done
    mkdir -p -- "$MAN_DIR" || { say "could not create $MAN_DIR; no man page"; return 0; }
    tmp=$MAN_DIR/.condatainer.1.$$
    # -I: the installed package, never a condatainer/ in the working directory
    if "$PREFIX/bin/python" -I -m condatainer.manpage >"$tmp" && mv -f -- "$tmp" "$MAN_DIR/condatainer.1"; then
        printf '.so man1/condatainer.1\n' >"$MAN_DIR/cnt.1"
    else
        rm -f -- "$tmp"
        say "could not write the man page into $MAN_DIR"
    fi
}

remove_man_page() {
    for page in condatainer.1 cnt.1; do
        if is_our_man_page "$MAN_DIR/$page"; then
            rm -f -- "$MAN_DIR/$page"
            say "removed $MAN_DIR/$page"
        fi
    done
}

# --- shell integration seam ---------------------------------------------------------------
# Shell rc editing belongs to `condatainer init`, not to this script.  These two functions only
# call it, and only when the installed condatainer has an `init` command; until then they do
# nothing.  --no-rc turns both off.

offer_shell_init() {
    [ "$NO_RC" -eq 0 ] || return 0
    "$PREFIX/bin/condatainer" init --help >/dev/null 2>&1 || return 0
    if confirm "Set up shell integration now (condatainer init edits your ~/.bashrc, ~/.zshrc or fish's conf.d)?"; then
        "$PREFIX/bin/condatainer" init || say "condatainer init failed; run it later: condatainer init"
    else
        say "skipped; set it up later with: condatainer init"
    fi
}

remove_shell_init() {
    [ "$NO_RC" -eq 0 ] || return 0
    [ -x "$PREFIX/bin/condatainer" ] || return 0
    "$PREFIX/bin/condatainer" init --help 2>/dev/null | grep -q -- --uninstall || return 0
    for shell in bash zsh fish; do
        "$PREFIX/bin/condatainer" init "$shell" --uninstall ||
            say "could not remove the $shell integration; remove the condatainer block from your rc file"
    done
}

# --- install ------------------------------------------------------------------------------

install() {
    if [ ! -f "$SRC_DIR/pyproject.toml" ] || [ ! -d "$SRC_DIR/condatainer" ]; then
        die "$SRC_DIR is not a condatainer checkout (no pyproject.toml and condatainer/)" \
            "run install.sh from the directory it came with"
    fi
    check_python

    if [ -e "$PREFIX" ] && ! is_venv "$PREFIX"; then
        if [ -d "$PREFIX" ] && [ -z "$(ls -A -- "$PREFIX")" ]; then
            :  # an empty directory is fine
        else
            die "$PREFIX exists and is not a virtual environment; not touching it" \
                "choose another place with --prefix DIR"
        fi
    fi
    for name in $COMMANDS; do
        link=$BIN_DIR/$name
        if [ -e "$link" ] && [ ! -L "$link" ]; then
            die "$link exists and is not a symlink; not replacing it" \
                "remove or rename it, or choose another place with --bin-dir DIR"
        fi
    done

    confirm "Install condatainer into $PREFIX and link condatainer, cnt into $BIN_DIR?" ||
        { say "nothing done"; exit 1; }

    if is_venv "$PREFIX" && "$PREFIX/bin/python" -c '' 2>/dev/null; then
        say "upgrading the existing virtual environment $PREFIX"
    else
        # Missing, or broken (e.g. its Python was removed): build it afresh.
        say "creating a virtual environment at $PREFIX"
        mkdir -p -- "$(dirname -- "$PREFIX")"
        "$PYTHON" -m venv --clear "$PREFIX" || die "python -m venv $PREFIX failed" \
            "Debian/Ubuntu: apt-get install python3-venv"
    fi

    say "installing condatainer from $SRC_DIR"
    # setuptools builds in the source tree; remove what it leaves there, unless it was there.
    leftovers=
    for d in build condatainer.egg-info; do
        [ -e "$SRC_DIR/$d" ] || leftovers="$leftovers $d"
    done
    # pip always rebuilds and reinstalls a package given as a directory, even at the same
    # version, so a re-run picks up a changed checkout; dependencies move only when needed.
    # Its messages are kept aside while the progress line runs, and shown after it.
    pip_log=$(mktemp "${TMPDIR:-/tmp}/condatainer-pip.XXXXXX") || die "cannot create a temporary file"
    trap 'progress_done; rm -f -- "$pip_log"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    progress "pip: installing condatainer and its dependencies"
    pip_status=0
    "$PREFIX/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade \
        "$SRC_DIR" >"$pip_log" 2>&1 || pip_status=$?
    progress_done
    cat -- "$pip_log" >&2
    rm -f -- "$pip_log"
    trap - EXIT INT TERM
    if [ "$pip_status" -ne 0 ]; then
        die "pip install failed (see above)" "check your network or proxy, then run install.sh again"
    fi
    for d in $leftovers; do rm -rf -- "${SRC_DIR:?}/$d"; done

    mkdir -p -- "$BIN_DIR"
    for name in $COMMANDS; do
        [ -x "$PREFIX/bin/$name" ] || die "the install did not create $PREFIX/bin/$name"
        link=$BIN_DIR/$name
        if [ -L "$link" ] && ! is_our_link "$link"; then
            say "replacing $link (it pointed to $(readlink -- "$link"))"
        fi
        # rm then ln, not `ln -sf` or mv: both would act inside a symlinked directory.
        rm -f -- "$link"
        ln -s -- "$PREFIX/bin/$name" "$link"
    done

    install_man_page

    version=$("$PREFIX/bin/python" -c 'import condatainer; print(condatainer.__version__)')
    say ""
    say "condatainer $version installed in $PREFIX"
    say "commands: $BIN_DIR/condatainer, $BIN_DIR/cnt"
    [ ! -f "$MAN_DIR/condatainer.1" ] || say "man page: $MAN_DIR/condatainer.1"
    if on_path "$BIN_DIR"; then
        say "$BIN_DIR is on your PATH (so man condatainer finds the page)"
    else
        say "note: $BIN_DIR is not on your PATH; add this line to your ~/.bashrc or ~/.zshrc:"
        say "  export PATH=\"$BIN_DIR:\$PATH\""
        say "(man condatainer then finds the page too; until then: man -l $MAN_DIR/condatainer.1)"
    fi

    offer_shell_init
    say "check your setup with: condatainer doctor"
}

# --- uninstall ----------------------------------------------------------------------------

uninstall() {
    found=0
    is_venv "$PREFIX" && found=1
    for name in $COMMANDS; do is_our_link "$BIN_DIR/$name" && found=1; done
    if [ "$found" -eq 0 ]; then
        if [ -e "$PREFIX" ]; then
            die "$PREFIX is not a virtual environment; not removing it"
        fi
        say "condatainer is not installed in $PREFIX; nothing to do"
        return 0
    fi

    # --purge: the installed condatainer lists what it keeps (its own paths, config honoured).
    purger=
    if [ "$PURGE" -eq 1 ]; then
        if [ -x "$PREFIX/bin/condatainer" ] && "$PREFIX/bin/condatainer" _purge --dry-run >/dev/null 2>&1; then
            purger=$PREFIX/bin/condatainer
            say "--purge also removes what condatainer keeps for itself:"
            "$purger" _purge --dry-run
        else
            say "--purge: the installed condatainer cannot list what it keeps; removing only the install"
        fi
    fi

    if [ -n "$purger" ]; then
        question="Remove $PREFIX, the condatainer, cnt links in $BIN_DIR and the above?"
    else
        question="Remove $PREFIX and the condatainer, cnt links in $BIN_DIR?"
    fi
    confirm "$question" || { say "nothing done"; exit 1; }

    remove_shell_init
    [ -z "$purger" ] || "$purger" _purge || say "could not remove all of it (see above)"
    for name in $COMMANDS; do
        link=$BIN_DIR/$name
        if is_our_link "$link"; then
            rm -f -- "$link"
            say "removed $link"
        elif [ -e "$link" ] || [ -L "$link" ]; then
            say "left $link alone: it does not point into $PREFIX"
        fi
    done
    remove_man_page
    if is_venv "$PREFIX"; then
        rm -rf -- "$PREFIX"
        say "removed $PREFIX"
    fi
    if [ -n "$purger" ]; then
        rmdir -- "$data_home/$PROG" 2>/dev/null || :  # condatainer's data dir, once empty
        say "condatainer uninstalled and purged (your images and config file are untouched)"
    else
        say "condatainer uninstalled (your images, config and data directories are untouched;"
        say "  install.sh --uninstall --purge also removes caches, micromamba and base images)"
    fi
}

if [ "$UNINSTALL" -eq 1 ]; then
    uninstall
else
    install
fi
