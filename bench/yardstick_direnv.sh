#!/bin/sh
# The yardstick for a warm cd into a project: direnv (Debian's package) with a 3-line .envrc.
# Makes PROJECT/.envrc and allows it for the user in $HOME/$XDG_DATA_HOME; bench_hook.py then
# times `cd PROJECT` with direnv's hook in real bash and zsh beside condatainer's.
#
#   bench/yardstick_direnv.sh PROJECT
#
# Committed before any optimisation and not changed while optimising (issue 11).
set -eu
project=$1
command -v direnv >/dev/null || { echo "needs direnv: apt-get install direnv" >&2; exit 1; }
mkdir -p "$project/bin"
cat >"$project/.envrc" <<'RC'
export PROJECT_NAME=demo
PATH_add bin
export OMP_NUM_THREADS=4
RC
direnv allow "$project"
