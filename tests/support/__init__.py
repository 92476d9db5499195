"""Helpers shared by more than one test folder, and by the benchmarks in bench/ (which import only from here).

- ``daemon``: a real aima daemon process on a free port with its own AIMA_HOME (``Daemon``), and the small
  helpers around it (``PY``, ``AIMA``, ``free_port``, ``echo_cmd``, ``wait_until``, ``ApiError``).
- ``docker``: a real Docker (or Podman) API for the docker runtime's tests, and the test image built with
  no registry (``get_kit``, ``DockerKit``, the ``docker_kit`` fixture).
- ``ray``: a real 3-node Ray cluster on 127.0.0.2-4 for the ray runtime's tests, started once per session on
  first use (``ray_cluster``, the ``ray_cluster`` fixture of tests/conftest.py, ``RayKit``, ``lose_node``).
- ``modelstore``: model files written by the tests and local servers standing in for the model hubs
  (importing it points the hub clients' caches at a temporary folder).
- ``tiny``: ``tiny_gguf``, a 0.4 MB random-weight GGUF that llama.cpp loads in well under a second.
- ``echo_catalog``: ``write_echo_catalog``, a catalog overlay that runs the echo engine from a local file.

This package imports none of its modules: import each one where it is needed.
"""
