"""The client against tiny stand-in HTTP servers: how answers are classified."""

import http.server
import threading

import pytest

from fishflow.errors import PermanentError, TransientError
from fishflow.serving.client import FishSpeechClient, with_retries
from fishflow.serving.replicas import free_loopback_port


class Canned(http.server.BaseHTTPRequestHandler):
    """Answers every request with the class's status, content type and body."""

    status, content_type, body = 200, "text/html", b"<html>proxy login</html>"

    def _answer(self):
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(status, content_type, body):
        handler = type(
            "H", (Canned,), {"status": status, "content_type": content_type, "body": body}
        )
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return FishSpeechClient(f"http://127.0.0.1:{server.server_address[1]}", timeout=5)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_html_health_answer_is_called_out(serve):
    client = serve(200, "text/html", b"<html>Welcome to the proxy</html>")
    with pytest.raises(PermanentError, match="answered HTML, not Fish Speech"):
        client.health()


def test_tts_must_return_a_wav(serve):
    client = serve(200, "text/html", b"<html>not audio</html>")
    with pytest.raises(PermanentError, match="not a WAV"):
        client.tts({"text": "x"})


@pytest.mark.parametrize(
    ("status", "kind"),
    [(500, TransientError), (503, TransientError), (422, PermanentError), (404, PermanentError)],
)
def test_status_classes(serve, status, kind):
    client = serve(status, "application/json", b'{"message": "nope"}')
    with pytest.raises(kind, match=f"HTTP {status}"):
        client.tts({"text": "x"})


def test_unauthorized_health_names_the_api_key(serve):
    client = serve(401, "application/json", b'{"statusCode": 401}')
    with pytest.raises(PermanentError, match="API key"):
        client.health()


def test_connection_refused_is_transient_and_retried():
    client = FishSpeechClient(f"http://127.0.0.1:{free_loopback_port()}", timeout=2)
    seen = []
    with pytest.raises(TransientError, match="ConnectionError"):
        with_retries(
            lambda: client.tts({"text": "x"}),
            retries=2,
            backoff_s=0.01,
            on_retry=lambda attempt, exc: seen.append(attempt),
        )
    assert seen == [1, 2]


def test_proxy_variables_are_ignored(serve, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    client = serve(200, "application/json", b'{"status": "ok"}')
    client.health()


def test_with_retries_counts_attempts():
    calls = iter([TransientError("a"), TransientError("b"), b"RIFF"])

    def flaky():
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert with_retries(flaky, retries=3, backoff_s=0) == (b"RIFF", 3)


def test_a_streamed_answer_must_be_audio(serve):
    client = serve(200, "text/html", b"<html>proxy login</html>")
    with pytest.raises(PermanentError, match="not audio"):
        client.tts_streamed({"text": "x"})
