"""Django management commands of tasklib."""
