// Property tests: random writes on random schemas, then
//  - rebuilding a table from its crsql_changes gives the same rows;
//  - replicas exchanging changes in random order, with duplicates and partial
//    batches, converge to identical contents and identical changes.
// A failing seed is printed; replay it with CRSYNC_SEED=<seed>.
#include <algorithm>
#include <random>

#include "crsync/engine.h"
#include "tests/engine/feed_check.h"
#include "tests/engine/property_util.h"

namespace crsync {
namespace {

std::vector<uint64_t> Seeds(int fallback) {
  if (const char* one = std::getenv("CRSYNC_SEED")) return {std::stoull(one)};
  // CRSYNC_SEED_BASE moves the window, so a long soak explores seeds CI
  // never runs.
  const char* base_env = std::getenv("CRSYNC_SEED_BASE");
  const uint64_t base = base_env ? std::stoull(base_env) : 1000;
  std::vector<uint64_t> seeds;
  for (int i = 0; i < PropertySeeds(fallback); ++i) seeds.push_back(base + static_cast<uint64_t>(i));
  return seeds;
}

// What crsql_changes says about the replicated state. Not compared, because
// the merge rules (crr-semantics §11.5) legitimately keep them per replica:
// the local db_version; the origin and seq of a record when two sites wrote
// the same value at the same version (C8e: ignored, unless
// merge-equal-values = 1, then origins must match too); and live sentinels
// at an equal causal length (C4), e.g. the cl-1 sentinel of a row created by
// a pk change, which a replica already holding the row ignores.
Rows ChangeState(TestDb& db, bool origins) {
  return db.Query(std::string("SELECT \"table\", hex(pk), cid, quote(val), col_version, cl") +
                  (origins ? ", CASE WHEN cid != '-1' THEN hex(site_id) || '/' || seq END" : "") +
                  " FROM crsql_changes WHERE cid != '-1' OR cl % 2 = 0 OR \"table\" IN "
                  "(SELECT name FROM crsync_crrs WHERE cols = X'00') ORDER BY 1, 2, 3");
}

TEST(RebuildPropertyTest, ChangesDescribeExactlyTheCurrentContents) {
  for (uint64_t seed : Seeds(200)) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    RandomSchema s = RandomSchema::Make(rng);
    TestDb db;
    db.Exec(s.create_sql);
    int steps = 5 + rng() % 20;
    for (int step = 0; step < steps; ++step) {
      bool txn = rng() % 3 == 0;
      if (txn) db.Exec("BEGIN");
      int n = 1 + rng() % 3;
      for (int k = 0; k < n; ++k) RandomWrite(rng, s, db, false);
      if (txn) db.Exec(rng() % 4 == 0 ? "ROLLBACK" : "COMMIT");
      TestDb fresh;
      fresh.Exec(s.create_sql);
      Sync(db, fresh);
      ASSERT_EQ(s.Dump(fresh), s.Dump(db)) << "after step " << step << " schema " << s.create_sql;
    }
  }
}

// crr-semantics §5's invariants of the metadata, as crsql_changes shows
// it: a row has one causal length; a column record belongs to a live row
// (odd cl; a deleted row keeps only its sentinel); a sentinel's col_version
// is its cl; no col_version is negative, and 0 only where a resurrection
// zeroed it (cl 3 or more).
void ExpectMetadataInvariants(TestDb& db, const std::string& who) {
  const std::pair<const char*, const char*> rules[] = {
      {"a column record of a deleted row", "cid != '-1' AND cl % 2 = 0"},
      {"a sentinel whose col_version is not its cl", "cid = '-1' AND col_version != cl"},
      {"a negative col_version", "col_version < 0"},
      {"col_version 0 before any resurrection", "col_version = 0 AND cl < 3"},
  };
  for (const auto& [what, where] : rules) {
    ASSERT_EQ(db.One(std::string("SELECT count(*) FROM crsql_changes WHERE ") + where), "0")
        << who << ": " << what << " (" << where << ")";
  }
  ASSERT_EQ(db.One("SELECT count(*) FROM (SELECT 1 FROM crsql_changes GROUP BY \"table\", pk "
                   "HAVING count(DISTINCT cl) > 1)"),
            "0")
      << who << ": a row with two causal lengths";
}

// Applies 9-column rows through ChangeApplier (the sidecar's path), in one
// batch: consecutive changes to one row are merged together there.
Status ApplyThroughApplier(sqlite3* db, const std::vector<ChangeRow>& rows) {
  std::unique_ptr<ChangeApplier> applier;
  CRSYNC_RETURN_IF_ERROR(ChangeApplier::Open(db, &applier));
  return applier->Apply(ToChanges(rows));
}

void RunConvergence(bool nine, int fallback_seeds, bool applier = false) {
  // Replicas that end empty converge trivially: if most seeds did (the
  // random writes failing, say), the test proved nothing.
  size_t seeds_run = 0, seeds_with_rows = 0;
  for (uint64_t seed : Seeds(fallback_seeds)) {
    ++seeds_run;
    SCOPED_TRACE("seed " + std::to_string(seed) + (nine ? " (9 columns)" : " (7 columns)"));
    std::mt19937_64 rng(seed);
    RandomSchema s = RandomSchema::Make(rng);
    size_t n = 3 + rng() % 3;
    bool merge_equal = rng() % 2;
    // Some replicas fire delete triggers for rows REPLACE removes.
    const bool recursive = rng() % 4 == 0;
    std::vector<std::unique_ptr<TestDb>> reps;
    for (size_t i = 0; i < n; ++i) {
      reps.push_back(std::make_unique<TestDb>());
      reps.back()->Exec(s.create_sql);
      if (merge_equal) reps.back()->Exec("SELECT crsql_config_set('merge-equal-values', 1)");
      if (recursive && i % 2 == 0) reps.back()->Exec("PRAGMA recursive_triggers = ON");
    }
    // Each replica has an observer that follows it alone, as a sidecar
    // does: after the committed db_version it last saw, every change
    // (relayed ones too). Whatever it missed was changed at a version it had
    // passed, which §6.1 forbids: in the end it must hold what its replica
    // holds. (One observer of every replica would get such a change
    // through another replica, which took it with a version of its own.)
    std::vector<std::unique_ptr<TestDb>> observers;
    for (size_t i = 0; i < n; ++i) {
      observers.push_back(std::make_unique<TestDb>());
      observers.back()->Exec(s.create_sql);
      if (merge_equal) observers.back()->Exec("SELECT crsql_config_set('merge-equal-values', 1)");
    }
    std::vector<std::string> seen(n, "0");
    auto observe = [&](size_t i) {
      const std::string upto = reps[i]->One("SELECT crsql_db_version()");
      Sync(*reps[i], *observers[i], "WHERE db_version > " + seen[i] + " AND db_version <= " + upto);
      seen[i] = upto;
    };
    // 7-column peers follow the seed guide: each pulls another's own
    // changes after its cursor, whole and in order.
    auto pull7 = [&](TestDb& from, TestDb& to) {
      std::string site = from.Text("SELECT quote(crsql_site_id())");
      std::string cursor = to.One("SELECT coalesce((SELECT clock FROM crsql_tracked_peers WHERE "
                                  "event = 0 AND site_id = " + site + "), 0)");
      Sync(from, to, "WHERE db_version > " + cursor + " AND site_id IS NULL", false);
    };
    int rounds = 10 + rng() % 20;
    for (int r = 0; r < rounds; ++r) {
      TestDb& w = *reps[rng() % n];
      bool txn = rng() % 3 == 0;
      if (txn) w.Exec("BEGIN");
      for (int k = 0, m = 1 + rng() % 3; k < m; ++k) RandomWrite(rng, s, w, !nine);
      if (txn) w.Exec(rng() % 5 == 0 ? "ROLLBACK" : "COMMIT");
      ASSERT_NO_FATAL_FAILURE(ExpectMetadataInvariants(w, "after a local write"));
      if (rng() % 3 == 0) observe(rng() % n);
      if (rng() % 2) {
        size_t a = rng() % n, b = rng() % n;
        if (a == b) continue;
        if (!nine) {
          pull7(*reps[a], *reps[b]);
          continue;
        }
        // A random slice of a's changes (relayed ones too), shuffled, with
        // duplicates, applied in one or two transactions.
        auto rows = ReadChanges(reps[a]->get());
        std::vector<ChangeRow> batch;
        for (const auto& row : rows) {
          if (rng() % 3 != 0) batch.push_back(row);
          if (rng() % 6 == 0) batch.push_back(row);
        }
        std::shuffle(batch.begin(), batch.end(), rng);
        size_t split = batch.empty() ? 0 : rng() % (batch.size() + 1);
        for (auto part : {std::vector<ChangeRow>(batch.begin(), batch.begin() + split),
                          std::vector<ChangeRow>(batch.begin() + split, batch.end())}) {
          if (applier) {
            // Keep runs of one row together sometimes, as a sender does.
            if (rng() % 2) {
              std::stable_sort(part.begin(), part.end(), [](const ChangeRow& x, const ChangeRow& y) {
                return x[1].bytes < y[1].bytes;
              });
            }
            ASSERT_OK(ApplyThroughApplier(reps[b]->get(), part));
            continue;
          }
          reps[b]->Exec("BEGIN");
          ASSERT_OK(ApplyChanges(reps[b]->get(), part, true));
          reps[b]->Exec("COMMIT");
        }
        ASSERT_NO_FATAL_FAILURE(ExpectMetadataInvariants(*reps[b], "after a merge"));
      }
    }
    // Final anti-entropy: everyone pulls from everyone until quiet.
    for (int pass = 0; pass < 2; ++pass) {
      for (size_t a = 0; a < n; ++a) {
        for (size_t b = 0; b < n; ++b) {
          if (a == b) continue;
          if (nine) {
            Sync(*reps[a], *reps[b]);
          } else {
            pull7(*reps[a], *reps[b]);
          }
        }
      }
    }
    Rows want = s.Dump(*reps[0]);
    Rows want_changes = ChangeState(*reps[0], merge_equal);
    if (!want.empty()) ++seeds_with_rows;
    for (size_t i = 1; i < n; ++i) {
      ASSERT_EQ(s.Dump(*reps[i]), want) << "replica " << i << " schema " << s.create_sql;
      if (nine) {
        ASSERT_EQ(ChangeState(*reps[i], merge_equal), want_changes) << "replica " << i;
      }
    }
    for (size_t i = 0; i < n; ++i) {
      observe(i);
      ASSERT_EQ(s.Dump(*observers[i]), want)
          << "the observer following replica " << i << " by cursor, schema " << s.create_sql;
    }
  }
  ASSERT_GT(seeds_run, 0u);
  EXPECT_GE(seeds_with_rows * 2, seeds_run) << "most seeds ended with empty tables";
}

TEST(ConvergencePropertyTest, NineColumnExchangeInAnyOrder) { RunConvergence(true, 300); }

TEST(ConvergencePropertyTest, SevenColumnSeedFlow) { RunConvergence(false, 150); }

TEST(ConvergencePropertyTest, NineColumnExchangeThroughChangeApplier) {
  RunConvergence(true, 300, /*applier=*/true);
}

// Two connections share one database file (as an application's pool and
// the sidecar do) while in-memory peers write too. Each connection caches
// the catalog, the site ids and the committed version; the other one
// changes all three behind its back. After every round both must read the
// same changes, every change names a 16-byte site, and in the end the file
// converges with the peers.
TEST(SharedFilePropertyTest, ConnectionsOfOneFileAgreeAndConverge) {
  std::vector<uint64_t> seeds = Seeds(300);
  if (seeds.size() > 1) seeds.resize(std::max<size_t>(1, seeds.size() / 3));
  for (uint64_t seed : seeds) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    RandomSchema s = RandomSchema::Make(rng);
    TempPath path;
    TestDb a(path.str()), b(path.str()), p1, p2;
    a.Exec(s.create_sql);
    p1.Exec(s.create_sql);
    p2.Exec(s.create_sql);
    // Replica 0 is the file, through either connection.
    auto conn = [&](size_t replica) -> TestDb& {
      if (replica == 0) return rng() % 2 ? a : b;
      return replica == 1 ? p1 : p2;
    };
    const std::string all = "SELECT \"table\", hex(pk), cid, quote(val), col_version, db_version, "
                            "hex(site_id), cl, seq FROM crsql_changes ORDER BY db_version, seq, 2, 3";
    int rounds = 10 + rng() % 25;
    for (int r = 0; r < rounds; ++r) {
      TestDb& w = conn(rng() % 3);
      bool txn = rng() % 3 == 0;
      if (txn) w.Exec("BEGIN");
      for (int k = 0, m = 1 + rng() % 4; k < m; ++k) RandomWrite(rng, s, w, false);
      if (txn) w.Exec(rng() % 5 == 0 ? "ROLLBACK" : "COMMIT");
      size_t from = rng() % 3, to = rng() % 3;
      if (from != to) {
        auto rows = ReadChanges(conn(from).get());
        std::vector<ChangeRow> batch;
        for (const auto& row : rows)
          if (rng() % 3 != 0) batch.push_back(row);
        std::shuffle(batch.begin(), batch.end(), rng);
        TestDb& dst = conn(to);
        if (rng() % 2) {
          ASSERT_OK(ApplyThroughApplier(dst.get(), batch));
        } else {
          dst.Exec("BEGIN");
          ASSERT_OK(ApplyChanges(dst.get(), batch, true));
          dst.Exec("COMMIT");
        }
      }
      ASSERT_EQ(a.Query(all), b.Query(all)) << "round " << r;
      ASSERT_EQ(a.One("SELECT crsql_db_version()"), b.One("SELECT crsql_db_version()")) << "round " << r;
      ASSERT_EQ(b.One("SELECT count(*) FROM crsql_changes WHERE length(site_id) IS NOT 16"), "0")
          << "round " << r;
      ASSERT_EQ(a.One("SELECT count(*) FROM crsql_changes WHERE length(site_id) IS NOT 16"), "0")
          << "round " << r;
    }
    for (int pass = 0; pass < 2; ++pass) {
      for (size_t x = 0; x < 3; ++x) {
        for (size_t y = 0; y < 3; ++y) {
          if (x != y) Sync(conn(x), conn(y));
        }
      }
    }
    Rows want = s.Dump(a);
    Rows want_changes = ChangeState(a, false);
    for (TestDb* db : {&b, &p1, &p2}) {
      ASSERT_EQ(s.Dump(*db), want) << "schema " << s.create_sql;
      ASSERT_EQ(ChangeState(*db, false), want_changes);
    }
  }
}

// Writes in bulk (key-ordered loads, range updates) exchanged in large
// ChangeApplier batches: the paths that store dense windows (feed range
// entries, the one-walk metadata update) meet random point writes,
// deletes and key changes, and every replica still converges, with the
// same changes.
TEST(ConvergencePropertyTest, BulkWritesThroughChangeApplier) {
  const char* kCreate =
      "CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, b TEXT, c ANY); SELECT crsql_as_crr('t');";
  // Each seed writes thousands of rows: a fiftieth of the seeds the
  // other property tests run.
  std::vector<uint64_t> seeds = Seeds(2000);
  if (seeds.size() > 1) seeds.resize(std::max<size_t>(1, seeds.size() / 50));
  int64_t ranges = 0;
  for (uint64_t seed : seeds) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    const size_t n = 3;
    std::vector<std::unique_ptr<TestDb>> reps;
    for (size_t i = 0; i < n; ++i) {
      reps.push_back(std::make_unique<TestDb>());
      reps.back()->Exec(kCreate);
    }
    // Each replica loads its own key block, so loads append above what
    // it stores until others' rows arrive.
    std::vector<int> next(n);
    for (size_t i = 0; i < n; ++i) next[i] = 1 + static_cast<int>(i) * 1000000;
    for (int r = 0, rounds = 6 + static_cast<int>(rng() % 6); r < rounds; ++r) {
      const size_t w = rng() % n;
      TestDb& db = *reps[w];
      db.Exec("BEGIN");
      if (rng() % 2) {
        const int count = 16 + static_cast<int>(rng() % 1500);
        db.Exec("WITH RECURSIVE k(i) AS (SELECT " + std::to_string(next[w]) +
                " UNION ALL SELECT i + 1 FROM k WHERE i < " + std::to_string(next[w] + count - 1) +
                ") INSERT INTO t SELECT i, 'r" + std::to_string(r) + "', i % 5 FROM k");
        next[w] += count;
      }
      for (int k = 0, m = static_cast<int>(rng() % 6); k < m; ++k) {
        // A key below the owner's next load (loaded or not).
        const size_t owner = rng() % n;
        const int base = static_cast<int>(owner) * 1000000;
        const int span = next[owner] - base - 1;
        if (span <= 0) continue;
        const std::string id =
            std::to_string(base + 1 + static_cast<int>(rng() % static_cast<uint64_t>(span)));
        switch (rng() % 5) {
          case 0:
            db.Exec("UPDATE t SET c = c + 1 WHERE id BETWEEN " + id + " AND " + id + " + " +
                    std::to_string(rng() % 400));
            break;
          case 1:
            db.Exec("UPDATE t SET b = 'u', c = " + RandomValue(rng) + " WHERE id = " + id);
            break;
          case 2:
            db.Exec("DELETE FROM t WHERE id BETWEEN " + id + " AND " + id + " + " + std::to_string(rng() % 3));
            break;
          case 3:
            db.Exec("INSERT OR REPLACE INTO t VALUES (" + id + ", 'x', 0)");
            break;
          default:
            db.Exec("UPDATE OR REPLACE t SET id = id + 500000 WHERE id = " + id);
        }
      }
      db.Exec(rng() % 6 == 0 ? "ROLLBACK" : "COMMIT");
      // Another replica takes all of w's changes (relayed ones too), in
      // order or shuffled, in one or two batches.
      size_t to = (w + 1 + rng() % (n - 1)) % n;
      auto rows = ReadChanges(reps[w]->get());
      if (rng() % 3 == 0) std::shuffle(rows.begin(), rows.end(), rng);
      size_t split = rows.empty() ? 0 : rng() % (rows.size() + 1);
      for (auto part : {std::vector<ChangeRow>(rows.begin(), rows.begin() + split),
                        std::vector<ChangeRow>(rows.begin() + split, rows.end())}) {
        ASSERT_OK(ApplyThroughApplier(reps[to]->get(), part));
      }
    }
    for (int pass = 0; pass < 2; ++pass)
      for (size_t a = 0; a < n; ++a)
        for (size_t b = 0; b < n; ++b)
          if (a != b) {
            ASSERT_OK(ApplyThroughApplier(reps[b]->get(), ReadChanges(reps[a]->get())));
          }
    const char* dump = "SELECT * FROM t ORDER BY id";
    Rows want = reps[0]->Query(dump);
    Rows want_changes = ChangeState(*reps[0], false);
    for (size_t i = 1; i < n; ++i) {
      ASSERT_EQ(reps[i]->Query(dump), want) << "replica " << i;
      ASSERT_EQ(ChangeState(*reps[i], false), want_changes) << "replica " << i;
    }
    // What each replica reads by version is exactly what it holds.
    for (size_t i = 0; i < n; ++i) {
      EXPECT_EQ(reps[i]->One("SELECT count(*) FROM crsql_changes WHERE db_version > 0"),
                reps[i]->One("SELECT count(*) FROM crsql_changes"));
      TestDb fresh;
      fresh.Exec(kCreate);
      Sync(*reps[i], fresh);
      ASSERT_EQ(fresh.Query(dump), want) << "rebuilt from replica " << i;
      ranges += std::stoll(
          reps[i]->One("SELECT count(*) FROM t__crsync_feed WHERE substr(pk, 1, 1) = x'00'"));
      ASSERT_NO_FATAL_FAILURE(ExpectExactCounts(*reps[i], "replica " + std::to_string(i)));
    }
  }
  // The dense-window paths did run (every seed's loads make some: the
  // first seed alone, as sanitizer builds run it, does).
  EXPECT_GT(ranges, 0);
}

}  // namespace
}  // namespace crsync

namespace crsync {
namespace {

// Replicas add a column at different moments while writing and syncing;
// changes for the new column wait until the receiver has migrated. Once
// every replica has migrated and synced, all converge.
TEST(AlterPropertyTest, ReplicasMigratingAtDifferentMomentsConverge) {
  for (uint64_t seed : Seeds(300)) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    RandomSchema s = RandomSchema::Make(rng);
    size_t n = 3 + rng() % 2;
    std::vector<std::unique_ptr<TestDb>> reps;
    std::vector<bool> migrated(n, false);
    for (size_t i = 0; i < n; ++i) {
      reps.push_back(std::make_unique<TestDb>());
      reps.back()->Exec(s.create_sql);
    }
    const std::string extra = "extra col";
    auto migrate = [&](size_t i) {
      if (migrated[i]) return;
      reps[i]->Exec("SELECT crsql_begin_alter(" + QuoteLiteral(s.table) + ");"
                    "ALTER TABLE " + s.Q() + " ADD COLUMN " + QuoteIdent(extra) + " DEFAULT 'd';"
                    "SELECT crsql_commit_alter(" + QuoteLiteral(s.table) + ");");
      migrated[i] = true;
    };
    auto sync = [&](size_t a, size_t b) {
      std::string where = migrated[b] ? "" : "WHERE cid != " + QuoteLiteral(extra);
      Sync(*reps[a], *reps[b], where);
    };
    int rounds = 15 + rng() % 15;
    for (int r = 0; r < rounds; ++r) {
      size_t w = rng() % n;
      switch (rng() % 4) {
        case 0:
          if (rng() % 3 == 0) migrate(w);
          break;
        case 1:
          if (migrated[w]) {
            reps[w]->Try("UPDATE " + s.Q() + " SET " + QuoteIdent(extra) + " = " + RandomValue(rng) +
                         " WHERE " + KeyWhere(s, RandomKey(rng, s))).IgnoreError();
          }
          break;
        default:
          RandomWrite(rng, s, *reps[w], false);
      }
      size_t a = rng() % n, b = rng() % n;
      if (a != b) sync(a, b);
    }
    for (size_t i = 0; i < n; ++i) migrate(i);
    for (int pass = 0; pass < 2; ++pass)
      for (size_t a = 0; a < n; ++a)
        for (size_t b = 0; b < n; ++b)
          if (a != b) sync(a, b);
    Rows want = s.Dump(*reps[0]);
    for (size_t i = 1; i < n; ++i) ASSERT_EQ(s.Dump(*reps[i]), want) << "replica " << i << " " << s.create_sql;
  }
}

}  // namespace
}  // namespace crsync
