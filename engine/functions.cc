#include "engine/functions.h"

#include <algorithm>
#include <cctype>
#include <string>

#include "common/guard.h"
#include "engine/alter.h"
#include "engine/crr_admin.h"
#include "engine/packed.h"
#include "engine/recorder.h"
#include "engine/row_meta.h"

namespace crsync {
namespace {

ConnEngine* EngineOf(sqlite3_context* ctx) { return static_cast<ConnEngine*>(sqlite3_user_data(ctx)); }

void ResultStatus(sqlite3_context* ctx, const Status& s) {
  sqlite3_result_error(ctx, s.message().c_str(), -1);
  if (s.code() == Status::Code::kSqlite) sqlite3_result_error_code(ctx, s.sqlite_code());
}

std::string TextArg(sqlite3_value* v) {
  const unsigned char* p = sqlite3_value_text(v);
  return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_value_bytes(v)) : std::string();
}

bool IsMain(sqlite3_value* v) {
  std::string s = TextArg(v);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s == "main";
}

void SiteId(sqlite3_context* ctx, int, sqlite3_value**) {
  GuardSqlFunction(ctx, [&] {
    const std::string& id = EngineOf(ctx)->CurrentSiteId();
    if (id.empty()) {
      sqlite3_result_error(ctx,
                           "crsql - this database has no site id yet: it was never set up by "
                           "crsync and is open read-only (open it writable once and crsync "
                           "gives it one)",
                           -1);
      return;
    }
    sqlite3_result_blob(ctx, id.data(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
  });
}

void DbVersion(sqlite3_context* ctx, int, sqlite3_value**) {
  GuardSqlFunction(ctx, [&] {
    int64_t v;
    Status s = EngineOf(ctx)->CommittedDbVersion(&v);
    if (!s.ok()) return ResultStatus(ctx, s);
    sqlite3_result_int64(ctx, v);
  });
}

void NextDbVersion(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  GuardSqlFunction(ctx, [&] {
    ConnEngine* e = EngineOf(ctx);
    // A whole REAL passes (JavaScript bindings send every number as one).
    if (argc > 0 && sqlite3_value_type(argv[0]) != SQLITE_INTEGER &&
        !(sqlite3_value_type(argv[0]) == SQLITE_FLOAT &&
          sqlite3_value_double(argv[0]) == static_cast<double>(sqlite3_value_int64(argv[0])))) {
      return sqlite3_result_error(
          ctx, "crsql_next_db_version(n): n is the least version to take, an integer", -1);
    }
    int64_t floor = argc > 0 ? sqlite3_value_int64(argv[0]) : 0;
    sqlite3* db = sqlite3_context_db_handle(ctx);
    // The pending value lives only as long as the transaction: an
    // autocommit read-only statement must not leak it into the next one.
    bool keeps = !sqlite3_get_autocommit(db) || sqlite3_txn_state(db, "main") == SQLITE_TXN_WRITE;
    Status s = keeps ? e->WriteLockBeforeReading() : Status::OK();
    int64_t committed;
    if (s.ok()) s = e->CommittedDbVersion(&committed);
    if (!s.ok()) return ResultStatus(ctx, s);
    int64_t v;
    if (keeps) {
      // Kept in a transaction that has written nothing yet, the value would
      // outlive it: SQLite tells no hook of a read-only commit. The capture
      // table's joining makes it a write transaction, whose end we hear of.
      if (sqlite3_txn_state(db, "main") != SQLITE_TXN_WRITE) s = JoinCaptureTable(e);
      // Writes captured so far keep the version they were made at: they
      // are stored before a higher floor raises it.
      if (s.ok() && floor > e->pending_version()) s = e->FlushCapturedWrites();
      if (s.ok()) s = e->NextDbVersion(floor, &v);
      if (!s.ok()) return ResultStatus(ctx, s);
    } else {
      v = std::max(committed + 1, floor);
      if (v > kMaxChangeVersion) return ResultStatus(ctx, DbVersionExhausted());
    }
    sqlite3_result_int64(ctx, v);
  });
}

void AsCrrFn(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  GuardSqlFunction(ctx, [&] {
    if (argc == 0 || argc > 2) {
      sqlite3_result_error(ctx,
                           "Wrong number of args provided to crsql_as_crr. Provide the schema "
                           "name and table name or just the table name.",
                           -1);
      return;
    }
    if (argc == 2 && !IsMain(argv[0])) {
      sqlite3_result_error(ctx, "crsql - CRRs can only be made in the main schema", -1);
      return;
    }
    Status s = EngineOf(ctx)->WriteLockBeforeReading();
    if (s.ok()) s = AsCrr(EngineOf(ctx), TextArg(argv[argc - 1]));
    if (!s.ok()) return ResultStatus(ctx, s);
    sqlite3_result_text(ctx, "OK", 2, SQLITE_STATIC);
  });
}

void AsTableFn(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  GuardSqlFunction(ctx, [&] {
    if (argc == 0 || argc > 2 || (argc == 2 && !IsMain(argv[0]))) {
      sqlite3_result_error(ctx, "crsql_as_table expects (table) or ('main', table)", -1);
      return;
    }
    Status s = EngineOf(ctx)->WriteLockBeforeReading();
    if (s.ok()) s = AsTable(EngineOf(ctx), TextArg(argv[argc - 1]));
    if (!s.ok()) return ResultStatus(ctx, s);
    sqlite3_result_null(ctx);
  });
}

template <bool kBegin>
void AlterFn(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  GuardSqlFunction(ctx, [&] {
    if (argc == 0 || argc > 2 || (argc == 2 && !IsMain(argv[0]))) {
      sqlite3_result_error(ctx, kBegin ? "crsql_begin_alter expects (table) or ('main', table)"
                                       : "crsql_commit_alter expects (table) or ('main', table)",
                           -1);
      return;
    }
    std::string t = TextArg(argv[argc - 1]);
    Status s = EngineOf(ctx)->WriteLockBeforeReading();
    if (s.ok()) s = kBegin ? BeginAlter(EngineOf(ctx), t) : CommitAlter(EngineOf(ctx), t);
    if (!s.ok()) return ResultStatus(ctx, s);
    if (kBegin) {
      sqlite3_result_text(ctx, "OK", 2, SQLITE_STATIC);
    } else {
      sqlite3_result_null(ctx);
    }
  });
}

// The one setting there is; otherwise the spec's error (§16), naming what
// was asked for and what exists.
bool KnownSetting(sqlite3_context* ctx, sqlite3_value* name) {
  if (sqlite3_value_type(name) != SQLITE_TEXT) {
    sqlite3_result_error(ctx, "A setting's name is text (the one setting is 'merge-equal-values')",
                         -1);
    return false;
  }
  const std::string n = TextArg(name);
  if (n == "merge-equal-values") return true;
  const std::string m = "Unknown setting name '" + n + "' (the one setting is 'merge-equal-values')";
  sqlite3_result_error(ctx, m.c_str(), -1);
  return false;
}

void ConfigSet(sqlite3_context* ctx, int, sqlite3_value** argv) {
  GuardSqlFunction(ctx, [&] {
    if (!KnownSetting(ctx, argv[0])) return;
    if (sqlite3_value_type(argv[1]) != SQLITE_INTEGER) {
      sqlite3_result_error(ctx,
                           "crsql - merge-equal-values must be an integer (1 turns it on, any "
                           "other integer off)",
                           -1);
      return;
    }
    int64_t v = sqlite3_value_int64(argv[1]);
    ConnEngine* e = EngineOf(ctx);
    // Joined so that a ROLLBACK TO undoing the setting reaches the engine
    // (in autocommit the setting is a transaction of its own).
    Status s = sqlite3_get_autocommit(e->db()) ? Status::OK() : JoinForCatalogChange(e);
    StmtPtr st;
    if (s.ok()) s = Prepare(e->db(),
                       "INSERT OR REPLACE INTO main.crsql_master(key, value) VALUES "
                       "('config.merge-equal-values', ?1)",
                       &st);
    if (s.ok()) {
      sqlite3_bind_int64(st.get(), 1, v);
      s = StepToEnd(e->db(), st.get());
    }
    if (!s.ok()) return ResultStatus(ctx, s);
    e->set_merge_equal_values(v);
    sqlite3_result_int64(ctx, v);
  });
}

void ConfigGet(sqlite3_context* ctx, int, sqlite3_value** argv) {
  GuardSqlFunction(ctx, [&] {
    if (!KnownSetting(ctx, argv[0])) return;
    sqlite3_result_int64(ctx, EngineOf(ctx)->merge_equal_values_setting());
  });
}

void Finalize(sqlite3_context* ctx, int, sqlite3_value**) {
  GuardSqlFunction(ctx, [&] {
    Status s = EngineOf(ctx)->FlushLocalWrites();
    if (!s.ok()) return ResultStatus(ctx, s);
    EngineOf(ctx)->ReleaseStatements();
    sqlite3_result_text(ctx, "finalized", -1, SQLITE_STATIC);
  });
}

void PackColumns(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  GuardSqlFunction(ctx, [&] {
    if (argc > 255) {
      sqlite3_result_error(ctx, "crsql_pack_columns takes at most 255 values", -1);
      return;
    }
    std::string out;
    PackValues(argv, argc, &out);
    sqlite3_result_blob(ctx, out.data(), static_cast<int>(out.size()), SQLITE_TRANSIENT);
  });
}

// crsync_internal_pack_key(affinities, v1, ...): PackKey of the values,
// `affinities` holding one AffinityOf code per value (bulk backfills).
void PackKeyFn(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  GuardSqlFunction(ctx, [&] {
    if (argc < 1 || argc > 256) {
      sqlite3_result_error(ctx, "crsync_internal_pack_key: bad argument count", -1);
      return;
    }
    const unsigned char* codes = sqlite3_value_text(argv[0]);
    std::vector<char> affinity(codes ? reinterpret_cast<const char*>(codes) : "",
                               codes ? reinterpret_cast<const char*>(codes) +
                                           sqlite3_value_bytes(argv[0])
                                     : "");
    std::string out;
    PackKey(argv + 1, argc - 1, affinity, &out);
    sqlite3_result_blob(ctx, out.data(), static_cast<int>(out.size()), SQLITE_TRANSIENT);
  });
}

// crsync_pk_value(pk, i): value i of a packed pk (NULL if it does not
// decode). Lets the change scan join feed entries with user rows.
void PkValue(sqlite3_context* ctx, int, sqlite3_value** argv) {
  GuardSqlFunction(ctx, [&] {
    std::string_view blob(static_cast<const char*>(sqlite3_value_blob(argv[0])),
                          static_cast<size_t>(sqlite3_value_bytes(argv[0])));
    std::vector<Value> vals;
    int64_t i = sqlite3_value_int64(argv[1]);
    if (!UnpackValues(blob, &vals).ok() || i < 0 || static_cast<size_t>(i) >= vals.size()) {
      return sqlite3_result_null(ctx);
    }
    vals[static_cast<size_t>(i)].SetResult(ctx);
  });
}

void RowsImpacted(sqlite3_context* ctx, int, sqlite3_value**) {
  sqlite3_result_int64(ctx, EngineOf(ctx)->rows_impacted());
}

void SyncBit(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  ConnEngine* e = EngineOf(ctx);
  if (argc == 1) e->set_sync_bit(sqlite3_value_int(argv[0]) != 0);
  sqlite3_result_int(ctx, e->sync_bit() ? 1 : 0);
}

// crsync_internal_fresh_meta(ncols, dbv): the metadata of a row new to the
// CRR, every column (or the sentinel when ncols = 0) at col_version 1 and
// db_version dbv, with seqs taken from the transaction's counter. Used by
// the bulk backfill of crsql_as_crr.
void FreshMeta(sqlite3_context* ctx, int, sqlite3_value** argv) {
  GuardSqlFunction(ctx, [&] {
    ConnEngine* e = EngineOf(ctx);
    int64_t ncols = sqlite3_value_int64(argv[0]);
    int64_t dbv = sqlite3_value_int64(argv[1]);
    if (ncols < 0 || ncols > 2000) {
      sqlite3_result_error(ctx, "crsync_internal_fresh_meta: bad column count", -1);
      return;
    }
    RowMeta meta;
    meta.cols.resize(static_cast<size_t>(ncols));
    int64_t run = e->PeekSeq();
    if (ncols == 0) {
      meta.sentinel = Clock{true, 1, dbv, e->TakeSeq(), 0, run};
    } else {
      for (Clock& c : meta.cols) c = Clock{true, 1, dbv, e->TakeSeq(), 0, run};
    }
    std::string blob;
    EncodeRowMeta(meta, &blob);
    sqlite3_result_blob(ctx, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  });
}

// crsync_internal_meta_run(meta): the feed run of a row's first record.
void MetaRun(sqlite3_context* ctx, int, sqlite3_value** argv) {
  GuardSqlFunction(ctx, [&] {
    std::string_view blob(static_cast<const char*>(sqlite3_value_blob(argv[0])),
                          static_cast<size_t>(sqlite3_value_bytes(argv[0])));
    int64_t run;
    if (!FirstRecordRun(blob, &run)) return sqlite3_result_null(ctx);
    sqlite3_result_int64(ctx, run);
  });
}

// crsync_internal_remap(...): one row of crsql_commit_alter's bulk remap;
// the arguments are the hook's (engine/alter.cc).
void Remap(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
  GuardSqlFunction(ctx, [&] {
    ConnEngine::SqlHook* hook = EngineOf(ctx)->remap_hook();
    if (!hook) return sqlite3_result_error(ctx, "crsync_internal_remap: no alter in progress", -1);
    (*hook)(ctx, argc, argv);
  });
}

void StateDestroy(void* p) {
  GuardVoidCall([&] { delete static_cast<ConnEngine*>(p); });
}

void StateFn(sqlite3_context* ctx, int, sqlite3_value**) { sqlite3_result_null(ctx); }

}  // namespace

int RegisterFunctions(sqlite3* db, ConnEngine* e) {
  struct Fn {
    const char* name;
    int argc;
    int flags;
    void (*fn)(sqlite3_context*, int, sqlite3_value**);
  };
  const int kDet = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
  const int kVol = SQLITE_UTF8 | SQLITE_INNOCUOUS;
  const int kDirect = SQLITE_UTF8 | SQLITE_DIRECTONLY;
  const Fn fns[] = {
      {"crsql_site_id", 0, kDet, SiteId},
      {"crsql_siteid", 0, kDet, SiteId},
      {"crsql_db_version", 0, kVol, DbVersion},
      {"crsql_next_db_version", 0, kVol, NextDbVersion},
      {"crsql_next_db_version", 1, kVol, NextDbVersion},
      {"crsql_as_crr", -1, kDirect, AsCrrFn},
      {"crsql_as_table", -1, kDirect, AsTableFn},
      {"crsql_begin_alter", -1, kDirect, AlterFn<true>},
      {"crsql_commit_alter", -1, kDirect, AlterFn<false>},
      {"crsql_config_set", 2, kDirect, ConfigSet},
      {"crsql_config_get", 1, kVol, ConfigGet},
      {"crsql_finalize", 0, kDirect, Finalize},
      {"crsql_pack_columns", -1, kDet, PackColumns},
      {"crsync_internal_pack_key", -1, kDirect, PackKeyFn},
      {"crsql_rows_impacted", 0, kVol, RowsImpacted},
      {"crsync_pk_value", 2, kDet, PkValue},
      {"crsql_internal_sync_bit", 0, kVol, SyncBit},
      {"crsql_internal_sync_bit", 1, kVol, SyncBit},
      {"crsync_internal_fresh_meta", 2, kDirect, FreshMeta},
      {"crsync_internal_meta_run", 1, kDirect, MetaRun},
      {"crsync_internal_remap", -1, kDirect, Remap},
  };
  for (const Fn& f : fns) {
    int rc = sqlite3_create_function_v2(db, f.name, f.argc, f.flags, e, f.fn, nullptr, nullptr,
                                        nullptr);
    if (rc != SQLITE_OK) return rc;
  }
  return SQLITE_OK;
}

int RegisterEngineOwner(sqlite3* db, ConnEngine* e) {
  return sqlite3_create_function_v2(db, "crsync_internal_state", 0,
                                    SQLITE_UTF8 | SQLITE_DIRECTONLY, e, StateFn, nullptr, nullptr,
                                    StateDestroy);
}

}  // namespace crsync
