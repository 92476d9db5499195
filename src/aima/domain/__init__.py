"""Pure types and rules of aima: no I/O, no imports from the rest of the project."""
