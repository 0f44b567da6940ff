"""Configuration: ``wayport.yaml`` -> a validated, frozen :class:`WayportConfig`.

``load_config()`` reads ``./wayport.yaml`` (or the file given), else the built-in defaults.
"""

from wayport.config.issues import InvalidConfig, UnsafeBind
from wayport.config.loader import find_config, load_config, parse_config
from wayport.config.schema import WayportConfig, json_schema

__all__ = [
    "InvalidConfig",
    "UnsafeBind",
    "WayportConfig",
    "find_config",
    "json_schema",
    "load_config",
    "parse_config",
]
