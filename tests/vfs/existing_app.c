/* An "existing application": plain SQLite C code whose only crsync line is
 * the registration call. Usage: existing_app DB register|plain
 * Inserts one row into the CRR `notes` and prints how many changes
 * crsql_changes then has, or the SQLite error. */
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "crsync/vfs.h"

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  if (strcmp(argv[2], "register") == 0) crsync_vfs_register(NULL, 1); /* the one line */
  sqlite3 *db;
  if (sqlite3_open(argv[1], &db) != SQLITE_OK) return 3;
  char *err = NULL;
  if (sqlite3_exec(db, "INSERT INTO notes (id, body) VALUES (lower(hex(randomblob(8))), 'hi')",
                   NULL, NULL, &err) != SQLITE_OK) {
    printf("error: %s\n", err);
    sqlite3_free(err);
    sqlite3_close(db);
    return 1;
  }
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM crsql_changes", -1, &st, NULL) != SQLITE_OK) {
    printf("error: %s\n", sqlite3_errmsg(db));
    return 1;
  }
  sqlite3_step(st);
  printf("changes: %d\n", sqlite3_column_int(st, 0));
  sqlite3_finalize(st);
  return sqlite3_close(db) == SQLITE_OK ? 0 : 4;
}
