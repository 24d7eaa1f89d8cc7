"""The reference queue for the queue benchmark: procrastinate on the same PostgreSQL.

Run as a script to start a worker: `python -m bench.procrastinate_app URL CONCURRENCY WAIT`."""

from __future__ import annotations

import sys

from procrastinate import App, PsycopgConnector


def make_app(conninfo: str) -> App:
    app = App(connector=PsycopgConnector(conninfo=conninfo))

    @app.task(name="noop")
    def noop() -> None:
        """Does nothing, like exportd's `noop` exporter."""

    return app


if __name__ == "__main__":
    url, concurrency, wait = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "wait"
    app = make_app(url)
    with app.open():
        app.run_worker(concurrency=concurrency, wait=wait, install_signal_handlers=True)
