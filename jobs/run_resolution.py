"""spark-submit entry point: resolve the configured sources (same as `idr run`).

    spark-submit --jars <splink similarity jar> jobs/run_resolution.py --config conf/example.yml
"""

import sys

from resolution.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
