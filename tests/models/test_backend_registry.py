from __future__ import annotations

import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from wayport.core.errors import ConfigError
from wayport.models.openai_compat import OpenAICompatBackend
from wayport.models.registry import (
    BUILTIN_BACKENDS,
    ENTRY_POINT_GROUP,
    BackendKind,
    BackendRegistry,
)
from wayport.ports import ModelBackend
from wayport.testing import Reply, ScriptedBackend

PLUGIN = """\
from wayport.testing import Reply, ScriptedBackend


def make_echo(*, name: str, reply: str = "pong") -> ScriptedBackend:
    return ScriptedBackend(name, default=Reply(reply))


class Namespace:
    make = staticmethod(make_echo)


not_a_backend = dict
"""


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed distribution on sys.path declaring one ``wayport.backends`` entry point,
    as ``pip install`` would leave it."""
    module = f"echo_plugin_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(PLUGIN)
    info = tmp_path / "wayport_echo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wayport-echo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(f"""\
            [{ENTRY_POINT_GROUP}]
            echo = {module}:make_echo
            """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def module_of(plugin_dir: Path) -> str:
    return f"echo_plugin_{plugin_dir.name.replace('-', '_')}"


def test_builtins_are_registered_without_being_imported() -> None:
    registry = BackendRegistry()
    assert registry.names() == ("anthropic", "llamacpp", "openai")
    assert all(not registry.is_loaded(name) for name in registry.names())
    assert registry.kinds()[2] == BackendKind(name="openai", target=BUILTIN_BACKENDS["openai"])


def test_a_builtin_resolves_on_first_use() -> None:
    registry = BackendRegistry()
    assert registry.resolve("openai") is OpenAICompatBackend
    assert registry.is_loaded("openai")
    assert not registry.is_loaded("llamacpp")


def test_create_builds_a_backend_from_options() -> None:
    backend = BackendRegistry().create(
        "openai", name="up", options={"base_url": "http://127.0.0.1:9/v1", "model": "m"}
    )
    assert isinstance(backend, OpenAICompatBackend)
    assert backend.name == "up"


def test_an_installed_entry_point_is_discovered(plugin_dir: Path) -> None:
    registry = BackendRegistry.default()
    assert "echo" in registry
    kind = next(k for k in registry.kinds() if k.name == "echo")
    assert kind.origin == "wayport-echo"
    assert not registry.is_loaded("echo")
    backend = registry.create("echo", name="e", options={"reply": "hi"})
    assert isinstance(backend, ScriptedBackend)
    assert backend.name == "e"


def test_entry_points_can_be_given_explicitly(plugin_dir: Path) -> None:
    target = f"{module_of(plugin_dir)}:Namespace.make"
    ep = EntryPoint(name="echo2", value=target, group=ENTRY_POINT_GROUP)
    registry = BackendRegistry(kinds={}, entry_points=[ep])
    assert registry.names() == ("echo2",)
    assert isinstance(registry.create("echo2", name="x", options={}), ModelBackend)


def test_a_plugin_may_replace_a_builtin_deliberately(plugin_dir: Path) -> None:
    ep = EntryPoint(
        name="openai", value=f"{module_of(plugin_dir)}:make_echo", group=ENTRY_POINT_GROUP
    )
    registry = BackendRegistry(entry_points=[ep])
    assert isinstance(registry.create("openai", name="x", options={}), ScriptedBackend)


def test_register_a_callable() -> None:
    def factory(*, name: str) -> ScriptedBackend:
        return ScriptedBackend(name, default=Reply("x"))

    registry = BackendRegistry(kinds={})
    registry.register("scripted", factory)
    assert registry.is_loaded("scripted")
    assert registry.kinds()[0].target.endswith(":test_register_a_callable.<locals>.factory")
    assert registry.create("scripted", name="s", options={}).name == "s"


def test_unknown_kind() -> None:
    with pytest.raises(ConfigError, match=r"unknown backend 'nope' \(known: anthropic, llama"):
        BackendRegistry().resolve("nope")


def test_missing_module_names_it() -> None:
    registry = BackendRegistry(kinds={"gone": "wayport_no_such_module_xyz:Backend"})
    with pytest.raises(ConfigError, match="module 'wayport_no_such_module_xyz' is not installed"):
        registry.resolve("gone")


def test_missing_attribute(plugin_dir: Path) -> None:
    registry = BackendRegistry(kinds={"bad": f"{module_of(plugin_dir)}:Nope"})
    with pytest.raises(ConfigError, match="'Nope' is missing"):
        registry.resolve("bad")


def test_options_the_factory_does_not_take_are_a_config_error(plugin_dir: Path) -> None:
    registry = BackendRegistry(kinds={"echo": f"{module_of(plugin_dir)}:make_echo"})
    with pytest.raises(ConfigError, match=r"does not accept these options: .*'colour'"):
        registry.create("echo", name="e", options={"colour": "red"})


def test_a_factory_that_builds_no_backend_is_refused(plugin_dir: Path) -> None:
    registry = BackendRegistry(kinds={"bad": f"{module_of(plugin_dir)}:not_a_backend"})
    with pytest.raises(ConfigError, match="built a dict, which does not implement ModelBackend"):
        registry.create("bad", name="b", options={})


def test_targets_must_name_an_attribute() -> None:
    with pytest.raises(ValueError, match="must look like 'module:Attr'"):
        BackendRegistry(kinds={"x": "just.a.module"})


def test_registries_are_independent() -> None:
    a, b = BackendRegistry(), BackendRegistry()
    a.register("extra", "somewhere:Thing")
    assert "extra" in a
    assert "extra" not in b
