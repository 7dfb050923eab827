"""A real single-node Slurm cluster, with accounting, for the test suite.

Debian 12's Slurm runs on this host as root: munged, a private MariaDB on 127.0.0.1, slurmdbd,
slurmctld and slurmd, one node with two fake A100 GPUs. State, logs and PID files live in
$FISHFLOW_SLURM_DIR (default /tmp/fishflow-slurm). The configs live in /etc/slurm because
slurmd resets SLURM_CONF inside jobs to that default path: an `srun` inside a batch job would not
find configs kept anywhere else.

    python -m tests.tooling.slurm_cluster up|down|status|env    (from the repository root)
"""

import argparse
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PARTITION = "gpu"
ACCOUNT = "fishflow-test"
CLUSTER = "fishflow"
GPU_TYPE = "a100"
GPUS = 2
DB_PORT = 3307  # off MariaDB's default port, so a system database can coexist
DB_USER = "slurm"
DB_PASSWORD = "fishflow-test"  # the server listens on 127.0.0.1 only
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge", "slurmdbd", "mariadb-server")
BINARIES = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sacct")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
ETC = Path("/etc/slurm")
MARKER = "# Written by tests/tooling/slurm_cluster.py (fishflow test cluster).\n"
MUNGE_RUN_DIR = Path("/run/munge")
POLICY_RC = Path("/usr/sbin/policy-rc.d")
NEEDS_ROOT = (
    "the Slurm test cluster is not running (or its configs are out of date) and starting it "
    "needs root, but uid is {uid}; run `sudo .venv/bin/python -m tests.tooling.slurm_cluster up`"
)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
UP_NODE_STATES = {"idle", "mix", "alloc", "comp"}


class SlurmClusterError(RuntimeError):
    """The test cluster could not be brought up, checked or stopped."""


@dataclass(frozen=True)
class ClusterInfo:
    partition: str
    account: str
    node: str
    state_dir: Path
    gpus: int
    gpu_type: str


@dataclass(frozen=True)
class Daemon:
    name: str  # also the process name in /proc/PID/comm
    pid_file: Path
    log_file: Path

    def pid(self) -> int | None:
        """PID from our PID file, if that process is alive and is this daemon."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            proc_state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            return None
        # Zombies count as dead: PID 1 in our containers does not reap orphaned daemons.
        return pid if comm == self.name and proc_state not in "ZX" else None

    def log_tail(self, lines: int = 25) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(tail) or "(log is empty)"


def state_dir() -> Path:
    return Path(os.environ.get("FISHFLOW_SLURM_DIR", "/tmp/fishflow-slurm"))


def node_name() -> str:
    return socket.gethostname().split(".")[0]


def cluster_info() -> ClusterInfo:
    return ClusterInfo(PARTITION, ACCOUNT, node_name(), state_dir(), GPUS, GPU_TYPE)


SLURM_DAEMONS = ("slurmdbd", "slurmctld", "slurmd")


def daemons(state: Path) -> list[Daemon]:
    """All daemons, in start order. munged and mariadbd drop root, so they get their own dirs."""
    return [
        Daemon("munged", state / "munge" / "munged.pid", state / "munge" / "munged.log"),
        Daemon("mariadbd", state / "mysql" / "mariadbd.pid", state / "mysql" / "mariadbd.log"),
        *(Daemon(n, state / "run" / f"{n}.pid", state / "log" / f"{n}.log") for n in SLURM_DAEMONS),
    ]


# --- Public API -----------------------------------------------------------------------------


def cluster_available() -> tuple[bool, str]:
    """Whether ensure_cluster() can succeed here, and why (not)."""
    if not health_problems():
        return True, "the cluster is already running"
    if os.geteuid() != 0:
        return False, NEEDS_ROOT.format(uid=os.geteuid())
    missing = ", ".join(_missing_binaries())
    if not missing:
        return True, "Slurm is installed; the cluster can be started"
    if shutil.which("apt-get"):
        return True, f"{missing} missing; apt-get can install them"
    return False, f"{missing} missing and there is no apt-get to install them with"


def is_running() -> bool:
    return not health_problems()


def ensure_cluster() -> ClusterInfo:
    """Bring the cluster up, or just verify it when it is healthy and its configs are current."""
    if is_running() and not _stale_configs():
        return cluster_info()
    if os.geteuid() != 0:
        raise SlurmClusterError(NEEDS_ROOT.format(uid=os.geteuid()))
    if _missing_binaries():
        _install_packages()
    state = state_dir()
    _prepare_dirs(state)
    if stale := _stale_configs():
        _write_configs(stale)
        # Slurm daemons still running on the old configs must restart to read the new ones.
        _stop(d for d in daemons(state) if d.name in SLURM_DAEMONS)
    munged, mariadbd, slurmdbd, slurmctld, slurmd = daemons(state)
    _timed("munged", lambda: _start_munged(munged))
    _timed("mariadb", lambda: _start_mariadb(mariadbd, state))
    _timed("slurmdbd", lambda: _start_slurmdbd(slurmdbd))
    _timed("accounts", _add_accounts)
    _timed("slurmctld", lambda: _start_slurmctld(slurmctld))
    _timed("slurmd", lambda: _start_slurmd(slurmd))
    problems = health_problems()
    if problems:
        raise SlurmClusterError("cluster started but is unhealthy: " + "; ".join(problems))
    return cluster_info()


def stop_cluster() -> list[str]:
    """Stop the daemons we started (those with PID files), newest first; return their names."""
    return _stop(reversed(daemons(state_dir())))


def health_problems() -> list[str]:
    """What is wrong with the running cluster; empty when it is healthy."""
    # munged is judged by whether munge works: it may be a system munged that we share.
    problems = [f"{d.name} is not running" for d in daemons(state_dir())[1:] if d.pid() is None]
    if not _munge_works():
        problems.append("munge does not work")
    if problems:
        return problems  # the slurm commands below would only hang until their timeouts
    if not _slurmctld_up():
        problems.append("`scontrol ping` does not report slurmctld UP")
    if (state := _node_state()) not in UP_NODE_STATES:
        problems.append(f"node {node_name()} is {state!r}, not one of {sorted(UP_NODE_STATES)}")
    if not _has_association():
        problems.append(f"root has no association with account {ACCOUNT}")
    return problems


# --- Installation and configuration ---------------------------------------------------------


def _missing_binaries() -> list[str]:
    return [b for b in BINARIES if not shutil.which(b, path=SEARCH_PATH)]


def _install_packages() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _timed("apt-get update", lambda: _run(["apt-get", "update", "-q"], timeout=300, env=env))
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    with _no_service_starts():
        _timed("apt-get install", lambda: _run(install, timeout=900, env=env))


@contextmanager
def _no_service_starts() -> Iterator[None]:
    """Keep package scripts from starting system daemons that would hold our ports and sockets."""
    if POLICY_RC.exists():
        yield
        return
    POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
    POLICY_RC.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC.unlink()


def _slurmd_hardware() -> dict[str, str]:
    """The node's CPU layout and memory as `slurmd -C` reports them."""
    first_line = _run(["slurmd", "-C"]).stdout.splitlines()[0]
    fields = dict(item.split("=", 1) for item in first_line.split())
    return {k: v for k, v in fields.items() if k != "NodeName"}


def _prepare_dirs(state: Path) -> None:
    for sub in ("run", "log", "slurmctld", "slurmd", "dev"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    for path, user in (
        (state / "munge", "munge"),
        (state / "mysql", "mysql"),
        (MUNGE_RUN_DIR, "munge"),
    ):
        path.mkdir(parents=True, exist_ok=True)
        shutil.chown(path, user, user)
    for index in range(GPUS):
        device = state / "dev" / f"nvidia{index}"
        if not (device.exists() and stat.S_ISCHR(device.stat().st_mode)):
            device.unlink(missing_ok=True)
            # Slurm only sets CUDA_VISIBLE_DEVICES for character devices; /dev/null's numbers do.
            os.mknod(device, 0o644 | stat.S_IFCHR, os.makedev(1, 3))


def _stale_configs() -> dict[Path, str]:
    """The configs whose files differ from what this module writes, with their new text.

    Only root can read slurmdbd.conf; for anyone else it counts as current.
    """
    state, node = state_dir(), node_name()
    gres = f"NodeName={node} Name=gpu Type={GPU_TYPE} File={state}/dev/nvidia[0-{GPUS - 1}]\n"
    configs = {
        ETC / "slurm.conf": _slurm_conf(state, node, _slurmd_hardware()),
        ETC / "gres.conf": gres,
        ETC / "slurmdbd.conf": _slurmdbd_conf(state, node),
    }
    return {
        path: MARKER + body
        for path, body in configs.items()
        if not path.exists() or (os.access(path, os.R_OK) and path.read_text() != MARKER + body)
    }


def _write_configs(configs: dict[Path, str]) -> None:
    ETC.mkdir(parents=True, exist_ok=True)
    for path, text in configs.items():
        if path.exists() and not path.read_text().startswith(MARKER):
            raise SlurmClusterError(f"{path} exists and is not ours; refusing to overwrite it")
        path.write_text(text)
        path.chmod(0o600 if path.name == "slurmdbd.conf" else 0o644)  # slurmdbd insists on 0600


def _slurm_conf(state: Path, node: str, hardware: dict[str, str]) -> str:
    cpu_layout = " ".join(
        f"{key}={hardware[key]}"
        for key in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
    )
    memory = int(int(hardware["RealMemory"]) * 0.9)
    return f"""\
ClusterName={CLUSTER}
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={state}/slurmctld
SlurmdSpoolDir={state}/slurmd
SlurmctldPidFile={state}/run/slurmctld.pid
SlurmdPidFile={state}/run/slurmd.pid
SlurmctldLogFile={state}/log/slurmctld.log
SlurmdLogFile={state}/log/slurmd.log
# No cgroups in the test containers.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Schedule at once instead of batching submissions: tests wait on every job.
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
# Keep finished jobs visible to squeue/scontrol long enough for status polling.
MinJobAge=600
ReturnToService=2
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu
NodeName={node} NodeAddr=127.0.0.1 {cpu_layout} RealMemory={memory} \
Gres=gpu:{GPU_TYPE}:{GPUS} State=UNKNOWN
# Without DefMemPerCPU a job without --mem takes the whole node and jobs run one at a time.
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=1000
"""


def _slurmdbd_conf(state: Path, node: str) -> str:
    return f"""\
AuthType=auth/munge
DbdHost={node}
DbdAddr=127.0.0.1
SlurmUser=root
PidFile={state}/run/slurmdbd.pid
LogFile={state}/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={DB_PORT}
StorageUser={DB_USER}
StoragePass={DB_PASSWORD}
StorageLoc=slurm_acct_db
"""


# --- Daemons --------------------------------------------------------------------------------


def _start_munged(daemon: Daemon) -> None:
    if _munge_works():
        return  # a munged we did not start serves the default socket; share it
    _spawn(
        daemon,
        ["runuser", "-u", "munge", "--", "munged", "--force"]
        + [f"--pid-file={daemon.pid_file}", f"--log-file={daemon.log_file}"],
    )
    _wait(_munge_works, "munge to authenticate", daemon)


def _start_mariadb(daemon: Daemon, state: Path) -> None:
    data, sock = state / "mysql" / "data", state / "mysql" / "mysqld.sock"
    if daemon.pid() is None:
        if not (data / "mysql").is_dir():
            _run(
                ["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={data}"]
                + ["--auth-root-authentication-method=socket", "--skip-test-db"],
                timeout=120,
            )
        _spawn(
            daemon,
            ["setsid", "--fork", "mariadbd", "--no-defaults", "--user=mysql"]
            + [f"--datadir={data}", f"--socket={sock}", f"--pid-file={daemon.pid_file}"]
            + [f"--log-error={daemon.log_file}", "--bind-address=127.0.0.1", f"--port={DB_PORT}"]
            + ["--skip-name-resolve"],
        )
        _wait(lambda: _succeeds(["mariadb-admin", f"--socket={sock}", "ping"]), "mariadb", daemon)
    grant = (
        f"CREATE USER IF NOT EXISTS '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}';"
        f"GRANT ALL ON slurm_acct_db.* TO '{DB_USER}'@'127.0.0.1';"
    )
    _run(["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root", "-e", grant])


def _start_slurmdbd(daemon: Daemon) -> None:
    if daemon.pid() is None:
        _spawn(daemon, ["slurmdbd"])
    _wait(lambda: _succeeds(["sacctmgr", "-n", "list", "cluster"]), "slurmdbd", daemon)


def _add_accounts() -> None:
    if _has_association():
        return
    if CLUSTER not in _run(["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"]).stdout:
        _run(["sacctmgr", "-i", "add", "cluster", CLUSTER])
    _run(["sacctmgr", "-i", "add", "account", ACCOUNT, f"cluster={CLUSTER}"], ok_text="Nothing new")
    _run(["sacctmgr", "-i", "add", "user", "root", f"account={ACCOUNT}", f"cluster={CLUSTER}"])


def _start_slurmctld(daemon: Daemon) -> None:
    if daemon.pid() is None:
        _spawn(daemon, ["slurmctld"])
    _wait(_slurmctld_up, "`scontrol ping` to report slurmctld UP", daemon)


def _start_slurmd(daemon: Daemon) -> None:
    if daemon.pid() is None:
        _spawn(daemon, ["slurmd"])
    what = f"`sinfo` to show node {node_name()} idle"  # or busy, if jobs survived a restart
    _wait(lambda: _node_state() in UP_NODE_STATES, what, daemon)


def _stop(candidates: Iterable[Daemon]) -> list[str]:
    stopped = []
    for daemon in candidates:
        pid = daemon.pid()
        if pid is not None:
            _terminate(daemon, pid)
            stopped.append(daemon.name)
        daemon.pid_file.unlink(missing_ok=True)
    return stopped


def _terminate(daemon: Daemon, pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    if _poll(lambda: daemon.pid() is None, STOP_TIMEOUT):
        return
    os.kill(pid, signal.SIGKILL)
    if not _poll(lambda: daemon.pid() is None, 5.0):
        raise SlurmClusterError(f"{daemon.name} (pid {pid}) survived SIGKILL")


# --- Probes ---------------------------------------------------------------------------------


def _munge_works() -> bool:
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=5, check=True).stdout
        subprocess.run(["unmunge"], input=cred, capture_output=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _slurmctld_up() -> bool:
    result = _probe(["scontrol", "ping"])
    return result is not None and "is UP" in result


def _node_state() -> str | None:
    result = _probe(["sinfo", "-h", "-N", "-n", node_name(), "-o", "%t"])
    return result.strip() if result is not None else None


def _has_association() -> bool:
    query = ["sacctmgr", "-n", "-P", "list", "assoc", f"cluster={CLUSTER}", f"account={ACCOUNT}"]
    result = _probe([*query, "user=root", "format=user"])
    return result is not None and "root" in result.split()


def _probe(cmd: list[str]) -> str | None:
    """stdout of a quick query command, or None when it fails."""
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


def _succeeds(cmd: list[str]) -> bool:
    return _probe(cmd) is not None


# --- Helpers --------------------------------------------------------------------------------


def _run(
    cmd: list[str], timeout: float = 30, env: dict[str, str] | None = None, ok_text: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run a command; fail with its output unless it succeeds (or prints `ok_text`)."""
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise SlurmClusterError(f"`{' '.join(cmd)}` timed out after {timeout:.0f} s") from exc
    output = result.stdout + result.stderr
    if result.returncode != 0 and not (ok_text and ok_text in output):
        raise SlurmClusterError(f"`{' '.join(cmd)}` exited {result.returncode}:\n{output[-3000:]}")
    return result


def _spawn(daemon: Daemon, cmd: list[str]) -> None:
    """Run a command that forks `daemon` into the background, outside our session."""
    # The daemon inherits stderr: a pipe would keep us waiting for it to exit, a file does not.
    with tempfile.TemporaryFile() as stderr:
        try:
            result = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
                timeout=30,
            )
        except subprocess.TimeoutExpired as exc:
            raise SlurmClusterError(f"`{' '.join(cmd)}` did not return within 30 s") from exc
        if result.returncode != 0:
            stderr.seek(0)
            raise SlurmClusterError(
                f"`{' '.join(cmd)}` exited {result.returncode}: "
                f"{stderr.read().decode(errors='replace')}\n"
                f"tail of {daemon.log_file}:\n{daemon.log_tail()}"
            )


def _poll(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _wait(condition: Callable[[], bool], what: str, daemon: Daemon) -> None:
    """Wait for `condition`; fail early if the daemon died, and show its log either way."""
    start = time.monotonic()

    def done_or_dead() -> bool:
        # Give the daemon a moment to write its PID file before treating its absence as death.
        return condition() or (time.monotonic() - start > 3 and daemon.pid() is None)

    if _poll(done_or_dead, START_TIMEOUT) and condition():
        return
    status = "is not running" if daemon.pid() is None else "is running"
    raise SlurmClusterError(
        f"timed out or failed waiting for {what} ({daemon.name} {status}); "
        f"tail of {daemon.log_file}:\n{daemon.log_tail()}"
    )


def _timed(step: str, action: Callable[[], None]) -> None:
    start = time.monotonic()
    action()
    print(f"slurm_cluster: {step}: {time.monotonic() - start:.1f} s", file=sys.stderr)


# --- Command line ---------------------------------------------------------------------------


def _print_status() -> int:
    for daemon in daemons(state_dir()):
        pid = daemon.pid()
        print(f"{daemon.name:10} {f'pid {pid}' if pid else 'no live PID file'}")
    problems = health_problems()
    print("healthy" if not problems else "unhealthy: " + "; ".join(problems))
    return 0 if not problems else 1


def _print_env() -> None:
    info = cluster_info()
    print(f"export FISHFLOW_SLURM_PARTITION={info.partition}")
    print(f"export FISHFLOW_SLURM_ACCOUNT={info.account}")
    print(f"export FISHFLOW_SLURM_NODE={info.node}")
    print(f"export FISHFLOW_SLURM_GPUS={info.gpus}")
    print(f"export FISHFLOW_SLURM_DIR={info.state_dir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.tooling.slurm_cluster")
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    command = parser.parse_args(argv).command
    try:
        if command == "up":
            start = time.monotonic()
            info = ensure_cluster()
            print(f"up in {time.monotonic() - start:.1f} s: {info}")
        elif command == "down":
            stopped = stop_cluster()
            print("stopped: " + (", ".join(stopped) or "nothing was running"))
        elif command == "status":
            return _print_status()
        else:
            _print_env()
    except SlurmClusterError as exc:
        print(f"slurm_cluster {command} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
