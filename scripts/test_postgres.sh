# Sourced by `make test`: provides MODELYARD_TEST_POSTGRES_URL by starting (or reusing) a throwaway
# PostgreSQL cluster under /tmp when PostgreSQL's binaries are installed. Without them the
# PostgreSQL half of the parametrized tests is skipped, unless MODELYARD_REQUIRE_POSTGRES=1 (CI),
# where it fails.
if [ -z "${MODELYARD_TEST_POSTGRES_URL:-}" ]; then
  _pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$_pgbin" ] && [ -x "$_pgbin/initdb" ]; then
    _pgdir=/tmp/modelyard-test-pg
    _pgport=${MODELYARD_TEST_PG_PORT:-55432}
    _run() { if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
    if [ ! -f "$_pgdir/PG_VERSION" ]; then
      mkdir -p "$_pgdir" && { [ "$(id -u)" -ne 0 ] || chown postgres "$_pgdir"; }
      _run "$_pgbin/initdb -D $_pgdir -A trust -U modelyard >/dev/null"
    fi
    if ! _run "$_pgbin/pg_ctl -D $_pgdir status >/dev/null 2>&1"; then
      _run "$_pgbin/pg_ctl -D $_pgdir -o '-p $_pgport -k /tmp -c fsync=off -c max_connections=200' -l $_pgdir/log -w start >/dev/null"
    fi
    export MODELYARD_TEST_POSTGRES_URL="postgresql+psycopg://modelyard@127.0.0.1:$_pgport/postgres"
    echo "PostgreSQL for tests: $MODELYARD_TEST_POSTGRES_URL"
  else
    echo "PostgreSQL not installed: PostgreSQL-parametrized tests will be skipped"
  fi
fi
