"""``python -m durable_redis.runtime MODULE:APP --redis-url URL``: one worker process."""

from __future__ import annotations

import sys

from durable_redis.runtime.process import main

if __name__ == "__main__":
    sys.exit(main())
