#!/usr/bin/env bash
# Run the suite on every other CPython this machine offers (3.12, 3.13): Debian's, pyenv's, or
# one on PATH. Each gets its own virtual environment (.venv-py3.X). The browser scenarios, the
# slow end-to-end tests and the conformance table run once, on the main interpreter.
#
# The interpreters run side by side (each suite is one process, mostly on one core), each with
# its own temporary directory and its output kept apart, then printed in turn.
set -euo pipefail
cd "$(dirname "$0")/.."

run_one() {
    local python="$1" version="$2"
    local venv=".venv-py$version"
    local stamp="$venv/.sagakit-installed"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        { [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"; } || return 1
        "$venv/bin/python" -m pip install --quiet --upgrade 'pip>=25.1' || return 1
        "$venv/bin/python" -m pip install --quiet -e '.[all]' --group test || return 1
        touch "$stamp"
    fi
    echo "== the suite on $("$venv/bin/python" --version)"
    # Lean: what can differ between interpreters. The browser scenarios, the slow end-to-end
    # tests (notebooks in kernels, the pytest plugin in subprocesses, killed Temporal workers),
    # the conformance table and the docs run once, on the main interpreter; the property tests
    # run their quick profiles here (SAGAKIT_QUICK_TESTS).
    local basetemp
    basetemp="$(mktemp -d "${TMPDIR:-/tmp}/sagakit-py$version.XXXXXX")"
    SAGAKIT_QUICK_TESTS=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider --basetemp="$basetemp" \
        -m "not browser and not slow" --ignore=tests/docs --ignore=tests/packaging \
        --ignore=tests/conformance -x ${PYTEST_ARGS:-}
    local status=$?
    rm -rf "$basetemp"
    return $status
}

logs="$(mktemp -d "${TMPDIR:-/tmp}/sagakit-other-pythons.XXXXXX")"
trap 'rm -rf "$logs"' EXIT
versions=()
pids=()
for version in 3.12 3.13; do
    python=""
    # pyenv's shims answer for every version but run only the selected one: try each for real.
    for candidate in "/usr/bin/python$version" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python"$version" \
            "$(command -v "python$version" 2>/dev/null || true)"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import venv' >/dev/null 2>&1; then
            python="$candidate"
            break
        fi
    done
    if [ -z "$python" ]; then
        echo "other-pythons: no Python $version on this machine; skipped"
        continue
    fi
    versions+=("$version")
    ( set +e; run_one "$python" "$version" >"$logs/$version.log" 2>&1; echo $? >"$logs/$version.status" ) &
    pids+=("$!")
done

failed=0
for index in "${!versions[@]}"; do
    wait "${pids[$index]}" || true
    version="${versions[$index]}"
    cat "$logs/$version.log"
    status="$(cat "$logs/$version.status" 2>/dev/null || echo 1)"
    if [ "$status" != 0 ]; then
        echo "other-pythons: the suite on Python $version failed (exit $status)"
        failed=1
    fi
done
echo "other-pythons: ${#versions[@]} other interpreter(s) tested"
exit $failed
