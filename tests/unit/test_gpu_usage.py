"""GPU use on record: the NVML sampler where no GPU can be read, its summary, and the report."""

import sys
from types import SimpleNamespace

import pytest

from fishflow.report.render import gpu_table
from fishflow.serving.gpu_usage import GpuSampler, advice, sampler_for


def test_without_nvidia_ml_py_gpu_use_is_not_measured(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    sampler = sampler_for("cuda", "0")
    sampler.start()
    sampler.stop()
    assert sampler.summary() == {
        "measured": False,
        "reason": "nvidia-ml-py (pynvml) is not installed",
    }


def test_without_a_gpu_nvml_says_why_and_nothing_is_measured():
    """The real code path on a machine without an NVIDIA driver (this one)."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pytest.skip("this machine has a GPU")
    summary = sampler_for("cuda", None).summary()
    assert summary["measured"] is False
    assert summary["reason"].startswith("NVML unavailable (")


def test_servers_on_cpu_are_not_sampled():
    assert sampler_for("cpu", "0").summary() == {
        "measured": False,
        "reason": "the servers run on CPU",
    }


class FakeNvml:
    """Two readings of one 1000 MiB GPU holding the processes 11 and 12 (and 99, not ours)."""

    def __init__(self):
        self.readings = iter([(20, 300, {11: 100, 99: 50}), (60, 500, {11: 200, 12: 150})])

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetName(self, handle):
        return b"Test GPU"

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(total=1000 * 2**20, used=self.used * 2**20)

    def nvmlDeviceGetUtilizationRates(self, handle):
        busy, self.used, self.processes = next(self.readings)
        return SimpleNamespace(gpu=busy)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=p, usedGpuMemory=m * 2**20) for p, m in self.processes.items()]

    used = 0


def test_busy_fraction_counts_serving_samples_and_memory_is_per_replica():
    sampler = GpuSampler(None, load=FakeNvml)
    sampler.sample()  # start-up: memory counts, busy time does not
    sampler.serving()
    sampler.sample()
    summary = sampler.summary({11: "r0", 12: "r1"})
    (gpu,) = summary["gpus"]
    assert summary["measured"] is True and summary["busy_fraction"] == 0.6
    assert (gpu["samples"], gpu["serving_samples"]) == (2, 1)
    assert gpu["memory_peak_mib"] == 500 and gpu["memory_total_mib"] == 1000
    assert gpu["replica_memory_peak_mib"] == {"r0": 200, "r1": 150}
    assert advice(summary) == "GPU 60% busy"


MEASURED = {
    "measured": True,
    "interval_s": 1.0,
    "busy_fraction": 0.35,
    "gpus": [
        {
            "gpu": "0",
            "name": "NVIDIA H200",
            "samples": 100,
            "serving_samples": 90,
            "busy_fraction": 0.35,
            "memory_total_mib": 143000.0,
            "memory_peak_mib": 9000.0,
            "replica_memory_peak_mib": {"r0": 4000.0, "r1": 4200.0},
        }
    ],
}


def job(gpu: dict) -> dict:
    return {
        "batch": "b00000",
        "host": "node1",
        "slurm_job_id": "42",
        "device": "cuda",
        "replicas": 2,
        "gpu": gpu,
        "advice": advice(gpu),
    }


def test_the_report_shows_busy_fraction_memory_and_advice():
    html = gpu_table([job(MEASURED)])
    assert '<td class="l">35%</td>' in html
    assert "peak 9000 of 143000 MiB (r0: 4000, r1: 4200)" in html
    assert "GPU 35% busy: add replicas (server.servers_per_gpu; memory for about 31 more)" in html


def test_the_report_says_not_measured_without_gpu_figures():
    cpu = {"measured": False, "reason": "the servers run on CPU"}
    html = gpu_table([job(cpu), job(cpu)])
    assert html == (
        '<p id="gpu">GPU use not measured in any of the 2 generation job(s): '
        "the servers run on CPU.</p>"
    )
    # Beside a job that measured, one that did not says so in its own row.
    html = gpu_table([job(MEASURED), job(cpu)])
    assert html.count("not measured") == 3 + 1  # GPUs, busy, memory; and the advice
    assert "GPU use not measured: the servers run on CPU" in html
