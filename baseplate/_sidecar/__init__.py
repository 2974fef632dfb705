"""The parts every sidecar shares: reading a queue, batching, posting, the command line.

A :term:`sidecar` is a small process next to the application that forwards
what the application put on a POSIX message queue to a remote server. Each
one differs only in its server (where a batch goes and how it is encoded)
and in its configuration; the rest lives here, once, so that every sidecar
batches, retries, counts, logs and stops alike:

* :mod:`baseplate._sidecar.batching`: messages into framed batches of bounded
  size and age, with no IO;
* :mod:`baseplate._sidecar.posting`: one batch to one URL, with retries,
  metrics and logs;
* :mod:`baseplate._sidecar.loop`: the reader and sender threads between the
  queue and the poster;
* :mod:`baseplate._sidecar.command`: the INI section, the queue and the
  signals of ``python -m``.

The package is private: the trace publisher
(:mod:`baseplate.diagnostics.tracing.publisher`) offers and documents these
parts, and the event publisher (:mod:`baseplate.events.publisher`) uses them.
"""
