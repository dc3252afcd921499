#!/bin/sh
# condatainer shim dispatcher (every shim is a link to it; rewritten when the image changes)
# shellcheck disable=SC2016  # the values below are single-quoted data; a `$` in them is literal
cnt_name=${0##*/}
if [ "$cnt_name" = .cnt-shim ]; then
    echo "condatainer: error: run the shims (links to this file), not the file itself" >&2
    exit 2
fi
cnt_shims='/home/'"'"'";&&e-$ èрт🚒中-j/.cache/condatainer/shims/0123456789abcdef/bin'
case :$PATH: in
    *:"$cnt_shims":*)
        cnt_path=:$PATH:
        cnt_path=${cnt_path%%:"$cnt_shims":*}:${cnt_path#*:"$cnt_shims":}
        cnt_path=${cnt_path#:}
        PATH=${cnt_path%:}
        ;;
esac
unset cnt_shims cnt_path
if [ -n "${IN_CONDATAINER:-}" ]; then
    exec "$cnt_name" "$@"
fi
exec '/opt/'"'"'";&&e-$ èрт🚒中-j/bin/python3' -m condatainer exec --if-allowed -o '/data/'"'"'";&&e-$ èрт🚒中-j x/env.img' -- "$cnt_name" "$@"
