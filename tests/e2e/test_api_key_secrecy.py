"""A real workflow on the demo backend: while its servers run, no process's command line (world
readable in /proc/<pid>/cmdline) holds a server's API key, and no file of the run keeps one (the
job holds its servers' key in memory only). The real servers' runs are watched the same way
(tests/fishspeech/)."""

from tests.key_secrecy import run_watching_keys
from tests.workflow_runner import assert_ok


def test_no_command_line_shows_a_server_key_while_servers_run(project):
    # Slow requests keep each batch's servers up for a few scans.
    project.config["server"]["demo"]["latency_s"] = 0.3
    project.config["server"]["replicas"] = 2
    result, watch = run_watching_keys(project, "fishflow.serving.demo_server", timeout=300)
    assert_ok(result)
    assert len(watch.keys) >= 2 and watch.scans >= 5 and watch.server_sightings >= 5, watch
    assert watch.files_with_keys == []
