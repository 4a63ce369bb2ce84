"""A small real-time chat and streaming server on aiohttp."""

__version__ = "0.1.0"
