"""Outbound networking that users and models can aim: the SSRF-guarded HTTP client."""

from wayport.net.addresses import AddressPolicy
from wayport.net.guard import GuardedClient, GuardedResponse, GuardPolicy, Resolve, system_resolve

__all__ = [
    "AddressPolicy",
    "GuardPolicy",
    "GuardedClient",
    "GuardedResponse",
    "Resolve",
    "system_resolve",
]
