#!/bin/sh
# The floor of `condatainer exec -o IMAGE -- CMD...` with the builtin runtime: the least work
# any tool must do to run CMD with IMAGE's environment -- a private mount namespace, IMAGE
# loop-mounted read-only, its upper/ laid over / with overlayfs (writes to a tmpfs), chroot.
# No locks, no checks, no binds, no user switch: a yardstick, not a runtime.  Needs root.
#
#   bench/floor_exec.sh IMAGE CMD [ARG...]
#
# Committed before any optimisation and not changed while optimising (issue 11).
set -eu
image=$1
shift
dir=$(mktemp -d /tmp/cnt-floor-XXXXXX)
set +e
# shellcheck disable=SC2016  # expanded by the inner sh, from its positional parameters
unshare -m sh -eu -c '
    dir=$1 image=$2
    shift 2
    mount --make-rprivate /
    mkdir "$dir/img" "$dir/t" "$dir/root"
    mount -o loop,ro,nodev,nosuid -t ext3 "$image" "$dir/img"
    mount -t tmpfs tmpfs "$dir/t"
    mkdir "$dir/t/u" "$dir/t/w"
    mount -t overlay overlay \
        -o "lowerdir=$dir/img/upper:/,upperdir=$dir/t/u,workdir=$dir/t/w" "$dir/root"
    exec chroot "$dir/root" "$@"
' sh "$dir" "$image" "$@"
status=$?
rm -rf "$dir"
exit "$status"
