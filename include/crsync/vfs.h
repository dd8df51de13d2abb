/* crsync/vfs.h — the commit-flagging VFS shim.
 *
 * An application replicates with one call before it opens its databases:
 *
 *     crsync_vfs_register(NULL, 1);
 *
 * This registers a VFS named "crsync" over the current default VFS (or the
 * one named), optionally makes it the default, and installs the crsync engine
 * on every connection opened afterwards (sqlite3_auto_extension). The shim
 * forwards every call to the VFS below it. When a write transaction on a
 * database file commits, it raises a commit signal:
 *
 *   - a counter in the side file "<db>-crsync" (8 bytes, native byte order,
 *     incremented atomically through a shared mapping), and, when a watcher
 *     has re-armed it, a one-byte write that wakes inotify / libuv
 *     uv_fs_event watchers (docs/vfs.md);
 *   - the in-process callback set with crsync_vfs_on_commit.
 *
 * The signal is a wake-up, not a log: a reader must always look at the
 * database itself (crsql_changes after its cursor). A write transaction that
 * changed nothing may be counted; read-only transactions and rollbacks are
 * not. The signal never blocks or fails a commit: if the side file cannot be
 * created (read-only directory), the database works normally and one
 * sqlite3_log(SQLITE_WARNING) message says why.
 *
 * Thread safety: all functions may be called from any thread.
 */
#ifndef CRSYNC_VFS_H_
#define CRSYNC_VFS_H_

#include <sqlite3.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The name of the shim VFS. */
#define CRSYNC_VFS_NAME "crsync"

/* Registers the VFS "crsync" over `base_vfs` (NULL = the current default)
 * and the engine as an auto-extension. With make_default != 0 it becomes the
 * default VFS. Returns SQLITE_OK, SQLITE_ERROR when `base_vfs` does not exist,
 * or SQLITE_NOMEM. Calling it again is harmless: the first base VFS stays,
 * make_default = 1 makes it the default, and 0 leaves the default as it is
 * (loading libcrsync.so calls it with 0); after sqlite3_vfs_unregister() it
 * lists the VFS again.
 * It initializes SQLite: make any sqlite3_config() call before it (after
 * it, SQLite refuses them with SQLITE_MISUSE). sqlite3_shutdown() forgets
 * the registration (the default VFS and the auto-extension): call it again
 * after a shutdown. */
int crsync_vfs_register(const char *base_vfs, int make_default);

/* Sets (or with fn = NULL clears) the in-process commit callback. It runs on
 * the committing thread, after the counter moved, once the commit is
 * readable by other connections (in rollback-journal modes, as SQLite drops
 * the database lock) and while SQLite finishes the commit: it must be
 * quick, and must not use the committing connection. It holds no lock of
 * crsync's: callbacks of different threads may run at the same time, and
 * one may wait for another thread's commit. It may set or clear the
 * callback itself. Called outside a callback, this returns once no thread
 * still runs a callback it replaced (so its ctx may be freed), however
 * many commits start meanwhile; called from within one, it does not wait.
 * `db_path` is the database's full path; `seq` the side file's counter
 * after this commit: 0 when there is no side file (it could not be made),
 * and it starts again from 1 when the side file was deleted and made again,
 * so use it as a hint, never to decide whether a commit happened. Returns
 * SQLITE_OK (SQLITE_ERROR only if the system refuses a lock). */
int crsync_vfs_on_commit(void (*fn)(void *ctx, const char *db_path, sqlite3_uint64 seq),
                         void *ctx);

/* Reads, from any process, how many commits the signal has counted for the
 * database at `db_path` (0 if none yet, no side file, or one not sized yet).
 * Returns SQLITE_OK, SQLITE_IOERR if the side file exists but cannot be
 * read, or SQLITE_MISUSE if `db_path` is NULL or empty or `out` is NULL
 * (the same for the two functions below). */
int crsync_commit_counter(const char *db_path, sqlite3_uint64 *out);

/* For watchers: re-arms the wake-up, then reads the counter like
 * crsync_commit_counter. A watcher calls it when it starts and after every
 * wake-up, before reading the database; the next commit after it then wakes
 * the watcher again. (Commits made while nobody re-arms cost no syscall.) */
int crsync_commit_counter_rearm(const char *db_path, sqlite3_uint64 *out);

/* Reads, from any process, how many times a writer on the database at
 * `db_path`, through the crsync VFS, found the write lock taken (SQLITE_BUSY;
 * a busy handler's every retry counts). A sidecar reads it between its own
 * write transactions and steps aside while it moves, so the application's
 * writes go first. 0 if none yet or no side file; SQLITE_IOERR if the side
 * file exists but cannot be read. */
int crsync_writer_waits(const char *db_path, sqlite3_uint64 *out);

#ifdef __cplusplus
}
#endif

#endif /* CRSYNC_VFS_H_ */
