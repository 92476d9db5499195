"""The OpenAI-compatible front door at ``/v1``, on the daemon's one port.

- ``routes``: the route table (model name, service name or catalog alias -> ready instances), kept
  from controller events; per service the last use and requests in flight (read for idle unload).
- ``router``: the lean ASGI routes (``Door`` checks API keys first, then serves ``/v1`` ahead of FastAPI),
  not-ready handling and load on demand (the reconciler starts the service; the request waits).
- ``proxy``: the pooled keep-alive HTTP/1.1 client to engines (streaming, cancellation).
- ``bodies``: the ``model`` of JSON, form and multipart bodies, rewritten to the served name and back.
- ``balancing``: least outstanding requests first. ``auth``: API keys. ``metrics``: ``/metrics``.
"""
