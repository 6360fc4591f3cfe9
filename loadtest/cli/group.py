"""The ``loadtest`` command group and its entry point: each command lives in its own module (``run``, ``analyze``,
``report``, ``export``, ``gate``, ``noise``, ``plan``, ``sim``, ``worker``); :func:`main` maps every failure to
one line and an exit code.

Heavy imports (pandas, httpx) happen inside commands so ``loadtest --help`` is fast; locust/gevent are never
imported here (the engine runs in a child process).
"""

from __future__ import annotations

import os

import click

from loadtest import __version__
from loadtest.cli.analyze import analyze
from loadtest.cli.export import export
from loadtest.cli.gate import gate
from loadtest.cli.noise import noise
from loadtest.cli.plan import plan
from loadtest.cli.report import report
from loadtest.cli.run import run
from loadtest.cli.sim import sim
from loadtest.cli.worker import worker
from loadtest.errors import EXIT_INTERRUPTED, LoadtestError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="loadtest")
def cli() -> None:
    """Load testing and capacity planning for LLM serving endpoints."""


for command in (run, analyze, report, export, gate, noise, plan, sim, worker):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: every failure is one line on stderr and an exit code, never a traceback."""
    try:
        cli.main(args=argv, prog_name="loadtest", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see 'loadtest {exc.ctx.info_name} --help')" if exc.ctx and exc.ctx.parent else ""
        message = " ".join(exc.format_message().split())  # click spreads a choice list over lines
        click.echo(f"loadtest: error: {message}{hint}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"loadtest: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("loadtest: interrupted", err=True)
        return EXIT_INTERRUPTED
    except LoadtestError as exc:
        click.echo(f"loadtest: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("loadtest: interrupted", err=True)
        return EXIT_INTERRUPTED
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # the last line of defence: still one line, no traceback
        if os.environ.get("LOADTEST_DEBUG"):
            raise
        click.echo(
            f"loadtest: internal error: {type(exc).__name__}: {exc} (LOADTEST_DEBUG=1 shows the traceback)",
            err=True,
        )
        return 1
    return 0
