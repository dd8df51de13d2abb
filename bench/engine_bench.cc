// Engine benchmarks (issues "Engine I" and "Engine II"): local writes,
// changeset generation and merging, each beside a plain-SQLite baseline run
// in the same process.
#include <sqlite3.h>

#include <vector>

#include <memory>

#include "bench/bench_util.h"
#include "bench/session_baseline.h"
#include "crsync/engine.h"

namespace crsync {
namespace {

// --- local writes -----------------------------------------------------------

void BM_Insert100k(benchmark::State& state, bool crr) {
  int rows = BenchRows(100000);
  for (auto _ : state) {
    state.PauseTiming();
    {
      BenchDb db(crr);
      SetUpItems(db, crr, 0);
      state.ResumeTiming();
      db.Exec("BEGIN");
      InsertItems(db, rows);
      db.Exec("COMMIT");
      state.PauseTiming();
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * rows);
}
BENCHMARK_CAPTURE(BM_Insert100k, plain, false)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Insert100k, crr, true)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_OneRowTxns5k(benchmark::State& state, bool crr) {
  int txns = BenchRows(100000) / 20;
  for (auto _ : state) {
    state.PauseTiming();
    {
      BenchDb db(crr);
      SetUpItems(db, crr, 0);
      state.ResumeTiming();
      InsertItems(db, txns);  // autocommit: one transaction per row
      state.PauseTiming();
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * txns);
}
BENCHMARK_CAPTURE(BM_OneRowTxns5k, plain, false)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_OneRowTxns5k, crr, true)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Update100k(benchmark::State& state, bool crr) {
  int rows = BenchRows(100000);
  for (auto _ : state) {
    state.PauseTiming();
    {
      BenchDb db(crr);
      SetUpItems(db, crr, rows);
      state.ResumeTiming();
      db.Exec("UPDATE items SET qty = qty + 1");
      state.PauseTiming();
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * rows);
}
BENCHMARK_CAPTURE(BM_Update100k, plain, false)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Update100k, crr, true)->Unit(benchmark::kMillisecond)->UseRealTime();

// Size after the 100k-row insert and VACUUM; the time is not the point.
void BM_DbSize(benchmark::State& state, bool crr) {
  int rows = BenchRows(100000);
  int64_t bytes = 0;
  for (auto _ : state) {
    BenchDb db(crr);
    SetUpItems(db, crr, 0);
    db.Exec("BEGIN");
    InsertItems(db, rows);
    db.Exec("COMMIT; VACUUM;");
    bytes = db.Int("SELECT page_count * page_size FROM pragma_page_count, pragma_page_size");
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK_CAPTURE(BM_DbSize, plain, false)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK_CAPTURE(BM_DbSize, crr, true)->Unit(benchmark::kMillisecond)->Iterations(1);

// --- throughput against transaction and batch size (for the plots) ---------

// 20k rows written in transactions of range(0) rows each.
void BM_RowsPerTxn(benchmark::State& state, bool crr) {
  int rows = BenchRows(100000) / 5;
  int per_txn = static_cast<int>(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    {
      BenchDb db(crr);
      SetUpItems(db, crr, 0);
      state.ResumeTiming();
      for (int first = 0; first < rows; first += per_txn) {
        db.Exec("BEGIN");
        InsertItems(db, std::min(per_txn, rows - first), first);
        db.Exec("COMMIT");
      }
      state.PauseTiming();
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * rows);
}
BENCHMARK_CAPTURE(BM_RowsPerTxn, plain, false)->RangeMultiplier(10)->Range(1, 1000)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_RowsPerTxn, crr, true)->RangeMultiplier(10)->Range(1, 1000)
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// --- schema changes ---------------------------------------------------------

// Adding a column to a 100k-row CRR vs a plain ALTER plus reading the table once.
void BM_AlterAddColumn(benchmark::State& state, bool crr) {
  int rows = BenchRows(100000);
  for (auto _ : state) {
    state.PauseTiming();
    {
      BenchDb db(crr);
      SetUpItems(db, crr, rows);
      state.ResumeTiming();
      if (crr) {
        db.Exec("SELECT crsql_begin_alter('items'); ALTER TABLE items ADD COLUMN note TEXT;"
                "SELECT crsql_commit_alter('items');");
      } else {
        db.Exec("ALTER TABLE items ADD COLUMN note TEXT");
        benchmark::DoNotOptimize(db.Int("SELECT sum(length(name)) FROM items"));
      }
      state.PauseTiming();
    }
    state.ResumeTiming();
  }
}
BENCHMARK_CAPTURE(BM_AlterAddColumn, plain, false)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_AlterAddColumn, crr, true)->Unit(benchmark::kMillisecond)->UseRealTime();

// Renaming a column: the general path, every row's metadata remapped (a new
// clock per row, §14.2 "drop old + add new"), vs copying the 100k-row table.
void BM_AlterRenameColumn(benchmark::State& state, bool crr) {
  if (crr && SkipForOtherExtension(state)) return;
  int rows = BenchRows(100000);
  for (auto _ : state) {
    state.PauseTiming();
    {
      BenchDb db(crr);
      SetUpItems(db, crr, rows);
      state.ResumeTiming();
      if (crr) {
        db.Exec("SELECT crsql_begin_alter('items'); ALTER TABLE items RENAME COLUMN qty TO amount;"
                "SELECT crsql_commit_alter('items');");
      } else {
        db.Exec("CREATE TABLE items_copy (id INTEGER PRIMARY KEY NOT NULL, name TEXT, qty INTEGER, "
                "price REAL); INSERT INTO items_copy SELECT * FROM items;");
      }
      state.PauseTiming();
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * rows);
}
BENCHMARK_CAPTURE(BM_AlterRenameColumn, plain_copy, false)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_AlterRenameColumn, crr, true)->Unit(benchmark::kMillisecond)->UseRealTime();

// crsql_as_crr of a 1M-row table vs copying the table.
void BM_AsCrr1M(benchmark::State& state, bool crr) {
  int rows = BenchRows(100000) * 10;
  for (auto _ : state) {
    state.PauseTiming();
    {
      BenchDb db(crr);
      db.Exec(kItemsSql);
      db.Exec("BEGIN");
      InsertItems(db, rows);
      db.Exec("COMMIT");
      state.ResumeTiming();
      if (crr) {
        db.Exec("SELECT crsql_as_crr('items')");
      } else {
        db.Exec("CREATE TABLE items_copy (id INTEGER PRIMARY KEY NOT NULL, name TEXT, qty INTEGER, "
                "price REAL); INSERT INTO items_copy SELECT * FROM items;");
      }
      state.PauseTiming();
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * rows);
}
BENCHMARK_CAPTURE(BM_AsCrr1M, plain_copy, false)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_AsCrr1M, crr, true)->Unit(benchmark::kMillisecond)->UseRealTime();

// --- changeset generation ---------------------------------------------------

// A new CRR (file `name`) of `rows` rows × 3 columns, each row's `qty`
// then updated `updates` more times, one UPDATE of the whole table each.
std::unique_ptr<BenchDb> MakeItemsCrr(const char* name, int updates) {
  auto d = std::make_unique<BenchDb>(true, name);
  d->Exec(kItemsSql);
  d->Exec("SELECT crsql_as_crr('items')");
  d->Exec("BEGIN");
  InsertItems(*d, BenchRows(100000));
  d->Exec("COMMIT");
  for (int i = 0; i < updates; ++i) d->Exec("UPDATE items SET qty = qty + 1");
  return d;
}

// The CRR every read benchmark reads, made once per process.
BenchDb& SourceDb() {
  // Destroyed (and its file removed) at exit.
  static std::unique_ptr<BenchDb> db = MakeItemsCrr("source", 0);
  return *db;
}

// Reads every change of `db` with SQL.
void ReadEveryChange(benchmark::State& state, BenchDb& db) {
  StmtPtr st = db.Prep("SELECT \"table\", pk, cid, val, col_version, db_version, site_id, cl, seq "
                       "FROM crsql_changes WHERE db_version > ?1");
  int64_t n = 0;
  for (auto _ : state) {
    sqlite3_bind_int64(st.get(), 1, 0);
    while (sqlite3_step(st.get()) == SQLITE_ROW) {
      benchmark::DoNotOptimize(sqlite3_column_blob(st.get(), 1));
      benchmark::DoNotOptimize(sqlite3_column_value(st.get(), 3));
      ++n;
    }
    sqlite3_reset(st.get());
  }
  state.SetItemsProcessed(n);
}

void BM_ReadChanges_sql(benchmark::State& state) { ReadEveryChange(state, SourceDb()); }
BENCHMARK(BM_ReadChanges_sql)->Unit(benchmark::kMillisecond)->UseRealTime();

// The same rows after ten more updates of one column each: as many
// changes to read, and a reader should not pay for the history.
void BM_ReadChanges_after_updates(benchmark::State& state) {
  static std::unique_ptr<BenchDb> db = MakeItemsCrr("updated", 10);
  ReadEveryChange(state, *db);
}
BENCHMARK(BM_ReadChanges_after_updates)->Unit(benchmark::kMillisecond)->UseRealTime();

// Reads every transaction of the source through ChangeReader:
// read_txn(reader, cursor, &version) reads one and returns how many changes
// it had.
template <typename ReadTxn>
void ReadAllThroughReader(benchmark::State& state, ReadTxn&& read_txn) {
  if (SkipForOtherExtension(state)) return;
  std::unique_ptr<ChangeReader> reader;
  BenchDb::Check(ChangeReader::Open(SourceDb().get(), &reader));
  int64_t n = 0;
  for (auto _ : state) {
    int64_t cursor = 0, v;
    do {
      n += read_txn(*reader, cursor, &v);
      cursor = v;
    } while (v);
  }
  state.SetItemsProcessed(n);
}

// Collected: one vector<Change> per transaction.
void BM_ReadChanges_reader(benchmark::State& state) {
  ReadAllThroughReader(state, [](ChangeReader& reader, int64_t cursor, int64_t* v) {
    std::vector<Change> txn;
    BenchDb::Check(reader.NextTransaction(cursor, OriginFilter{}, &txn, v));
    return static_cast<int64_t>(txn.size());
  });
}
BENCHMARK(BM_ReadChanges_reader)->Unit(benchmark::kMillisecond)->UseRealTime();

// Streamed (the visitor form): nothing collected.
void BM_ReadChanges_stream(benchmark::State& state) {
  ReadAllThroughReader(state, [](ChangeReader& reader, int64_t cursor, int64_t* v) {
    int64_t n = 0;
    BenchDb::Check(reader.NextTransaction(cursor, OriginFilter{}, [&](Change& c) {
      benchmark::DoNotOptimize(c.val_bytes.data());
      ++n;
      return Status::OK();
    }, v));
    return n;
  });
}
BENCHMARK(BM_ReadChanges_stream)->Unit(benchmark::kMillisecond)->UseRealTime();

// Baseline for reading: a plain SELECT of the same rows, counted per cell.
void BM_ReadChanges_plain(benchmark::State& state) {
  BenchDb& db = SourceDb();
  StmtPtr st = db.Prep("SELECT id, name, qty, price FROM items");
  int64_t n = 0;
  for (auto _ : state) {
    while (sqlite3_step(st.get()) == SQLITE_ROW) {
      benchmark::DoNotOptimize(sqlite3_column_value(st.get(), 1));
      n += 3;
    }
    sqlite3_reset(st.get());
  }
  state.SetItemsProcessed(n);
}
BENCHMARK(BM_ReadChanges_plain)->Unit(benchmark::kMillisecond)->UseRealTime();

// --- merging ----------------------------------------------------------------

std::vector<Change>& SourceChanges() {
  static std::vector<Change>* changes = [] {
    auto* out = new std::vector<Change>();
    if (OtherExtension()) {
      StmtPtr st = SourceDb().Prep(
          "SELECT \"table\", pk, cid, val, col_version, db_version, site_id, cl, seq FROM "
          "crsql_changes");
      while (sqlite3_step(st.get()) == SQLITE_ROW) {
        Change c;
        auto text = [&](int i) {
          return std::string(static_cast<const char*>(sqlite3_column_blob(st.get(), i)),
                             static_cast<size_t>(sqlite3_column_bytes(st.get(), i)));
        };
        c.table = text(0);
        c.pk = text(1);
        c.cid = text(2);
        c.val_type = sqlite3_column_type(st.get(), 3);
        c.val_int = sqlite3_column_int64(st.get(), 3);
        c.val_real = sqlite3_column_double(st.get(), 3);
        if (c.val_type == SQLITE_TEXT || c.val_type == SQLITE_BLOB) c.val_bytes = text(3);
        c.col_version = sqlite3_column_int64(st.get(), 4);
        c.db_version = sqlite3_column_int64(st.get(), 5);
        c.site_id = text(6);
        c.cl = sqlite3_column_int64(st.get(), 7);
        c.seq = sqlite3_column_int64(st.get(), 8);
        out->push_back(std::move(c));
      }
      return out;
    }
    std::unique_ptr<ChangeReader> reader;
    BenchDb::Check(ChangeReader::Open(SourceDb().get(), &reader));
    int64_t cursor = 0, v;
    do {
      BenchDb::Check(reader->NextTransaction(cursor, OriginFilter{}, out, &v));
      cursor = v;
    } while (v);
    return out;
  }();
  return *changes;
}

void BindChange(sqlite3_stmt* st, const Change& c) {
  sqlite3_bind_text(st, 1, c.table.data(), static_cast<int>(c.table.size()), SQLITE_STATIC);
  sqlite3_bind_blob(st, 2, c.pk.data(), static_cast<int>(c.pk.size()), SQLITE_STATIC);
  sqlite3_bind_text(st, 3, c.cid.data(), static_cast<int>(c.cid.size()), SQLITE_STATIC);
  switch (c.val_type) {
    case SQLITE_INTEGER: sqlite3_bind_int64(st, 4, c.val_int); break;
    case SQLITE_FLOAT: sqlite3_bind_double(st, 4, c.val_real); break;
    case SQLITE_TEXT: sqlite3_bind_text(st, 4, c.val_bytes.data(), static_cast<int>(c.val_bytes.size()), SQLITE_STATIC); break;
    case SQLITE_BLOB: sqlite3_bind_blob(st, 4, c.val_bytes.data(), static_cast<int>(c.val_bytes.size()), SQLITE_STATIC); break;
    default: sqlite3_bind_null(st, 4);
  }
  sqlite3_bind_int64(st, 5, c.col_version);
  sqlite3_bind_int64(st, 6, c.db_version);
  sqlite3_bind_blob(st, 7, c.site_id.data(), static_cast<int>(c.site_id.size()), SQLITE_STATIC);
  sqlite3_bind_int64(st, 8, c.cl);
  sqlite3_bind_int64(st, 9, c.seq);
}

enum class MergePath { kPlainUpsert, kSql, kSqlFloor, kApplier, kSession };

// The floor under any SQL merge: a virtual table with crsql_changes' columns
// whose xUpdate keeps nothing. Running the SQL path's 300k statements into it
// measures what SQLite alone charges for them.
int SinkConnect(sqlite3* db, void*, int, const char* const*, sqlite3_vtab** out, char**) {
  int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(\"table\", pk, cid, val, col_version, db_version, "
                                    "site_id, cl, seq)");
  if (rc != SQLITE_OK) return rc;
  *out = static_cast<sqlite3_vtab*>(sqlite3_malloc(sizeof(sqlite3_vtab)));
  if (*out == nullptr) return SQLITE_NOMEM;
  **out = sqlite3_vtab{};
  return SQLITE_OK;
}
int SinkDisconnect(sqlite3_vtab* v) {
  sqlite3_free(v);
  return SQLITE_OK;
}
int SinkBestIndex(sqlite3_vtab*, sqlite3_index_info*) { return SQLITE_OK; }
int SinkUpdate(sqlite3_vtab*, int argc, sqlite3_value** argv, sqlite3_int64* rowid) {
  // Touch what a real merge must read, so the floor is not optimized away.
  int64_t sum = 0;
  for (int i = 2; i < argc; ++i) sum += sqlite3_value_type(argv[i]);
  *rowid = sum;
  return SQLITE_OK;
}
const sqlite3_module kSinkModule = [] {
  sqlite3_module m{};
  m.xConnect = SinkConnect;
  m.xBestIndex = SinkBestIndex;
  m.xDisconnect = SinkDisconnect;
  m.xUpdate = SinkUpdate;
  return m;
}();

// `preload`: 0 = empty target; 1 = target holds the rows with half the
// columns newer locally (so half the incoming changes lose).
void RunMerge(benchmark::State& state, MergePath path, bool half_lose) {
  if (path == MergePath::kApplier && SkipForOtherExtension(state)) return;
  std::vector<Change>& changes = SourceChanges();
  int rows = BenchRows(100000);
  const std::string& session_changeset = ItemsChangeset(rows);
  for (auto _ : state) {
    state.PauseTiming();
    {
      BenchDb db(path == MergePath::kSql || path == MergePath::kApplier, "target");
      db.Exec(kItemsSql);
      if (path == MergePath::kSql || path == MergePath::kApplier) db.Exec("SELECT crsql_as_crr('items')");
      if (half_lose) {
        // The target has the same rows; every other row is then edited
        // twice locally (col_version 3 > incoming 1: those changes lose; the
        // rest tie on version and win on value or are equal).
        db.Exec("BEGIN");
        InsertItems(db, rows, 0);
        db.Exec("UPDATE items SET name = name || '~', qty = qty - 1, price = price - 1 WHERE id % 2 = 0;"
                "UPDATE items SET name = name || '~', qty = qty - 1, price = price - 1 WHERE id % 2 = 0;"
                "COMMIT");
      }
      state.ResumeTiming();
      if (path == MergePath::kPlainUpsert) {
        db.Exec("BEGIN");
        InsertItems(db, rows, 0, "INSERT OR REPLACE");
        db.Exec("COMMIT");
      } else if (path == MergePath::kSql || path == MergePath::kSqlFloor) {
        if (path == MergePath::kSqlFloor) {
          if (sqlite3_create_module(db.get(), "sink", &kSinkModule, nullptr) != SQLITE_OK) std::abort();
        }
        const char* into = path == MergePath::kSqlFloor ? "sink" : "crsql_changes";
        StmtPtr st = db.Prep(std::string("INSERT INTO ") + into +
                             " (\"table\", pk, cid, val, col_version, db_version, site_id, cl, seq) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
        db.Exec("BEGIN");
        for (const Change& c : changes) {
          BindChange(st.get(), c);
          BenchDb::Check(StepToEnd(db.get(), st.get()));
        }
        db.Exec("COMMIT");
      } else if (path == MergePath::kApplier) {
        std::unique_ptr<ChangeApplier> applier;
        BenchDb::Check(ChangeApplier::Open(db.get(), &applier));
        BenchDb::Check(applier->Apply(changes));
      } else {
        ApplyChangeset(db.get(), session_changeset);
      }
      state.PauseTiming();
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(changes.size()));
}

// The source's changes merged into an empty database in transactions
// (SQL) or batches (ChangeApplier) of range(0) changes.
void BM_MergeBatch(benchmark::State& state, bool applier) {
  if (applier && SkipForOtherExtension(state)) return;
  std::vector<Change>& all = SourceChanges();
  size_t n = std::min<size_t>(all.size(), 60000);
  size_t batch = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    {
      BenchDb db(true, "target");
      db.Exec(kItemsSql);
      db.Exec("SELECT crsql_as_crr('items')");
      std::unique_ptr<ChangeApplier> ap;
      StmtPtr st;
      if (applier) {
        BenchDb::Check(ChangeApplier::Open(db.get(), &ap));
      } else {
        st = db.Prep("INSERT INTO crsql_changes (\"table\", pk, cid, val, col_version, db_version, "
                     "site_id, cl, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
      }
      state.ResumeTiming();
      for (size_t i = 0; i < n; i += batch) {
        size_t end = std::min(n, i + batch);
        if (applier) {
          std::vector<Change> part(all.begin() + static_cast<ptrdiff_t>(i),
                                   all.begin() + static_cast<ptrdiff_t>(end));
          BenchDb::Check(ap->Apply(part));
        } else {
          db.Exec("BEGIN");
          for (size_t k = i; k < end; ++k) {
            BindChange(st.get(), all[k]);
            BenchDb::Check(StepToEnd(db.get(), st.get()));
          }
          db.Exec("COMMIT");
        }
      }
      state.PauseTiming();
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
}
BENCHMARK_CAPTURE(BM_MergeBatch, sql, false)->RangeMultiplier(10)->Range(10, 10000)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_MergeBatch, applier, true)->RangeMultiplier(10)->Range(10, 10000)
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// Merge 300k changes (100k rows x 3 columns) into an empty database.
BENCHMARK_CAPTURE(RunMerge, empty_plain_upsert, MergePath::kPlainUpsert, false)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(RunMerge, empty_sql, MergePath::kSql, false)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(RunMerge, empty_sql_floor, MergePath::kSqlFloor, false)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(RunMerge, empty_applier, MergePath::kApplier, false)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(RunMerge, empty_session, MergePath::kSession, false)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
// Merge the same changes where half lose (the target edited every other row).
BENCHMARK_CAPTURE(RunMerge, halflose_sql, MergePath::kSql, true)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(RunMerge, halflose_applier, MergePath::kApplier, true)
    ->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace crsync

BENCHMARK_MAIN();
