"""RealTube push: the RealTube server with a live channel for extension caches."""

__version__ = "0.1.0"
