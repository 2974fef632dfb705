"""Bad settings stop ``baseplate-serve`` at start-up, with one line naming the key.

Each of these used to be accepted: the tracing numbers made every request
fail once the first one built the batch processor, and the queue name was
reported as created just before the system refused it.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.server import child_environ, command, write

APP = """
from baseplate import tracing_client_from_config
from baseplate.core import Baseplate


def make_app(app_config):
    baseplate = Baseplate()
    baseplate.configure_tracing(tracing_client_from_config(app_config))

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app
"""

INI = """
[server:main]
factory = baseplate.server.wsgi

[app:main]
factory = tracedapp:make_app
tracing.service_name = svc
{setting}
"""


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("tracing.max_span_queue_size = 0", "tracing.max_span_queue_size"),
        ("tracing.max_span_queue_size = -5", "tracing.max_span_queue_size"),
        ("tracing.span_batch_interval = 0 seconds", "tracing.span_batch_interval"),
        ("tracing.queue_name = a/b", "tracing.queue_name"),
        (f"tracing.queue_name = {'q' * 300}", "tracing.queue_name"),
    ],
)
def test_bad_tracing_settings_stop_the_server_at_start(tmp_path, setting, key):
    write(tmp_path / "tracedapp.py", APP)
    write(tmp_path / "app.ini", INI.format(setting=setting))
    done = subprocess.run(
        [command("baseplate-serve"), "app.ini", "--bind", "127.0.0.1:0"],
        cwd=tmp_path,
        env=child_environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"[app:main] {key}:" in lines[0]
    assert "created" not in lines[0]
