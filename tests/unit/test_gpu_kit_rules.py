"""The GPU kit's rules for its series of phases: when to stop doubling replicas, and memory per
replica where NVML cannot name the servers' processes."""

from benchmarks.gpu_throughput import Budget, Phase, memory_per_replica, why_stop_doubling


def phase(replicas: int, rate: float, memory=None, total=None) -> Phase:
    results = {
        "audio_s_per_s": rate,
        "startup_wall_s": 10.0,
        "generation_s": 20.0,
        "gpu_memory_per_replica_mib": memory,
        "gpu_memory_total_mib": total,
    }
    return Phase(f"fishflow x{replicas}", replicas, results=results)


def test_doubling_goes_on_while_it_pays_and_fits():
    assert why_stop_doubling([phase(1, 1.0), phase(2, 1.5)], Budget(600)) is None


def test_a_doubling_that_gained_little_ends_the_series():
    reason = why_stop_doubling([phase(1, 1.0), phase(2, 1.05)], Budget(600))
    assert reason == "the last doubling gained 1.05x (< 1.10x)"


def test_twice_the_replicas_must_fit_in_gpu_memory():
    done = [phase(1, 1.0), phase(2, 1.5, memory=20_000, total=143_000)]
    assert why_stop_doubling(done, Budget(600)) is None
    done = [phase(1, 1.0), phase(4, 1.5, memory=20_000, total=143_000)]
    assert why_stop_doubling(done, Budget(600)) == "8 x 20000 MiB would not fit in 143000 MiB"


def test_the_next_phase_must_fit_the_time_left():
    # 1.5 x (2 x 10 s start-up + 20 s generation) = 60 s needed.
    assert why_stop_doubling([phase(1, 1.0)], Budget(50)).startswith("would not fit: about 60 s")


def test_memory_per_replica_by_process_else_the_gpu_peak_shared_out():
    gpu = {"gpus": [{"memory_peak_mib": 9000.0, "replica_memory_peak_mib": {"r0": 4100.0}}]}
    assert memory_per_replica(gpu, 2) == 4100.0
    gpu["gpus"][0]["replica_memory_peak_mib"] = {}
    assert memory_per_replica(gpu, 2) == 4500.0
    assert memory_per_replica({"measured": False, "reason": "the servers run on CPU"}, 2) is None
