"""Container runtimes: each carries out a `Plan` and decides nothing.

- `apptainer`: turns the Plan into an `apptainer exec` (or `singularity exec`) command line.
- `builtin`: for root without Apptainer; loop devices, overlayfs and a private mount namespace,
  made with direct system calls (`_linux`), over the host's root or a base image (`_base`).

Which of them runs a Plan is decided in one place, `selection.select`; `handoff.execute` hands
a Plan to the one chosen.
"""

INSTALL_APPTAINER = (
    "install Apptainer: on a cluster, module load apptainer (ask your admins if there is no"
    " module); on your own machine, your distribution's apptainer package"
)
"""The one way condatainer tells users to get Apptainer."""
