"""Live data end to end: writer -> ZooKeeper -> watcher -> file -> FileWatcher in a served app.

Every part is the real thing, as in production: the writer and the watcher
run as ``python -m`` processes, the application is served by
``baseplate-serve``, and one INI file configures the app and the watcher, as
the live-data documentation suggests.
"""

from __future__ import annotations

import json

from tests._helpers import wait_until
from tests.live_data.conftest import run_writer
from tests.server import http_get, write_files

APP = """
import json

from baseplate import config
from baseplate.file_watcher import FileWatcher


def make_app(app_config):
    cfg = config.parse_config(app_config, {"limits": {"path": config.String}})
    # Wait for the watcher's first copy at startup, as a service that needs the data would.
    limits = FileWatcher(cfg.limits.path, parser=json.load, timeout=30)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(limits.get_data()).encode()]

    return app
"""

INI = """
[app:main]
factory = limitsapp:make_app
limits.path = {dest}

[server:main]
factory = baseplate.server.wsgi

[live-data]
zookeeper.hosts = {hosts}
nodes.limits.source = {node}
nodes.limits.dest = {dest}
nodes.limits.mode = 0444
"""


def test_a_change_written_to_zookeeper_reaches_the_running_app(
    tmp_path, zk, root, zookeeper_server, start_watcher, servers
):
    node = f"{root}/limits"
    zk.create(node, json.dumps({"requests_per_second": 10}).encode())
    app_dir = write_files(
        tmp_path,
        {
            "limitsapp.py": APP,
            "app.ini": INI.format(
                hosts=zookeeper_server.hosts, node=node, dest=tmp_path / "limits.json"
            ),
        },
    )
    start_watcher(app_dir / "app.ini")
    server = servers.start("app.ini", "--bind", "127.0.0.1:0", cwd=app_dir)
    address = server.address()
    assert http_get(address, "/") == (200, '{"requests_per_second": 10}')

    (tmp_path / "input.json").write_text(json.dumps({"requests_per_second": 25}))
    assert run_writer(app_dir / "app.ini", tmp_path / "input.json", node).returncode == 0

    wait_until(
        lambda: http_get(address, "/") == (200, '{"requests_per_second": 25}'),
        "the app serving the new data",
    )
    assert server.stop() == 0
