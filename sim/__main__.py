"""python -m sim: run the stand-in FreeSWITCH as its own process.

    python -m sim --esl-host 127.0.0.1 --esl-port 8021 --password PW --companies sim/companies \
        --phones 1000:answer:2,1001:noanswer,1002:unregistered --speed 20 [--port-file F]

Prints ``sim: ESL listening on <host>:<port>`` on stdout once ready (``--esl-port 0``
picks a free port; ``--port-file`` also writes the port number there).
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402

from sim.esl_server import SimSwitch  # noqa: E402
from sim.phones import PhoneSpecError  # noqa: E402
from sim.scenario import ScenarioError  # noqa: E402

log = logging.getLogger("sim")

DEFAULT_COMPANIES = Path(__file__).parent / "companies"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sim", description="Stand-in FreeSWITCH (ESL + mod_audio_fork)"
    )
    p.add_argument("--esl-host", default="127.0.0.1")
    p.add_argument("--esl-port", type=int, default=8021)
    p.add_argument(
        "--password",
        default=os.environ.get("ESL_PASSWORD", "ClueCon"),
        help="ESL password (default $ESL_PASSWORD or ClueCon)",
    )
    p.add_argument(
        "--companies", default=str(DEFAULT_COMPANIES), help="directory of company scenario JSON files"
    )
    p.add_argument("--phones", default="1000:answer:2", help="desk phones, e.g. 1000:answer:2,1001:noanswer")
    p.add_argument("--speed", type=float, default=1.0, help="scenario time runs this many times faster")
    p.add_argument("--port-file", help="write the ESL port number to this file once listening")
    p.add_argument(
        "--write-mode",
        choices=("coalesce", "fragment", "each"),
        default="coalesce",
        help="TCP segmentation of ESL output (fragment: deliberately split writes)",
    )
    p.add_argument("--log-level", default=os.environ.get("SIM_LOG_LEVEL", "INFO"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.speed <= 0:
        print("sim: --speed must be > 0", file=sys.stderr)
        return 2
    try:
        switch = SimSwitch(
            host=args.esl_host,
            port=args.esl_port,
            password=args.password,
            companies_dir=args.companies,
            phones=args.phones,
            speed=args.speed,
            write_mode=args.write_mode,
        )
        switch.start()
    except (ScenarioError, PhoneSpecError, ValueError) as exc:
        print(f"sim: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"sim: cannot listen on {args.esl_host}:{args.esl_port}: {exc}", file=sys.stderr)
        return 1
    if args.port_file:
        tmp = Path(args.port_file + ".tmp")
        tmp.write_text(str(switch.port))
        tmp.replace(args.port_file)
    print(f"sim: ESL listening on {args.esl_host}:{switch.port}", flush=True)
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    stop.wait()
    log.info("sim: stopping")
    switch.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
