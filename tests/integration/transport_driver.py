"""Drives the engine's transport as the engine does — a monkey-patched process, ``execute_request`` per request —
for ``tests/integration/test_engine_transport.py``; gevent never enters the test process itself.

    python -m tests.integration.transport_driver URL --requests N [--users U] [--read-timeout S] [--wait S]
                                                 [--header NAME VALUE ...]

Prints one JSON line per record (error class and detail, first token, end, last token), then one line with the
pool: how many idle connections, and whether any is in it twice. ``--wait`` sleeps that long before the pool line
(so a drain can finish or give up).
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402

from loadtest.client.clock import EpochClock  # noqa: E402
from loadtest.client.execute import RecordContext, execute_request  # noqa: E402
from loadtest.client.protocol import PreparedRequest  # noqa: E402
from loadtest.client.records import RequestRecord  # noqa: E402
from loadtest.engine.gevent_transport import GeventTransport  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--requests", type=int, default=1)
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--read-timeout", type=float, default=5.0)
    parser.add_argument("--wait", type=float, default=0.0)
    parser.add_argument("--header", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = parser.parse_args()
    transport = GeventTransport(args.url, args.users, 2.0, args.read_timeout)
    request = PreparedRequest(args.url + "/chat/completions", b"{}", True, 8, "chat", "chat")
    ctx = RecordContext(run_id="r", stage="s", endpoint="e", worker="w")
    clock = EpochClock()
    records: list[RequestRecord] = []
    seqs = iter(range(args.requests))

    def user() -> None:
        for seq in seqs:
            execute_request(
                transport,
                request,
                dict(args.header),
                clock,
                ctx,
                seq=seq,
                scheduled_at=clock(),
                emit=records.append,
            )

    gevent.joinall([gevent.spawn(user) for _ in range(args.users)], raise_error=True)
    for r in records:
        fields = (
            "error_class",
            "error_detail",
            "first_token_at",
            "last_token_at",
            "ended_at",
            "output_tokens",
        )
        print(json.dumps({k: getattr(r, k) for k in fields}))
    gevent.sleep(args.wait)
    ids = [id(c) for c in transport.idle]
    print(json.dumps({"idle": len(ids), "twice": len(ids) != len(set(ids))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
