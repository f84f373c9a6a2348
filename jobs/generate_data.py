"""Entry point: write synthetic multi-source people with ground truth (`idr generate`)."""

import sys

from resolution.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
