"""Identifiers: short, random, URL-safe, with a readable prefix."""

from __future__ import annotations

import os


def new_id(prefix: str) -> str:
    """``new_id("chatcmpl")`` -> ``"chatcmpl-5f2c9a0e1b7d4c3a8e6f0a1b"``."""
    return f"{prefix}-{os.urandom(12).hex()}"
