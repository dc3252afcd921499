"""Host shell integration: `init` (the rc block and the hook file), the cd hook's activation,
shims, the package-name caches for TAB, trust (allow/deny) and the shells we support.

Builds on `run` and `image`; knows nothing of the job scheduler.
"""
