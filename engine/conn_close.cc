// engine/conn_close.cc — what a ConnEngine does as its connection closes
// (see ConnEngine::CloseWatchDisconnected and engine/close_watch_vtab.cc).
#include <exception>

#include "engine/conn_engine.h"
#include "engine/functions.h"

namespace crsync {

void ConnEngine::CloseWatchDisconnected() {
  close_watch_lost_ = true;
  StoreBeforeClose();
  ReleaseStatements();
}

void ConnEngine::StoreBeforeClose() {
  if (sqlite3_get_autocommit(db_) || closing_) return;
  // Only when the close is going to fail: a statement still running (the
  // application's; none of the engine's runs across a close) keeps the
  // connection and its transaction open. A close that goes on rolls it all
  // back, and a virtual table this would connect again after SQLite
  // disconnected them all would never be freed.
  bool running = false;
  for (sqlite3_stmt* st = sqlite3_next_stmt(db_, nullptr); st && !running;
       st = sqlite3_next_stmt(db_, st)) {
    running = sqlite3_stmt_busy(st) != 0;
  }
  if (!running) return;
  // The statements this prepares are released right after. The watch is
  // not connected again meanwhile: if the close goes on, SQLite would
  // disconnect it after the engine is gone.
  closing_ = true;
  Status s;
  try {
    s = FlushLocalWrites();
    if (s.ok() && close_writer_) s = close_writer_();
  } catch (const std::exception& ex) {  // (bad_alloc): the close must go on
    s = Status::Sqlite(SQLITE_NOMEM, ex.what());
  }
  closing_ = false;
  if (!s.ok()) {
    // Nothing can refuse this transaction's COMMIT any more (the capture is
    // being rolled back); if the close fails, it must be rolled back.
    sqlite3_log(s.sqlite_code(),
                "crsync: storing a transaction's writes as its connection closes failed (%s); "
                "if the close fails, roll the transaction back",
                s.message().c_str());
  }
}

void ConnEngine::ArmCloseWatch() {
  if (close_watch_lost_ && !closing_) close_watch_lost_ = !ConnectCloseWatch(db_).ok();
}

}  // namespace crsync
