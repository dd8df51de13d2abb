// engine/changes_plan.h — how a query on crsql_changes becomes a scan:
// xBestIndex encodes the constraints it takes as a plan string (one code
// letter per argument), and xFilter decodes it, with the arguments' values,
// into a ScanSpec (crr-semantics §8.4, §8.5).
//
// Plan codes: a/b/c/d/e db_version =, >, >=, <, <=; T/t "table" = and IN;
// P/p pk = and IN; S/I/N/J/U/V site_id =, IS, !=, IS NOT, IS NULL,
// IS NOT NULL.
#ifndef CRSYNC_ENGINE_CHANGES_PLAN_H_
#define CRSYNC_ENGINE_CHANGES_PLAN_H_

#include <sqlite3.h>

#include <string>

#include "engine/change_scan.h"

namespace crsync {

// crsql_changes' columns, in declaration order.
enum ChangesColumn { kTable = 0, kPk, kCid, kVal, kColVersion, kDbVersion, kSiteId, kCl, kSeq, kTag };

// xBestIndex: takes the constraints the scan can use, writes the plan
// string to info->idxStr (owned by SQLite), the cost and row estimate, and
// whether the ORDER BY is satisfied. Returns SQLITE_OK, SQLITE_NOMEM, or
// SQLITE_ERROR with *error saying why the query cannot be answered as
// written (a site_id IS term past the 16th constraint).
int PlanChangesQuery(sqlite3_index_info* info, std::string* error);

// xFilter: the ScanSpec for plan `idx_str` with its `argc` argument values.
// Returns SQLITE_OK, or SQLite's error reading an IN list.
int DecodeChangesPlan(const char* idx_str, int argc, sqlite3_value** argv, ScanSpec* out);

}  // namespace crsync

#endif  // CRSYNC_ENGINE_CHANGES_PLAN_H_
