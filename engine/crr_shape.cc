// engine/crr_shape.cc — Crr::CheckShape: is the CRR's table still the one
// its recording triggers were made for?
#include <algorithm>
#include <string>
#include <vector>

#include "engine/alter.h"
#include "engine/catalog.h"
#include "engine/crr_admin.h"
#include "engine/table_schema.h"

namespace crsync {

namespace {

// "a, b" of the names in `of` that are not in `in`.
std::string Missing(const std::vector<std::string>& of, const std::vector<std::string>& in) {
  std::string out;
  for (const std::string& n : of) {
    if (std::find(in.begin(), in.end(), n) != in.end()) continue;
    out += (out.empty() ? "" : ", ") + n;
  }
  return out;
}

}  // namespace

Status Crr::CheckShape() {
  // A drift is checked again at every call: a ROLLBACK TO may have undone
  // the ALTER without a schema change reaching the catalog.
  if (shape_ != Shape::kMatches) {
    TableSchema live;
    live.name = schema_.name;
    std::string unique;
    const bool loaded = LoadColumns(db_, &live).ok();
    const bool table_gone = loaded && live.pk_cols.empty() && live.cols.empty();
    // What stands in the recorders' place (what cannot be read passes).
    RecorderState state;
    if (loaded && !table_gone && !ReadRecorderState(db_, schema_.name, id_, &state).ok()) {
      state = RecorderState{};
    }
    lost_recorders_ = state.lost();
    if (table_gone) {
      // Gone, while its triggers fire or a merge names it: renamed (the
      // triggers moved along) or dropped behind the engine's back.
      drift_ = "crsql - CRR " + schema_.name + " has no table of that name any more (renamed or "
               "dropped without crsql_as_table): a CRR cannot be renamed; rename its table back "
               "to " + schema_.name;
      shape_ = Shape::kDrifted;
    } else if (state.recorders == 0 && (state.guarded || state.alter_owner != 0)) {
      // An alter open on another connection (callers skip this check on
      // the alter's own): its guard stands in the recorders' place, or it
      // rebuilt the table, taking the guard along. Merges that would write
      // only metadata (a tombstone, a clock) are refused with the rest.
      drift_ = AlterOpenElsewhere(schema_.name);
      shape_ = Shape::kDrifted;
    } else if (lost_recorders_) {
      // The table was dropped and made again without crsql_as_table:
      // nothing records its writes, and the CRR's metadata describes the
      // dropped table's rows.
      drift_ = "crsql - CRR " + schema_.name + " has lost its recording triggers (its table was "
               "dropped and made again without crsql_as_table), so its writes are not "
               "recorded: its merges and alters are refused; SELECT crsql_as_crr(" +
               QuoteLiteral(schema_.name) + ") makes the table a CRR again, its current rows "
               "recorded anew";
      shape_ = Shape::kDrifted;
    } else if (state.recorders > 0 && state.recorders < 3) {
      // A recording trigger dropped by hand: the writes it recorded go
      // unrecorded. The table and its history stand.
      drift_ = "crsql - CRR " + schema_.name + " has lost a recording trigger (" + schema_.name +
               "__crsync_itrig, _utrig or _dtrig was dropped), so some of its writes are not "
               "recorded: its other writes and its merges are refused; SELECT crsql_as_crr(" +
               QuoteLiteral(schema_.name) + ") makes the triggers again, its history kept (what "
               "was written meanwhile gets clocks; a delete made meanwhile never replicates)";
      shape_ = Shape::kDrifted;
    } else if (!loaded || (live.pk_cols == schema_.pk_cols && live.cols == schema_.cols)) {
      shape_ = Shape::kMatches;  // (an unreadable table: what fails next names it)
      if (UniqueIndexBesidesPk(db_, schema_.name, &unique).ok() && !unique.empty()) {
        // Made after crsql_as_crr, which refuses one (§4.2 E2).
        drift_ = "crsql - table " + schema_.name + " has a UNIQUE index, " + unique +
                 ", besides its primary key, which a CRR may not have (crr-semantics §4.2 E2): "
                 "a conflict on it would delete or refuse rows that other replicas keep, so the "
                 "table's writes and merges are refused until the index is dropped";
        shape_ = Shape::kDrifted;
      }
    } else {
      std::string added = Missing(live.pk_cols, schema_.pk_cols);
      std::string more = Missing(live.cols, schema_.cols);
      added += (added.empty() || more.empty() ? "" : ", ") + more;
      std::string gone = Missing(schema_.pk_cols, live.pk_cols);
      more = Missing(schema_.cols, live.cols);
      gone += (gone.empty() || more.empty() ? "" : ", ") + more;
      std::string what;
      if (!added.empty()) what = "it has columns the CRR does not replicate: " + added;
      if (!gone.empty()) {
        what += (what.empty() ? "" : "; ") + std::string("the CRR's columns ") + gone +
                " are gone (dropped or renamed)";
      }
      if (what.empty()) what = "its columns were reordered or their key changed";
      drift_ = "crsql - table " + schema_.name +
               " was altered without crsql_begin_alter/crsql_commit_alter (" + what +
               "), so its writes cannot be recorded; call SELECT crsql_begin_alter(" +
               QuoteLiteral(schema_.name) + "); SELECT crsql_commit_alter(" +
               QuoteLiteral(schema_.name) + "); to record its new shape";
      shape_ = Shape::kDrifted;
    }
  }
  if (shape_ == Shape::kDrifted) return Status::FailedPrecondition(drift_);
  return Status::OK();
}

}  // namespace crsync
