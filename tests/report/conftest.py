import pytest
import yaml

from tests.helpers import REPO
from tests.workflow_runner import Project, assert_ok

BENCHMARK = REPO / "config" / "benchmark_fishspeech_60_en_v1.yaml"


def benchmark_config(out) -> dict:
    """The real en benchmark config, its relative paths made absolute (snakemake runs in a
    temporary folder) and its output redirected."""
    config = yaml.safe_load(BENCHMARK.read_text())
    config["output_dir"] = str(out)
    config["inputs"] = {lang: str(REPO / path) for lang, path in config["inputs"].items()}
    for voice in config["voices"].values():
        voice["audio"] = str(REPO / voice["audio"])
    return config


@pytest.fixture(scope="package")
def benchmark_run(tmp_path_factory):
    """One run of the en benchmark on the demo backend, shared by the tests that read it."""
    root = tmp_path_factory.mktemp("benchmark")
    project = Project(root=root, config=benchmark_config(root / "out"))
    # The config judges every item once: about 1 s of ASR each on 2 shared CPU cores (the
    # whole run took 6 min here with regenerations, which the config no longer makes).
    result = project.run(timeout=1500)
    assert_ok(result)
    return project
