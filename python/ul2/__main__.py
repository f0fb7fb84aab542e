"""``python -m ul2 demo``."""

from __future__ import annotations

import argparse

from . import demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ul2", description="UL2 mixture-of-denoisers for LM pre-training.")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="show the plan and one example per UL2 denoiser on the built-in corpus")
    d.add_argument("--inputs-length", type=int, default=512)
    d.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo.main(inputs_length=args.inputs_length, seed=args.seed)


if __name__ == "__main__":
    main()
