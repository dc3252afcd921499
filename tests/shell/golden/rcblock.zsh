# Loads condatainer's shell hook in interactive shells outside containers (no Python runs here).
if [[ -o interactive && -z ${IN_CONDATAINER-}${APPTAINER_CONTAINER-}${SINGULARITY_CONTAINER-} ]] &&
    [[ ! -d /.singularity.d && -f '/home/'"'"'";&&e-$ èрт🚒中-j/.local/share/cnt/hook.zsh' ]]; then
    source '/home/'"'"'";&&e-$ èрт🚒中-j/.local/share/cnt/hook.zsh'
fi
