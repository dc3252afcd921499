# Loads condatainer's shell hook in interactive shells outside containers (no Python runs here).
if [[ $- == *i* && -z ${IN_CONDATAINER-}${APPTAINER_CONTAINER-}${SINGULARITY_CONTAINER-} ]] &&
    [[ ! -d /.singularity.d && -f '/home/'"'"'";&&e-$ èрт🚒中-j/.local/share/cnt/hook.bash' ]]; then
    # shellcheck source=/dev/null
    . '/home/'"'"'";&&e-$ èрт🚒中-j/.local/share/cnt/hook.bash'
fi
