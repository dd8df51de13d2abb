// engine/recorder.h — records local writes to CRRs (crr-semantics §7).
//
// The AFTER INSERT/UPDATE/DELETE triggers that crsql_as_crr installs call
// the SQL functions registered here with the row's old and new values. They
// do nothing while the sync bit is set (merges write with it set).
#ifndef CRSYNC_ENGINE_RECORDER_H_
#define CRSYNC_ENGINE_RECORDER_H_

#include <sqlite3.h>

#include <string>

#include "engine/conn_engine.h"

namespace crsync {

// Registers crsync_after_insert/update/delete on `db` for `engine`.
int RegisterRecorderFunctions(sqlite3* db, ConnEngine* engine);

// The trigger statements that feed a CRR's writes to the functions above.
std::string RecorderTriggersSql(const Crr& crr);
std::string DropRecorderTriggersSql(const std::string& table);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_RECORDER_H_
