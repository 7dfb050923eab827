"""Shared pytest fixtures, and the split of the suite between two pytest-xdist workers."""

import importlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from xdist.scheduler import LoadScopeScheduling

from tests.helpers import skip_loudly
from tests.tooling.slurm_cluster import (
    ClusterInfo,
    cluster_available,
    ensure_cluster,
    is_running,
    stop_cluster,
)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[ClusterInfo]:
    """The real single-node Slurm test cluster; stopped at the end only if this session started it.

    Skips where the cluster cannot run here, but fails under CI=true: CI must run these tests.
    """
    available, reason = cluster_available()
    if not available:
        skip_loudly(f"REAL SLURM TEST CLUSTER UNAVAILABLE, Slurm tests not run: {reason}")
    started_here = not is_running()
    yield ensure_cluster()
    if started_here:
        stop_cluster()


@pytest.fixture(scope="session")
def hf_datasets(tmp_path_factory):
    """The real `datasets` package, offline, its caches in a temp folder (it reads these
    variables once, when first imported: no test may import it otherwise)."""
    home = tmp_path_factory.mktemp("hf")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(home))
        patch.setenv("HF_DATASETS_CACHE", str(home / "datasets"))
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        patch.setenv("HF_HUB_OFFLINE", "1")
        module = importlib.import_module("datasets")
        assert module.config.HF_DATASETS_OFFLINE and module.config.HF_HUB_OFFLINE
        assert Path(module.config.HF_DATASETS_CACHE).is_relative_to(home)
        yield module


class TwoGroups(LoadScopeScheduling):
    """The split of `make test` (`-n 2`) between its two pytest-xdist workers: the Slurm tests,
    which spend most of their time waiting on the scheduler's status polls, with the report tests
    (demo runs, no shared server: they fill the first worker's idle core, about 7 of the suite's
    minutes), and everything else, which keeps the CPU busy. Each group runs whole on one worker,
    in collection order, so session fixtures (the Slurm cluster, each real server) start once, as
    in a serial run; only the two groups overlap. (Not `--dist loadgroup` with marks: xdist 3.8
    renames node ids for it in a way pytest 9.2 ignores, and every test went its own way.)"""

    def _split_scope(self, nodeid: str) -> str:
        return "slurm+report" if nodeid.startswith(("tests/slurm/", "tests/report/")) else "main"


def pytest_xdist_make_scheduler(config: pytest.Config, log) -> TwoGroups:
    return TwoGroups(config, log)


@pytest.fixture(scope="session")
def speaker_embedding() -> Callable[[bytes], np.ndarray]:
    """Resemblyzer's GE2E speaker embedding (unit length) of WAV bytes. One encoder per session:
    its first embedding costs about 20 s (librosa and numba warm up), later ones milliseconds."""
    # Imported here: torch is a heavy import that most test sessions do not need.
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder("cpu", verbose=False)

    def embed(wav: bytes) -> np.ndarray:
        samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
        return encoder.embed_utterance(preprocess_wav(samples, source_sr=rate))

    return embed
