"""Job scripts: their headers (`directives`), running them in their container (`run`),
submitting them to SLURM (`submit`) and the self-reexec header (`header`).

Builds on `run` (a job is a Request) and `image`; knows nothing of the shell hook.
"""
