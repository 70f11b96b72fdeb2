# lvm: every task the project has, one recipe each. `just --list` shows them.

python := env_var_or_default("PYTHON", "python")

# Run the test suite (the command CI runs, through .ci/run).
test *ARGS:
    {{python}} -m pytest -n 2 -q {{ARGS}}

# Lint and format-check.
lint:
    ruff check lvm experiments bench tests
    ruff format --check lvm experiments bench tests

# Regenerate every figure in paper_figures/ (each experiments/*.py, skipping _helpers).
figures *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    for script in experiments/[!_]*.py; do
        echo "== $script"
        {{python}} "$script" {{ARGS}}
    done

# Smoke-run every figure script with --quick into a scratch directory.
figures-quick:
    just figures --quick --out-dir /tmp/lvm-figures-quick

# Run every benchmark in bench/ (JSON lines on stdout).
bench:
    #!/usr/bin/env bash
    set -euo pipefail
    for script in bench/[!_]*.py; do
        echo "== $script" >&2
        {{python}} "$script"
    done
