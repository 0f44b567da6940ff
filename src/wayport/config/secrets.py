"""Secrets for the configuration: from the environment, or from files by the ``_FILE``
convention (Docker and Kubernetes secrets mount files, not variables)::

    # WAYPORT_API_KEY_FILE=/run/secrets/wayport_api_key  (and no WAYPORT_API_KEY)
    env = SecretEnv(os.environ)
    env["WAYPORT_API_KEY"]       # the file's content, without its trailing newline

Wherever a variable is read — ``${OPENAI_API_KEY}`` in ``wayport.yaml``, ``WAYPORT_API_KEY``,
``WAYPORT_ENCRYPTION_KEYS`` — ``NAME_FILE`` may name a file holding the value instead. Setting
both is refused as ambiguous. Every value read from a file, and every variable whose name says
it is a credential (``…KEY…``, ``…TOKEN…``, ``…SECRET…``, ``…PASSWORD…``), is remembered in
:attr:`SecretEnv.secrets` so the loader can register it for redaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from wayport.core.errors import ConfigError

__all__ = ["FILE_SUFFIX", "SecretEnv", "looks_secret"]

FILE_SUFFIX = "_FILE"
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE", re.I)
_MAX_SECRET_FILE = 64 * 1024


def looks_secret(name: str) -> bool:
    """True when a variable's name says it holds a credential."""
    return _SECRET_NAME.search(name) is not None


class SecretEnv(Mapping[str, str]):
    """``env`` plus ``NAME`` read from the file ``NAME_FILE`` names, read once each."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self._files: dict[str, str] = {}
        self.secrets: set[str] = set()  #: credential values read so far

    def __getitem__(self, name: str) -> str:
        value = self._env.get(name)
        file = self._env.get(name + FILE_SUFFIX) if not name.endswith(FILE_SUFFIX) else None
        if value and file:  # an empty variable counts as unset, as in ${NAME:-default}
            raise ConfigError(f"both {name} and {name}{FILE_SUFFIX} are set: set one of them")
        if file:
            value = self._read(name, file)
            self.secrets.add(value)
        if value is None:
            raise KeyError(name)
        if looks_secret(name):
            self.secrets.add(value)
        return value

    def _read(self, name: str, file: str) -> str:
        if name in self._files:
            return self._files[name]
        path = Path(file).expanduser()
        try:
            if path.stat().st_size > _MAX_SECRET_FILE:
                raise ConfigError(f"{name}{FILE_SUFFIX}: {path} is too large for a secret")
            # the message never quotes the content: it is the secret
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise ConfigError(f"{name}{FILE_SUFFIX}: cannot read {path}: {reason}") from None
        value = text.rstrip("\r\n")
        self._files[name] = value
        return value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name in self._env or bool(self._env.get(name + FILE_SUFFIX))

    def __iter__(self) -> Iterator[str]:
        names = set(self._env)
        names.update(n[: -len(FILE_SUFFIX)] for n in self._env if n.endswith(FILE_SUFFIX))
        return iter(names)

    def __len__(self) -> int:
        return sum(1 for _ in self)
