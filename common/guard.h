// common/guard.h — keeps C++ exceptions from crossing C callbacks.
//
// SQLite and libuv call us through C function pointers; an exception that
// unwinds through their frames is undefined behaviour and leaves locks and
// pager state unknown. Every callback body runs inside one of these guards.
#ifndef CRSYNC_COMMON_GUARD_H_
#define CRSYNC_COMMON_GUARD_H_

#include <sqlite3.h>

#include <exception>
#include <new>

#include "crsync/status.h"

namespace crsync {

// Runs `body` (returning an int result code). Maps std::bad_alloc to
// SQLITE_NOMEM and any other exception to `fallback_rc`.
template <typename Body>
int GuardSqliteCall(int fallback_rc, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return SQLITE_NOMEM;
  } catch (...) {
    return fallback_rc;
  }
}

// Runs `body` (returning void) inside an SQL function: an exception becomes
// an SQL error on `ctx` instead of unwinding into SQLite.
template <typename Body>
void GuardSqlFunction(sqlite3_context* ctx, Body&& body) noexcept {
  try {
    body();
  } catch (const std::bad_alloc&) {
    sqlite3_result_error_nomem(ctx);
  } catch (const std::exception& e) {
    // No allocation of ours here: a throw from this handler would end the
    // process (noexcept). sqlite3_mprintf reports failure by returning null.
    char* msg = sqlite3_mprintf("crsql - internal error: %s", e.what());
    if (msg) {
      sqlite3_result_error(ctx, msg, -1);
      sqlite3_free(msg);
    } else {
      sqlite3_result_error_nomem(ctx);
    }
  } catch (...) {
    sqlite3_result_error(ctx, "crsql - internal error", -1);
  }
}

// Runs `body` (returning Status) behind an API that promises a Status and
// no exception (crsync/engine.h): out of memory becomes SQLITE_NOMEM, any
// other exception SQLITE_ERROR. (The fixed messages are short enough not
// to allocate.)
template <typename Body>
Status GuardStatus(Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Status::Sqlite(SQLITE_NOMEM, "out of memory");
  } catch (...) {
    return Status::Sqlite(SQLITE_ERROR, "internal error");
  }
}

// Runs `body` (returning void) where no error can be reported (libuv close
// callbacks, destructors called by C code). Swallows exceptions.
template <typename Body>
void GuardVoidCall(Body&& body) noexcept {
  try {
    body();
  } catch (...) {
  }
}

}  // namespace crsync

#endif  // CRSYNC_COMMON_GUARD_H_
