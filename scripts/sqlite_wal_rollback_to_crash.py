#!/usr/bin/python3
"""Pure SQLite (no crsync): WAL frame overwrite + ROLLBACK TO + COMMIT, then a crash.

In one write transaction: SAVEPOINT s; an UPDATE over many pages spills them to
the WAL (cache_size is tiny); a page spilled earlier is dirtied again and
spilled again, which overwrites its frame in place (SQLite sets iReCksum);
ROLLBACK TO s moves the WAL write position back below that frame; a small
UPDATE; COMMIT returns OK.  The process then dies without closing (os._exit,
as a SIGKILL would).  A new process opens the database: the committed UPDATE
must be there.

SQLite 3.40.1 (Debian 12) loses it: see docs/reliability.md. Not run in CI
(it tests SQLite, not crsync). Usage: python3 scripts/sqlite_wal_rollback_to_crash.py
Exit 0 = the commit survived, 1 = it was lost."""
import os, shutil, sqlite3, subprocess, sys, tempfile
if len(sys.argv) > 1 and sys.argv[1] == "child":
    db = sys.argv[3]
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA wal_autocheckpoint=%s" % sys.argv[2])
    c.execute("PRAGMA cache_size=10")
    c.execute("BEGIN")
    c.execute("SAVEPOINT s")
    c.execute("UPDATE t SET b = b || 'x' WHERE a < 4000")    # spills ~ many pages
    c.execute("UPDATE t SET b = b || 'y' WHERE a = 2000")    # re-dirty a spilled page
    c.execute("UPDATE t SET b = b || 'z' WHERE a >= 4000 AND a < 8000")  # evicts it again: frame overwritten
    c.execute("ROLLBACK TO s")
    c.execute("UPDATE t SET b = 'committed' WHERE a = 10")
    c.execute("COMMIT")
    print("child: committed; value now", c.execute("SELECT b FROM t WHERE a = 10").fetchone()[0], "sqlite", sqlite3.sqlite_version, flush=True)
    os._exit(0)
D = tempfile.mkdtemp(prefix="sqlite-wal-repro-")
db = os.path.join(D, "t.db")
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT)")
c.execute("BEGIN")
c.executemany("INSERT INTO t VALUES (?, ?)", [(i, "v%06d" % i * 8) for i in range(10000)])
c.execute("COMMIT")
c.close()
ckpt = sys.argv[1] if len(sys.argv) > 1 else "0"
print(subprocess.run([sys.executable, __file__, "child", ckpt, db], capture_output=True, text=True).stdout.strip())
c = sqlite3.connect(db, isolation_level=None)
v = c.execute("SELECT b FROM t WHERE a = 10").fetchone()[0]
print("after crash: value", v[:20], "integrity", c.execute("PRAGMA integrity_check").fetchall()[:3])
c.close()
shutil.rmtree(D)
print("RESULT:", "OK" if v == "committed" else "COMMITTED TRANSACTION LOST")
sys.exit(0 if v == "committed" else 1)
