"""AirDisplay: electronic aircraft banners as durable virtual actors."""

__version__ = "0.1.0"
