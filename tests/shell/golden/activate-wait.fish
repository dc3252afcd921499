_cnt_wait '/home/\'";&&e-$ èрт🚒中-j/.local/share/condatainer/allowed/abc'
_cnt_told notice '/data/\'";&&e-$ èрт🚒中-j x/env.img'
