"""``wayport deploy``: deployment artefacts generated from ``wayport.yaml``.

wayport deploy k8s --config wayport.yaml --image ghcr.io/acme/wayport:0.1.0 > wayport-k8s.yaml
kubectl apply -f wayport-k8s.yaml
wayport deploy compose --config wayport.yaml > compose.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wayport.cli.console import err, fail

deploy_app = typer.Typer(
    name="deploy",
    help="Generate deployment artefacts (Kubernetes manifests, a compose file) from wayport.yaml.",
    no_args_is_help=True,
)

ConfigArg = Annotated[
    Path,
    typer.Option(
        "--config", "-c", help="The configuration file to deploy.", envvar="WAYPORT_CONFIG"
    ),
]
OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
]


def _read(config: Path) -> tuple[str, object]:
    from wayport.config.loader import parse_config
    from wayport.core.errors import ConfigError

    try:
        text = config.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {config}: {exc.strerror or exc}")
    # the secrets are the cluster's: check the file's shape with placeholders for them
    import secrets

    from wayport.config.manifests import secret_references

    placeholders = {
        name: _placeholder(name, secrets.token_urlsafe(32)) for name in secret_references(text)
    }
    try:
        parsed = parse_config(
            text,
            name=str(config),
            env=placeholders,
            base_dir=config.resolve().parent,
            bind_check=False,
        )
    except ConfigError as exc:
        fail(f"invalid configuration:\n{exc.message}")
    return text, parsed


def _placeholder(name: str, token: str) -> str:
    """A stand-in of the right shape for a secret the cluster supplies (URLs are validated)."""
    upper = name.upper()
    if "REDIS" in upper:
        return "redis://placeholder:6379/0"
    if any(word in upper for word in ("DATABASE", "POSTGRES", "DSN")):
        return "postgresql+asyncpg://placeholder/wayport"
    return token


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err().print(f"[green]✓[/] wrote {output}")


@deploy_app.command("k8s")
def k8s(
    config: ConfigArg,
    image: Annotated[str, typer.Option(help="The Wayport container image.")] = "wayport:latest",
    name: Annotated[str, typer.Option(help="Name of every object.")] = "wayport",
    namespace: Annotated[str, typer.Option(help="Namespace of every object.")] = "default",
    replicas: Annotated[int, typer.Option(help="Replicas (the autoscaler's minimum).")] = 2,
    max_replicas: Annotated[int, typer.Option(help="The autoscaler's maximum.")] = 10,
    output: OutputOption = None,
) -> None:
    """Kubernetes manifests: ConfigMap, Deployment, Service, HPA, PDB, NetworkPolicy."""
    import yaml

    from wayport.config.manifests import Target, kubernetes, uses_sqlite
    from wayport.config.schema import WayportConfig

    text, parsed = _read(config)
    assert isinstance(parsed, WayportConfig)
    try:
        target = Target(
            image=image,
            name=name,
            namespace=namespace,
            replicas=replicas,
            max_replicas=max(max_replicas, replicas),
        )
    except ValueError as exc:
        fail(str(exc))
    if uses_sqlite(parsed):
        err().print(
            "[yellow]note:[/] the store is SQLite: one replica with a persistent volume and no "
            "autoscaler; point store.url at Postgres to run several"
        )
    docs = kubernetes(text, parsed, target)
    _emit(yaml.safe_dump_all(docs, sort_keys=False), output)


@deploy_app.command("compose")
def compose_file(
    config: ConfigArg,
    image: Annotated[str, typer.Option(help="The Wayport container image.")] = "wayport:latest",
    output: OutputOption = None,
) -> None:
    """A compose file with Postgres, Redis and Wayport."""
    import yaml

    from wayport.config.manifests import compose

    text, _ = _read(config)
    _emit(yaml.safe_dump(compose(text, image=image), sort_keys=False), output)
