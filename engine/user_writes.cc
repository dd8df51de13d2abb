#include "engine/user_writes.h"

#include <algorithm>
#include <string>

#include "common/hex.h"
#include "engine/packed.h"
#include "engine/recorder.h"

namespace crsync {
namespace {

void BindPk(sqlite3_stmt* st, const std::vector<Value>& pk) {
  for (size_t i = 0; i < pk.size(); ++i) pk[i].Bind(st, static_cast<int>(i + 1));
}

// Whether `w` can go in a bulk run: an upsert of some columns, nothing else.
bool Bulkable(const RowWrite& w, size_t npk) {
  return !w.delete_first && w.exists && !w.values.empty() &&
         npk + w.values.size() <= ValueRows::kMaxWidth;
}

// Whether `a` and `b` write the same set of columns.
bool SameColumns(const RowWrite& a, const RowWrite& b) {
  if (a.values.size() != b.values.size()) return false;
  for (const auto& [slot, v] : b.values)
    if (!a.Written(slot)) return false;
  return true;
}

// A merge nested in a user trigger (the trigger merges too) can need the
// cached statement the outer merge is running: it gets its own copy.
Status NotRunning(sqlite3* db, sqlite3_stmt** st, StmtPtr* copy) {
  if (!sqlite3_stmt_busy(*st)) return Status::OK();
  CRSYNC_RETURN_IF_ERROR(Prepare(db, sqlite3_sql(*st), copy));
  *st = copy->get();
  return Status::OK();
}

// What the statements of one row's write did before one failed: whether
// an earlier one wrote (its rows stay), and SQLite's total_changes when
// the last one started.
struct WriteTrace {
  bool earlier_wrote = false;
  sqlite3_int64 before_last = 0;
};

// What can skip a row's write while SQLite reports success.
constexpr char kSkipper[] = "a user trigger's RAISE(IGNORE) or an ON CONFLICT IGNORE constraint";

// Such a skip of the row's write: the clocks merged would claim what the
// table does not hold, and this replica would offer that as the peer's
// state.
Status Skipped(const Crr& crr, std::string_view key, const char* what) {
  return Status::InvalidArgument("crsql - " + std::string(kSkipper) + " skipped the " +
                                 std::string(what) + " of " + crr.name() + " row X'" +
                                 HexBytes(key) + "' that merging the change needs; the change "
                                 "is refused");
}

// A user trigger fired by a merge's write may delete the row, or write it
// back after the merge deleted it: such writes are not recorded (the sync
// bit, §11.7), and the row's clocks would then say it lives where it does
// not, or the reverse, which later merges of the row trip over for good.
// Values a trigger writes into the merged row stay unrecorded, as §11.7
// says (triggers can test crsql_internal_sync_bit()).
Status RowLivesAsMerged(Crr* crr, const std::vector<Value>& pk, std::string_view key, bool lives) {
  bool there = false;
  CRSYNC_RETURN_IF_ERROR(crr->UserRowExists(pk, &there));
  if (there == lives) return Status::OK();
  return Status::InvalidArgument(
      "crsql - a user trigger " + std::string(lives ? "deleted" : "wrote back") + " " +
      crr->name() + " row X'" + HexBytes(key) + "' while a merge " +
      (lives ? "wrote" : "deleted") + " it; the change is refused (during merges "
      "crsql_internal_sync_bit() is 1: a trigger can test it)");
}

Status WriteUserRowStatements(ConnEngine* e, Crr* crr, const std::vector<Value>& pk,
                              std::string_view key, const RowWrite& w, std::vector<int>* slots,
                              WriteTrace* trace = nullptr) {
  sqlite3* db = e->db();
  sqlite3_stmt* st = nullptr;
  StmtPtr copy;
  bool there = false;
  if (trace) trace->before_last = sqlite3_total_changes64(db);
  if (w.delete_first) {
    CRSYNC_RETURN_IF_ERROR(crr->UserDelete(&st));
    CRSYNC_RETURN_IF_ERROR(NotRunning(db, &st, &copy));
    BindPk(st, pk);
    CRSYNC_RETURN_IF_ERROR(StepToEnd(db, st));
    if (sqlite3_changes64(db) == 0) {  // no such row, or a trigger kept it
      CRSYNC_RETURN_IF_ERROR(crr->UserRowExists(pk, &there));
      if (there) return Skipped(*crr, key, "delete");
    }
    if (trace) {
      const sqlite3_int64 now = sqlite3_total_changes64(db);
      trace->earlier_wrote = now != trace->before_last;
      trace->before_last = now;
    }
  }
  if (!w.exists) return Status::OK();
  if (w.values.empty()) {
    CRSYNC_RETURN_IF_ERROR(crr->UserInsertPk(&st));
    CRSYNC_RETURN_IF_ERROR(NotRunning(db, &st, &copy));
    BindPk(st, pk);
    CRSYNC_RETURN_IF_ERROR(StepToEnd(db, st));
    if (sqlite3_changes64(db) == 0) {  // there already, or a trigger skipped it
      CRSYNC_RETURN_IF_ERROR(crr->UserRowExists(pk, &there));
      if (!there) return Skipped(*crr, key, "insert");
    }
    return Status::OK();
  }
  if (w.values.size() == 1) {
    CRSYNC_RETURN_IF_ERROR(crr->UserUpsert(w.values[0].first, &st));
    CRSYNC_RETURN_IF_ERROR(NotRunning(db, &st, &copy));
    BindPk(st, pk);
    w.values[0].second.Bind(st, static_cast<int>(pk.size() + 1));
  } else {
    slots->clear();
    for (const auto& [slot, v] : w.values) slots->push_back(slot);
    CRSYNC_RETURN_IF_ERROR(crr->UserUpsertColumns(*slots, &st));
    CRSYNC_RETURN_IF_ERROR(NotRunning(db, &st, &copy));
    BindPk(st, pk);
    for (size_t i = 0; i < w.values.size(); ++i)
      w.values[i].second.Bind(st, static_cast<int>(pk.size() + 1 + i));
  }
  CRSYNC_RETURN_IF_ERROR(StepToEnd(db, st));
  // An upsert inserts or updates its row, unless a trigger skipped it.
  return sqlite3_changes64(db) == 0 ? Skipped(*crr, key, "write") : Status::OK();
}

// A write refused by the guard trigger of an alter open on another
// connection is this database's condition, to pass when the alter ends,
// not a fault of the change (the sidecar reports it as such: Error 4).
Status GuardAsPrecondition(ConnEngine* e, Crr* crr, Status s) {
  if (s.ok() || e->open_alters().count(crr->name())) return s;
  bool guarded = false;
  if (!AlterGuardStands(e->db(), crr->name(), &guarded).ok() || !guarded) return s;
  return Status::FailedPrecondition(s.message());
}

// Whether a statement that failed with `s`, and had a statement journal,
// undid all it wrote, its triggers' rows included. Every write of a CRR
// has one: its recording triggers make it a multi-row write, and the
// function they call one that may abort (SQLite 3.40 journals a statement
// for both). So it is for a constraint that failed with ABORT, the
// default: SQLite rolls the statement back. Only a FAIL keeps what was
// written (RAISE(FAIL), ON CONFLICT FAIL, OR FAIL in a trigger), and each
// is spelled FAIL in some schema's SQL; ROLLBACK ends the transaction; a
// database whose journal_mode is OFF undoes nothing. Any other error, a
// schema that says FAIL somewhere (even in a name), or an unjournaled
// database is taken as keeping. The code is read from the connection:
// the step returned only the primary one unless the application turned
// extended result codes on.
bool FailedStatementUndidItself(sqlite3* db, const Status& s) {
  if (s.code() != Status::Code::kSqlite) return false;
  const int code = sqlite3_extended_errcode(db);
  if ((code & 0xff) != (s.sqlite_code() & 0xff)) return false;
  switch (code) {
    case SQLITE_CONSTRAINT_CHECK:
    case SQLITE_CONSTRAINT_NOTNULL:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_TRIGGER:
    case SQLITE_CONSTRAINT_UNIQUE:
      break;
    default:
      return false;
  }
  StmtPtr schemas;
  if (!Prepare(db, "SELECT name FROM pragma_database_list", &schemas).ok()) return false;
  int rc;
  while ((rc = sqlite3_step(schemas.get())) == SQLITE_ROW) {
    const char* name = reinterpret_cast<const char*>(sqlite3_column_text(schemas.get(), 0));
    if (!name) return false;
    StmtPtr says_fail, journal;
    if (!Prepare(db, "SELECT 1 FROM " + QuoteIdent(name) +
                         ".sqlite_master WHERE sql LIKE '%fail%' LIMIT 1", &says_fail).ok() ||
        sqlite3_step(says_fail.get()) != SQLITE_DONE ||
        !Prepare(db, "PRAGMA " + QuoteIdent(name) + ".journal_mode", &journal).ok() ||
        sqlite3_step(journal.get()) != SQLITE_ROW ||
        sqlite3_stricmp(reinterpret_cast<const char*>(sqlite3_column_text(journal.get(), 0)),
                        "off") == 0) {
      return false;
    }
  }
  return rc == SQLITE_DONE;
}

Status WriteOneUserRow(ConnEngine* e, Crr* crr, const std::vector<Value>& pk,
                       std::string_view key, const RowWrite& w, std::vector<int>* slots) {
  struct OneRow final : ConnEngine::MergingRows {
    OneRow(int64_t id, std::string_view k) : crr_id(id), key(k) {}
    bool Holds(int64_t id, std::string_view k) const override { return id == crr_id && k == key; }
    int64_t crr_id;
    std::string_view key;
  } row(crr->id(), key);
  MergingRowsScope merging(e, &row);
  SyncBitScope sync(e);
  sqlite3* db = e->db();
  // Each statement below undoes itself when it fails, except where a user
  // trigger's RAISE(FAIL) keeps what its statement did so far, or a second
  // statement fails after the first succeeded. Outside a transaction
  // SQLite then rolls everything back; inside one, a savepoint cannot open
  // while the merging statement runs, so a write that stayed (SQLite counts
  // the rows of a statement it did not undo) poisons the transaction: it
  // cannot commit a change half-applied (crr-semantics §12.3).
  bool triggers = false;
  CRSYNC_RETURN_IF_ERROR(crr->HasUserTriggers(&triggers));
  if (!(triggers || (w.delete_first && w.exists)) || sqlite3_get_autocommit(db)) {
    Status s = WriteUserRowStatements(e, crr, pk, key, w, slots);
    return s.ok() && triggers ? RowLivesAsMerged(crr, pk, key, w.exists) : s;
  }
  WriteTrace trace;
  Status s = WriteUserRowStatements(e, crr, pk, key, w, slots, &trace);
  if (s.ok()) s = RowLivesAsMerged(crr, pk, key, w.exists);
  // Rows written by triggers of the failed statement count in
  // total_changes even when the statement undid them, as it does for a
  // constraint failing with ABORT: only FAIL keeps them (see
  // FailedStatementUndidItself).
  if (!s.ok() && !sqlite3_get_autocommit(db) &&
      (trace.earlier_wrote || (sqlite3_total_changes64(db) != trace.before_last &&
                               !FailedStatementUndidItself(db, s)))) {
    s = Status::Sqlite(s.sqlite_code(), s.message() + " (crsql - merging a change into " +
                                            crr->name() +
                                            " failed part-way and what it wrote stays; roll the "
                                            "transaction back)");
    crr->FailPending(s);
  }
  return s;
}

}  // namespace

Status WriteUserRow(ConnEngine* e, Crr* crr, const std::vector<Value>& pk, std::string_view key,
                    const RowWrite& w, std::vector<int>* slots) {
  return GuardAsPrecondition(e, crr, WriteOneUserRow(e, crr, pk, key, w, slots));
}

Status UserWriter::CrrOf(const MetaBatch::HeldUserWrite& w, Crr** out) {
  *out = e_->catalog().ById(w.crr_id);
  if (!*out) {
    return Status::Corruption("crsql - CRR " + std::to_string(w.crr_id) + " changed during a merge");
  }
  return Status::OK();
}

Status UserWriter::Write(const std::vector<MetaBatch::HeldUserWrite>& ws, uint32_t* failed_label) {
  struct Window final : ConnEngine::MergingRows {
    explicit Window(const std::vector<MetaBatch::HeldUserWrite>& w) : ws(w) {}
    bool Holds(int64_t id, std::string_view key) const override {
      for (const auto& w : ws)
        if (w.crr_id == id && w.pk == key) return true;
      return false;
    }
    const std::vector<MetaBatch::HeldUserWrite>& ws;
  } window(ws);
  MergingRowsScope merging(e_, &window);
  for (size_t i = 0; i < ws.size();) {
    Crr* crr;
    CRSYNC_RETURN_IF_ERROR(CrrOf(ws[i], &crr));
    const size_t npk = crr->schema().pk_cols.size();
    size_t j = i + 1;
    if (Bulkable(*ws[i].write, npk)) {
      while (j < ws.size() && ws[j].crr_id == ws[i].crr_id && Bulkable(*ws[j].write, npk) &&
             SameColumns(*ws[i].write, *ws[j].write)) {
        ++j;
      }
    }
    bool wrote = false;
    if (j - i < MetaBatch::kMinBulk) {
      CRSYNC_RETURN_IF_ERROR(WriteRows(ws, i, j, failed_label));
    } else if (Status s = WriteRun(ws, i, j, &wrote, failed_label); !s.ok()) {
      // Writing the rows one by one finds the one at fault. If the run's
      // statement failed, it undid its own rows (a statement journal);
      // if it was written and a check after it failed, the batch fails
      // whatever the rows do a second time (their triggers fire again,
      // and one may undo what another's did): the caller rolls it back.
      if (sqlite3_get_autocommit(e_->db())) return s;  // SQLite ended the transaction
      const uint32_t found = *failed_label;
      CRSYNC_RETURN_IF_ERROR(WriteRows(ws, i, j, failed_label));
      if (wrote) {
        *failed_label = found;
        return s;
      }
    }
    i = j;
  }
  return Status::OK();
}

Status UserWriter::WriteRows(const std::vector<MetaBatch::HeldUserWrite>& ws, size_t from,
                             size_t to, uint32_t* failed_label) {
  for (size_t k = from; k < to; ++k) {
    *failed_label = ws[k].label;
    Crr* crr;
    CRSYNC_RETURN_IF_ERROR(CrrOf(ws[k], &crr));
    CRSYNC_RETURN_IF_ERROR(UnpackValues(ws[k].pk, &pk_));
    CRSYNC_RETURN_IF_ERROR(WriteUserRow(e_, crr, pk_, ws[k].pk, *ws[k].write, &slots_));
  }
  return Status::OK();
}

Status UserWriter::WriteRun(const std::vector<MetaBatch::HeldUserWrite>& ws, size_t from,
                            size_t to, bool* wrote, uint32_t* failed_label) {
  *failed_label = ws[from].label;
  Crr* crr;
  CRSYNC_RETURN_IF_ERROR(CrrOf(ws[from], &crr));
  const size_t npk = crr->schema().pk_cols.size();
  const RowWrite& first = *ws[from].write;
  slots_.clear();
  for (const auto& [slot, v] : first.values) slots_.push_back(slot);
  buf_.Reset(npk + slots_.size());
  for (size_t k = from; k < to; ++k) {
    Value* row = buf_.AddRow();
    CRSYNC_RETURN_IF_ERROR(UnpackValues(ws[k].pk, &pk_));
    if (pk_.size() != npk) return Status::Corruption("crsql - a held row's pk does not fit " + crr->name());
    std::copy(pk_.begin(), pk_.end(), row);
    for (size_t c = 0; c < slots_.size(); ++c) row[npk + c] = *ws[k].write->Written(slots_[c]);
  }
  sqlite3_stmt* st = nullptr;
  CRSYNC_RETURN_IF_ERROR(crr->UserUpsertBulk(slots_, &st));
  SyncBitScope sync(e_);
  sqlite3_bind_pointer(st, 1, &buf_, kValueRowsPointerType, nullptr);
  CRSYNC_RETURN_IF_ERROR(StepToEnd(e_->db(), st));
  *wrote = true;
  // Each row is inserted or updated, unless something skipped it.
  if (sqlite3_changes64(e_->db()) != static_cast<sqlite3_int64>(to - from)) {
    return Status::InvalidArgument("crsql - " + std::string(kSkipper) +
                                   " skipped the write of a row of " + crr->name() +
                                   " that merging the changes needs; they are refused");
  }
  bool triggers = false;
  CRSYNC_RETURN_IF_ERROR(crr->HasUserTriggers(&triggers));
  for (size_t k = from; triggers && k < to; ++k) {
    *failed_label = ws[k].label;
    CRSYNC_RETURN_IF_ERROR(UnpackValues(ws[k].pk, &pk_));
    CRSYNC_RETURN_IF_ERROR(RowLivesAsMerged(crr, pk_, ws[k].pk, true));
  }
  *failed_label = ws[from].label;
  return Status::OK();
}

}  // namespace crsync
