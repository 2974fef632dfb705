"""``baseplate-script`` in a process patched by gevent first, as ``baseplate-serve``
patches its own: ``python -m tests.queue_consumer.gevent_script config.ini module:function``."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402 - after patching

from baseplate._cli import script  # noqa: E402 - after patching

if __name__ == "__main__":
    sys.exit(script())
