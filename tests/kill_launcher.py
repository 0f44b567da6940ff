"""A Wayport server process for ``test_kill_durability.py``: a slow scripted model, one agent,
SQLite in the given state dir, uvicorn on an ephemeral loopback port written to ``port_file``.

    python tests/kill_launcher.py STATE_DIR PORT_FILE

Composed here (not ``wayport serve --config``) until agents and the store are wired into config.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import uvicorn

from wayport.core.agent import AgentSpec
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.models.router import Router
from wayport.server.app import create_app
from wayport.server.settings import ServerSettings
from wayport.service.agents import AgentCatalog, AgentService, Stores
from wayport.service.gateway import Gateway
from wayport.store import open_store
from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply


def main(state_dir: Path, port_file: Path) -> None:
    backend = ScriptedBackend("slow", default=Reply("answered"), delay=0.1)
    router = Router(
        groups=[ModelGroup(name="slow", deployments=(WeightedDeployment(name="slow"),))],
        backends={"slow": backend},
        policy=RouterPolicy(max_retries=0),
    )
    gateway = Gateway(router=router)

    async def stores() -> Stores:
        return await open_store(None, state_dir=state_dir)

    agents = AgentService(
        catalog=AgentCatalog([AgentSpec(name="worker", model="slow")]),
        model=gateway,
        open_stores=stores,
    )
    settings = ServerSettings(api_key=None, access_log=False, version="kill-test")
    app = create_app(gateway=gateway, settings=settings, agents=agents)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    # written after bind, renamed so the test never reads half a number
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(sock.getsockname()[1]))
    tmp.rename(port_file)
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, ws="none")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
