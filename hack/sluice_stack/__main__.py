"""`python -m sluice_stack up|down|status|provision [GROUP...]`, or `pause|resume|kill|restart kafka|cassandra`
(a fault on a running stack, e.g. `pause cassandra --seconds 20`, the talk's test by hand)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config import REPO_DIR
from .stack import CLUSTERED, FAULTS, GROUPS, ON_DEMAND, Stack, kind_of, provision


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sluice_stack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "provision", *FAULTS])
    parser.add_argument(
        "groups", nargs="*", metavar="GROUP",
        help=f"any of {', '.join(GROUPS)} (default: all but {' and '.join(ON_DEMAND)}); for a fault, a server: "
        "kafka or cassandra (kafka-2...)",
    )  # fmt: skip
    parser.add_argument("--root", type=Path, default=REPO_DIR / ".stack", help="state, logs and data")
    parser.add_argument("--seconds", type=float, default=0, help="pause: resume after this long (default: stay)")
    args = parser.parse_args(argv)
    if args.command in FAULTS:
        return _fault(parser, args)
    # `provision` fetches what every group needs; `up` starts the on-demand groups only when named.
    groups = args.groups or [group for group in GROUPS if args.command == "provision" or group not in ON_DEMAND]
    if unknown := set(groups) - set(GROUPS):
        parser.error(f"unknown group(s) {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}")

    if args.command == "provision":
        provision(groups)
        return 0
    stack = Stack.attach(args.root)
    if args.command == "up":
        stack = stack or Stack(args.root)
        started = time.monotonic()
        stack.up(groups)
        print(f"stack up in {time.monotonic() - started:.1f}s:\n{stack.report()}")
        print(f"now: . {args.root / 'env'}")
    elif args.command == "down":
        if stack is None:
            # A half-dead stack: stop whatever is left of it.
            stack = Stack.load(args.root) or Stack(args.root)
        stack.down()
        print("stack down")
    elif args.command == "status":
        if stack is None:
            print("no stack running", file=sys.stderr)
            return 1
        print(stack.report())
    return 0


def _fault(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if len(args.groups) != 1 or kind_of(args.groups[0]) not in CLUSTERED:
        parser.error(f"{args.command} takes one server: kafka or cassandra (with 3 nodes: kafka-1, cassandra-2...)")
    name = args.groups[0]
    stack = Stack.load(args.root)
    if stack is None or name not in stack.services:
        known = ", ".join(n for n in (stack.services if stack else {}) if kind_of(n) in CLUSTERED) or "none"
        print(f"no {name} in a stack under {args.root} (its servers: {known}): run `make stack-up` first",
              file=sys.stderr)  # fmt: skip
        return 1
    print(stack.inject(args.command, name, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
