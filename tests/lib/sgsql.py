#!/usr/bin/env python3
"""Read (or, for a test's setup, change) the store behind a fixture's
gateway, whichever backend the fixture gave it (tests/lib/gateway.sh
sg_store_conf): DIR/sealgate.db (SQLite), or the PostgreSQL cluster whose
conninfo is in DIR/store/conninfo (SG_TEST_STORE=pg).

    sgsql.py DIR SQL      print each row, columns joined by '|' (as the
                          sqlite3 shell does); exit 1 with the error

The SQL is written for SQLite; on PostgreSQL the few SQLite-only forms the
tests use are translated (the tables and columns have the same names):
LIKE is case-insensitive in SQLite, so it becomes ILIKE, and
json_extract(COL, '$.KEY') becomes a jsonb lookup giving what SQLite
gives (numbers as numbers, false/true as 0/1), hex(COL) encode(COL, 'hex')
in capitals, instr(A, B) strpos(A, B), a blob literal x'HEX' decode('HEX', 'hex'), WHERE 1 WHERE true."""
import os, re, subprocess, sys


def translate(sql):
    # sum(json_extract(...)) and json_extract(...) = N compare numbers.
    sql = re.sub(r"json_extract\((\w+), '\$\.(\w+)'\)(\s*[=<>!]+\s*)(\d+)\b",
                 r"(CASE jsonb_typeof(\1::jsonb->'\2') WHEN 'boolean' THEN "
                 r"(\1::jsonb->>'\2')::boolean::int WHEN 'number' THEN "
                 r"(\1::jsonb->>'\2')::numeric END)\3\4", sql)
    sql = re.sub(r"sum\(json_extract\((\w+), '\$\.(\w+)'\)\)",
                 r"sum((\1::jsonb->>'\2')::numeric)", sql)
    sql = re.sub(r"json_extract\((\w+), '\$\.(\w+)'\)", r"(\1::jsonb->>'\2')", sql)
    sql = re.sub(r"\bWHERE\s+1\b(?!\s*[-+*/=<>!])", "WHERE true", sql)
    sql = re.sub(r"\b[xX]'([0-9a-fA-F]*)'", r"decode('\1', 'hex')", sql)
    sql = re.sub(r"\bhex\((\w+)\)", r"upper(encode(\1, 'hex'))", sql)
    # instr(haystack, needle): strpos, the same 1-based position or 0
    sql = re.sub(r"\binstr\(", "strpos(", sql)
    return re.sub(r"\bLIKE\b", "ILIKE", sql)


def main():
    d, sql = sys.argv[1], sys.argv[2]
    ci = os.path.join(d, "store", "conninfo")
    if os.path.exists(ci):
        conn = open(ci).read().strip()
        p = subprocess.run(["psql", "-X", "-q", "-At", "-F", "|", "-v", "ON_ERROR_STOP=1",
                            "-d", conn, "-c", translate(sql)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            sys.stderr.write("sgsql: %s: %s" % (translate(sql), p.stderr))
            return 1
        sys.stdout.write(p.stdout)
        return 0
    import sqlite3
    path = os.path.join(d, "sealgate.db")
    ro = sql.lstrip().upper().startswith("SELECT")
    db = sqlite3.connect("file:%s%s" % (path, "?mode=ro" if ro else ""), uri=True, timeout=5)
    # text that is not UTF-8 (what the gateway must never store) is shown
    # as \xHH rather than failing the read
    db.text_factory = lambda b: b.decode("utf-8", "backslashreplace")
    try:
        for row in db.execute(sql):
            print("|".join("" if v is None else str(v) for v in row))
        db.commit()
    except sqlite3.Error as e:
        sys.stderr.write("sgsql: %s: %s\n" % (sql, e))
        return 1
    return 0


sys.exit(main())
