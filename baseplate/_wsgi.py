"""What Baseplate's WSGI pieces tell each other through the WSGI environ."""

from __future__ import annotations

#: The environ key under which an application (the Pyramid integration) puts
#: an exception it has logged before letting it reach the WSGI server, so
#: that ``baseplate.server.wsgi`` does not log it a second time.
LOGGED_EXCEPTION_KEY = "baseplate.logged_exception"
