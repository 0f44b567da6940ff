"""The example in ``examples/support_ticket`` end to end, through ``wayport serve``: its own
configuration and workflow file, with a slow scripted model standing in for the embedded one.
The server is SIGKILLed once inside every step (and while the run waits for approval) and
restarted; the run completes and the reply is sent once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from test_workflow_kill import Server

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_ticket"
STEPS = ("classify", "lookup", "draft", "approve", "send")


def example_config(tmp: Path) -> str:
    config: dict[str, Any] = yaml.safe_load((EXAMPLE / "wayport.yaml").read_text())
    config["state_dir"] = str(tmp / "state")
    config["server"] = {"host": "127.0.0.1", "port": 0, "access_log": False, "metrics": False}
    # the model the example names, served by a slow scripted plugin instead of the weights
    config["deployments"] = {
        "scripted": {"backend": "slow-scripted", "delay": 0.3, "text": "billing"}
    }
    config["models"] = {"smollm2": {"deployments": ["scripted"]}}
    config["router"] = {"max_retries": 0}
    config["workflows"]["support_ticket"]["file"] = str(EXAMPLE / "support_ticket.yaml")
    return yaml.safe_dump(config)


def progress(client: httpx.Client, run_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/workflow-runs/{run_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.slow
def test_example_survives_a_kill_in_every_step(tmp_path: Path) -> None:
    server = Server(tmp_path, example_config(tmp_path), path=(EXAMPLE,))
    deadline = time.monotonic() + 120
    try:
        server.start(deadline)
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            ticket = {"email": "ada@example.com", "ticket": "I was charged twice this month."}
            r = client.post("/v1/workflows/support_ticket/runs", json={"input": ticket})
            assert r.status_code == 202, r.text
            run_id = r.json()["id"]
        killed_in: list[tuple[str, str]] = []
        for step in STEPS:
            with httpx.Client(base_url=server.url, timeout=10.0) as client:
                while True:
                    body = progress(client, run_id)
                    found = {s["path"]: s["status"] for s in body["steps"]}
                    if step in found:
                        break
                    assert body["status"] != "failed", body
                    assert time.monotonic() < deadline, f"never reached {step}: {body}"
                    time.sleep(0.01)  # polling for a condition
                if step == "send":
                    killed_in.append((step, found[step]))
                    server.kill()
                    server.start(deadline)
                    continue
            killed_in.append((step, found[step]))
            server.kill()
            server.start(deadline)
            if step == "approve":
                with httpx.Client(base_url=server.url, timeout=10.0) as client:
                    r = client.post(
                        f"/v1/workflow-runs/{run_id}/approve", json={"comment": "looks good"}
                    )
                    assert r.status_code == 200, r.text
        assert [s for s, _ in killed_in] == list(STEPS)
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            while (body := progress(client, run_id))["status"] != "completed":
                assert body["status"] != "failed", body
                assert time.monotonic() < deadline, body
                time.sleep(0.01)
        assert body["output"]["category"] == "billing"
        assert body["output"]["customer"] == "Ada Lovelace"
        assert body["output"]["sent"] is True
        sent = [json.loads(line) for line in (tmp_path / "outbox.jsonl").read_text().splitlines()]
        assert [(m["to"], m["body"]) for m in sent] == [
            ("ada@example.com", body["output"]["reply"])
        ]
        print("killed in", killed_in)
    finally:
        server.stop()
