/* tests/install/consumer.c — a C application built only from what
 * `meson install` puts on a machine (pkg-config crsync): it makes a CRR
 * through the VFS shim and reads its change back. Prints "ok" and exits 0,
 * or names the step that failed and exits 1. */
#include <crsync/crsync.h>
#include <crsync/vfs.h>
#include <stdio.h>

static int fail(sqlite3 *db, const char *step) {
  fprintf(stderr, "consumer: %s: %s\n", step, db ? sqlite3_errmsg(db) : "no connection");
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: consumer DB\n");
    return 2;
  }
  if (crsync_vfs_register(NULL, 1) != SQLITE_OK) return fail(NULL, "crsync_vfs_register");
  sqlite3 *db = NULL;
  if (sqlite3_open(argv[1], &db) != SQLITE_OK) return fail(db, "open");
  int rc = sqlite3_exec(db,
                        "CREATE TABLE todo (id PRIMARY KEY NOT NULL, title);"
                        "SELECT crsql_as_crr('todo');"
                        "INSERT INTO todo VALUES ('a', 'milk');",
                        NULL, NULL, NULL);
  if (rc != SQLITE_OK) return fail(db, "make a CRR and write it");
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, "SELECT cid, val FROM crsql_changes WHERE site_id IS NULL", -1, &st,
                         NULL) != SQLITE_OK)
    return fail(db, "read crsql_changes");
  int rows = 0, seen = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    ++rows;
    const char *cid = (const char *)sqlite3_column_text(st, 0);
    const char *val = (const char *)sqlite3_column_text(st, 1);
    seen = cid && val && cid[0] == 't' && val[0] == 'm';
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  if (rows != 1 || !seen) {
    fprintf(stderr, "consumer: expected one change (title = milk), read %d\n", rows);
    return 1;
  }
  printf("ok\n");
  return 0;
}
