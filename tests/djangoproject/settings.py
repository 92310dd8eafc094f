"""Settings of the test project: SQLite as "default", and PostgreSQL as "pg" when the suite has one.

The SQLite file lives in $TASKLIB_TEST_DJANGO_DIR (the end-to-end test's own
directory for its server), else in a temporary directory removed at exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from urllib.parse import unquote, urlsplit

_directory = os.environ.get("TASKLIB_TEST_DJANGO_DIR")
if not _directory:
    _directory = tempfile.mkdtemp(prefix="tasklib-django-")
    atexit.register(shutil.rmtree, _directory, True)

SECRET_KEY = "tasklib-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
ROOT_URLCONF = "tests.djangoproject.urls"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, for tests only

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "tasklib.contrib.django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tests.djangoproject.host.HeaderUserMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "django.contrib.auth.backends.RemoteUserBackend",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(_directory, "project.db")},
}
_postgres = os.environ.get("TASKLIB_TEST_POSTGRES_URL")
if _postgres:
    _url = urlsplit(_postgres)
    DATABASES["pg"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(_url.path.lstrip("/")),
        "USER": unquote(_url.username or ""),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": _url.hostname or "",
        "PORT": str(_url.port or ""),
    }

TASKLIB = {"DATABASE": "default", "PROGRESS_INTERVAL": 0.05}
