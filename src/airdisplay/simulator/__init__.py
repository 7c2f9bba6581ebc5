"""A fleet of simulated banners that speak the device protocol: for demos, tests and benchmarks."""

from ._device import SimulatedBanner
from ._fleet import Fleet, SimulationConfig
from ._stats import REFUSAL_LABELS, FleetStats, percentile
from .exceptions import KeyRequired, ServerUnreachable, SetupFailed, UnknownBanners

__all__ = [
    "REFUSAL_LABELS",
    "Fleet",
    "FleetStats",
    "KeyRequired",
    "ServerUnreachable",
    "SetupFailed",
    "SimulatedBanner",
    "SimulationConfig",
    "UnknownBanners",
    "percentile",
]
