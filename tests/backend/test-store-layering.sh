#!/usr/bin/env bash
# The store's layering (docs/store.md): no gateway or tool source outside
# the SQLite backend (gateway/store/sqlite/) runs SQL or reaches SQLite:
# no <sqlite3.h>, no sqlite3_* call, no gw_store_db/gw_store_cached/
# gw_store_lock, and nothing includes the backend's private header; and
# no libpq outside the PostgreSQL backend (gateway/store/pg/). A
# second backend can only be added if every call goes through the store's
# interface.
#
# env: SEALGATE_SOURCE
set -euo pipefail
src=${SEALGATE_SOURCE:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$src"

bad=$(grep -nE 'sqlite3|gw_store_(db|cached|lock|unlock)\b|"sqlite_store\.h"' \
	gateway/*.c gateway/*.h gateway/store/*.c gateway/store/*.h tools/*.c tools/*.h 2>/dev/null |
	grep -v '^gateway/store/store\.h:.*\bstruct sqlite3\b' || true)
if [ -n "$bad" ]; then
	echo "not ok - SQLite reached outside gateway/store/sqlite/:"
	echo "$bad"
	exit 1
fi
echo "ok - no SQL and no SQLite handle outside gateway/store/sqlite/"

# Nor libpq outside the PostgreSQL backend (gateway/store/pg/).
bad=$(grep -nE 'libpq-fe\.h|\bPQ[a-zA-Z]+\(|\bPGconn\b|\bPGresult\b|"pg_store\.h"' \
	gateway/*.c gateway/*.h gateway/store/*.c gateway/store/*.h gateway/store/sqlite/*.c \
	gateway/store/sqlite/*.h tools/*.c tools/*.h 2>/dev/null || true)
if [ -n "$bad" ]; then
	echo "not ok - libpq reached outside gateway/store/pg/:"
	echo "$bad"
	exit 1
fi
echo "ok - no libpq outside gateway/store/pg/"
