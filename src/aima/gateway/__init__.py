"""The OpenAI-compatible front door. Today: the route table (model name -> ready instances) kept
from controller events, and ``GET /v1/models``. Proxying, balancing and load-on-demand come next."""
