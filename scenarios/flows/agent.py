"""A tool-using agent, a shipped Python scenario (``loadtest run agent``; ``docs/scenarios-python.md``).

One flow is one task solved in a loop: the model plans a tool call (step ``plan``), the tool runs (a calculator,
with a simulated latency drawn from :data:`TOOL_LATENCY_S`) and its result goes back to the model as the next
message; after a number of rounds drawn per flow from :data:`ROUNDS`, the model writes its final answer (step
``answer``). The context grows every round, as an agent's does.

The tool's input is the scenario's own draw, not parsed from the model's text: a load test has to send the same
flows to any model, including the simulator's filler text. The result goes back as a user message (``Tool result:
…``), which every OpenAI-compatible server accepts; a ``tool`` role message would also need the assistant's
``tool_calls`` with matching ids.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Callable

from loadtest.flows import FlowUser, between, task

ROUNDS = {
    1: 0.35,
    2: 0.3,
    3: 0.2,
    4: 0.1,
    6: 0.05,
}  # tool rounds per flow (one per item bought): probabilities
TOOL_LATENCY_S = (0.15, 0.6)  # the tool's latency: lognormal, its median and its sigma (of the log)
TOOL_LATENCY_MAX_S = 2.0
PLAN_TOKENS = (24, 64)  # a planning call's max_tokens (a short tool call)
ANSWER_TOKENS = (96, 256)  # the final answer's max_tokens
SYSTEM = (
    "You are an assistant with a calculator tool. To use it, reply exactly `CALL calculator: <expression>`. "
    "When you have every number you need, reply `ANSWER: ` and the answer in plain words."
)

_OPS: dict[str, Callable[[int, int], int]] = {"+": operator.add, "-": operator.sub, "*": operator.mul}
_ITEMS = ("laptops", "desks", "licences", "monitors", "chairs", "phones", "servers", "GPUs")


def calculator(a: int, op: str, b: int) -> int:
    """The tool: one arithmetic operation."""
    return _OPS[op](a, b)


class AgentUser(FlowUser):
    wait_time = between(0.5, 2)  # between one task and the user's next (closed loop)

    @task
    def solve(self) -> None:
        rng = self.random
        rounds = rng.choices(list(ROUNDS), weights=list(ROUNDS.values()))[0]
        order = [(rng.randint(2, 40), item, rng.randint(10, 900)) for item in rng.sample(_ITEMS, k=rounds)]
        ask = ", ".join(f"{n} {item} at {price} dollars each" for n, item, price in order)
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"We are buying {ask}. What is the total cost, item by item?"},
        ]
        for n, item, price in order:  # one tool round per item
            plan = self.chat(messages, max_tokens=rng.randint(*PLAN_TOKENS), name="plan")
            messages.append(plan.message())
            result = calculator(n, "*", price)
            median, sigma = TOOL_LATENCY_S
            time.sleep(
                min(rng.lognormvariate(math.log(median), sigma), TOOL_LATENCY_MAX_S)
            )  # a yielding sleep
            messages.append({"role": "user", "content": f"Tool result: {n} {item}: {n} * {price} = {result}"})
        self.chat(messages, max_tokens=rng.randint(*ANSWER_TOKENS), name="answer")
