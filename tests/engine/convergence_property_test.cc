// Property tests: random writes on random schemas, then
//  - rebuilding a table from its crsql_changes gives the same rows;
//  - replicas exchanging changes in random order, with duplicates and partial
//    batches, converge to identical contents and identical changes.
// A failing seed is printed; replay it with CRSYNC_SEED=<seed>.
#include <algorithm>
#include <random>

#include "crsync/engine.h"
#include "tests/engine/property_util.h"

namespace crsync {
namespace {

std::vector<uint64_t> Seeds(int fallback) {
  if (const char* one = std::getenv("CRSYNC_SEED")) return {std::stoull(one)};
  std::vector<uint64_t> seeds;
  for (int i = 0; i < PropertySeeds(fallback); ++i) seeds.push_back(1000 + i);
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

// Applies 9-column rows through ChangeApplier (the sidecar's path), in one
// batch: consecutive changes to one row are merged together there.
Status ApplyThroughApplier(sqlite3* db, const std::vector<ChangeRow>& rows) {
  std::unique_ptr<ChangeApplier> applier;
  CRSYNC_RETURN_IF_ERROR(ChangeApplier::Open(db, &applier));
  return applier->Apply(ToChanges(rows));
}

void RunConvergence(bool nine, int fallback_seeds, bool applier = false) {
  for (uint64_t seed : Seeds(fallback_seeds)) {
    SCOPED_TRACE("seed " + std::to_string(seed) + (nine ? " (9 columns)" : " (7 columns)"));
    std::mt19937_64 rng(seed);
    RandomSchema s = RandomSchema::Make(rng);
    size_t n = 3 + rng() % 3;
    bool merge_equal = rng() % 2;
    std::vector<std::unique_ptr<TestDb>> reps;
    for (size_t i = 0; i < n; ++i) {
      reps.push_back(std::make_unique<TestDb>());
      reps.back()->Exec(s.create_sql);
      if (merge_equal) reps.back()->Exec("SELECT crsql_config_set('merge-equal-values', 1)");
    }
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
    for (size_t i = 1; i < n; ++i) {
      ASSERT_EQ(s.Dump(*reps[i]), want) << "replica " << i << " schema " << s.create_sql;
      if (nine) {
        ASSERT_EQ(ChangeState(*reps[i], merge_equal), want_changes) << "replica " << i;
      }
    }
  }
}

TEST(ConvergencePropertyTest, NineColumnExchangeInAnyOrder) { RunConvergence(true, 300); }

TEST(ConvergencePropertyTest, SevenColumnSeedFlow) { RunConvergence(false, 150); }

TEST(ConvergencePropertyTest, NineColumnExchangeThroughChangeApplier) {
  RunConvergence(true, 300, /*applier=*/true);
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
