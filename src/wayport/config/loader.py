"""Read ``wayport.yaml`` once: YAML -> ``${VAR}`` substitution -> pydantic -> cross-checks.

    config = load_config("wayport.yaml")          # or load_config() for ./wayport.yaml/defaults
    config = parse_config(text, env={"KEY": "…"})  # tests: no file, explicit environment

Secrets come from the environment (``${VAR}``) or from files: ``NAME_FILE=/run/secrets/x``
stands for ``NAME`` wherever a variable is read (:mod:`wayport.config.secrets`). Every secret
read is registered with :func:`wayport.core.redaction.register`, so it never reaches a log
line, trace or error body.

Every problem is reported with file, line and field path, all at once, as an
:class:`~wayport.config.issues.InvalidConfig`; a non-loopback bind without a key raises
:class:`~wayport.config.issues.UnsafeBind`. Both are ``ConfigError``: nothing half-starts.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path

import yaml
from pydantic import SecretStr, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from wayport.config import checks
from wayport.config.envsubst import SubstitutionError, substitute
from wayport.config.issues import (
    InvalidConfig,
    Issue,
    SourceMap,
    UnsafeBind,
    from_validation_error,
    raise_if_any,
)
from wayport.config.schema import BUILTIN_BACKENDS, WayportConfig
from wayport.config.secrets import SecretEnv
from wayport.core.errors import ConfigError
from wayport.core.redaction import register
from wayport.models.registry import BackendRegistry
from wayport.store import sealing

CONFIG_FILENAME = "wayport.yaml"
_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})  #: YAML 1.1 plain nulls


def find_config(path: str | Path | None = None, *, cwd: Path | None = None) -> Path | None:
    """The file to read: ``path`` (which must exist), else ``./wayport.yaml`` if present,
    else ``None`` (built-in defaults)."""
    if path is not None:
        found = Path(path).expanduser()
        if not found.is_file():
            raise ConfigError(f"{found}: no such configuration file")
        return found
    candidate = cwd / CONFIG_FILENAME if cwd is not None else Path(CONFIG_FILENAME)
    return candidate if candidate.is_file() else None


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    backend_kinds: Collection[str] | None = None,
    cwd: Path | None = None,
    bind_check: bool = True,
) -> WayportConfig:
    """Load and check the configuration; see :func:`parse_config` for the arguments.

    Without a file the embedded model serves ``smollm2`` with state under ``./.wayport``.
    """
    env = os.environ if env is None else env
    cwd = cwd or Path.cwd()
    file = find_config(path, cwd=cwd)
    if file is None:
        return parse_config(
            None, env=env, backend_kinds=backend_kinds, base_dir=cwd, bind_check=bind_check
        )
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read the configuration: {exc}") from exc
    return parse_config(
        text,
        name=str(path or file.name),
        env=env,
        backend_kinds=backend_kinds,
        base_dir=file.resolve().parent,
        bind_check=bind_check,
    )


def parse_config(
    text: str | None,
    *,
    name: str = CONFIG_FILENAME,
    env: Mapping[str, str],
    backend_kinds: Collection[str] | None = None,
    base_dir: Path | None = None,
    bind_check: bool = True,
) -> WayportConfig:
    """Validate a document (``None``: the built-in defaults).

    ``env`` supplies ``${VAR}`` values and ``WAYPORT_API_KEY``; ``backend_kinds`` are the
    registered kinds beyond the built-ins (default: the installed ``wayport.backends`` entry
    points); relative paths are taken relative to ``base_dir``. ``bind_check=False`` skips
    the bind-address check, for commands that load the configuration without listening.
    """
    env = env if isinstance(env, SecretEnv) else SecretEnv(env)  # NAME_FILE secrets too
    if text is None:
        data: object = {}
        source = SourceMap(file=None)
    else:
        data, source = read_yaml(text, name=name, env=env)
    if not isinstance(data, dict):
        raise InvalidConfig([f"{name}:1: the file must be a mapping (server:, deployments: …)"])
    try:
        config = WayportConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise InvalidConfig([source.format(i) for i in from_validation_error(exc, data)]) from None
    kinds = set(BUILTIN_BACKENDS)
    if any(d.backend not in kinds for d in config.deployments.values()):
        kinds.update(BackendRegistry.default().names() if backend_kinds is None else backend_kinds)
    issues = checks.reference_issues(config, backend_kinds=kinds) + checks.key_issues(config, env)
    raise_if_any(issues, source)
    if config.server.api_key is None and env.get(checks.KEY_ENV):
        server = config.server.model_copy(update={"api_key": SecretStr(env[checks.KEY_ENV])})
        config = config.model_copy(update={"server": server})
    config = _with_encryption_keys(config, env, source)
    # every credential read is masked in logs, traces and error bodies from now on
    register([*config.secrets(), *env.secrets])
    host = config.server.host
    if bind_check and config.server.api_key is None and not checks.is_loopback(host):
        raise UnsafeBind(
            source.format(Issue(path=("server", "host"), message=checks.unsafe_bind_message(host)))
        )
    return config


def _with_encryption_keys(
    config: WayportConfig, env: Mapping[str, str], source: SourceMap
) -> WayportConfig:
    """``store.encryption_keys``, else ``WAYPORT_ENCRYPTION_KEYS``: checked here, so a bad
    key stops the start with a message (that never quotes key material)."""
    keys = config.store.encryption_keys
    if keys is None and env.get(sealing.ENV):
        keys = SecretStr(env[sealing.ENV])
        store = config.store.model_copy(update={"encryption_keys": keys})
        config = config.model_copy(update={"store": store})
    if keys is not None:
        try:
            sealing.Sealer.parse(keys.get_secret_value())
        except ConfigError as exc:
            issue = Issue(path=("store", "encryption_keys"), message=exc.message)
            raise InvalidConfig([source.format(issue)]) from None
    return config


def read_yaml(text: str, *, name: str, env: Mapping[str, str]) -> tuple[object, SourceMap]:
    """Parse one YAML document, substituting ``${VAR}`` in scalar values and recording the
    line of every path. Comments are never substituted: they are not in the node tree."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, SourceMap(file=name)
        lines: dict[tuple[str | int, ...], int] = {}
        issues: list[Issue] = []
        _walk(node, (), env, lines, issues, set())
        source = SourceMap(file=name, lines=lines)
        raise_if_any(issues, source)
        return loader.construct_document(node), source
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise InvalidConfig([f"{name}{line}: invalid YAML: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise InvalidConfig([f"{name}: invalid YAML: {exc}"]) from None
    finally:
        loader.dispose()


def _walk(
    node: Node,
    path: tuple[str | int, ...],
    env: Mapping[str, str],
    lines: dict[tuple[str | int, ...], int],
    issues: list[Issue],
    seen: set[int],
) -> None:
    if id(node) in seen:  # an alias: its anchor was substituted already
        return
    seen.add(id(node))
    if isinstance(node, ScalarNode):
        if node.tag == _STR and "${" in node.value:
            try:
                node.value = substitute(node.value, env)
            except SubstitutionError as exc:
                issues.append(Issue(path=path, message=str(exc), line=node.start_mark.line + 1))
                return
            # a plain scalar that expands to nothing (or to null) means null, as if written so
            if node.style is None and node.value in _NULLS:
                node.tag = _NULL
    elif isinstance(node, MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                _walk(value_node, path, env, lines, issues, seen)
                continue
            key = str(key_node.value)
            if key in keys:
                issues.append(
                    Issue(
                        path=(*path, key),
                        message=f"duplicate key {key!r}",
                        line=key_node.start_mark.line + 1,
                    )
                )
            keys.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), env, lines, issues, seen)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _walk(item, (*path, i), env, lines, issues, seen)
