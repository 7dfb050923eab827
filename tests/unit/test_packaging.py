"""A plain (non-editable) install of fishflow validates configs and plans: the schema ships as
package data, nothing is read from the repository."""

import shutil
import subprocess
import sys

import yaml

from tests.helpers import REPO, make_config

CHECK = """
import json, sys
import fishflow
from fishflow.planning.config import load_config
from fishflow.planning.plan import Plan
assert fishflow.__file__.startswith(sys.argv[1]), fishflow.__file__
plan = Plan(load_config(sys.argv[2]))
print(json.dumps({"batches": plan.batch_keys(), "items": plan.item_count()}))
"""


def test_a_wheel_install_validates_and_plans(tmp_path):
    # A copy of the project: setuptools builds in the source tree.
    source = tmp_path / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    shutil.copy(REPO / "pyproject.toml", source)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
        + ["--target", str(target), str(source)],
        check=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert (target / "fishflow" / "planning" / "config.schema.yaml").is_file()
    assert (target / "fishflow" / "review" / "browse.html").is_file()
    config = make_config(tmp_path / "project", {"en": [{"id": "a", "text": "Hello there."}]})
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-c", CHECK, str(target), str(config_file)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # not the repository: nothing found beside it
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert '"items": 2' in done.stdout and '"b00000"' in done.stdout
