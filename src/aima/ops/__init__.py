"""Operations: the only place where behaviour lives. See ``registry`` for how they are declared."""
