/* crsync/crsync.h — install the crsync CRR engine on SQLite connections.
 *
 * The engine gives a connection crsql_as_crr, crsql_changes,
 * crsql_tracked_peers and the other functions of cr-sqlite's SQL API
 * (docs/sql-api.md). It must be installed on every connection that writes
 * to CRR tables: their recording triggers call the engine's functions, and
 * a connection without them fails such writes with "no such function".
 *
 * Thread safety: the calls below follow SQLite's rules for the connection
 * they are given; crsync_auto_extension may be called from any thread.
 */
#ifndef CRSYNC_CRSYNC_H_
#define CRSYNC_CRSYNC_H_

#include <sqlite3.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Installs the engine on `db`: creates the bookkeeping tables if missing
 * (writable databases only), loads or creates the site id, registers the
 * functions and the crsql_changes virtual table. Returns an SQLite result
 * code (SQLITE_MISUSE for a NULL db); on failure *err_msg (if not NULL)
 * receives a message to be freed with sqlite3_free. Installing twice on one
 * connection is harmless; after a failure (out of memory half way), calling
 * it again finishes the installation. On a read-only connection to a database crsync
 * never set up, it installs (the database opens as usual) but the engine's
 * functions and crsql_changes fail, saying so, until a writable connection
 * has set the database up. */
int crsync_engine_init(sqlite3 *db, char **err_msg);

/* Registers crsync_engine_init with sqlite3_auto_extension so that every
 * connection opened afterwards in this process gets the engine. Returns an
 * SQLite result code; calling it twice is harmless. */
int crsync_auto_extension(void);

/* Entry point for sqlite3_load_extension() and the shell's .load (in
 * libcrsync.so only). Also registers the crsync VFS permanently (vfs.h). */
int sqlite3_crsync_init(sqlite3 *db, char **err_msg, const void *api);

#ifdef __cplusplus
}
#endif

#endif /* CRSYNC_CRSYNC_H_ */
