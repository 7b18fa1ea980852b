"""Command line: ``python -m fastdl {demo,info}`` (also the ``fastdl`` script)."""

from __future__ import annotations

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastdl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="time fastdl against plain NumPy on a realistic batch")
    demo.add_argument("--batch", type=int, default=4096, help="rows N (default 4096)")
    demo.add_argument("--classes", type=int, default=1000, help="classes C (default 1000)")
    demo.add_argument("--repeat", type=int, default=15, help="timed repeats (default 15)")
    sub.add_parser("info", help="print versions, backends, build and threading settings")
    args = parser.parse_args(argv)

    if args.command == "info":
        from ._info import show_config

        show_config()
        return 0
    from ._demo import run_demo

    return run_demo(args.batch, args.classes, args.repeat)


if __name__ == "__main__":
    sys.exit(main())
