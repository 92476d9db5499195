"""The OpenAI-compatible front door at ``/v1``, on the daemon's one port.

- ``router``: the ``/v1`` routes the daemon's HTTP protocol (``server.http``) hands each request to:
  ``/v1/models``, relaying to the chosen engine (streaming, cancellation, retry on another replica),
  errors in OpenAI's shape. The instance is chosen, and a service loaded on demand, by
  ``controller.acquire`` (the route table is ``controller.routes``).
- ``proxy``: the pooled keep-alive HTTP/1.1 client to engines (streaming, cancellation).
- ``bodies``: the ``model`` of JSON, form and multipart bodies, rewritten to the served name and back.
- ``metrics``: ``/metrics`` (Prometheus), counting every request of the gateway and of the inference
  operations.
"""
