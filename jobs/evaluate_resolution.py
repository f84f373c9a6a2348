"""spark-submit entry point: score resolved_membership against ground truth (`idr evaluate`)."""

import sys

from resolution.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
