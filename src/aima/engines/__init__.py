"""Small in-package engines: adapters where no OpenAI-compatible server exists, and ``echo``."""
