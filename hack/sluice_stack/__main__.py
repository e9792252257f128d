"""`python -m sluice_stack up|down|status|provision [--root DIR] [GROUP...]`: the stack from a shell."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config import REPO_DIR
from .stack import GROUPS, Stack, provision


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sluice_stack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "provision"])
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=f"any of {', '.join(GROUPS)} (default: all)")
    parser.add_argument("--root", type=Path, default=REPO_DIR / ".stack", help="state, logs and data")
    args = parser.parse_args(argv)
    groups = args.groups or list(GROUPS)
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
            from .process import load_services

            state = args.root / "state.json"
            stack = Stack(args.root, load_services(state) if state.exists() else {})
        stack.down()
        print("stack down")
    elif args.command == "status":
        if stack is None:
            print("no stack running", file=sys.stderr)
            return 1
        print(stack.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
