"""The controller's pure parts: its record, the log it reads job ids from (single jobs and job
arrays), its command line, and its refusal of settings that leave no time to stop."""

from pathlib import Path

import pytest

from fishflow import cli
from fishflow.cluster import controller, run_state, status
from fishflow.errors import FishflowError
from fishflow.planning.config import merged

LOG = """\
SLURM run ID: 1111-aaaa
Job 2c63 has been submitted with SLURM jobid 158 (log: /x/158.log).
fishflow controller 2026-11-22 04:41:15: requeued: time limit near (SIGUSR2)
SLURM run ID: 2222-bbbb
Job 9e93 has been submitted with SLURM jobid 161 (log: /x/161.log).
Submitted array job with Snakemake IDs 3,5,4 and SLURM job ID 162. The individual task IDs are 1-3.
"""


def test_runs_and_jobs_are_read_from_the_controller_log(tmp_path):
    log = tmp_path / "snakemake.log"
    assert run_state.submitted(log) == ([], [])
    log.write_text(LOG)
    assert run_state.submitted(log) == (
        ["1111-aaaa", "2222-bbbb"],
        ["158", "161", "162"],
    )


def test_record_updates_merge_and_a_torn_record_is_named(tmp_path):
    assert run_state.load(tmp_path) is None
    run_state.update(tmp_path, job_id="7", status="queued")
    assert run_state.update(tmp_path, status="running") == {"job_id": "7", "status": "running"}
    run_state.state_path(tmp_path).write_text("{")
    with pytest.raises(ValueError, match="controller.json: unreadable controller record"):
        run_state.load(tmp_path)


def test_command_sends_slurm_logs_under_the_output():
    command = controller.snakemake_command(
        Path("/o"), Path("/p"), [Path("/a.yaml"), Path("/b.yaml")], ["--snakefile", "S"]
    )
    assert command[1:] == [
        *("--profile", "/p", "--configfile", "/a.yaml", "/b.yaml"),
        *("--slurm-logdir", "/o/logs/slurm", "--snakefile", "S"),
    ]
    assert status.configfiles(command) == ["/a.yaml", "/b.yaml"]


@pytest.mark.parametrize(
    ("stop_s", "message"), [(20, "must exceed 20 s"), (60, "must be shorter than --time")]
)
def test_submit_refuses_a_stop_that_leaves_no_time(tmp_path, stop_s, message):
    settings = controller.JobSettings(account="a", partition="p", time_min=1, stop_s=stop_s)
    with pytest.raises(FishflowError, match=f"--stop-s {stop_s}: {message}"):
        controller.submit(tmp_path, ["snakemake"], tmp_path, settings)


def test_later_config_files_merge_into_the_first(tmp_path):
    (tmp_path / "a.yaml").write_text("output_dir: a\nserver: {backend: demo, retries: 1}\n")
    (tmp_path / "b.yaml").write_text("output_dir: b\nserver: {retries: 3}\n")
    with pytest.raises(FishflowError, match="config key"):  # inputs and voices are missing
        status.merged_config([str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")])
    config = merged({}, {"server": {"backend": "demo", "retries": 1}})
    config = merged(config, {"server": {"retries": 3}})
    assert config == {"server": {"backend": "demo", "retries": 3}}


def test_submit_without_account_names_flag_and_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FISHFLOW_SLURM_ACCOUNT", raising=False)
    assert cli.main(["submit", "--configfile", str(tmp_path / "c.yaml")]) == 2
    assert "give --account or set FISHFLOW_SLURM_ACCOUNT" in capsys.readouterr().err
