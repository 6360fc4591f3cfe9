"""Start the embedded simulator as a child process and stop it by its PID.

A separate process keeps the simulator off the load generator's core and its GIL. The child prints exactly one line,
``listening on http://127.0.0.1:PORT``, when it is ready.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import TracebackType

from loadtest.errors import ConfigError, EndpointError

__all__ = ["ManagedProcess", "SimulatorProcess"]

READY_PREFIX = "listening on "


class ManagedProcess:
    """A child that announces ``listening on URL`` on stdout; started in its own session, stopped by PID."""

    def __init__(self, argv: Sequence[str], *, ready_timeout_s: float = 30.0, what: str = "process") -> None:
        self.argv = list(argv)
        self.ready_timeout_s = ready_timeout_s
        self.what = what
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> str:
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + self.ready_timeout_s
        buf = b""
        while time.monotonic() < deadline:
            if not sel.select(timeout=0.1):
                if self.proc.poll() is not None:
                    break
                continue
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            if b"\n" in buf:
                line = buf.split(b"\n", 1)[0].decode(errors="replace").strip()
                if line.startswith(READY_PREFIX):
                    self.url = line[len(READY_PREFIX) :]
                    return self.url
        sel.close()
        err = self._stderr_tail()
        refused = (
            self.proc.returncode == 2
        )  # the child refused its settings: the user's mistake, not the endpoint's
        self.stop()
        if refused and err:
            reason = err.removeprefix("loadtest: error: ").split(" (see 'loadtest ")[0]
            raise ConfigError(f"the {self.what}'s settings ([simulator] or the sim flags): {reason}")
        raise EndpointError(f"the {self.what} did not start: {err or 'no output'}")

    def _stderr_tail(self) -> str:
        """The child's last stderr line once it has exited. Its stdout can reach EOF a moment before it is reaped
        (interpreter teardown), so give it that moment rather than lose its one-line error."""
        if self.proc is None or self.proc.stderr is None:
            return ""
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            return ""
        lines = self.proc.stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def stop(self, timeout_s: float = 10.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        self.proc = None

    def __enter__(self) -> ManagedProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class SimulatorProcess(ManagedProcess):
    """``python -m loadtest sim --port 0 ...`` as a child process."""

    def __init__(self, sim_args: Sequence[str] = ()) -> None:
        super().__init__(
            [sys.executable, "-m", "loadtest", "sim", "--port", "0", *sim_args], what="embedded simulator"
        )
