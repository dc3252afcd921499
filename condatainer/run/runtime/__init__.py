"""Container runtimes: each carries out a `Plan` and decides nothing.

- `apptainer`: turns the Plan into an `apptainer exec` (or `singularity exec`) command line.
- `builtin`: for root without Apptainer; loop devices, overlayfs and a private mount namespace,
  made with direct system calls (`_linux`).

Which one runs a Plan is chosen in one place (`doctor.select_runtime`), not here.
"""
