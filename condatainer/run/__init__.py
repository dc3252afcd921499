"""Running things in a container: Request -> Plan -> runtime.

`resolve` turns a `Request` (plain values from the CLI, a job header or a shim) into a `Plan`
(frozen data: every decision made), `launch` hands the Plan to the runtime `runtime.selection`
chooses, and the runtimes (`runtime.apptainer`, `runtime.builtin`) carry it out.  Beside them:
the sidecar env file (`envfile`), environment files (`envspec`) and the mm operation table
(`mm`).  This package uses `image` and never the shell hook or the job scheduler.
"""
