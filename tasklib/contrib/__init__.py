"""Integrations of tasklib with frameworks, each imported only by hosts that use it."""
