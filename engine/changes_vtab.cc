#include "engine/changes_vtab.h"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/guard.h"
#include "engine/change_scan.h"
#include "engine/changes_plan.h"
#include "engine/merger.h"
#include "engine/vtab_util.h"

namespace crsync {
namespace {

constexpr char kSchema[] =
    "CREATE TABLE x(\"table\" TEXT, pk BLOB, cid TEXT, val ANY, col_version INTEGER, "
    "db_version INTEGER, site_id BLOB, cl INTEGER HIDDEN, seq INTEGER HIDDEN, "
    "tag INTEGER HIDDEN)";

using PeerMarks = std::map<std::pair<std::string, int64_t>, PeerMark>;

// Receive cursors (§13.3) are accumulated per transaction in memory and
// written once, in xSync, just before the transaction commits (as FTS
// flushes its pending terms). Savepoints keep snapshots so ROLLBACK TO and
// failed statements restore exactly what was tracked before them. The
// snapshots share the map (copy-on-write): a merge opens a savepoint for
// each user-table write, and copying the map each time would cost more
// than the rest of the bookkeeping.
struct ChangesVtab {
  sqlite3_vtab base{};
  ConnEngine* engine;
  Merger merger;
  std::shared_ptr<PeerMarks> marks;  // null = none; shared = read-only
  struct Savepoint {
    int level;
    std::shared_ptr<PeerMarks> marks;  // when it opened; never changed
    bool internal;          // opened by a merge's own user-table write
    uint64_t flushes;       // Catalog::pending_flushes() when it opened
    bool failed;            // a write-behind had failed by then (Catalog::Failed)
    int64_t impacted;       // crsql_rows_impacted() when it opened
  };
  std::vector<Savepoint> savepoints;
  // A savepoint could not be recorded (out of memory): rolling back to it
  // must not be mistaken for one opened before this table joined.
  bool savepoint_lost = false;
  int64_t impacted_at_begin = 0;  // crsql_rows_impacted() when the table joined
  PeerMarks::key_type probe;  // reused lookup key: no allocation per change
  // Merges write each row's metadata behind: flushed by the next row's,
  // xSavepoint, xSync and ConnEngine::FlushLocalWrites (every reader).
  explicit ChangesVtab(ConnEngine* e) : engine(e), merger(e) { merger.set_write_behind(true); }

  // The marks, to change: copied first while a savepoint shares them.
  PeerMarks& MutableMarks() {
    if (!marks || marks.use_count() > 1) {
      marks = marks ? std::make_shared<PeerMarks>(*marks) : std::make_shared<PeerMarks>();
    }
    return *marks;
  }
};

struct ChangesCursor {
  sqlite3_vtab_cursor base{};
  ChangesVtab* vtab;
  ChangeScan scan;
  bool eof = true;
  explicit ChangesCursor(ChangesVtab* v) : vtab(v), scan(v->engine) {}
};

void SetError(sqlite3_vtab* vtab, const std::string& msg) {
  sqlite3_free(vtab->zErrMsg);
  vtab->zErrMsg = sqlite3_mprintf("%s", msg.c_str());
}

int Connect(sqlite3* db, void* aux, int, const char* const*, sqlite3_vtab** out, char** err) {
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    int rc = sqlite3_declare_vtab(db, kSchema);
    if (rc != SQLITE_OK) return rc;
    sqlite3_vtab_config(db, SQLITE_VTAB_INNOCUOUS);
    auto* v = new ChangesVtab(static_cast<ConnEngine*>(aux));
    *out = &v->base;
    (void)err;
    return SQLITE_OK;
  });
}

int Disconnect(sqlite3_vtab* vtab) {
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    auto* v = reinterpret_cast<ChangesVtab*>(vtab);
    // sqlite3_close() disconnects eponymous tables before it checks for
    // unfinalized statements: release the engine's cached ones here so a
    // plain close succeeds (§17).
    v->engine->ReleaseStatements();
    delete v;
    return SQLITE_OK;
  });
}

int BestIndex(sqlite3_vtab* vtab, sqlite3_index_info* info) {
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    std::string error;
    int rc = PlanChangesQuery(info, &error);
    if (rc == SQLITE_ERROR) SetError(vtab, error);
    return rc;
  });
}

int Open(sqlite3_vtab* vtab, sqlite3_vtab_cursor** out) {
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    auto* c = new ChangesCursor(reinterpret_cast<ChangesVtab*>(vtab));
    *out = &c->base;
    return SQLITE_OK;
  });
}

int Close(sqlite3_vtab_cursor* cur) {
  delete reinterpret_cast<ChangesCursor*>(cur);
  return SQLITE_OK;
}

int Filter(sqlite3_vtab_cursor* cur, int, const char* idx_str, int argc,
           sqlite3_value** argv) {
  auto* c = reinterpret_cast<ChangesCursor*>(cur);
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    ScanSpec spec;
    if (int rc = DecodeChangesPlan(idx_str, argc, argv, &spec); rc != SQLITE_OK) return rc;
    spec.up_to_start = true;
    Status s = c->scan.Start(spec);
    if (s.ok()) {
      bool has;
      s = c->scan.Next(&has);
      c->eof = !has;
    }
    if (!s.ok()) {
      SetError(cur->pVtab, s.message());
      return VtabErrorCode(s);
    }
    return SQLITE_OK;
  });
}

int Next(sqlite3_vtab_cursor* cur) {
  auto* c = reinterpret_cast<ChangesCursor*>(cur);
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    bool has;
    Status s = c->scan.Next(&has);
    if (!s.ok()) {
      SetError(cur->pVtab, s.message());
      return VtabErrorCode(s);
    }
    c->eof = !has;
    return SQLITE_OK;
  });
}

int Eof(sqlite3_vtab_cursor* cur) { return reinterpret_cast<ChangesCursor*>(cur)->eof; }

int Column(sqlite3_vtab_cursor* cur, sqlite3_context* ctx, int col) {
  auto* c = reinterpret_cast<ChangesCursor*>(cur);
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    const ScanRecord& r = c->scan.current();
    switch (col) {
      case kTable: {
        // Copied: the scan's sources may be rebuilt by the next xFilter
        // while SQLite still holds the value (an aggregate's max()).
        const std::string& t = c->scan.TableName(r.crr_index);
        sqlite3_result_text(ctx, t.data(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
        break;
      }
      case kPk:
        sqlite3_result_blob(ctx, r.pk.data(), static_cast<int>(r.pk.size()), SQLITE_TRANSIENT);
        break;
      case kCid: {
        const std::string& n = c->scan.ColumnName(r);
        sqlite3_result_text(ctx, n.data(), static_cast<int>(n.size()), SQLITE_TRANSIENT);
        break;
      }
      case kVal:
        r.val.SetResult(ctx);
        break;
      case kColVersion:
        sqlite3_result_int64(ctx, r.col_version);
        break;
      case kDbVersion:
        sqlite3_result_int64(ctx, r.db_version);
        break;
      case kSiteId: {
        const std::string& site = c->vtab->engine->SiteIdOf(r.site);
        sqlite3_result_blob(ctx, site.data(), static_cast<int>(site.size()), SQLITE_TRANSIENT);
        break;
      }
      case kCl:
        sqlite3_result_int64(ctx, r.cl);
        break;
      case kSeq:
        sqlite3_result_int64(ctx, r.seq);
        break;
      default:
        sqlite3_result_null(ctx);  // tag is write-only
    }
    return SQLITE_OK;
  });
}

// A change's rowid is a hash of what identifies it: (table, pk, column).
// SQLite's OR-by-union plans run one xFilter per OR term and drop rows
// whose rowid an earlier term returned, so the same change must get the
// same rowid in every term and different changes different ones (a 64-bit
// hash: a collision is about as likely as a random 64-bit match). A
// counter restarted by each xFilter dropped unrelated changes there.
int Rowid(sqlite3_vtab_cursor* cur, sqlite_int64* out) {
  auto* c = reinterpret_cast<ChangesCursor*>(cur);
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    const ScanRecord& r = c->scan.current();
    auto mix = [](uint64_t h) {  // splitmix64's finalizer
      h ^= h >> 30;
      h *= 0xbf58476d1ce4e5b9ULL;
      h ^= h >> 27;
      h *= 0x94d049bb133111ebULL;
      return h ^ (h >> 31);
    };
    const std::hash<std::string_view> hash;
    uint64_t h = mix(hash(c->scan.TableName(r.crr_index)));
    h = mix(h ^ hash(r.pk));
    h = mix(h ^ static_cast<uint64_t>(static_cast<int64_t>(r.slot) + 1));
    *out = static_cast<sqlite_int64>(h);
    return SQLITE_OK;
  });
}

// Reads column `col` of an INSERT as a non-negative integer, or fails with
// "crsql - <name> must be a non-negative integer".
Status IntArg(sqlite3_value* v, const char* name, int64_t min, bool allow_null,
              std::optional<int64_t>* out, const char* rule = "a non-negative integer") {
  if (sqlite3_value_type(v) == SQLITE_NULL && allow_null) {
    out->reset();
    return Status::OK();
  }
  if (sqlite3_value_type(v) != SQLITE_INTEGER || sqlite3_value_int64(v) < min) {
    return Status::InvalidArgument(std::string("crsql - ") + name + " must be " + rule);
  }
  *out = sqlite3_value_int64(v);
  return Status::OK();
}

// The UTF-8 bytes of TEXT value `v`. sqlite3_value_bytes() converts a
// UTF-16 value to UTF-8 in place first; reading the bytes as a blob then
// avoids the copy sqlite3_value_text() makes to add a terminator.
std::string_view TextBytes(sqlite3_value* v) {
  size_t n = static_cast<size_t>(sqlite3_value_bytes(v));
  return n ? std::string_view(static_cast<const char*>(sqlite3_value_blob(v)), n) : std::string_view();
}

Status ParseInsert(sqlite3_value** cols, MergeInput* in) {
  sqlite3_value* t = cols[kTable];
  if (sqlite3_value_type(t) != SQLITE_TEXT) return Status::InvalidArgument("crsql - invalid table name");
  if (sqlite3_value_bytes(t) > 2048) return Status::InvalidArgument("crsql - table name exceeded max length");
  in->table = TextBytes(t);
  sqlite3_value* pk = cols[kPk];
  if (sqlite3_value_type(pk) != SQLITE_BLOB) {
    return Status::InvalidArgument("crsql - malformed pk for table " + std::string(in->table) +
                                   ": expected a packed BLOB");
  }
  in->pk = std::string_view(static_cast<const char*>(sqlite3_value_blob(pk)),
                            static_cast<size_t>(sqlite3_value_bytes(pk)));
  sqlite3_value* cid = cols[kCid];
  if (sqlite3_value_type(cid) != SQLITE_TEXT) return Status::InvalidArgument("crsql - invalid cid");
  if (sqlite3_value_bytes(cid) > 2048) return Status::InvalidArgument("crsql - column name exceeded max length");
  in->cid = TextBytes(cid);
  in->val = Value::From(cols[kVal]);
  std::optional<int64_t> n;
  CRSYNC_RETURN_IF_ERROR(IntArg(cols[kColVersion], "col_version", 0, false, &n));
  in->col_version = *n;
  CRSYNC_RETURN_IF_ERROR(IntArg(cols[kDbVersion], "db_version", 0, false, &n));
  in->db_version = *n;
  sqlite3_value* site = cols[kSiteId];
  if (sqlite3_value_type(site) == SQLITE_NULL) {
    in->site.reset();
  } else if (sqlite3_value_type(site) != SQLITE_BLOB || sqlite3_value_bytes(site) != 16) {
    return Status::InvalidArgument("crsql - site id must be a 16 byte blob");
  } else {
    in->site = std::string_view(static_cast<const char*>(sqlite3_value_blob(site)), 16);
  }
  CRSYNC_RETURN_IF_ERROR(IntArg(cols[kCl], "cl", 1, true, &in->cl, "a positive integer"));
  CRSYNC_RETURN_IF_ERROR(IntArg(cols[kSeq], "seq", 0, true, &in->seq));
  sqlite3_value* tag = cols[kTag];
  if (sqlite3_value_type(tag) == SQLITE_NULL) {
    in->tag = 0;
  } else if (sqlite3_value_type(tag) != SQLITE_INTEGER) {
    return Status::InvalidArgument("crsql - tag must be an integer");
  } else {
    in->tag = sqlite3_value_int64(tag);
  }
  return Status::OK();
}

int Update(sqlite3_vtab* vtab, int argc, sqlite3_value** argv, sqlite_int64* rowid) {
  auto* v = reinterpret_cast<ChangesVtab*>(vtab);
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    if (argc == 1 || sqlite3_value_type(argv[0]) != SQLITE_NULL) {
      SetError(vtab,
               "Only INSERT and SELECT statements are allowed against the crsql changes table");
      return SQLITE_MISUSE;
    }
    MergeInput in;
    // Local writes earlier in the transaction get their clocks first (the
    // row this merges may be one the last merge still holds: it stays
    // held, the Merger writes it behind).
    Status s = v->engine->FlushCapturedWrites();
    if (s.ok()) s = ParseInsert(argv + 2, &in);
    int64_t impacted = 0;
    if (s.ok()) s = v->merger.Merge(in, &impacted);
    if (s.ok() && v->merger.CountsForTracking(in)) {
      PeerMark mark{in.db_version, in.seq ? *in.seq : 0};
      v->probe.first.assign(in.site->data(), in.site->size());
      v->probe.second = in.tag;
      const PeerMark* now = nullptr;
      if (v->marks) {
        auto it = v->marks->find(v->probe);
        if (it != v->marks->end()) now = &it->second;
      }
      if (!now) {
        v->MutableMarks().emplace(v->probe, mark);
      } else if (mark.version > now->version ||
                 (mark.version == now->version && mark.seq > now->seq)) {
        v->MutableMarks()[v->probe] = mark;
      }
    }
    if (!s.ok()) {
      SetError(vtab, s.message());
      return VtabErrorCode(s);
    }
    *rowid = 0;
    return SQLITE_OK;
  });
}

Status WriteHeld(ChangesVtab* v);

int Begin(sqlite3_vtab* vtab) {
  auto* v = reinterpret_cast<ChangesVtab*>(vtab);
  v->marks.reset();
  v->savepoints.clear();
  v->savepoint_lost = false;
  v->impacted_at_begin = v->engine->rows_impacted();
  v->engine->CatalogMayBeStale();  // another connection may have altered a CRR
  v->engine->set_close_writer([v] { return WriteHeld(v); });
  return SQLITE_OK;
}

// Writes the row merges hold back and the transaction's receive cursors:
// before it commits, or as the connection closes in the middle of it.
Status WriteHeld(ChangesVtab* v) {
  CRSYNC_RETURN_IF_ERROR(v->engine->catalog().FlushPending());
  if (v->marks) {
    for (const auto& [key, mark] : *v->marks) {
      CRSYNC_RETURN_IF_ERROR(v->merger.TrackPeer(key.first, key.second, mark));
    }
  }
  v->marks.reset();
  return Status::OK();
}

int Sync(sqlite3_vtab* vtab) {
  auto* v = reinterpret_cast<ChangesVtab*>(vtab);
  return GuardSqliteCall(SQLITE_ERROR, [&] {
    if (Status s = WriteHeld(v); !s.ok()) {
      SetError(vtab, s.message());
      return VtabErrorCode(s);
    }
    return SQLITE_OK;
  });
}

int EndTransaction(sqlite3_vtab* vtab) {
  auto* v = reinterpret_cast<ChangesVtab*>(vtab);
  v->engine->set_close_writer(nullptr);
  v->marks.reset();
  v->savepoints.clear();
  v->savepoint_lost = false;
  v->engine->catalog().DropCachesAndFailures();
  v->engine->TransactionEndedOutsideCapture();
  return SQLITE_OK;
}

int Savepoint(sqlite3_vtab* vtab, int level) {
  return GuardSqliteCall(SQLITE_NOMEM, [&] {
    auto* v = reinterpret_cast<ChangesVtab*>(vtab);
    // A row held back (written behind) belongs before the savepoint: write
    // it now, so rolling back to the savepoint (which drops held rows)
    // cannot lose it. Every statement with a statement journal opens one,
    // including a merge's own user-table write: that one keeps the held
    // row, see RollbackTo.
    const bool internal = v->engine->in_merge_write();
    Catalog& catalog = v->engine->catalog();
    // Recorded before the flush, so that it exists however the flush ends
    // (even by an exception): SQLite then rolls back to this level, which
    // must neither clear a failure that predates it nor drop rows held
    // before it.
    try {
      v->savepoints.push_back(
          ChangesVtab::Savepoint{level, v->marks, internal, catalog.pending_flushes(), false,
                                 v->engine->rows_impacted()});
    } catch (...) {
      v->savepoint_lost = true;
      throw;
    }
    const size_t mine = v->savepoints.size() - 1;
    Status s;
    try {
      if (!internal) s = catalog.FlushPending(Crr::FlushHow::kOneRowStatements);
    } catch (...) {
      if (mine < v->savepoints.size()) v->savepoints[mine].failed = catalog.Failed();  // unwound
      throw;
    }
    v->savepoints[mine].failed = catalog.Failed();
    if (!s.ok()) {
      SetError(vtab, s.message());
      return VtabErrorCode(s);
    }
    return SQLITE_OK;
  });
}

int Release(sqlite3_vtab* vtab, int level) {
  auto* v = reinterpret_cast<ChangesVtab*>(vtab);
  while (!v->savepoints.empty() && v->savepoints.back().level >= level) v->savepoints.pop_back();
  return SQLITE_OK;
}

int RollbackTo(sqlite3_vtab* vtab, int level) {
  return GuardSqliteCall(SQLITE_NOMEM, [&] {
    auto* v = reinterpret_cast<ChangesVtab*>(vtab);
    while (!v->savepoints.empty() && v->savepoints.back().level > level) v->savepoints.pop_back();
    Catalog& catalog = v->engine->catalog();
    if (!v->savepoints.empty() && v->savepoints.back().level == level) {
      const ChangesVtab::Savepoint& sp = v->savepoints.back();  // stays open
      v->marks = sp.marks;
      v->engine->RestoreRowsImpacted(sp.impacted);  // the merges since are undone
      if (sp.internal) {
        // A merge's user-table write failed and undid itself: the rows
        // held back are older and stay. Unless something inside it (a
        // user trigger merging too) wrote one of them: that write is
        // undone now, and the row is no longer held anywhere.
        if (catalog.pending_flushes() != sp.flushes) {
          catalog.FailPending(Status::Sqlite(
              SQLITE_ABORT, "crsql - a failed merge inside a trigger undid merged metadata; "
                            "roll the transaction back"));
        }
        catalog.DropReadCaches();
        v->engine->SitesMayHaveRolledBack();
        return SQLITE_OK;
      }
      if (sp.failed) {
        // The write-behind failed before this savepoint: rolling back to
        // it does not undo that.
        catalog.DropCaches();
        v->engine->SitesMayHaveRolledBack();
        return SQLITE_OK;
      }
    } else if (v->savepoint_lost) {
      // Maybe one we failed to record: rows held before it are still
      // held, but what SQLite undid is unknown. The transaction must not
      // commit.
      catalog.FailPending(Status::Sqlite(
          SQLITE_NOMEM, "crsql - out of memory while opening a savepoint; roll the transaction back"));
      catalog.DropReadCaches();
      v->engine->SitesMayHaveRolledBack();
      return SQLITE_OK;
    } else {
      v->marks.reset();  // opened before this table joined the transaction
      v->engine->RestoreRowsImpacted(v->impacted_at_begin);
    }
    catalog.DropCachesAndFailures();  // cached and held rows may have been rolled back
    v->engine->SitesMayHaveRolledBack();
    return SQLITE_OK;
  });
}

sqlite3_module MakeModule() {
  sqlite3_module m{};
  m.iVersion = 2;
  m.xCreate = nullptr;  // eponymous only
  m.xConnect = Connect;
  m.xBestIndex = BestIndex;
  m.xDisconnect = Disconnect;
  m.xDestroy = Disconnect;
  m.xOpen = Open;
  m.xClose = Close;
  m.xFilter = Filter;
  m.xNext = Next;
  m.xEof = Eof;
  m.xColumn = Column;
  m.xRowid = Rowid;
  m.xUpdate = Update;
  m.xBegin = Begin;
  m.xSync = Sync;
  m.xCommit = EndTransaction;
  m.xRollback = EndTransaction;
  m.xSavepoint = Savepoint;
  m.xRelease = Release;
  m.xRollbackTo = RollbackTo;
  return m;
}

const sqlite3_module kModule = MakeModule();

}  // namespace

int RegisterChangesVtab(sqlite3* db, ConnEngine* engine) {
  return sqlite3_create_module_v2(db, "crsql_changes", &kModule, engine, nullptr);
}

}  // namespace crsync
