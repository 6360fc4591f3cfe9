"""Token-rate load testing and capacity planning for LLM serving endpoints.

The package root stays light: importing it must not import locust or gevent (the load engine's child process,
``python -m loadtest.engine``, is the only door).
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
