"""A generation job refuses servers that do not hold its planned voice (no default-voice audio)."""

import json
import os
import socket
import time

import pytest

from fishflow.errors import ServerError
from fishflow.planning.plan import Plan
from fishflow.speaking.batch import ShardGenerator
from tests.helpers import make_config


@pytest.mark.parametrize("served", [None, "0" * 64])
def test_a_voice_missing_or_different_on_the_servers_is_refused(tmp_path, served):
    config = make_config(tmp_path, {"en": [{"id": "a", "text": "Hello there."}]})
    plan = Plan(config)
    shard = plan.shard("en", "alice", "00000")
    endpoint = tmp_path / "b00000.endpoint.json"
    voices = {"bob": plan.voices["bob"].sha256} | ({"alice": served} if served else {})
    info = {"host": socket.gethostname(), "pid": os.getpid(), "ready_at": time.time()}
    endpoint.write_text(json.dumps({**info, "voices": voices, "replicas": []}))
    generator = ShardGenerator(shard, plan.out, config)
    with pytest.raises(ServerError, match="'alice' is not verified on the servers.*default voice"):
        generator.connect(endpoint)
