// engine/trigger_order.h — do a CRR's recording triggers fire first?
//
// SQLite fires a table's triggers for an event newest first, and TEMP
// triggers before main's. A user's AFTER trigger made after crsql_as_crr
// therefore runs before the engine's recording trigger, and if it stops
// the row with RAISE(IGNORE) (the row's change stays, later triggers are
// skipped) or RAISE(FAIL) (the statement ends, keeping the rows written
// so far), the recording trigger never sees that write: it would commit
// unrecorded and never replicate. Such a table's writes are refused until
// crsql_as_crr is called again, which makes the recording triggers anew,
// so that they fire first.
//
// Thread safety: none beyond the connection's.
#ifndef CRSYNC_ENGINE_TRIGGER_ORDER_H_
#define CRSYNC_ENGINE_TRIGGER_ORDER_H_

#include <sqlite3.h>

#include <string>
#include <string_view>

#include "crsync/status.h"

namespace crsync {

// What a trigger's CREATE TRIGGER text says, read token by token (comments,
// string literals and quoted names are skipped over, so a RAISE inside a
// string or comment does not count).
struct TriggerSqlTraits {
  bool after = false;               // an AFTER trigger (BEFORE when unsaid)
  std::string event;                // INSERT, UPDATE or DELETE (upper case)
  std::string on_schema;            // "ON schema.table": schema, else empty
  bool stops_rows = false;          // holds RAISE(IGNORE) or RAISE(FAIL)
};
TriggerSqlTraits InspectTriggerSql(std::string_view create_sql);

// The refusal for writes of `event` (INSERT, UPDATE or DELETE) of `table`
// (main's CRR): empty when none, else the error for the first trigger that
// fires before its recording triggers (main's made after them, or TEMP)
// and is an AFTER `event` trigger stopping rows, naming it and the remedy.
Status RecordersFirstRefusal(sqlite3* db, const std::string& table, const char* event,
                             std::string* refusal);

// Whether some trigger of main on `table` was made after its recording
// triggers, so fires before them (whatever it does): crsql_as_crr then
// makes the recording triggers anew. TEMP triggers do not count (making
// main's triggers again cannot put them after TEMP ones).
Status UserTriggersFireFirst(sqlite3* db, const std::string& table, bool* yes);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_TRIGGER_ORDER_H_
