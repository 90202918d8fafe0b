#!/usr/bin/env bash
# Regenerates the initial Alembic migration from the ORM models (pre-1.0: one initial revision).
# After the first release this becomes `alembic revision --autogenerate` on top of head.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f src/modelyard/server/migrations/versions/0001_initial.py
MODELYARD_DATABASE_URL="sqlite:///$tmp/m.db" .venv/bin/alembic -c src/modelyard/server/migrations/alembic.ini \
  revision --autogenerate --rev-id 0001 -m initial >/dev/null
mv src/modelyard/server/migrations/versions/0001_initial*.py src/modelyard/server/migrations/versions/0001_initial.py 2>/dev/null || true
.venv/bin/ruff check -q --fix src/modelyard/server/migrations/versions/ >/dev/null || true
.venv/bin/ruff format -q src/modelyard/server/migrations/versions/ || true
rm -rf "$tmp"
echo "regenerated src/modelyard/server/migrations/versions/0001_initial.py"
