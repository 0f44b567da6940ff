"""The ``redis:`` and ``cluster:`` sections of ``wayport.yaml``: several replicas on one
Postgres database (docs/scaling.md).

    store:
      url: postgresql+asyncpg://wayport@db/wayport
    redis:
      url: ${WAYPORT_REDIS_URL}      # redis://host:6379/0: events, cancellation, rate limits
      key_prefix: "wayport:"
    cluster:
      heartbeat_interval: 3          # seconds between a replica's heartbeats
      stale_after: 15                # a run whose heartbeat is older goes back to the queue

On SQLite (one process owns the file) both are ignored but for ``redis.url``; on Postgres the
replica claims runs as one of many whether or not Redis is configured.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from wayport.config.deployments import OptionalSecret, Section

__all__ = ["ClusterConfig", "RedisConfig"]


class RedisConfig(Section):
    url: OptionalSecret = Field(
        default=None,
        description="redis:// or rediss:// URL; none: everything stays in this process.",
    )
    key_prefix: str = Field(
        default="wayport:",
        min_length=1,
        max_length=64,
        description="Prefix of every Redis key and channel (several deployments, one Redis).",
    )

    @model_validator(mode="after")
    def _scheme(self) -> RedisConfig:
        if self.url is not None and not self.url.get_secret_value().startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("redis.url must start with redis://, rediss:// or unix://")
        return self


class ClusterConfig(Section):
    heartbeat_interval: float = Field(
        default=3.0, gt=0, description="Seconds between heartbeats of the runs a replica holds."
    )
    stale_after: float = Field(
        default=15.0,
        gt=0,
        description="Seconds without a heartbeat after which a run is requeued (its replica "
        "is presumed dead).",
    )

    @model_validator(mode="after")
    def _order(self) -> ClusterConfig:
        if self.stale_after <= 2 * self.heartbeat_interval:
            raise ValueError("cluster.stale_after must exceed twice heartbeat_interval")
        return self
