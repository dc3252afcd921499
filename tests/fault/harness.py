"""The fault harness: SIGKILL image-writing commands at random points and check what is left.

For each operation of `ops.OPS` it makes the templates, runs the command once uncut (the
reference: its new state and how long it takes), then runs trials.  A trial copies the template
into a fresh directory, starts the command in a session of its own, and kills it with SIGKILL
-- the condatainer process alone, or its whole process group -- at a seeded random point:
either a random time within the reference run's duration, or a random moment after a writing
tool (or a container process) has appeared.  It records what was running at the kill, and then:

- **unlocked writers**: until every process the command left has ended, no writer may run
  while the lock that guards what it writes is free (`Op.guard`);
- **orphans**: every such process must end by itself (the harness is their subreaper, so it
  sees them whatever session they are in); one still alive after the hang guard is an orphan;
- **half states**: the target is in its old or its new state (`Op.state`): for published
  outputs at once, for images written in place after the next command repaired them;
- **reports**: a read-only `overlay info` lists the leftovers and leaves them; a read-only
  exec refuses a half-changed image;
- **leftovers**: after the next command (rotating through `Op.nexts`: a repair, a retry, a
  writable exec) no record, temporary or undo file, loop device, mount, staging directory or
  lock is left, and a repair was said;
- **tracebacks**: no command of the trial printed one.

    python -m tests.fault.harness --op resize_grow --trials 20 --seed 7 [--json]

prints one line per trial and a summary (JSON with --json).  It must run as root, as its own
process (it becomes a child subreaper).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.fault import procs
from tests.fault.ops import OPS, REPO, Op, cnt

HANG_GUARD = 60.0
REPAIR_WORDS = ("removed what an interrupted", "rolled back an interrupted", "completed it",
                "removed the record of")  # fmt: skip


@dataclass
class Trial:
    op: str
    number: int
    seed: int
    mode: str  # "process" or "group"
    strategy: str  # "time" or "tool"
    delay: float
    killed: bool = False  # the command was still running when the signal was sent
    running: list[str] = field(default_factory=list)  # what ran at the kill
    mid_write: bool = False  # a writer (tool or container process) was running at the kill
    state: str = ""
    unlocked_writers: int = 0
    orphans: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # other promises broken (exit codes...)
    next_command: str = ""
    repaired: bool = False

    @property
    def half(self) -> bool:
        return self.state.startswith("half")

    @property
    def clean(self) -> bool:
        return not (
            self.half
            or self.unlocked_writers
            or self.orphans
            or self.leftovers
            or self.tracebacks
            or self.problems
        )


def world_env(base: dict[str, str], scratch: Path) -> dict[str, str]:
    """The test world (local channel, micromamba stand-in, builtin runtime) when the caller's
    environment does not already provide it."""
    env = dict(base)
    if "CNT_CHANNELS" not in env:  # as tests/support.py's `world` fixture sets it up
        from tests.support import without_micromamba
        from tests.world import build_channel

        channel = build_channel(scratch / "channel")
        env["CNT_CHANNELS"] = env["CNT_MICROMAMBA_CHANNEL"] = f"file://{channel}"
        env["PATH"] = without_micromamba(env["PATH"])
    env["CNT_RUNTIME"] = "builtin"
    return env


class Harness:
    def __init__(self, scratch: Path, env: dict[str, str]):
        self.scratch = scratch
        self.env = {**env, "PYTHONPATH": str(REPO)}
        self.cache = scratch / "templates"
        self.cache.mkdir(exist_ok=True)
        self.old: dict[str, dict[str, object]] = {}
        self.reference: dict[str, float] = {}  # seconds an uncut run takes
        self.window: dict[str, float] = {}  # seconds its writers run

    # -- one operation ---------------------------------------------------------------------

    def prepare(self, op: Op) -> None:
        """Templates, and the reference run: the new state, how long the command takes, and
        when its writers run."""
        if op.name in self.reference:
            return
        op.template(self.cache, self.env)
        ref = self.scratch / f"{op.name}-reference"
        shutil.rmtree(ref, ignore_errors=True)
        ref.mkdir()
        op.setup(self.cache, ref)
        self.old[op.name] = op.measure(ref) if op.kind == "inplace" else {}
        proc = self._start(op, ref)
        started = time.monotonic()
        writing: list[float] = []
        while proc.poll() is None:
            if any(p.writer for p in procs.descendants()):
                writing.append(time.monotonic() - started)
            time.sleep(0.001)
        self.reference[op.name] = time.monotonic() - started
        self.window[op.name] = (writing[-1] - writing[0]) if writing else 0.0
        out, err = proc.communicate()
        assert proc.returncode == 0, f"{op.name}: the uncut run failed:\n{out}{err}"
        op.remember(ref)
        shutil.rmtree(ref)

    def _start(self, op: Op, trial: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "condatainer", *op.argv],
            cwd=trial,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def trial(self, op: Op, number: int, seed: int) -> Trial:
        rng = random.Random(f"{seed}-{op.name}-{number}")
        t = Trial(
            op.name,
            number,
            seed,
            rng.choice(["process", "group"]),
            rng.choice(["time", "tool"]),
            0.0,
        )
        trial = self.scratch / f"{op.name}-{number}"
        shutil.rmtree(trial, ignore_errors=True)
        trial.mkdir()
        op.setup(self.cache, trial)
        try:
            self._run(op, t, trial, rng)
        finally:
            self._clean_up(trial)
        return t

    def _run(self, op: Op, t: Trial, trial: Path, rng: random.Random) -> None:
        staging = set(procs.staging_left())
        tmp_before = set(os.listdir(tempfile.gettempdir()))
        proc = self._start(op, trial)
        self._kill_at_random(op, t, trial, proc, rng)
        _, err = proc.communicate()
        self._traceback(t, "the command", err)
        if not t.killed and proc.returncode != 0:
            t.problems.append(f"the uncut command exited {proc.returncode}: {err.strip()[-300:]}")
        self._watch_the_rest(op, t, trial)
        if op.kind == "publish":
            t.state = op.state(trial, {})
        self._read_only_reports(op, t, trial)
        dead_records = [r for r in trial.glob(".*.record") if not procs.locked(r)]
        argv, codes = op.nexts[t.number % len(op.nexts)]
        t.next_command = " ".join(argv)
        res = cnt(argv, trial, self.env)
        self._traceback(t, t.next_command, res.stderr)
        said = res.stdout + res.stderr
        t.repaired = any(word in said for word in REPAIR_WORDS)
        if res.returncode not in codes:
            t.problems.append(f"{t.next_command} exited {res.returncode}: {said.strip()[-300:]}")
        if dead_records and not t.repaired:
            t.problems.append(f"{t.next_command} repaired without saying so: {said.strip()[-300:]}")
        self._leftovers(op, t, trial, staging)
        new_tmp = set(os.listdir(tempfile.gettempdir())) - tmp_before
        t.leftovers += [f"$TMPDIR/{n}" for n in sorted(new_tmp) if "condatainer" in n]
        if op.kind != "publish" or t.state == "old":
            # In place: after the repair.  Published: a retry may have made it since.
            state = op.state(trial, self.old.get(op.name, {}))
            t.state = state if op.kind != "publish" or state.startswith("half") else t.state

    def _kill_at_random(
        self, op: Op, t: Trial, trial: Path, proc: subprocess.Popen[str], rng: random.Random
    ) -> None:
        """ "time": at a random moment of the reference run's duration; "tool": at a random
        moment of its writers' window, counted from the first writer seen."""
        start = time.monotonic()
        if t.strategy == "time":
            end = start + rng.uniform(0, self.reference[op.name])
        else:
            guard = start + self.reference[op.name] * 3 + 5
            while proc.poll() is None and time.monotonic() < guard:
                if any(p.writer for p in procs.descendants()):
                    break
                time.sleep(0.001)
            end = time.monotonic() + rng.uniform(0, self.window[op.name])
        while proc.poll() is None and time.monotonic() < end:
            time.sleep(0.001)
        t.delay = round(time.monotonic() - start, 4)
        running = procs.descendants()
        if proc.poll() is not None:
            return
        t.running = sorted({p.show() for p in running if p.pid != proc.pid})
        t.mid_write = any(p.writer for p in running)
        for p in running:
            if p.writer and not any(procs.locked(g) for g in op.guard(trial, p)):
                t.unlocked_writers += 1  # writing, at the kill, without the lock
        t.killed = True
        if t.mode == "group":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()

    def _watch_the_rest(self, op: Op, t: Trial, trial: Path) -> None:
        """Until every process the command left has ended: no writer without its lock."""
        deadline = time.monotonic() + HANG_GUARD
        seen_unlocked: set[int] = set()
        while True:
            procs.reap()
            left = procs.descendants()
            if not left:
                return
            for p in left:
                if p.writer and p.pid not in seen_unlocked:
                    guards = op.guard(trial, p)
                    if guards and not any(procs.locked(g) for g in guards):
                        seen_unlocked.add(p.pid)
                        t.unlocked_writers += 1
            if time.monotonic() > deadline:
                t.orphans = [f"{p.pid} {p.show()} {' '.join(p.argv)[:80]}" for p in left]
                for p in left:
                    os.kill(p.pid, signal.SIGKILL)
                deadline = time.monotonic() + HANG_GUARD
            time.sleep(0.005)

    def _read_only_reports(self, op: Op, t: Trial, trial: Path) -> None:
        """Read-only commands report what an interrupted command left, and leave it."""
        image = op.image(trial)
        if not image.exists():
            return
        before = sorted(p.name for p in trial.iterdir() if p.name.startswith("."))
        dead = [r for r in trial.glob(".*.record") if not procs.locked(r)]
        info = cnt(["overlay", "info", "env.img"], trial, self.env)
        self._traceback(t, "overlay info", info.stderr)
        if info.returncode != 0:
            t.problems.append(f"overlay info exited {info.returncode}: {info.stderr.strip()}")
        if dead and "leftovers:" not in info.stdout:
            t.problems.append("overlay info did not list the leftovers")
        in_place = [r for r in dead if r.name == ".env.img.record"]
        if in_place and op.kind == "inplace":
            reader = cnt(["exec", "-o", "env.img", "--", "true"], trial, self.env)
            self._traceback(t, "exec (read-only)", reader.stderr)
            if reader.returncode != 1 or "--repair" not in reader.stderr:
                t.problems.append(f"a read-only exec did not refuse: {reader.stderr.strip()}")
        after = sorted(p.name for p in trial.iterdir() if p.name.startswith("."))
        if after != before:
            t.problems.append(f"read-only commands changed the leftovers: {before} -> {after}")

    def _leftovers(self, op: Op, t: Trial, trial: Path, staging: set[str]) -> None:
        hidden = sorted(p.name for p in trial.iterdir() if p.name.startswith("."))
        t.leftovers += hidden
        t.leftovers += [f"loop device {d}" for d in procs.loops_under(trial)]
        t.leftovers += [f"mount {m}" for m in procs.mounts_of(trial)]
        t.leftovers += [f"staging {d}" for d in set(procs.staging_left()) - staging]
        for name in ("env.img", op.target):
            f = trial / name
            deadline = time.monotonic() + HANG_GUARD
            while procs.locked(f) and time.monotonic() < deadline:
                time.sleep(0.01)  # a loop device detaches asynchronously
            if procs.locked(f):
                t.leftovers.append(f"lock on {name}")

    def _traceback(self, t: Trial, what: str, stderr: str) -> None:
        if "Traceback (most recent call last)" in stderr:
            t.tracebacks.append(f"{what}: {stderr.strip()[-400:]}")

    def _clean_up(self, trial: Path) -> None:
        for dev in procs.loops_under(trial):
            subprocess.run(["losetup", "-d", f"/dev/{dev}"], check=False)
        for point in procs.mounts_of(trial):
            subprocess.run(["umount", "-l", point], check=False)
        shutil.rmtree(trial, ignore_errors=True)


@dataclass
class Summary:
    op: str
    trials: int = 0
    kills: int = 0
    mid_write: int = 0
    half_states: int = 0
    leftovers: int = 0
    unlocked_writers: int = 0
    tracebacks: int = 0
    orphans: int = 0
    problems: int = 0
    states: dict[str, int] = field(default_factory=dict)
    running: dict[str, int] = field(default_factory=dict)


def summarise(op: str, trials: list[Trial]) -> Summary:
    s = Summary(op, trials=len(trials))
    states: Counter[str] = Counter()
    running: Counter[str] = Counter()
    for t in trials:
        s.kills += t.killed
        s.mid_write += t.killed and t.mid_write
        s.half_states += t.half
        s.leftovers += bool(t.leftovers)
        s.unlocked_writers += t.unlocked_writers
        s.tracebacks += len(t.tracebacks)
        s.orphans += len(t.orphans)
        s.problems += len(t.problems)
        states[t.state.split(":")[0] + ("" if t.killed else " (ran to the end)")] += 1
        running.update(t.running)
    s.states = dict(states)
    s.running = dict(running)
    return s


def run(
    op_names: list[str], trials: int, seed: int, scratch: Path, env: dict[str, str]
) -> dict[str, object]:
    """Run `trials` trials of each operation; the trials and a summary per operation."""
    procs.become_subreaper()
    harness = Harness(scratch, env)
    out: dict[str, object] = {}
    for name in op_names:
        op = OPS[name]
        harness.prepare(op)
        done = [harness.trial(op, n, seed) for n in range(trials)]
        out[name] = {
            "reference_seconds": harness.reference[name],
            "writers_seconds": harness.window[name],
            "summary": asdict(summarise(name, done)),
            "trials": [asdict(t) | {"clean": t.clean} for t in done],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--op", action="append", choices=sorted(OPS), help="default: all")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    a = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the fault harness needs root (loop devices, chown)", file=sys.stderr)
        return 2
    names = a.op or list(OPS)
    with tempfile.TemporaryDirectory(prefix="cnt-fault-") as tmp:
        scratch = Path(tmp)
        env = dict(os.environ)
        home = scratch / "home"  # condatainer's allow list and caches: not the user's
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_DATA_HOME=str(home / ".local/share"),
            XDG_CACHE_HOME=str(home / ".cache"),
        )
        if any(OPS[n].needs_world for n in names):
            env = world_env(env, scratch)
        result = run(names, a.trials, a.seed, scratch, env)
    if a.json:
        print(json.dumps(result))
    else:
        for r in result.values():
            assert isinstance(r, dict)
            for t in r["trials"]:
                print(json.dumps(t))
            print(json.dumps(r["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
