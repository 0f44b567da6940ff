"""``wayport doctor``: audit a configuration for unsafe settings (exit code 1 on any high).

wayport doctor --config wayport.yaml
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from wayport.cli.console import out
from wayport.config.audit import Finding, Severity, audit
from wayport.config.loader import load_config
from wayport.core.errors import ConfigError

_STYLE = {Severity.HIGH: "bold red", Severity.MEDIUM: "yellow", Severity.LOW: "dim"}


def doctor(config_path: Path | None) -> int:
    """Print the findings; the exit code (1: something high, or the file is invalid)."""
    try:
        # the bind is one of the findings here, not a reason to stop
        config = load_config(config_path, bind_check=False)
    except ConfigError as exc:
        findings = [
            Finding(
                severity=Severity.HIGH,
                where=str(config_path or "wayport.yaml"),
                problem=f"the configuration is refused: {exc.message}",
                fix="wayport check shows every problem with its line",
            )
        ]
    else:
        findings = audit(config, env=os.environ)
    console = out()
    if not findings:
        console.print("[green]✓[/] no findings")
        return 0
    table = Table(title="wayport doctor", title_justify="left")
    table.add_column("severity")
    for column in ("setting", "problem", "fix"):
        table.add_column(column, overflow="fold")
    for f in findings:
        style = _STYLE[f.severity]
        table.add_row(
            f"[{style}]{f.severity.label}[/]", escape(f.where), escape(f.problem), escape(f.fix)
        )
    console.print(table)
    counts = {s: sum(1 for f in findings if f.severity is s) for s in Severity}
    console.print(
        f"{counts[Severity.HIGH]} high, {counts[Severity.MEDIUM]} medium, "
        f"{counts[Severity.LOW]} low"
    )
    return 1 if counts[Severity.HIGH] else 0
