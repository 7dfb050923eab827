"""The Snakemake controller as a small CPU Slurm job (submitit), requeued near its time limit.

Slurm sends SIGUSR2 `stop_s` seconds before the controller's time limit; submitit's handler then
calls `Controller.checkpoint` and requeues the job (at most `max_requeues` times). Checkpointing
gives Snakemake SIGTERM, on which it submits nothing new and exits once its running generation
jobs are done. If they take longer than the time left, Snakemake is killed and those jobs run on:
the requeued controller first waits for every job of earlier runs (found by run id in its log)
to leave the queue, so that no item is generated twice, then resumes from the file targets.
`fishflow cancel` sends SIGINT instead, Snakemake's Ctrl-C: it cancels its jobs and exits.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import submitit
from submitit.core.utils import UncompletedJobError

from fishflow.cluster import run_state, slurm_jobs
from fishflow.errors import FishflowError
from fishflow.layout import Layout

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
# Left between the end of Snakemake's drain and the time limit, for the requeue itself.
REQUEUE_MARGIN_S = 20
POLL_S = 2
QUEUE_POLL_S = 10
# After SIGINT, Snakemake cancels its Slurm jobs (one scancel) before it exits.
CANCEL_WAIT_S = 60


@dataclass(frozen=True)
class JobSettings:
    """The controller job's own Slurm request: CPU only, no GPU."""

    account: str
    partition: str
    time_min: int = 720
    cpus: int = 1
    mem_mb: int = 4000
    stop_s: int = 300
    max_requeues: int = 10


class Controller(submitit.helpers.Checkpointable):
    """Runs `command` (snakemake) in `cwd` inside the controller job; see the module doc."""

    def __init__(self, out: Path, command: list[str], cwd: Path, drain_s: float):
        self.out, self.command, self.cwd, self.drain_s = Path(out), command, Path(cwd), drain_s
        self._process: subprocess.Popen | None = None
        self._finished_work = False

    def __getstate__(self) -> dict:
        # The checkpoint is pickled for the requeued job; a running process is not part of it.
        return {**self.__dict__, "_process": None}

    def __call__(self) -> str:
        previous = run_state.load(self.out) or {}
        attempt = previous.get("attempt", 0) + 1
        job = submitit.JobEnvironment().job_id
        run_state.update(self.out, job_id=job, attempt=attempt, status="running", reason=None)
        self._note(f"attempt {attempt} (Slurm job {job} on {socket.gethostname()})")
        try:
            self._wait_for_earlier_jobs()
            if previous.get("snakemake") in ("running", "killed"):
                # Ours, and that process is gone: this job was requeued or cancelled.
                self._note("removing the lock left by the previous Snakemake (snakemake --unlock)")
                self._run([*self.command, "--unlock"])
            code = self._run(self.command)
        except KeyboardInterrupt:
            # Slurm gave Snakemake the same SIGINT: a second one would interrupt its scancel.
            how = self._stop_snakemake(signal.SIGINT, CANCEL_WAIT_S, send=False)
            self._finish("cancelled", f"cancelled (SIGINT, fishflow cancel): {how}")
            return "cancelled"
        except UncompletedJobError:
            # From submitit: checkpoint() declined the requeue (the work was done), or none is left.
            if run_state.load(self.out)["status"] == "completed":
                return "completed"
            self._finish("failed", f"time limit reached after {attempt - 1} requeue(s), none left")
            raise
        if code != 0:
            self._finish("failed", f"snakemake exited {code}; see {run_state.log_path(self.out)}")
            raise FishflowError(f"snakemake exited {code}")
        self._finish("completed", "snakemake finished the workflow")
        return "completed"

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on SIGUSR2 (time limit near, or preemption) before it requeues."""
        how = self._stop_snakemake(signal.SIGTERM, self.drain_s)
        if self._finished_work:
            self._finish("completed", f"snakemake finished the workflow as it was stopped ({how})")
            return None  # no requeue
        self._finish("requeued", f"time limit near (SIGUSR2): {how}")
        return super().checkpoint()

    # -- Snakemake as a child process ----------------------------------------------------------

    def _run(self, command: list[str]) -> int:
        log = run_state.log_path(self.out)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as sink:
            self._process = subprocess.Popen(
                command,
                cwd=self.cwd,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Slurm signals every process of the job step; SIGUSR2 is the controller's alone
                # (its default action would kill Snakemake on the spot).
                preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN),
            )
        run_state.update(self.out, snakemake="running")
        while not self._exited(POLL_S):
            pass
        code, self._process = self._process.returncode, None
        return code

    def _exited(self, timeout_s: float) -> bool:
        """Whether Snakemake has exited, waiting up to `timeout_s`. waitpid rather than
        Popen.wait: this also runs in signal handlers, while the main thread may be polling."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                pid, status = os.waitpid(self._process.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by an interrupted waitpid of this very loop
                return True
            if pid:
                self._process.returncode = os.waitstatus_to_exitcode(status)
                run_state.update(self.out, snakemake="exited")
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)

    def _stop_snakemake(self, sig: signal.Signals, wait_s: float, send: bool = True) -> str:
        if self._process is None:
            return "Snakemake was not running"
        if send and self._process.returncode is None:
            self._process.send_signal(sig)
        if self._exited(wait_s):
            # Only a run with all its work done exits 0 on SIGTERM (the drain exits 1).
            self._finished_work = self._process.returncode == 0 and sig == signal.SIGTERM
            effect = "cancelled its jobs" if sig == signal.SIGINT else "drained its running jobs"
            return f"Snakemake stopped on {sig.name} and {effect}"
        os.killpg(self._process.pid, signal.SIGKILL)
        self._exited(POLL_S)
        run_state.update(self.out, snakemake="killed")
        return (
            f"Snakemake killed after {wait_s:.0f} s; its running generation jobs go on and the "
            "next controller waits for them"
        )

    # -- bookkeeping ---------------------------------------------------------------------------

    def _wait_for_earlier_jobs(self) -> None:
        """Jobs of earlier Snakemake runs on this output must end before a new run may redo
        their shards; they never do on their own only when somebody scancel'ed them."""
        runs, _ = run_state.submitted(run_state.log_path(self.out))
        if left := slurm_jobs.queued(names=runs):
            self._note(f"waiting for generation jobs of earlier runs to end: {sorted(left)}")
            slurm_jobs.wait_until_gone(QUEUE_POLL_S, names=runs)

    def _finish(self, status: str, reason: str) -> None:
        run_state.update(self.out, status=status, reason=reason)
        self._note(f"{status}: {reason}")

    def _note(self, message: str) -> None:
        line = f"fishflow controller {time.strftime('%Y-%m-%d %H:%M:%S')}: {message}\n"
        log = run_state.log_path(self.out)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as handle:
            handle.write(line)
        print(line, end="", flush=True)


def snakemake_command(out: Path, profile: Path, configfiles: list[Path], extra: list[str]):
    # Slurm's own job logs go under the output rather than under the controller's cwd.
    return [
        SNAKEMAKE,
        "--profile",
        str(profile),
        "--configfile",
        *map(str, configfiles),
        "--slurm-logdir",
        str(Layout(out).slurm_logs()),
        *extra,
    ]


def submit(out: Path, command: list[str], cwd: Path, settings: JobSettings) -> str:
    """Submit the controller for the run writing `out`; return its Slurm job id."""
    out = Path(out).resolve()
    previous = run_state.load(out) or {}
    if (job := previous.get("job_id")) and slurm_jobs.queued(ids=[job]):
        raise FishflowError(
            f"{out}: its controller (Slurm job {job}) is still queued or running; see "
            f"`fishflow status {out}`, or stop it with `fishflow cancel {out}`"
        )
    if settings.stop_s <= REQUEUE_MARGIN_S:
        raise FishflowError(f"--stop-s {settings.stop_s}: must exceed {REQUEUE_MARGIN_S} s")
    if settings.stop_s >= settings.time_min * 60:
        raise FishflowError(f"--stop-s {settings.stop_s}: must be shorter than --time")
    executor = submitit.SlurmExecutor(
        folder=Layout(out).submitit_folder(), max_num_timeout=settings.max_requeues
    )
    executor.update_parameters(
        job_name=f"fishflow-controller-{out.name}",
        account=settings.account,
        partition=settings.partition,
        time=settings.time_min,
        cpus_per_task=settings.cpus,
        mem=f"{settings.mem_mb}M",
        signal_delay_s=settings.stop_s,
        stderr_to_stdout=True,
        additional_parameters={"requeue": True},
    )
    controller = Controller(out, command, cwd, drain_s=settings.stop_s - REQUEUE_MARGIN_S)
    job = executor.submit(controller)
    run_state.update(
        out,
        job_id=job.job_id,
        attempt=0,
        status="queued",
        reason=None,
        max_requeues=settings.max_requeues,
        command=command,
        cwd=str(cwd),
        log=str(run_state.log_path(out)),
        submitit_log=str(job.paths.stdout),
    )
    return job.job_id


def wait(out: Path, poll_s: float = QUEUE_POLL_S) -> dict:
    """Block until the controller job has left the queue (requeues included); its record."""
    state = _record(out)
    slurm_jobs.wait_until_gone(poll_s, ids=[state["job_id"]])
    return run_state.load(out)


def cancel(out: Path, timeout_s: float = 120) -> list[str]:
    """Stop the controller, then any generation job still queued; return what was cancelled."""
    state = _record(out)
    job, log = state["job_id"], Path(state["log"])
    cancelled = []
    if (queue_state := slurm_jobs.queued(ids=[job]).get(job)) is not None:
        if queue_state == "RUNNING":
            # Snakemake's Ctrl-C first: it cancels its own jobs, and none is left waiting on
            # cancelled jobs (plugin 2.8.0 would wait for "CANCELLED by <uid>" forever).
            slurm_jobs.cancel([job], signal="INT")
            slurm_jobs.wait_until_gone(POLL_S, timeout_s, ids=[job])
        if slurm_jobs.queued(ids=[job]):
            slurm_jobs.cancel([job])
        cancelled.append(job)
    runs, _ = run_state.submitted(log)
    if generation := slurm_jobs.queued(names=runs):
        slurm_jobs.cancel(generation)
        cancelled += sorted(generation)
    slurm_jobs.wait_until_gone(POLL_S, timeout_s, ids=cancelled)
    if run_state.load(out).get("status") != "cancelled":
        run_state.update(out, status="cancelled", reason="fishflow cancel")
    return cancelled


def _record(out: Path) -> dict:
    state = run_state.load(out)
    if not state or "job_id" not in state:
        raise FishflowError(
            f"{run_state.state_path(out)}: no controller record (was the run started with "
            "`fishflow submit`?)"
        )
    return state
