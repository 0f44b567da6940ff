"""What ``wayport models`` and ``wayport check`` show: the models and deployments of a
configuration, or the model list of a running server.

    for table in config_tables(load_config()):
        out().print(table)
"""

from __future__ import annotations

from rich.table import Table

from wayport.cli.remote import RemoteApi
from wayport.config.schema import WayportConfig


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(config: WayportConfig) -> str:
    return f"{_n(len(config.models), 'model')}, {_n(len(config.deployments), 'deployment')}"


def models_table(config: WayportConfig) -> Table:
    table = Table(title="Models", title_justify="left")
    table.add_column("model", style="bold")
    table.add_column("deployments")
    table.add_column("fallbacks")
    for name, group in config.models.items():
        weighted = len({ref.weight for ref in group.deployments}) > 1
        deployments = ", ".join(
            f"{ref.name} (weight {ref.weight:g})" if weighted else ref.name
            for ref in group.deployments
        )
        fallbacks = ", ".join(group.fallbacks)
        if group.context_window_fallbacks:
            longer = ", ".join(group.context_window_fallbacks)
            fallbacks = f"{fallbacks}; long prompts: {longer}" if fallbacks else longer
        table.add_row(name, deployments, fallbacks or "-")
    return table


def deployments_table(config: WayportConfig) -> Table:
    table = Table(title="Deployments", title_justify="left")
    table.add_column("deployment", style="bold")
    table.add_column("backend")
    table.add_column("serves")
    for name, deployment in config.deployments.items():
        table.add_row(name, deployment.backend, deployment.describe())
    return table


def config_tables(config: WayportConfig) -> list[Table]:
    return [models_table(config), deployments_table(config)]


async def remote_models_table(url: str, *, api_key: str | None) -> Table:
    async with RemoteApi(url, api_key=api_key, timeout=30.0) as api:
        models = await api.models()
        base = api.base
    table = Table(title=f"Models at {base}", title_justify="left")
    table.add_column("model", style="bold")
    table.add_column("owned by")
    for model_id, owner in models:
        table.add_row(model_id, owner or "-")
    return table
