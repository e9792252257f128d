"""Command line entry point of `sluice-worker`."""
import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sluice-worker", description=__doc__)
    parser.parse_args(argv)
    return 0
