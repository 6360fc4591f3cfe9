"""The Python scenario API: what a scenario module imports (``docs/scenarios-python.md``)::

    from loadtest.flows import FlowUser, between, task

    class Conversation(FlowUser):
        wait_time = between(1, 3)

        @task
        def talk(self) -> None:
            messages = [{"role": "user", "content": "Hello"}]
            reply = self.chat(messages, max_tokens=64, name="turn")
            messages += [reply.message(), {"role": "user", "content": "And then?"}]
            self.chat(messages, max_tokens=64, name="turn")

Only the engine process imports a scenario module (and so this one): it brings gevent and Locust with it.
"""

from __future__ import annotations

from loadtest.engine.flows import CallFailed, FlowUser, Reply, between, constant, constant_pacing, task

__all__ = ["CallFailed", "FlowUser", "Reply", "between", "constant", "constant_pacing", "task"]
