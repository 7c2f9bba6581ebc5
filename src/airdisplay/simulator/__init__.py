"""A fleet of simulated banners that speak the device protocol: for demos, tests and benchmarks."""

from ._device import SimulatedBanner
from ._fleet import Fleet, SimulationConfig
from ._stats import FleetStats, percentile

__all__ = ["Fleet", "FleetStats", "SimulatedBanner", "SimulationConfig", "percentile"]
