"""`python -m tfdist.data_service`: run a tf.data service dispatcher or data worker.

Owns the command line of the service's server processes; the servers themselves
are `tfdist.data.service`.

Usage:

    python -m tfdist.data_service dispatcher --port=5050
    python -m tfdist.data_service worker --dispatcher_address=localhost:5050
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tfdist.config import ConfigError
from tfdist.data.service import serve_dispatcher, serve_worker


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tfdist.data_service",
        description="Run a tf.data service dispatcher or data worker until stopped.",
    )
    roles = parser.add_subparsers(dest="role", required=True)
    dispatcher = roles.add_parser("dispatcher", help="the dispatcher the trainers connect to")
    dispatcher.add_argument("--port", type=int, required=True, help="port to serve on")
    worker = roles.add_parser("worker", help="a data worker that runs the input pipeline")
    worker.add_argument("--dispatcher_address", required=True, help="HOST:PORT of the dispatcher")
    worker.add_argument("--port", type=int, default=0, help="port to serve on (0: any free)")
    worker.add_argument(
        "--host", default="localhost", help="this host's name as the trainers reach it"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # The entry point only.
    try:
        if args.role == "dispatcher":
            serve_dispatcher(args.port)
        else:
            serve_worker(args.dispatcher_address, args.port, args.host)
    except ConfigError as error:
        print(f"tfdist.data_service: error: {error}", file=sys.stderr)
        return 2
    return 0
