"""aima: manage AI inference on the machines a team already has."""

__version__ = "0.1.0"
