"""The Dapr runtime: banner actors on daprd through the official Python SDK."""

from ._actor import DAPR_ACTOR_TYPE, BannerActor, BannerActorInterface
from ._directory import RedisDirectory
from ._events import DaprEventBus
from ._preflight import check_dapr_reachable
from ._runtime import DEFAULT_DAPR_HTTP_PORT, DEFAULT_PUBSUB, DEFAULT_TOPIC, AppTokenGuard, DaprRuntime
from ._serializer import PlainJSONSerializer
from ._wire import ActorCallFailed

__all__ = [
    "DAPR_ACTOR_TYPE",
    "DEFAULT_DAPR_HTTP_PORT",
    "DEFAULT_PUBSUB",
    "DEFAULT_TOPIC",
    "ActorCallFailed",
    "AppTokenGuard",
    "BannerActor",
    "BannerActorInterface",
    "DaprEventBus",
    "DaprRuntime",
    "PlainJSONSerializer",
    "RedisDirectory",
    "check_dapr_reachable",
]
