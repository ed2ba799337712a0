#!/usr/bin/env bash
# Run the suite on every other CPython this machine offers (3.12, 3.13): Debian's, pyenv's, or
# one on PATH. Each gets its own virtual environment (.venv-py3.X). The browser scenarios, the
# slow end-to-end tests and the conformance table run once, on the main interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
found=0
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
    found=$((found + 1))
    venv=".venv-py$version"
    stamp="$venv/.sagakit-installed"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --upgrade 'pip>=25.1'
        "$venv/bin/python" -m pip install --quiet -e '.[all]' --group test
        touch "$stamp"
    fi
    echo "== the suite on $("$venv/bin/python" --version)"
    # Lean: what can differ between interpreters. The browser scenarios, the slow end-to-end
    # tests (notebooks in kernels, the pytest plugin in subprocesses, killed Temporal workers),
    # the conformance table and the docs run once, on the main interpreter; the property tests
    # run their quick profiles here (SAGAKIT_QUICK_TESTS).
    SAGAKIT_QUICK_TESTS=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider \
        -m "not browser and not slow" --ignore=tests/docs --ignore=tests/packaging \
        --ignore=tests/conformance -x ${PYTEST_ARGS:-}
done
echo "other-pythons: $found other interpreter(s) tested"
