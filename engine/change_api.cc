// ChangeReader and ChangeApplier (include/crsync/engine.h): the sidecar's
// read and merge paths, over the same scan and merge code as crsql_changes.
#include <cmath>
#include <map>

#include "common/guard.h"
#include "crsync/engine.h"
#include "crsync/sqlite_handles.h"
#include "engine/change_scan.h"
#include "engine/crr_admin.h"
#include "engine/merger.h"
#include "engine/user_writes.h"

namespace crsync {
namespace {

Status FindEngine(sqlite3* db, ConnEngine** out) {
  *out = ConnEngine::Find(db);
  if (!*out) {
    return Status::InvalidArgument("the crsync engine is not installed on this connection "
                                   "(call crsync_engine_init first)");
  }
  return Status::OK();
}

// Fills *in from `c`, reusing *in's storage (no allocation once warm).
// False for a val_type that is no SQLite type.
bool FillInput(const Change& c, int64_t tag, MergeInput* in) {
  in->table = c.table;
  in->pk = c.pk;
  in->cid = c.cid;
  Value& v = in->val;
  v.type = c.val_type;
  v.i = 0;
  v.d = 0;
  v.bytes.clear();
  switch (c.val_type) {
    case SQLITE_INTEGER:
      v.i = c.val_int;
      break;
    case SQLITE_FLOAT:
      // SQLite stores a NaN as NULL, as INSERT INTO crsql_changes sees it:
      // merging it as a REAL would win ties a stored NULL then loses.
      if (std::isnan(c.val_real)) {
        v.type = SQLITE_NULL;
      } else {
        v.d = c.val_real;
      }
      break;
    case SQLITE_TEXT:
    case SQLITE_BLOB:
      v.bytes.assign(c.val_bytes);
      break;
    case SQLITE_NULL:
      break;
    default:
      return false;
  }
  in->col_version = c.col_version;
  in->db_version = c.db_version;
  in->site = std::string_view(c.site_id);
  in->cl = c.cl;
  in->seq = c.seq;
  in->tag = tag;
  return true;
}

// Receive cursors (§13.3) of one Apply: usually one (site, tag), so a flat
// list with views of the changes' site ids.
class MarkSet {
 public:
  void Add(const Merger::TrackedMark& t) {
    for (auto& m : marks_) {
      if (m.tag == t.tag && m.site == t.site) {
        if (t.mark.version > m.mark.version ||
            (t.mark.version == m.mark.version && t.mark.seq > m.mark.seq)) {
          m.mark = t.mark;
        }
        return;
      }
    }
    marks_.push_back(t);
  }
  const std::vector<Merger::TrackedMark>& marks() const { return marks_; }

 private:
  std::vector<Merger::TrackedMark> marks_;
};

// A filter the scan would misread: a site id that is not one, or a mode
// outside the enum (a cast integer).
Status CheckOrigin(const OriginFilter& f) {
  using Mode = OriginFilter::Mode;
  switch (f.mode) {
    case Mode::kAny:
    case Mode::kLocal:
    case Mode::kRemote:
      return Status::OK();
    case Mode::kOnly:
    case Mode::kExcept:
      if (f.site.size() == 16) return Status::OK();
      return Status::InvalidArgument("OriginFilter: kOnly and kExcept need a 16-byte site id, got " +
                                     std::to_string(f.site.size()) + " bytes");
  }
  return Status::InvalidArgument("OriginFilter: unknown mode " +
                                 std::to_string(static_cast<int>(f.mode)));
}

}  // namespace

struct ChangeReader::Impl {
  explicit Impl(ConnEngine* e) : engine(e), scan(e) {}
  ConnEngine* engine;
  ChangeScan scan;
  Change scratch;  // the streamed change, its buffers kept from call to call

  // Sets every field of *c from the scan's current record, taking the
  // record's own strings (the scan is done with it once Next() is called).
  void Fill(Change* c) {
    ScanRecord& r = scan.mutable_current();
    c->table = scan.TableName(r.crr_index);
    c->pk.swap(r.pk);
    c->cid = scan.ColumnName(r);
    c->val_type = r.val.type;
    c->val_int = r.val.i;
    c->val_real = r.val.d;
    c->val_bytes.swap(r.val.bytes);
    c->col_version = r.col_version;
    c->db_version = r.db_version;
    c->site_id = engine->SiteIdOf(r.site);
    c->cl = r.cl;
    c->seq = r.seq;
  }

  // The read transaction Read() opens when the connection is in
  // autocommit, and its end (a read-only COMMIT).
  StmtPtr begin_read, end_read;
  Status OpenSnapshot(sqlite3* db, bool* opened) {
    *opened = false;
    if (!sqlite3_get_autocommit(db)) return Status::OK();
    if (!begin_read) CRSYNC_RETURN_IF_ERROR(Prepare(db, "BEGIN", &begin_read, SQLITE_PREPARE_PERSISTENT));
    if (!end_read) CRSYNC_RETURN_IF_ERROR(Prepare(db, "COMMIT", &end_read, SQLITE_PREPARE_PERSISTENT));
    CRSYNC_RETURN_IF_ERROR(StepToEnd(db, begin_read.get()));
    *opened = true;
    return Status::OK();
  }
  void CloseSnapshot(sqlite3* db) {
    if (!StepToEnd(db, end_read.get()).ok()) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  }

  // Calls emit() at each change of the next transaction after `after`
  // passing `origin` (the scan's current record); *version is its version,
  // or 0 when there is none or on error.
  template <typename Emit>
  Status Read(int64_t after, const OriginFilter& origin, Emit&& emit, int64_t* version) {
    *version = 0;
    CRSYNC_RETURN_IF_ERROR(CheckOrigin(origin));
    ScanSpec spec;
    spec.min_dbv = after == INT64_MAX ? after : after + 1;
    spec.origin = origin;
    // One snapshot for the whole read. The scan steps one feed statement
    // per CRR, and in autocommit a source that is done early is reset at
    // once; with no statement active SQLite would drop the read snapshot
    // between two sources, and a transaction another connection committed
    // in that gap would be returned in part (the caller's cursor then moves
    // past the rest). In the caller's own transaction the snapshot is
    // already fixed.
    sqlite3* db = engine->db();
    bool opened;
    CRSYNC_RETURN_IF_ERROR(OpenSnapshot(db, &opened));
    // The read transaction is never held between calls, even when emit()
    // throws (std::bad_alloc while the visitor keeps a change): the scan
    // stops, then the snapshot (if Read opened it) ends.
    struct StopScan {
      Impl* impl;
      bool opened;
      ~StopScan() {
        // Runs while an exception unwinds too: nothing may escape it.
        GuardVoidCall([&] {
          impl->scan.Stop();
          if (opened) impl->CloseSnapshot(impl->engine->db());
        });
      }
    } stop{this, opened};
    Status s = scan.Start(spec);
    bool has = false;
    if (s.ok()) s = scan.Next(&has);
    const int64_t v = has ? scan.current().db_version : 0;
    while (s.ok() && has && scan.current().db_version == v) {
      s = emit();
      if (s.ok()) s = scan.Next(&has);
    }
    if (s.ok()) *version = v;
    return s;
  }
};

Status ChangeReader::Open(sqlite3* db, std::unique_ptr<ChangeReader>* out) {
  ConnEngine* e;
  CRSYNC_RETURN_IF_ERROR(FindEngine(db, &e));
  std::unique_ptr<ChangeReader> r(new ChangeReader());
  r->impl_ = std::make_unique<Impl>(e);
  *out = std::move(r);
  return Status::OK();
}

ChangeReader::~ChangeReader() = default;

Status ChangeReader::NextTransaction(int64_t after, const OriginFilter& origin,
                                     std::vector<Change>* out, int64_t* db_version) {
  Impl& m = *impl_;
  const size_t had = out->size();
  Status s = GuardStatus([&] {
    return m.Read(after, origin, [&] {
      m.Fill(&out->emplace_back());
      return Status::OK();
    }, db_version);
  });
  if (!s.ok()) {
    out->resize(had);  // no half transaction
    *db_version = 0;
  }
  return s;
}

Status ChangeReader::NextTransaction(int64_t after, const OriginFilter& origin,
                                     const ChangeVisitor& visit, int64_t* db_version) {
  Impl& m = *impl_;
  Status s = GuardStatus([&] {
    return m.Read(after, origin, [&] {
      m.Fill(&m.scratch);
      return visit(m.scratch);
    }, db_version);
  });
  if (!s.ok()) *db_version = 0;
  return s;
}

struct ChangeApplier::Impl {
  explicit Impl(ConnEngine* e) : engine(e), merger(e), batch(&e->catalog()), users(e) {}
  ConnEngine* engine;
  Merger merger;
  MetaBatch batch;  // each window's metadata and user writes (MetaBatch::kWindow rows)
  UserWriter users;
  std::vector<MetaBatch::HeldUserWrite> user_writes;
  std::vector<MergeInput> inputs;  // one window's changes, reused
  std::vector<size_t> row_starts_;  // where each of the window's rows starts in `inputs`

  Status Merge(const std::vector<Change>& changes, int64_t tag, int64_t* total);
  void Forget();
  void CallerMayHaveRolledBack();
};

Status ChangeApplier::Open(sqlite3* db, std::unique_ptr<ChangeApplier>* out) {
  ConnEngine* e;
  CRSYNC_RETURN_IF_ERROR(FindEngine(db, &e));
  std::unique_ptr<ChangeApplier> a(new ChangeApplier());
  a->impl_ = std::make_unique<Impl>(e);
  *out = std::move(a);
  return Status::OK();
}

ChangeApplier::~ChangeApplier() = default;

// Merges `changes` on the connection's open transaction; on error part of
// them may be merged (the caller undoes it).
Status ChangeApplier::Impl::Merge(const std::vector<Change>& changes, int64_t tag, int64_t* total) {
  CRSYNC_RETURN_IF_ERROR(engine->FlushLocalWrites());  // local writes first, in order
  // Tables are resolved in the catalog as it is now (another connection
  // may have altered a CRR since the last batch).
  engine->CatalogMayBeStale();
  CRSYNC_RETURN_IF_ERROR(engine->CheckCatalog());
  MarkSet marks;
  std::vector<Merger::TrackedMark> row_marks;
  std::vector<MergeInput>& ins = inputs;
  auto same_row = [&](size_t a, size_t b) {
    return changes[a].pk == changes[b].pk && changes[a].table == changes[b].table;
  };
  // Consecutive changes to one row merge together (one metadata read and
  // write, one user-row write). Rows go in windows of kWindow: their
  // metadata is read with one statement per CRR before; their user rows
  // are written after (UserWriter: one statement per run of rows writing
  // the same columns), then their metadata is stored with three
  // statements (MetaBatch). Each window's changes are converted into `ins`
  // (reused), never the whole batch at once.
  std::vector<size_t>& row_starts = row_starts_;
  for (size_t base = 0; base < changes.size();) {
    size_t n = 0;
    row_starts.clear();
    size_t k = base;
    while (k < changes.size() && row_starts.size() < MetaBatch::kWindow) {
      row_starts.push_back(n);
      size_t j = k + 1;
      while (j < changes.size() && same_row(k, j)) ++j;
      for (; k < j; ++k, ++n) {
        if (n == ins.size()) ins.emplace_back();
        if (!FillInput(changes[k], tag, &ins[n])) {
          batch.Clear();
          return Status::InvalidArgument(
              "change " + std::to_string(k + 1) + " of " + std::to_string(changes.size()) +
              ": val_type " + std::to_string(changes[k].val_type) +
              " is not an SQLite type (SQLITE_INTEGER, _FLOAT, _TEXT, _BLOB or _NULL)");
        }
      }
    }
    row_starts.push_back(n);
    const size_t rows = row_starts.size() - 1;
    // A few rows are cheaper one by one than with the bulk statements.
    const bool bulk = rows >= MetaBatch::kMinBulk;
    merger.SetBatch(bulk ? &batch : nullptr, /*hold_user_writes=*/true);
    Status s;
    if (bulk) {
      for (size_t r = 0; r < rows; ++r) {
        const MergeInput& in = ins[row_starts[r]];
        if (Crr* crr = engine->catalog().ByName(in.table)) batch.Want(crr, in.pk);
      }
      s = batch.PrefetchWanted();
    }
    auto changes_of_row = [&](size_t r) {
      return "changes " + std::to_string(base + row_starts[r] + 1) + ".." +
             std::to_string(base + row_starts[r + 1]) + " of " + std::to_string(changes.size());
    };
    for (size_t r = 0; s.ok() && r < rows; ++r) {
      const size_t i = row_starts[r], j = row_starts[r + 1];
      batch.set_user_label(static_cast<uint32_t>(r));
      int64_t merged = 0;
      row_marks.clear();
      size_t failed;
      s = merger.MergeRow(&ins[i], j - i, &merged, &row_marks, &failed);
      if (!s.ok()) {
        s = s.WithContext(failed < j - i ? "change " + std::to_string(base + i + failed + 1) + " of " +
                                               std::to_string(changes.size())
                                         : changes_of_row(r));
        break;
      }
      *total += merged;
      for (const auto& m : row_marks) marks.Add(m);
    }
    if (s.ok() && bulk) {
      batch.UserWrites(&user_writes);
      uint32_t failed = 0;
      s = users.Write(user_writes, &failed);
      if (!s.ok()) s = s.WithContext(changes_of_row(failed));
    }
    if (s.ok()) s = batch.Flush();
    if (!s.ok()) {
      batch.Clear();
      return s;
    }
    base = k;
  }
  for (const auto& m : marks.marks()) {
    CRSYNC_RETURN_IF_ERROR(merger.TrackPeer(std::string(m.site), m.tag, m.mark));
  }
  return Status::OK();
}

// Before each batch: the caller may have rolled back to a savepoint since
// the last one, undoing rows it wrote. No virtual table of ours hears of
// that, so what was read or cached of them (clocks, the read-ahead window,
// site ordinals) is read again. Rows held back by SQL merges are not ours
// to drop: their savepoints keep them.
void ChangeApplier::Impl::CallerMayHaveRolledBack() {
  engine->catalog().DropReadCaches();
  engine->SitesMayHaveRolledBack();
}

// After a failed batch: statements prepared against what the batch saw may
// be stale, and site ids it inserted are (or are about to be) rolled back.
void ChangeApplier::Impl::Forget() {
  batch.Clear();
  engine->catalog().DropCaches();
  engine->SitesMayHaveRolledBack();
}

Status ChangeApplier::Apply(const std::vector<Change>& changes, int64_t tag, int64_t* impacted) {
  sqlite3* db = impl_->engine->db();
  impl_->CallerMayHaveRolledBack();
  int64_t total = 0;
  const int64_t impacted_before = impl_->engine->rows_impacted();
  // No exception leaves (engine.h): one from the merge becomes its status,
  // and the transaction or savepoint is undone as for any failure.
  auto body = [&] { return GuardStatus([&] { return impl_->Merge(changes, tag, &total); }); };
  Status s;
  if (sqlite3_get_autocommit(db)) {
    CRSYNC_RETURN_IF_ERROR(GuardStatus([&] { return Exec(db, "BEGIN IMMEDIATE"); }));
    s = body();
    if (s.ok()) s = GuardStatus([&] { return Exec(db, "COMMIT"); });
    if (!s.ok() && !sqlite3_get_autocommit(db)) {
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  } else {
    s = GuardStatus([&] { return InSavepoint(db, "crsync_apply", body); });
  }
  if (!s.ok()) {
    impl_->Forget();
    impl_->engine->RestoreRowsImpacted(impacted_before);  // the batch was rolled back
  }
  if (s.ok() && impacted) *impacted = total;
  return s;
}

Status ChangeApplier::ApplyInTransaction(const std::vector<Change>& changes, int64_t tag,
                                         int64_t* impacted) {
  sqlite3* db = impl_->engine->db();
  if (sqlite3_get_autocommit(db)) {
    return Status::Sqlite(SQLITE_MISUSE, "ChangeApplier::ApplyInTransaction needs an open transaction");
  }
  impl_->CallerMayHaveRolledBack();
  int64_t total = 0;
  const int64_t impacted_before = impl_->engine->rows_impacted();
  Status s = GuardStatus([&] {
    CRSYNC_RETURN_IF_ERROR(impl_->engine->WriteLockBeforeReading());
    return impl_->Merge(changes, tag, &total);
  });
  if (!s.ok()) {
    impl_->Forget();
    impl_->engine->RestoreRowsImpacted(impacted_before);  // the caller rolls back
  }
  if (s.ok() && impacted) *impacted = total;
  return s;
}

}  // namespace crsync
