"""The report of `condatainer run --dry-run`: one JSON schema, whether the run would submit or
run here, and a readable text form of it.

Every key is always present and always has the type listed in README.md ("`run --dry-run
--json`"), `null` where a value does not apply; tests check each report against that table.
`empty` makes a report with every key, the other functions fill parts of it in, `lines`
renders the text form.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from condatainer.jobs import control, scheduler
from condatainer.jobs.script import Job
from condatainer.jobs.submit import Submission


def empty(script: str, args: Sequence[str]) -> dict[str, Any]:
    """A report with every key, nothing known yet."""
    return {
        "script": script,
        "origin": None,
        "args": list(args),
        "scheduler": None,
        "directives": [],
        "notes": [],
        "cnt": [],
        "deps": [],
        "control": control.JobControl().to_json(),
        "array": None,
        "slurm": slurm(None),
        "submit": False,
        "why": "",
        "via": None,
        "sbatch": None,
        "sbatch_env": {},
        "wrapper": None,
        "launch": [],
        "resources": {},
        "plan": None,
        "plan_error": None,
        "would_start": False,
        "problems": [],
    }


def describe_job(data: dict[str, Any], job: Job) -> None:
    data["origin"] = str(job.origin)
    data["scheduler"] = job.header.scheduler
    data["directives"] = [
        {"line": d.line, "text": d.text, "args": list(d.args)} for d in job.header.directives
    ]
    data["notes"] = list(job.header.notes)
    data["cnt"] = [list(words) for words in job.header.cnt_flags]
    data["deps"] = [dep.to_json() for dep in job.deps]


def array(tasks: control.ArrayTasks | None) -> dict[str, Any] | None:
    if tasks is None:
        return None
    return {
        "file": tasks.file,
        "limit": tasks.limit,
        "tasks": [list(t) for t in tasks.tasks],
        "lines": list(tasks.lines),
    }


def slurm(found: scheduler.Slurm | None) -> dict[str, Any]:
    if found is None:
        return {"state": "unknown", "sbatch": None, "version": None, "detail": "not probed"}
    return found.to_json()


def submission(data: dict[str, Any], sub: Submission) -> None:
    data["via"] = sub.via
    data["sbatch"] = list(sub.argv)
    data["sbatch_env"] = dict(sub.env)
    data["wrapper"] = sub.stdin


def lines(data: dict[str, Any]) -> list[str]:
    """The text form."""
    out: list[str] = []

    def row(key: str, value: str) -> None:
        out.append(f"{key:11} {value}".rstrip())

    row("script", f"{data['script']}" + (f" ({data['origin']})" if data["origin"] else ""))
    if data["args"]:
        row("arguments", shlex.join(data["args"]))
    sched = data["scheduler"]
    row("scheduler", f"{sched} ({len(data['directives'])} directives)" if sched else "none")
    for d in data["directives"]:
        row(f"  line {d['line']}", d["text"])
    for words in data["cnt"]:
        row("#CNT", shlex.join(words))
    for dep in data["deps"]:
        if dep["found"]:
            row("#DEP", f"{dep['dep']}: {dep['path']}")
        else:
            row("#DEP", f"{dep['dep']}: NOT FOUND (looked for {' and '.join(dep['looked'])})")
    if data["array"] is not None:
        a = data["array"]
        limit = f", at most {a['limit']} at once" if a["limit"] else ""
        row("array", f"{len(a['tasks'])} tasks from {a['file']}{limit}")
        for index, task in enumerate(a["tasks"]):
            row(f"  task {index}", shlex.join(task))
    s = data["slurm"]
    row("slurm", f"{s['state']}: {s['detail']}")
    row("submit", ("yes: " if data["submit"] else "no: ") + data["why"])
    if data["sbatch"] is not None:
        below = " < the wrapper below" if data["wrapper"] else ""
        row("sbatch", shlex.join(data["sbatch"]) + below)
        for key, value in data["sbatch_env"].items():
            row("  env", f"{key}={value}")
    if data["wrapper"]:
        out += [f"  | {line}" for line in data["wrapper"].rstrip("\n").split("\n")]
    if data["launch"]:
        row("tasks", f"one container per task: {shlex.join(data['launch'])} ...")
    if data["resources"]:
        row("resources", " ".join(f"{k}={v}" for k, v in data["resources"].items()))
    plan = data["plan"]
    if plan is not None:
        row("command", shlex.join(plan["command"]))
        for overlay in plan["overlays"]:
            row("  overlay", f"{overlay['path']} ({'rw' if overlay['writable'] else 'ro'})")
        for bind in plan["binds"]:
            spec = (
                bind["host"]
                if bind["host"] == bind["container"]
                else (f"{bind['host']} -> {bind['container']}")
            )
            row("  bind", spec + (" (ro)" if bind["readonly"] else ""))
        row("  cwd", plan["cwd"])
    else:
        row("plan", f"none: {data['plan_error'] or 'not made'}")
    for note in data["notes"]:
        row("note", note)
    for problem in data["problems"]:
        row("problem", problem)
    row("result", "would start" if data["would_start"] else "would NOT start")
    return out
