#!/bin/sh
# The yardstick for `condatainer o FILE -s SIZE --sparse`: `truncate` plus `mke2fs -t ext3` with
# the options condatainer uses (4 KiB blocks, the balanced profile's 16 KiB per inode, 3 %
# reserved, the overlay layout placed with -d, discard for a sparse file), and nothing else:
# no checks, no owner fix-up, no publishing.
#
#   bench/yardstick_create.sh SIZE FILE        (SIZE as truncate takes it: 1G, 10G, 100G)
#
# Committed before any optimisation and not changed while optimising (issue 11).
set -eu
size=$1 file=$2
tree=$(mktemp -d /tmp/cnt-yard-XXXXXX)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/upper/ext3/env" "$tree/work"
truncate -s "$size" "$file"
mke2fs -q -F -t ext3 -b 4096 -E "discard,root_owner=$(id -u):$(id -g)" -i 16384 -m 3 \
    -d "$tree" "$file"
