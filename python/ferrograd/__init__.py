"""ferrograd: a neural-network library whose numbers live in Rust."""

from ferrograd._core import __version__

__all__ = ["__version__"]
