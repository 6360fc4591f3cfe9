"""``loadtest worker``: a Locust worker for a master on another host (:func:`loadtest.runner.run.serve_as_worker`)."""

from __future__ import annotations

import click

from loadtest.errors import LoadtestError

__all__ = ["worker"]


@click.command()
@click.option("--master-host", required=True, help="Host of the master ('loadtest run --expect-workers').")
@click.option("--master-port", type=click.IntRange(min=1, max=65535), required=True)
def worker(master_host: str, master_port: int) -> None:
    """Be a Locust worker for a master on another host; runs until the master's run ends.

    The worker gets the run's scenario from the master; credentials come from this host's environment
    (the variable named by api_key_env, or DATABRICKS_* / ~/.databrickscfg).
    """
    from loadtest.runner.run import serve_as_worker

    code = serve_as_worker(master_host, master_port)
    if code != 0:
        raise LoadtestError(f"the worker stopped with exit code {code}")
