"""spark-submit entry point: train the Splink model on the configured sources (`idr train`)."""

import sys

from resolution.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
