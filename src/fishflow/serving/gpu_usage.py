"""How busy a generation job kept its GPUs: NVML samples of utilisation and memory.

The launcher samples the GPUs its replicas were given (CUDA_VISIBLE_DEVICES) once a second
while they serve, and writes the summary into its record (the job's servers record). Where no
GPU can be read (CPU servers, no NVIDIA driver, nvidia-ml-py missing) the summary says "not
measured" and why: nothing is estimated in its place.

NVML's utilisation is the fraction of the last sample period in which at least one kernel ran
on the GPU; its mean over the serving window is the job's "busy fraction". A GPU 35 % busy
while requests were queued is waiting for its servers (one request at a time each): more
replicas per GPU (`server.servers_per_gpu`) can fill it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

INTERVAL_S = 1.0
MIB = 2**20
# Below this the report suggests more replicas per GPU (where memory allows).
UNDERUSED_BELOW = 0.6


def not_measured(reason: str) -> dict:
    return {"measured": False, "reason": reason}


def _load_nvml():
    """The pynvml module (from nvidia-ml-py), initialised; raise RuntimeError with the reason."""
    try:
        import pynvml
    except ImportError:
        raise RuntimeError("nvidia-ml-py (pynvml) is not installed") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise RuntimeError(f"NVML unavailable ({exc})") from None
    return pynvml


def _handles(nvml, visible: str | None) -> list[tuple[str, object]]:
    """(label, handle) of each GPU in CUDA_VISIBLE_DEVICES (indices or UUIDs), else of all."""
    entries = [entry.strip() for entry in (visible or "").split(",") if entry.strip()]
    if not entries:
        entries = [str(index) for index in range(nvml.nvmlDeviceGetCount())]
    handles = []
    for entry in entries:
        if entry.isdigit():
            handles.append((entry, nvml.nvmlDeviceGetHandleByIndex(int(entry))))
        else:
            handles.append((entry, nvml.nvmlDeviceGetHandleByUUID(entry)))
    return handles


@dataclass
class _GpuSeries:
    label: str
    name: str
    memory_total_mib: float
    utilisation: list[float] = field(default_factory=list)
    memory_used_mib: list[float] = field(default_factory=list)
    # Peak GPU memory of each process seen on this GPU, by pid.
    process_peak_mib: dict[int, float] = field(default_factory=dict)


class GpuSampler:
    """Samples in a daemon thread from start() to stop(); summary() is safe at any time.

    Samples taken before `serving()` is called (model load, warm-up, compile) count towards
    memory peaks but not towards the busy fraction: start-up is reported on its own.
    """

    def __init__(self, visible: str | None, interval_s: float = INTERVAL_S, load=_load_nvml):
        self.interval_s = interval_s
        self.reason: str | None = None
        self.series: list[_GpuSeries] = []
        self.serving_from = 0  # index of the first serving sample
        self._serving = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self.nvml = load()
            self.handles = _handles(self.nvml, visible)
        except RuntimeError as exc:
            self.nvml, self.handles, self.reason = None, [], str(exc)
            return
        if not self.handles:
            self.reason = "no GPU visible to the job"
            return
        for label, handle in self.handles:
            memory = self.nvml.nvmlDeviceGetMemoryInfo(handle)
            name = self.nvml.nvmlDeviceGetName(handle)
            self.series.append(_GpuSeries(label, _text(name), memory.total / MIB))

    @property
    def measuring(self) -> bool:
        return self.reason is None

    def start(self) -> None:
        if self.measuring:
            self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
            self._thread.start()

    def serving(self) -> None:
        """The first replica serves: from here on, samples count towards the busy fraction."""
        with self._lock:
            if not self._serving:
                self._serving = True
                self.serving_from = len(self.series[0].utilisation) if self.series else 0

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(self.interval_s * 5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001 - a lost GPU must not stop the launcher
                with self._lock:
                    self.reason = f"sampling failed: {type(exc).__name__}: {exc}"
                return

    def sample(self) -> None:
        readings = []
        for series, (_, handle) in zip(self.series, self.handles, strict=True):
            rates = self.nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = self.nvml.nvmlDeviceGetMemoryInfo(handle)
            processes = self.nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            readings.append((series, rates.gpu / 100, memory.used / MIB, processes))
        with self._lock:
            for series, busy, used, processes in readings:
                series.utilisation.append(busy)
                series.memory_used_mib.append(used)
                for process in processes:
                    mib = (process.usedGpuMemory or 0) / MIB
                    peak = series.process_peak_mib.get(process.pid, 0.0)
                    series.process_peak_mib[process.pid] = max(peak, mib)

    def summary(self, pids: dict[int, str] | None = None) -> dict:
        """The record's `gpu` entry; `pids` names the replicas' server processes by pid."""
        with self._lock:
            if not self.measuring and not any(s.utilisation for s in self.series):
                return not_measured(self.reason or "not sampled")
            gpus = [_series_summary(s, self.serving_from, pids or {}) for s in self.series]
            busy = [g["busy_fraction"] for g in gpus if g["busy_fraction"] is not None]
            return {
                "measured": True,
                "interval_s": self.interval_s,
                "busy_fraction": round(sum(busy) / len(busy), 3) if busy else None,
                "gpus": gpus,
                **({"error": self.reason} if self.reason else {}),
            }


def _series_summary(series: _GpuSeries, serving_from: int, pids: dict[int, str]) -> dict:
    serving = series.utilisation[serving_from:]
    replicas = {
        pids[pid]: round(mib, 1) for pid, mib in series.process_peak_mib.items() if pid in pids
    }
    return {
        "gpu": series.label,
        "name": series.name,
        "samples": len(series.utilisation),
        "serving_samples": len(serving),
        "busy_fraction": round(sum(serving) / len(serving), 3) if serving else None,
        "memory_total_mib": round(series.memory_total_mib, 1),
        "memory_peak_mib": round(max(series.memory_used_mib), 1) if serving else None,
        # Keyed by replica tag; empty where NVML shows other pids (a container's pid namespace).
        "replica_memory_peak_mib": replicas,
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def advice(gpu: dict) -> str:
    """One line for the report: the busy fraction and what to do about it."""
    if not gpu.get("measured"):
        return f"GPU use not measured: {gpu.get('reason', 'no record')}"
    busy = gpu.get("busy_fraction")
    if busy is None:
        return "GPU use not measured: no sample while the servers were serving"
    text = f"GPU {busy:.0%} busy"
    if busy >= UNDERUSED_BELOW:
        return text
    room = _memory_room(gpu["gpus"])
    if room is None:
        return f"{text}: add replicas (server.servers_per_gpu) if GPU memory allows"
    if room >= 1:
        return f"{text}: add replicas (server.servers_per_gpu; memory for about {room} more)"
    return f"{text}, and GPU memory is full: more replicas would not fit"


def _memory_room(gpus: Iterable[dict]) -> int | None:
    """How many more replicas the fullest GPU could hold, from its replicas' peak memory."""
    rooms = []
    for gpu in gpus:
        per_replica = list(gpu["replica_memory_peak_mib"].values())
        if not per_replica or gpu["memory_peak_mib"] is None:
            return None
        free = gpu["memory_total_mib"] - gpu["memory_peak_mib"]
        rooms.append(int(free // max(per_replica)))
    return min(rooms) if rooms else None


def sampler_for(device: str, visible: str | None, factory: Callable = GpuSampler) -> GpuSampler:
    """A sampler for servers on `device` ("cpu" or a CUDA device): never NVML for CPU servers."""
    if device == "cpu":
        return factory(visible, load=_cpu_servers)
    return factory(visible)


def _cpu_servers():
    raise RuntimeError("the servers run on CPU")
