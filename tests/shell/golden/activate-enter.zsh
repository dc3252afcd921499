_cnt_enter '/data/'"'"'";&&e-$ èрт🚒中-j x/env.img' '/data/'"'"'";&&e-$ èрт🚒中-j x' '/home/'"'"'";&&e-$ èрт🚒中-j/.cache/condatainer/shims/0123456789abcdef/bin' '(cnt:'"'"'";&&e-$ èрт🚒中-j x) ' '/home/'"'"'";&&e-$ èрт🚒中-j/.local/share/condatainer/allowed/abc' '/home/'"'"'";&&e-$ èрт🚒中-j/.cache/condatainer/pkgs/0123456789abcdef.txt' 'condatainer: '"'"'";&&e-$ èрт🚒中-j
line two deactivated'
_cnt_told notes '/data/'"'"'";&&e-$ èрт🚒中-j x/env.img'
