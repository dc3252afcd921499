# Loads condatainer's shell hook in interactive fish outside containers (no Python runs here).
if status is-interactive
    and test -z "$IN_CONDATAINER$APPTAINER_CONTAINER$SINGULARITY_CONTAINER"
    and not test -d /.singularity.d
    and test -f '/home/\'";&&e-$ èрт🚒中-j/.local/share/cnt/hook.fish'
    source '/home/\'";&&e-$ èрт🚒中-j/.local/share/cnt/hook.fish'
end
