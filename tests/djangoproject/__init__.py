"""A small Django project for the tests of tasklib.contrib.django (settings, urls, a host view)."""
