"""The ``TASKLIB`` setting: the TaskTracker's arguments, with Django's names for them.

Each key is a :class:`~tasklib.TaskTracker` parameter in capitals (``"BASE_URL"``,
``"RETENTION"``, ``"MAX_WORKERS"``...), with two that differ:

- ``"DATABASE"``: the alias of a Django database (``"default"``, the default) or,
  when it names no alias, a SQLite path or database URL as anywhere in tasklib.
  An alias means that database, SQLite or PostgreSQL, reached by tasklib through
  peewee on its own connection, in its own ``tasklib_*`` tables.
- ``"IS_ADMIN"``: a callable ``(user) -> bool`` on a Django user, or its dotted
  path; by default ``user.is_superuser or user.is_staff``. The administrators may
  read and cancel every task.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ...tracker import TaskTracker

__all__ = ["DEFAULT_DATABASE", "build_tracker", "database_alias", "database_target", "is_admin_check", "user_id"]

#: Where tasks live when ``TASKLIB`` names no ``"DATABASE"``: Django's default database.
DEFAULT_DATABASE = "default"

_SQLITE_ENGINES = ("django.db.backends.sqlite3",)
_POSTGRES_ENGINES = ("django.db.backends.postgresql", "django.contrib.gis.db.backends.postgis")
# The TaskTracker's own parameters, in the setting's capitals; these two are the app's.
_OWN_KEYS = {"DATABASE", "IS_ADMIN"}


def _setting() -> Mapping[str, Any]:
    value = getattr(settings, "TASKLIB", {})
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"settings.TASKLIB must be a dict, not {type(value).__name__}")
    return value


def _tracker_keys() -> set[str]:
    parameters = inspect.signature(TaskTracker).parameters
    return {name.upper() for name in parameters if name not in ("database", "is_admin")}


def database_alias() -> str | None:
    """The alias of the Django database holding tasklib's tables, or None when ``DATABASE`` names no alias."""
    target = _setting().get("DATABASE", DEFAULT_DATABASE)
    return target if isinstance(target, str) and target in settings.DATABASES else None


def database_target(alias: str, databases: Mapping[str, Mapping[str, Any]]) -> str:
    """The SQLite path or ``postgresql://`` URL of Django database ``alias``, for tasklib's own connection.

    Raises ImproperlyConfigured for an engine tasklib does not support, or for an
    in-memory SQLite database, which another connection cannot share.
    """
    config = databases[alias]
    engine = config.get("ENGINE", "")
    name = config.get("NAME")
    if engine in _SQLITE_ENGINES:
        path = str(name or "")
        if path in ("", ":memory:") or "mode=memory" in path:
            raise ImproperlyConfigured(
                f"DATABASES[{alias!r}] is an in-memory SQLite database, which tasklib's own connection "
                "cannot share: give it a file (for tests, its TEST NAME), or TASKLIB a path of its own"
            )
        return path
    if engine in _POSTGRES_ENGINES:
        user = quote(str(config.get("USER") or ""), safe="")
        password = quote(str(config.get("PASSWORD") or ""), safe="")
        credentials = f"{user}:{password}@" if password else f"{user}@" if user else ""
        host = str(config.get("HOST") or "")
        host = f"[{host}]" if ":" in host else quote(host, safe="")
        port = f":{config['PORT']}" if config.get("PORT") else ""
        # Only plain connection options (sslmode, connect_timeout...) carry over as URL parameters.
        options = {k: v for k, v in (config.get("OPTIONS") or {}).items() if isinstance(v, (str, int))}
        query = f"?{urlencode(options)}" if options else ""
        return f"postgresql://{credentials}{host}{port}/{quote(str(name or ''), safe='')}{query}"
    raise ImproperlyConfigured(
        f"tasklib cannot use DATABASES[{alias!r}] (ENGINE {engine!r}): it supports SQLite and PostgreSQL; "
        "set TASKLIB['DATABASE'] to a path or URL of its own"
    )


def user_id(user: Any) -> int:
    """The tasklib user id of a Django user: its primary key, which must be an int.

    Raises ImproperlyConfigured for a user model whose keys are not integers.
    """
    pk = user.pk
    if not isinstance(pk, int) or isinstance(pk, bool):
        raise ImproperlyConfigured(
            f"tasklib identifies users by integer ids; this user model's primary key is a {type(pk).__name__}"
        )
    return pk


def _default_is_admin(user: Any) -> bool:
    return bool(user.is_superuser or user.is_staff)


def is_admin_check() -> Callable[[Any], bool]:
    """``TASKLIB["IS_ADMIN"]`` as a callable on a Django user (imported when a dotted path).

    Raises ImproperlyConfigured when it is neither a callable nor an importable one.
    """
    check = _setting().get("IS_ADMIN", _default_is_admin)
    if isinstance(check, str):
        try:
            check = import_string(check)
        except ImportError as exc:
            raise ImproperlyConfigured(f"TASKLIB['IS_ADMIN']: cannot import {check!r}: {exc}") from exc
    if not callable(check):
        raise ImproperlyConfigured("TASKLIB['IS_ADMIN'] must be a callable(user) -> bool or its dotted path")
    result: Callable[[Any], bool] = check
    return result


def build_tracker() -> TaskTracker:
    """A new :class:`~tasklib.TaskTracker` as ``settings.TASKLIB`` describes it (starts no thread).

    Raises ImproperlyConfigured for an unknown key or a bad value, StoreError when
    the store cannot be opened.
    """
    config = dict(_setting())
    allowed = _tracker_keys() | _OWN_KEYS
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ImproperlyConfigured(
            f"unknown TASKLIB key(s) {', '.join(map(repr, unknown))}; the keys are {', '.join(sorted(allowed))}"
        )
    target = config.pop("DATABASE", DEFAULT_DATABASE)
    alias = database_alias()
    database = database_target(alias, settings.DATABASES) if alias is not None else target
    check = is_admin_check()
    config.pop("IS_ADMIN", None)
    # Django's own lookup of a user by id: None for an unknown or inactive user,
    # who is no administrator.
    users = ModelBackend()

    def is_admin(uid: int) -> bool:
        user = users.get_user(uid)
        return user is not None and bool(check(user))

    options = {key.lower(): value for key, value in config.items()}
    try:
        return TaskTracker(database, is_admin=is_admin, **options)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"settings.TASKLIB: {exc}") from exc
