"""The Dapr runtime: banner actors on daprd through the official Python SDK."""

from ._actor import DAPR_ACTOR_TYPE, BannerActor, BannerActorInterface
from ._directory import RedisDirectory
from ._events import DaprEventBus
from ._preflight import check_dapr_reachable
from ._runtime import AppTokenGuard, DaprRuntime
from ._serializer import PlainJSONSerializer
from ._wire import ActorCallFailed

__all__ = [
    "DAPR_ACTOR_TYPE",
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
