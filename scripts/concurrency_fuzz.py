#!/usr/bin/env python3
"""Differential / invariant fuzzer for crsync's db_version allocation across
several connections to one WAL database file (same process, ctypes).

Usage:
  python3 scripts/concurrency_fuzz.py [--lib build/vfs/libcrsync.so] --seeds 200 [--seed S]
      [--conns N] [--steps N] [--mix default|txn|merge|next|write] [--shrink] [--verbose]

Not run in CI (a few minutes per thousand seeds). Found the row-move
divergence fixed on 2026-12-07 (an UPDATE OR REPLACE onto a live row left a
clock at an announced version with a new value).

Each seed: fresh WAL db + 1-2 random CRRs + 2-4 connections (busy_timeout 0)
+ a "peer" database whose changes are merged.  A random deterministic
interleaving of steps runs; after every step an observer connection checks:
  I1 cursor safety: a change that becomes visible later never has
     db_version <= a version already announced by crsql_db_version() outside
     a transaction (nor does a visible change mutate in place).
  I2 one committed txn -> its new records are all above the previous
     committed version; a simple txn (no merge, no next_db_version(n)) uses
     exactly one db_version; no db_version is shared by two txns.
  I3 crsql_db_version() never decreases on any connection, equals the
     observer's value outside txns and in write txns, equals max db_version.
  I4 in a simple (local-only) txn, seq values are distinct.
  I5 replaying all changes (9 columns) into a fresh db gives the same tables.
Also: crash (runs seeds in a child process), unexpected SQLITE_BUSY, odd errors.

Every executed step is concrete SQL, so a failing seed is replayed and shrunk
(--shrink) to a minimal per-connection SQL sequence, printed as an sqlite3
shell script using `.connection N`.
"""
import argparse
import ctypes
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import traceback

SQLITE_OK, SQLITE_ROW, SQLITE_DONE = 0, 100, 101
SQLITE_BUSY = 5
SQLITE_TRANSIENT = ctypes.c_void_p(-1)

lib = ctypes.CDLL("libsqlite3.so.0")
lib.sqlite3_open_v2.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_char_p]
lib.sqlite3_close_v2.argtypes = [ctypes.c_void_p]
lib.sqlite3_enable_load_extension.argtypes = [ctypes.c_void_p, ctypes.c_int]
lib.sqlite3_load_extension.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
lib.sqlite3_prepare_v2.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_char_p)]
lib.sqlite3_step.argtypes = [ctypes.c_void_p]
lib.sqlite3_finalize.argtypes = [ctypes.c_void_p]
lib.sqlite3_column_count.argtypes = [ctypes.c_void_p]
lib.sqlite3_column_type.argtypes = [ctypes.c_void_p, ctypes.c_int]
lib.sqlite3_column_int64.argtypes = [ctypes.c_void_p, ctypes.c_int]
lib.sqlite3_column_int64.restype = ctypes.c_int64
lib.sqlite3_column_double.argtypes = [ctypes.c_void_p, ctypes.c_int]
lib.sqlite3_column_double.restype = ctypes.c_double
lib.sqlite3_column_blob.argtypes = [ctypes.c_void_p, ctypes.c_int]
lib.sqlite3_column_blob.restype = ctypes.c_void_p
lib.sqlite3_column_bytes.argtypes = [ctypes.c_void_p, ctypes.c_int]
lib.sqlite3_errmsg.argtypes = [ctypes.c_void_p]
lib.sqlite3_errmsg.restype = ctypes.c_char_p
lib.sqlite3_busy_timeout.argtypes = [ctypes.c_void_p, ctypes.c_int]
lib.sqlite3_get_autocommit.argtypes = [ctypes.c_void_p]
lib.sqlite3_txn_state.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
lib.sqlite3_extended_result_codes.argtypes = [ctypes.c_void_p, ctypes.c_int]
lib.sqlite3_free.argtypes = [ctypes.c_void_p]

EXT_PATH = None
AVOID_KNOWN = False
RECURSIVE_TRIGGERS = False


class SqlError(Exception):
    def __init__(self, rc, msg):
        super().__init__("rc=%d %s" % (rc, msg))
        self.rc, self.msg = rc, msg


class Conn:
    def __init__(self, path, name):
        self.name = name
        self.db = ctypes.c_void_p()
        rc = lib.sqlite3_open_v2(path.encode(), ctypes.byref(self.db), 0x2 | 0x4, None)
        if rc:
            raise SqlError(rc, "open")
        lib.sqlite3_extended_result_codes(self.db, 1)
        lib.sqlite3_busy_timeout(self.db, 0)
        lib.sqlite3_enable_load_extension(self.db, 1)
        err = ctypes.c_char_p()
        rc = lib.sqlite3_load_extension(self.db, EXT_PATH.encode(), None, ctypes.byref(err))
        if rc:
            raise SqlError(rc, "load: %s" % err.value)

    def close(self):
        lib.sqlite3_close_v2(self.db)

    def autocommit(self):
        return lib.sqlite3_get_autocommit(self.db) != 0

    def txn_state(self):
        return lib.sqlite3_txn_state(self.db, b"main")

    def run(self, sql):
        """Runs every statement of sql; returns rows of the last one.
        Raises SqlError on the first failure."""
        data = sql.encode()
        buf = ctypes.create_string_buffer(data)
        ptr = ctypes.cast(buf, ctypes.c_void_p).value
        end = ptr + len(data)
        rows = []
        while ptr < end:
            st = ctypes.c_void_p()
            tail = ctypes.c_char_p()
            rc = lib.sqlite3_prepare_v2(self.db, ctypes.c_char_p(ptr), end - ptr, ctypes.byref(st), ctypes.byref(tail))
            if rc:
                raise SqlError(rc, lib.sqlite3_errmsg(self.db).decode(errors="replace"))
            tailp = ctypes.cast(tail, ctypes.c_void_p).value
            if not st.value:
                break
            rows = []
            while True:
                rc = lib.sqlite3_step(st)
                if rc == SQLITE_ROW:
                    n = lib.sqlite3_column_count(st)
                    rows.append(tuple(self._col(st, i) for i in range(n)))
                    continue
                break
            if rc != SQLITE_DONE:
                msg = lib.sqlite3_errmsg(self.db).decode(errors="replace")
                lib.sqlite3_finalize(st)
                raise SqlError(rc, msg)
            lib.sqlite3_finalize(st)
            if tailp is None or tailp <= ptr:
                break
            ptr = tailp
        return rows

    @staticmethod
    def _col(st, i):
        t = lib.sqlite3_column_type(st, i)
        if t == 1:
            return lib.sqlite3_column_int64(st, i)
        if t == 2:
            return lib.sqlite3_column_double(st, i)
        if t == 5:
            return None
        p = lib.sqlite3_column_blob(st, i)
        n = lib.sqlite3_column_bytes(st, i)
        b = ctypes.string_at(p, n) if n else b""
        return b.decode("utf-8", errors="surrogateescape") if t == 3 else b


def lit(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, bytes):
        return "X'%s'" % v.hex().upper()
    return "'" + str(v).replace("'", "''") + "'"


CHANGES_COLS = '"table", pk, cid, val, col_version, db_version, site_id, cl, seq'


class Violation(Exception):
    def __init__(self, kind, msg):
        super().__init__("%s: %s" % (kind, msg))
        self.kind, self.msg = kind, msg


# ---------------------------------------------------------------- schema

def gen_schema(rng):
    tables = []
    for ti in range(rng.randint(1, 2)):
        name = "t%d" % ti
        npk = rng.randint(1, 2)
        nval = rng.randint(1, 3)
        pks = []
        for i in range(npk):
            ty = rng.choice(["INTEGER", "TEXT", ""])
            pks.append(("p%d" % (i + 1), ty))
        vals = []
        check_col = None
        for i in range(nval):
            c = "v%d" % (i + 1)
            ty = rng.choice(["", "INTEGER", "TEXT", "ANY"])
            extra = ""
            r = rng.random()
            if r < 0.25 and check_col is None:
                extra = " CHECK (%s IS NULL OR %s < 100)" % (c, c)
                check_col = c
                ty = "INTEGER"
            elif r < 0.45:
                extra = " NOT NULL DEFAULT 0"
            elif r < 0.6:
                extra = " DEFAULT 'd'"
            vals.append((c, ty, extra))
        if npk == 1 and pks[0][1] == "INTEGER" and rng.random() < 0.5:
            coldefs = ["%s INTEGER PRIMARY KEY NOT NULL" % pks[0][0]]
            pkclause = ""
        else:
            coldefs = ["%s %s NOT NULL" % (n, t) for n, t in pks]
            pkclause = ", PRIMARY KEY (%s)" % ", ".join(n for n, _ in pks)
        coldefs += ["%s %s%s" % (c, t, e) for c, t, e in vals]
        ddl = "CREATE TABLE %s (%s%s)" % (name, ", ".join(coldefs), pkclause)
        tables.append({"name": name, "pks": pks, "vals": vals, "check": check_col, "ddl": ddl})
    if rng.random() < 0.4:  # a table made a CRR (and maybe undone) mid-run
        tables.append({"name": "tx", "pks": [("p1", "INTEGER")], "vals": [("v1", "", ""), ("v2", "", "")],
                       "check": None, "late": True,
                       "ddl": "CREATE TABLE tx (p1 INTEGER NOT NULL PRIMARY KEY, v1, v2)",
                       "fill": "INSERT INTO tx VALUES (0, 'a', 1), (1, 'b', 2), (3, NULL, 'c')"})
    return tables


def pk_value(rng, ty):
    k = rng.randint(0, 5)
    if ty == "TEXT":
        return "k%d" % k
    if ty == "" and rng.random() < 0.2:
        return "s%d" % k
    return k


def val_value(rng, tbl, col):
    if col == tbl["check"]:
        return rng.choice([None, 0, 1, 2, 3, 5, 7])
    r = rng.random()
    if r < 0.1:
        return None
    if r < 0.6:
        return rng.randint(0, 4)
    if r < 0.9:
        return rng.choice(["a", "b", "c"])
    if r < 0.95:
        return 1.5
    return b"\x01\x02"


def pk_where(tbl, pkv):
    return " AND ".join("%s = %s" % (n, lit(v)) for (n, _), v in zip(tbl["pks"], pkv))


def gen_write(rng, tbl, allow_fail=True):
    """A random write statement on tbl (concrete SQL)."""
    name = tbl["name"]
    pkn = [n for n, _ in tbl["pks"]]
    vcols = [c for c, _, _ in tbl["vals"]]
    mk_pk = lambda: [pk_value(rng, t) for _, t in tbl["pks"]]
    r = rng.random()
    if r < 0.28:  # single insert, maybe with conflict clause / upsert
        pkv = mk_pk()
        cols = list(vcols) if rng.random() < 0.7 else rng.sample(vcols, rng.randint(1, len(vcols)))
        vv = [val_value(rng, tbl, c) for c in cols]
        verb = rng.choice(["INSERT", "INSERT", "INSERT OR IGNORE", "INSERT OR REPLACE", "INSERT OR FAIL", "REPLACE"])
        sql = "%s INTO %s (%s) VALUES (%s)" % (verb, name, ", ".join(pkn + cols),
                                              ", ".join(lit(v) for v in pkv + vv))
        if verb == "INSERT" and rng.random() < 0.4:
            sql += " ON CONFLICT DO UPDATE SET %s" % ", ".join("%s = excluded.%s" % (c, c) for c in cols)
        return sql
    if r < 0.43 and allow_fail and r >= 0.40 and tbl["check"]:  # next_db_version inside a statement
        c0 = [c for c in vcols if c != tbl["check"]]
        if c0:
            cols = [c0[0], tbl["check"]]
            rows = []
            for i in range(rng.randint(1, 3)):
                rows.append("(%s, crsql_next_db_version(crsql_db_version() + %d), %s)" % (
                    ", ".join(lit(v) for v in mk_pk()), rng.choice([0, 1, 3, 30]),
                    rng.choice(["1", "2", "500"])))
            return "INSERT OR %s INTO %s (%s) VALUES %s" % (rng.choice(["ABORT", "FAIL", "IGNORE"]), name,
                                                          ", ".join(pkn + cols), ", ".join(rows))
    if r < 0.43 and allow_fail:  # multi-row insert that may fail midway
        nrows = rng.randint(2, 4)
        rows = []
        for i in range(nrows):
            pkv = mk_pk()
            vv = [val_value(rng, tbl, c) for c in vcols]
            if i >= 1 and tbl["check"] and rng.random() < 0.4:
                vv[vcols.index(tbl["check"])] = 500
            rows.append("(%s)" % ", ".join(lit(v) for v in pkv + vv))
        verb = rng.choice(["INSERT", "INSERT OR FAIL", "INSERT OR IGNORE", "INSERT OR REPLACE", "INSERT OR ABORT",
                           "INSERT OR FAIL", "INSERT OR ROLLBACK"])
        return "%s INTO %s (%s) VALUES %s" % (verb, name, ", ".join(pkn + vcols), ", ".join(rows))
    if r < 0.55:  # update of one row
        c = rng.choice(vcols)
        verb = rng.choice(["UPDATE", "UPDATE", "UPDATE OR FAIL"])
        sets = "%s = %s" % (c, lit(val_value(rng, tbl, c)))
        if len(vcols) > 1 and rng.random() < 0.4:
            c2 = rng.choice([x for x in vcols if x != c])
            sets += ", %s = %s" % (c2, lit(val_value(rng, tbl, c2)))
        return "%s %s SET %s WHERE %s" % (verb, name, sets, pk_where(tbl, mk_pk()))
    if r < 0.63:  # multi-row update, maybe failing midway on the CHECK
        verb = rng.choice(["UPDATE", "UPDATE OR FAIL", "UPDATE OR IGNORE"])
        if tbl["check"] and rng.random() < 0.6:
            c = tbl["check"]
            return "%s %s SET %s = %s * 40 + 1" % (verb, name, c, c)
        c = rng.choice(vcols)
        return "%s %s SET %s = %s WHERE %s >= %s" % (verb, name, c, lit(val_value(rng, tbl, c)), pkn[0],
                                                    lit(pk_value(rng, tbl["pks"][0][1])))
    if r < 0.70:  # no-op update
        c = rng.choice(vcols)
        if rng.random() < 0.5:
            return "UPDATE %s SET %s = %s" % (name, c, c)
        return "UPDATE %s SET %s = %s WHERE %s" % (name, c, c, pk_where(tbl, mk_pk()))
    if r < 0.82:  # delete
        if rng.random() < 0.7:
            return "DELETE FROM %s WHERE %s" % (name, pk_where(tbl, mk_pk()))
        if rng.random() < 0.3:
            return "DELETE FROM %s" % name
        return "DELETE FROM %s WHERE %s <= %s" % (name, pkn[0], lit(pk_value(rng, tbl["pks"][0][1])))
    if r < 0.92:  # pk change
        verb = rng.choice(["UPDATE", "UPDATE", "UPDATE OR REPLACE", "UPDATE OR FAIL", "UPDATE OR IGNORE"])
        if AVOID_KNOWN and verb == "UPDATE OR REPLACE":
            verb = "UPDATE OR IGNORE"  # known bug 1: pk move onto a live row keeps its stale clocks
        p = rng.randrange(len(pkn))
        if rng.random() < 0.7:
            return "%s %s SET %s = %s WHERE %s" % (verb, name, pkn[p], lit(pk_value(rng, tbl["pks"][p][1])),
                                                 pk_where(tbl, mk_pk()))
        if tbl["pks"][p][1] == "TEXT":
            return "%s %s SET %s = %s || 'x'" % (verb, name, pkn[p], pkn[p])
        return "%s %s SET %s = %s + 1" % (verb, name, pkn[p], pkn[p])
    # re-insert after delete in one statement pair
    pkv = mk_pk()
    vv = [val_value(rng, tbl, c) for c in vcols]
    return "DELETE FROM %s WHERE %s; INSERT INTO %s (%s) VALUES (%s)" % (
        name, pk_where(tbl, pkv), name, ", ".join(pkn + vcols), ", ".join(lit(v) for v in pkv + vv))


# ---------------------------------------------------------------- run state

class ConnState:
    def __init__(self):
        self.last_dbv = 0
        self.reset_txn()
        self.savepoints = []

    def reset_txn(self):
        self.merged = False
        self.next_floor = False
        self.rollback_to = False
        self.next_vals = []   # (value, floor given)
        self.first_next_nofloor = None
        self.wrote = False


class Runner:
    """Executes concrete steps on the main db and checks invariants."""

    def __init__(self, tmpdir, tables, nconns, verbose=False):
        self.tmpdir = tmpdir
        self.path = os.path.join(tmpdir, "main.db")
        self.tables = tables
        self.verbose = verbose
        setup = Conn(self.path, "setup")
        setup.run("PRAGMA journal_mode=WAL")
        for t in tables:
            setup.run(t["ddl"])
            if t.get("late"):
                setup.run(t["fill"])
            else:
                setup.run("SELECT crsql_as_crr('%s')" % t["name"])
        setup.close()
        self.as_table_done = False
        self.conns = []
        for i in range(nconns):
            c = Conn(self.path, "c%d" % i)
            c.run("PRAGMA synchronous=NORMAL")
            if RECURSIVE_TRIGGERS:
                c.run("PRAGMA recursive_triggers=ON")
            self.conns.append(c)
        self.states = [ConnState() for _ in range(nconns)]
        self.obs = Conn(self.path, "observer")
        self.obs.run("PRAGMA synchronous=NORMAL")
        self.site = self.obs.run("SELECT crsql_site_id()")[0][0]
        self.seen = set()
        self.prev = set()
        self.announced = 0
        self.obs_dbv = 0
        self.ver_owner = {}   # db_version -> txn serial
        self.txn_serial = 0
        self.errors = {}      # normalized error message -> example
        self.nsteps = 0
        self.busy = 0
        self.observe(initial=True)

    def close(self):
        for c in self.conns:
            c.close()
        self.obs.close()

    # -- observer
    def read_all(self, conn):
        rows = conn.run("SELECT %s FROM crsql_changes" % CHANGES_COLS)
        check_order(rows, "observer full scan")
        return set(rows)

    def observe(self, initial=False):
        d = self.obs.run("SELECT crsql_db_version()")[0][0]
        cur = self.read_all(self.obs)
        if d < self.obs_dbv:
            raise Violation("I3-decrease", "observer crsql_db_version went %d -> %d" % (self.obs_dbv, d))
        maxv = max([r[5] for r in cur], default=0)
        if d != maxv and not (self.as_table_done and d > maxv):
            raise Violation("I3-max", "crsql_db_version()=%d but max db_version in crsql_changes=%d" % (d, maxv))
        new = cur - self.prev
        for r in new:
            if r not in self.seen and r[5] <= self.announced:
                raise Violation("I1-cursor", "change %r appeared with db_version %d <= announced %d" %
                                (self.fmt(r), r[5], self.announced))
        self.seen |= cur
        self.announced = max(self.announced, d)
        old_d = self.obs_dbv
        self.obs_dbv = d
        self.prev = cur
        return new, old_d, d

    def fmt(self, r):
        return tuple(lit(x) if isinstance(x, bytes) else x for x in r)

    def busy_ok(self, ci, rc):
        # Another main connection holds the write lock, or ours is a stale snapshot.
        if rc == 517:
            return True
        return any(c.txn_state() == 2 for j, c in enumerate(self.conns) if j != ci)

    # -- one step
    def step(self, st):
        """st: dict(c=conn index, sql=..., kind=...). Returns ('ok'|'busy'|'error', rows|rc, msg)."""
        ci, sql, kind = st["c"], st["sql"], st["kind"]
        conn, cs = self.conns[ci], self.states[ci]
        self.nsteps += 1
        self.kstats = getattr(self, "kstats", {})
        if kind == "reopen":
            if not conn.autocommit():
                return ("error", 1, "in txn")
            conn.close()
            conn = self.conns[ci] = Conn(self.path, "c%d" % ci)
            if RECURSIVE_TRIGGERS:
                conn.run("PRAGMA recursive_triggers=ON")
            self.states[ci] = cs = ConnState()
            sql = "SELECT crsql_db_version()"
            kind = "dbv"
        was_auto = conn.autocommit()
        state_before = conn.txn_state()
        try:
            rows = conn.run(sql)
            res = ("ok", rows, None)
        except SqlError as e:
            res = ("error", e.rc, e.msg)
            if (e.rc & 0xff) == SQLITE_BUSY:
                res = ("busy", e.rc, e.msg)
                self.busy += 1
                if kind != "checkpoint" and not self.busy_ok(ci, e.rc):
                    raise Violation("busy", "conn %d got %s (%d) on %r, but no other connection writes; "
                                    "txn states %s" % (ci, e.msg, e.rc, sql,
                                                       [c.txn_state() for c in self.conns]))
            else:
                key = re.sub(r"\d+", "N", e.msg)
                key = re.sub(r"X'[0-9A-F]*'", "X", key)
                self.errors.setdefault(key, (sql, e.msg))
                if "assert" in e.msg.lower() or "internal" in e.msg.lower() or "corrupt" in e.msg.lower():
                    raise Violation("odd-error", "%r -> %s" % (sql, e.msg))
        now_auto = conn.autocommit()
        state_after = conn.txn_state()
        sk = (kind, res[0])
        self.kstats[sk] = self.kstats.get(sk, 0) + 1
        if self.verbose:
            print("  c%d %-8s %s -> %s" % (ci, kind, sql[:150], res[0] if res[0] == "ok" else res[1:]))

        # per-kind bookkeeping and checks
        if res[0] == "ok":
            if kind in ("write", "merge"):
                cs.wrote = True
            if "crsql_next_db_version(" in sql and kind == "write":
                cs.next_floor = True
            if kind == "merge":
                cs.merged = True
            if kind == "dbv":
                v = rows[0][0]
                if v < cs.last_dbv:
                    raise Violation("I3-decrease", "conn %d crsql_db_version() %d after %d" % (ci, v, cs.last_dbv))
                cs.last_dbv = v
                if now_auto or state_after == 2:
                    if v != self.obs_dbv:
                        raise Violation("I3-conn", "conn %d (%s) crsql_db_version()=%d, committed (observer) %d" %
                                        ("autocommit" if now_auto else "write txn", ci, v, self.obs_dbv)
                                        if False else "conn %d (%s) crsql_db_version()=%d, committed (observer) %d" %
                                        (ci, "autocommit" if now_auto else "write txn", v, self.obs_dbv))
                elif v > self.obs_dbv:
                    raise Violation("I3-conn", "conn %d (read txn) crsql_db_version()=%d > committed %d" %
                                    (ci, v, self.obs_dbv))
                if now_auto:
                    self.announced = max(self.announced, v)
            if kind in ("next", "next_n"):
                v = rows[0][0]
                floor = st.get("floor", 0)
                if now_auto:
                    exp = max(self.obs_dbv + 1, floor)
                    if v != exp:
                        raise Violation("next-outside", "conn %d crsql_next_db_version(%s) outside txn = %d, expected %d"
                                        % (ci, floor, v, exp))
                else:
                    if v < self.obs_dbv + 1 or v < floor:
                        raise Violation("next-low", "conn %d crsql_next_db_version(%s) = %d <= committed %d" %
                                        (ci, floor, v, self.obs_dbv))
                    if cs.next_vals and not cs.rollback_to and v < cs.next_vals[-1][0]:
                        raise Violation("next-decrease", "conn %d crsql_next_db_version went %d -> %d in one txn" %
                                        (ci, cs.next_vals[-1][0], v))
                    if state_after != 2:
                        raise Violation("next-lock", "conn %d crsql_next_db_version() in txn left txn state %d" %
                                        (ci, state_after))
                    if not cs.next_vals and not floor and not cs.wrote and not cs.merged:
                        cs.first_next_nofloor = v
                    cs.next_vals.append((v, floor))
                    if floor:
                        cs.next_floor = True
            if kind == "changes":
                check_order(rows, "conn %d %s" % (ci, sql[-30:]))
            if kind == "rollback_to":
                cs.rollback_to = True
            if kind == "admin":
                cs.wrote = True
                if "as_table" in sql:
                    self.as_table_done = True
        if kind == "next_n" and res[0] != "ok" and not now_auto:
            cs.next_floor = True
        if kind == "write" and "crsql_next_db_version(" in sql and not now_auto:
            cs.next_floor = True

        # what became visible
        ended = (not was_auto and now_auto) or (was_auto and now_auto)
        new, old_d, d = self.observe()
        if new and not ended:
            raise Violation("visible-early", "conn %d step %r made %d records visible while its txn is open" %
                            (ci, sql, len(new)))
        if ended:
            if new:
                vers = {r[5] for r in new}
                tag = "commit_%s%s%s%s" % ("M" if cs.merged or kind == "merge" else "", "N" if cs.next_floor else "",
                                           "R" if cs.rollback_to else "", "multi" if len(vers) > 1 else "")
                self.kstats[(tag, len(new) >= 5)] = self.kstats.get((tag, len(new) >= 5), 0) + 1
            self.check_commit(ci, cs, st, res, new, old_d, d)
            cs.reset_txn()
            cs.savepoints = []
        return res

    def check_commit(self, ci, cs, st, res, new, old_d, d):
        kind = st["kind"]
        if kind in ("rollback",) and new:
            raise Violation("rollback-visible", "ROLLBACK on conn %d left %d new records" % (ci, len(new)))
        if not new:
            if d != old_d:
                raise Violation("I2-noop-version", "conn %d txn recorded nothing but db_version %d -> %d" %
                                (ci, old_d, d))
            return
        self.txn_serial += 1
        vers = sorted({r[5] for r in new})
        if vers[0] <= old_d:
            raise Violation("I2-low", "conn %d committed records at %s, committed was %d" % (ci, vers, old_d))
        if d != vers[-1]:
            raise Violation("I2-max", "conn %d committed versions %s but crsql_db_version()=%d" % (ci, vers, d))
        merged = cs.merged or kind == "merge"
        simple = not merged and not cs.next_floor and "crsql_next_db_version(" not in st["sql"]
        if simple and len(vers) != 1:
            raise Violation("I2-multi", "conn %d local-only txn committed several versions %s" % (ci, vers))
        for v in vers:
            if v in self.ver_owner and self.ver_owner[v] != self.txn_serial:
                raise Violation("I2-shared", "db_version %d used by two txns" % v)
            self.ver_owner[v] = self.txn_serial
        if simple:
            seqs = [r[8] for r in new if r[5] == vers[0]]
            if len(seqs) != len(set(seqs)):
                raise Violation("I4-seq", "conn %d local txn at v%d has duplicate seqs %s" % (ci, vers[0], sorted(seqs)))
            if any(r[6] != self.site for r in new):
                raise Violation("origin", "local-only txn recorded non-local origin")
        if not merged and not cs.rollback_to and cs.next_vals:
            top = max(v for v, _ in cs.next_vals)
            if vers[-1] > top and not cs.wrote:
                raise Violation("next-mismatch", "conn %d txn committed %s above reported pending %d" % (ci, vers, top))
            if cs.first_next_nofloor is not None and vers[0] < cs.first_next_nofloor:
                raise Violation("next-mismatch", "conn %d: crsql_next_db_version() said %d but txn committed %s" %
                                (ci, cs.first_next_nofloor, vers))
            if not cs.next_floor and vers != [cs.next_vals[-1][0]]:
                raise Violation("next-mismatch", "conn %d: crsql_next_db_version() said %d but txn committed %s" %
                                (ci, cs.next_vals[-1][0], vers))

    def finish(self):
        """Roll back open txns, then replay check (I5)."""
        for i, c in enumerate(self.conns):
            if not c.autocommit():
                self.step({"c": i, "sql": "ROLLBACK", "kind": "rollback"})
        replay_check(self)


def check_order(rows, what):
    keys = [(r[5], r[8]) for r in rows]
    if keys != sorted(keys):
        i = next(i for i in range(1, len(keys)) if keys[i] < keys[i - 1])
        raise Violation("order", "%s: crsql_changes rows not in (db_version, seq) order at %d: %s then %s" %
                        (what, i, keys[i - 1], keys[i]))


def table_rows(conn, tbl):
    order = ", ".join(n for n, _ in tbl["pks"])
    return conn.run("SELECT * FROM %s ORDER BY %s" % (tbl["name"], order))


def replay_check(r):
    path = os.path.join(r.tmpdir, "replay.db")
    for suf in ("", "-wal", "-shm"):
        if os.path.exists(path + suf):
            os.unlink(path + suf)
    rc = Conn(path, "replay")
    crrs = [t for t in r.tables if r.obs.run(
        "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = '%s'" % t["name"])[0][0]]
    for t in r.tables:
        rc.run(t["ddl"])
        rc.run("SELECT crsql_as_crr('%s')" % t["name"])
    changes = r.obs.run("SELECT %s FROM crsql_changes ORDER BY db_version, seq" % CHANGES_COLS)
    rc.run("BEGIN")
    for ch in changes:
        try:
            rc.run("INSERT INTO crsql_changes (%s) VALUES (%s)" % (CHANGES_COLS, ", ".join(lit(x) for x in ch)))
        except SqlError as e:
            rc.run("ROLLBACK")
            rc.close()
            raise Violation("I5-replay-error", "replaying %r: %s" % (r.fmt(ch), e.msg))
    rc.run("COMMIT")
    for t in crrs:
        a, b = table_rows(r.obs, t), table_rows(rc, t)
        if a != b:
            rc.close()
            raise Violation("I5-replay", "table %s differs after replay:\n   main   %s\n   replay %s" % (t["name"], a, b))
    # metadata (everything but the local db_version/seq; origin of local = main's site id)
    # (a sentinel's origin depends on delivery order when a column change
    # of the same life arrives first: C6 gives it the column's origin)
    key = lambda ch: (ch[0], ch[1], ch[2], ch[3], ch[4], None if ch[2] == "-1" else ch[6], ch[7])
    # an explicit cl-1 sentinel and an implicit cl 1 are the same state
    live1 = lambda ch: not (ch[2] == "-1" and ch[7] == 1)
    ma = sorted(map(key, filter(live1, changes)), key=repr)
    mb = sorted(map(key, filter(live1, rc.run("SELECT %s FROM crsql_changes" % CHANGES_COLS))), key=repr)
    rc.close()
    if ma != mb:
        raise Violation("I5-replay-meta", "crsql_changes differ after replay:\n   main   %s\n   replay %s" %
                        (sorted(set(ma) - set(mb), key=repr), sorted(set(mb) - set(ma), key=repr)))


# ---------------------------------------------------------------- generation

MIXES = {
    # weights: txn-control, write, merge, dbv, next, changes, peer-write, peer-pull
    "default": dict(txn=22, write=32, merge=10, dbv=10, next=7, changes=5, peer=12, pull=2, reopen=2, checkpoint=2),
    "txn": dict(txn=40, write=30, merge=5, dbv=10, next=5, changes=3, peer=6, pull=1),
    "merge": dict(txn=18, write=18, merge=30, dbv=8, next=4, changes=4, peer=16, pull=4),
    "next": dict(txn=25, write=25, merge=8, dbv=12, next=20, changes=4, peer=6, pull=1),
    "write": dict(txn=15, write=60, merge=5, dbv=8, next=3, changes=3, peer=6, pull=1),
    "long": dict(txn=12, write=45, merge=10, dbv=8, next=10, changes=4, peer=6, pull=1, admin=1, longtxn=1),
    "admin": dict(txn=20, write=30, merge=10, dbv=10, next=6, changes=4, peer=8, pull=2, admin=6, reopen=3,
                  checkpoint=2),
}


class Generator:
    def __init__(self, seed, nconns=None, nsteps=None, mix="default"):
        self.seed = seed
        self.rng = random.Random(seed)
        rng = self.rng
        self.tables = gen_schema(rng)
        self.nconns = nconns or rng.randint(2, 4)
        self.nsteps = nsteps or rng.randint(40, 160)
        self.mix = MIXES[mix if mix != "random" else rng.choice(sorted(MIXES))]
        self.merged_before = []
        self.queue = []

    def peer_setup(self, tmpdir):
        self.peer_path = os.path.join(tmpdir, "peer.db")
        p = Conn(self.peer_path, "peer")
        p.run("PRAGMA journal_mode=WAL")
        for t in self.tables:
            p.run(t["ddl"])
            p.run("SELECT crsql_as_crr('%s')" % t["name"])
        self.peer = p

    def peer_write(self):
        for _ in range(self.rng.randint(1, 3)):
            t = self.rng.choice(self.tables)
            try:
                self.peer.run(gen_write(self.rng, t))
            except SqlError:
                pass

    def peer_pull(self, runner):
        rows = runner.obs.run("SELECT %s FROM crsql_changes" % CHANGES_COLS)
        try:
            self.peer.run("BEGIN")
            for ch in rows:
                self.peer.run("INSERT INTO crsql_changes (%s) VALUES (%s)" % (CHANGES_COLS, ", ".join(lit(x) for x in ch)))
            self.peer.run("COMMIT")
        except SqlError:
            if not self.peer.autocommit():
                self.peer.run("ROLLBACK")

    def merge_sql(self):
        rng = self.rng
        rows = self.peer.run("SELECT %s FROM crsql_changes ORDER BY db_version, seq" % CHANGES_COLS)
        if not rows:
            return None
        r = rng.random()
        if r < 0.35:
            cut = rng.choice(rows)[5]
            pick = [x for x in rows if x[5] >= cut]
        elif r < 0.6:
            pick = [x for x in rows if rng.random() < 0.4] or rows[:1]
        elif r < 0.8 and self.merged_before:
            pick = rng.choice(self.merged_before)  # re-merge: all lose
        else:
            pick = rows
        pick = pick[:40]
        if rng.random() < 0.25:
            off = rng.choice([3, 20, 1000])
            pick = [x[:5] + (x[5] + off,) + x[6:] for x in pick]
        self.merged_before.append(pick)
        if len(self.merged_before) > 10:
            self.merged_before.pop(0)
        if rng.random() < 0.12:  # 7-value form
            return "INSERT INTO crsql_changes VALUES %s" % ", ".join(
                "(%s)" % ", ".join(lit(x) for x in ch[:7]) for ch in pick)
        vals = ["(%s)" % ", ".join(lit(x) for x in ch) for ch in pick]
        if rng.random() < 0.08:  # a bad last row: the whole statement is undone
            ch = pick[-1]
            vals.append("(%s)" % ", ".join(lit(x) for x in (ch[0], ch[1], "nope", 1, 1, ch[5], ch[6], 1, 0)))
        return "INSERT INTO crsql_changes (%s) VALUES %s" % (CHANGES_COLS, ", ".join(vals))

    def next_step(self, runner):
        rng = self.rng
        if self.queue:
            return self.queue.pop(0)
        w = dict(self.mix)
        longtxn = w.pop("longtxn", 0)
        kinds = list(w)
        k = rng.choices(kinds, weights=[w[x] for x in kinds])[0]
        if k == "peer":
            self.peer_write()
            return None
        if k == "pull":
            self.peer_pull(runner)
            return None
        ci = rng.randrange(self.nconns)
        holders = [i for i, c in enumerate(runner.conns) if c.txn_state() == 2]
        if holders and rng.random() < 0.6:
            ci = holders[0]
        conn, cs = runner.conns[ci], runner.states[ci]
        auto = conn.autocommit()
        if k == "txn":
            opts = []
            if auto:
                opts += [("BEGIN", "begin")] * 3 + [("BEGIN IMMEDIATE", "begin")] * 2 + [("BEGIN DEFERRED", "begin")]
            else:
                if longtxn and rng.random() < 0.6:
                    opts += [("SAVEPOINT sp%d" % rng.randint(0, 3), "savepoint")] * 2
                else:
                    opts += [("COMMIT", "commit")] * 4 + [("ROLLBACK", "rollback")] * 2 + [("END", "commit")]
                if cs.savepoints:
                    sp = rng.choice(cs.savepoints)
                    opts += [("ROLLBACK TO %s" % sp, "rollback_to")] * 3 + [("RELEASE %s" % sp, "release")] * 2
            sp = "sp%d" % rng.randint(0, 3)
            opts.append(("SAVEPOINT %s" % sp, "savepoint"))
            sql, kind = rng.choice(opts)
            if kind == "savepoint":
                cs.savepoints.append(sql.split()[-1])
            elif kind == "release":
                n = sql.split()[-1]
                idx = max(i for i, s in enumerate(cs.savepoints) if s == n)
                cs.savepoints = cs.savepoints[:idx]
            elif kind == "rollback_to":
                n = sql.split()[-1]
                idx = max(i for i, s in enumerate(cs.savepoints) if s == n)
                cs.savepoints = cs.savepoints[:idx + 1]
            return {"c": ci, "sql": sql, "kind": kind}
        if k == "reopen":
            return {"c": ci, "sql": ".open", "kind": "reopen"}
        if k == "checkpoint":
            return {"c": ci, "sql": "PRAGMA wal_checkpoint(%s)" % rng.choice(["PASSIVE", "FULL", "RESTART", "TRUNCATE"]),
                    "kind": "checkpoint"}
        if k == "admin":
            if not any(t.get("late") for t in self.tables):
                return None
            f = rng.choice(["crsql_as_crr", "crsql_as_crr", "crsql_as_table"])
            return {"c": ci, "sql": "SELECT %s('tx')" % f, "kind": "admin"}
        if k == "write":
            sqls = gen_write(rng, rng.choice(self.tables)).split("; ")
            for extra in sqls[1:]:
                self.queue.append({"c": ci, "sql": extra, "kind": "write"})
            return {"c": ci, "sql": sqls[0], "kind": "write"}
        if k == "merge":
            sql = self.merge_sql()
            if sql is None:
                return None
            return {"c": ci, "sql": sql, "kind": "merge"}
        if k == "dbv":
            return {"c": ci, "sql": "SELECT crsql_db_version()", "kind": "dbv"}
        if k == "next":
            if rng.random() < 0.5:
                return {"c": ci, "sql": "SELECT crsql_next_db_version()", "kind": "next"}
            floor = runner.obs_dbv + rng.choice([-1, 0, 1, 2, 5, 40])
            floor = max(floor, 0)
            return {"c": ci, "sql": "SELECT crsql_next_db_version(%d)" % floor, "kind": "next_n", "floor": floor}
        if k == "changes":
            cur = max(0, runner.states[ci].last_dbv - rng.randint(0, 3))
            return {"c": ci, "sql": "SELECT %s FROM crsql_changes WHERE db_version > %d" % (CHANGES_COLS, cur),
                    "kind": "changes"}
        return None

    def busy_followup(self, st, res, runner):
        """Deterministic BUSY policy: in a txn, roll back half of the time."""
        conn = runner.conns[st["c"]]
        if res[0] == "busy" and not conn.autocommit() and self.rng.random() < 0.5:
            runner.states[st["c"]].savepoints = []
            return {"c": st["c"], "sql": "ROLLBACK", "kind": "rollback"}
        # a txn stuck on a stale snapshot must not retry forever
        if res[0] == "busy" and res[1] == 517 and not conn.autocommit():
            runner.states[st["c"]].savepoints = []
            return {"c": st["c"], "sql": "ROLLBACK", "kind": "rollback"}
        return None


def run_seed(seed, args, record=None):
    tmpdir = tempfile.mkdtemp(prefix="crfz")
    gen = Generator(seed, args.conns, args.steps, args.mix)
    trace = []
    runner = None
    try:
        runner = Runner(tmpdir, gen.tables, gen.nconns, args.verbose)
        gen.peer_setup(tmpdir)
        while len(trace) < gen.nsteps:
            st = gen.next_step(runner)
            if st is None:
                continue
            trace.append(st)
            res = runner.step(st)
            fu = gen.busy_followup(st, res, runner)
            if fu:
                trace.append(fu)
                runner.step(fu)
        trace.append(None)  # marks finish
        runner.finish()
        return None, gen, trace, runner
    except Violation as v:
        return v, gen, trace, runner
    finally:
        if runner:
            runner.close()
        if hasattr(gen, "peer"):
            gen.peer.close()
        if record is not None:
            record.update(nsteps=len(trace), busy=runner.busy if runner else 0,
                          kstats=getattr(runner, "kstats", {}) if runner else {},
                          errors=runner.errors if runner else {})
        shutil.rmtree(tmpdir, ignore_errors=True)


def replay(tables, nconns, steps, verbose=False):
    """Runs concrete steps; returns the Violation (or None)."""
    tmpdir = tempfile.mkdtemp(prefix="crfzr")
    runner = None
    try:
        runner = Runner(tmpdir, tables, nconns, verbose)
        for st in steps:
            runner.step(st)
        runner.finish()
        return None
    except Violation as v:
        return v
    finally:
        if runner:
            runner.close()
        shutil.rmtree(tmpdir, ignore_errors=True)


def shrink(tables, nconns, steps, kind):
    def fails(s):
        v = replay(tables, nconns, s)
        return v is not None and v.kind == kind
    assert fails(steps), "does not reproduce in replay"
    # ddmin-ish: remove chunks, then single steps
    n = 2
    while len(steps) >= 2:
        chunk = max(1, len(steps) // n)
        removed = False
        for i in range(0, len(steps), chunk):
            cand = steps[:i] + steps[i + chunk:]
            if cand and fails(cand):
                steps = cand
                n = max(n - 1, 2)
                removed = True
                break
        if not removed:
            if chunk == 1:
                break
            n = min(len(steps), n * 2)
    # drop unused connections / renumber
    used = sorted({s["c"] for s in steps})
    remap = {c: i for i, c in enumerate(used)}
    steps2 = [dict(s, c=remap[s["c"]]) for s in steps]
    if fails_n(tables, len(used), steps2, kind):
        return len(used), steps2
    return nconns, steps


def fails_n(tables, nconns, steps, kind):
    v = replay(tables, nconns, steps)
    return v is not None and v.kind == kind


def shell_script(tables, nconns, steps, ext):
    out = ["-- run: rm -f /tmp/repro.db*; sqlite3 < this_file",
           ".open /tmp/repro.db", ".load %s" % ext.rsplit(".so", 1)[0], "PRAGMA journal_mode=WAL;"]
    for t in tables:
        out.append(t["ddl"] + ";")
        out.append("SELECT crsql_as_crr('%s');" % t["name"])
    for i in range(1, nconns):
        out += [".connection %d" % i, ".open /tmp/repro.db", ".load %s" % ext.rsplit(".so", 1)[0]]
    cur = None
    for s in steps:
        c = s["c"]
        if c != cur:
            out.append(".connection %d" % c)
            cur = c
        if s["kind"] == "reopen":
            out += [".open /tmp/repro.db", "SELECT crsql_db_version();"]
        else:
            out.append(s["sql"] + ";")
    return "\n".join(out)


def worker(args):
    total_steps = 0
    errs = {}
    nviol = 0
    kst = {}
    for seed in range(args.seed, args.seed + args.seeds):
        print("START %d" % seed, flush=True)
        rec = {}
        v, gen, trace, runner = run_seed(seed, args, rec)
        total_steps += rec.get("nsteps", 0)
        for k2, n2 in rec.get("kstats", {}).items():
            kst[k2] = kst.get(k2, 0) + n2
        for k, e in rec.get("errors", {}).items():
            errs.setdefault(k, e)
        if v is None:
            print("OK %d steps=%d conns=%d busy=%d" % (seed, rec["nsteps"], gen.nconns, rec["busy"]), flush=True)
            continue
        nviol += 1
        print("VIOLATION seed=%d %s" % (seed, v), flush=True)
        if args.shrink:
            steps = [s for s in trace if s is not None]
            try:
                nc, small = shrink(gen.tables, gen.nconns, steps, v.kind)
                v2 = replay(gen.tables, nc, small)
                print("SHRUNK to %d steps, %d conns: %s" % (len(small), nc, v2), flush=True)
                print(shell_script(gen.tables, nc, small, args.lib), flush=True)
            except AssertionError as e:
                print("SHRINK FAILED: %s" % e, flush=True)
    print("SUMMARY steps=%d violations=%d" % (total_steps, nviol), flush=True)
    print("STATS " + " ".join("%s/%s=%d" % (a, b, n) for (a, b), n in sorted(kst.items(), key=str)), flush=True)
    for k, (sql, msg) in sorted(errs.items()):
        print("ERRMSG %s   <- %s" % (msg[:200], sql[:160]), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                               "build", "vfs", "libcrsync.so"),
                    help="the loadable extension (default: build/vfs/libcrsync.so of this repository)")
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--conns", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--mix", default="random", choices=sorted(MIXES) + ["random"])
    ap.add_argument("--shrink", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--worker", action="store_true", help="run in this process (no crash isolation)")
    ap.add_argument("--avoid-known", action="store_true",
                    help="do not generate UPDATE OR REPLACE pk moves (they found the stale-clock bug fixed on 2026-12-07)")
    ap.add_argument("--recursive-triggers", action="store_true", help="PRAGMA recursive_triggers=ON on every connection")
    args = ap.parse_args()
    global EXT_PATH, AVOID_KNOWN, RECURSIVE_TRIGGERS
    AVOID_KNOWN = args.avoid_known
    RECURSIVE_TRIGGERS = args.recursive_triggers
    EXT_PATH = os.path.abspath(args.lib)
    if args.worker:
        worker(args)
        return
    # parent: run seeds in a child, restart after a crash
    start, end = args.seed, args.seed + args.seeds
    stats = dict(ok=0, viol=0, crash=0, steps=0)
    errmsgs = set()
    while start < end:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--lib", args.lib, "--seed", str(start),
               "--seeds", str(end - start), "--mix", args.mix]
        if args.conns:
            cmd += ["--conns", str(args.conns)]
        if args.steps:
            cmd += ["--steps", str(args.steps)]
        if args.shrink:
            cmd += ["--shrink"]
        if args.verbose:
            cmd += ["--verbose"]
        if args.avoid_known:
            cmd += ["--avoid-known"]
        if args.recursive_triggers:
            cmd += ["--recursive-triggers"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        cur = None
        tail = []
        for line in p.stdout:
            if line.startswith("START "):
                cur = int(line.split()[1])
                tail = []
                continue
            tail.append(line)
            if line.startswith("OK "):
                stats["ok"] += 1
                stats["steps"] += int(line.split("steps=")[1].split()[0])
                continue
            if line.startswith("SUMMARY") or line.startswith("STATS"):
                continue
            if line.startswith("ERRMSG"):
                errmsgs.add(line.rstrip())
                continue
            if line.startswith("VIOLATION"):
                stats["viol"] += 1
            sys.stdout.write(line)
            sys.stdout.flush()
        rc = p.wait()
        if rc == 0:
            break
        stats["crash"] += 1
        print("CRASH seed=%s exit=%d; last output:\n%s" % (cur, rc, "".join(tail[-20:])), flush=True)
        start = (cur if cur is not None else start) + 1
    print("DONE seeds=%d ok=%d violations=%d crashes=%d steps(ok seeds)=%d" %
          (args.seeds, stats["ok"], stats["viol"], stats["crash"], stats["steps"]))
    for m in sorted(errmsgs):
        print(m)


if __name__ == "__main__":
    main()
