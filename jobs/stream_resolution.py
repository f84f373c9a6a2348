"""spark-submit entry point: resolve a source's changes continuously (same as `idr stream`).

    spark-submit --jars <splink similarity jar> jobs/stream_resolution.py \
        --config conf/example.yml --source kyc [--available-now]
"""

import sys

from resolution.cli import main

if __name__ == "__main__":
    sys.exit(main(["stream", *sys.argv[1:]]))
