"""python -m web: the web app under gevent's WSGI server (development and the demo).

    python -m web [--bind 127.0.0.1:5000] [--port-file FILE]

Prints `web: listening on http://HOST:PORT` once it accepts connections (port 0
picks a free port; --port-file also writes the port there).  Production:
`gunicorn -k gevent 'web:create_app()'`.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from web import create_app  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m web", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", default=os.environ.get("WEB_BIND", "127.0.0.1:5000"), help="HOST:PORT")
    parser.add_argument("--port-file", help="write the bound port to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    host, _, port = args.bind.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--bind must be HOST:PORT, got {args.bind!r}")
    app = create_app()
    server = WSGIServer((host, int(port)), app, log=None, error_log=logging.getLogger("web.server"))
    server.start()
    bound = server.server_port
    if args.port_file:
        with open(args.port_file, "w") as fh:
            fh.write(f"{bound}\n")
    print(f"web: listening on http://{host}:{bound}", flush=True)
    gevent.signal_handler(signal.SIGTERM, server.stop)
    gevent.signal_handler(signal.SIGINT, server.stop)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
