#include "engine/value.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "engine/row_meta.h"
#include "engine/write_log.h"
#include "tests/test_util.h"

namespace crsync {
namespace {

// crr-semantics §10: class order NULL < BLOB < TEXT < REAL < INTEGER.
TEST(ValueTest, ClassOrderIsNotSqliteOrder) {
  EXPECT_GT(Value::Compare(Value::Int(1), Value::Real(2.5)), 0);
  EXPECT_GT(Value::Compare(Value::Real(0), Value::Text("zzz")), 0);
  EXPECT_GT(Value::Compare(Value::Text(""), Value::Blob("\xff")), 0);
  EXPECT_GT(Value::Compare(Value::Blob(""), Value::Null()), 0);
  EXPECT_EQ(Value::Compare(Value::Null(), Value::Null()), 0);
}

TEST(ValueTest, WithinClassOrder) {
  EXPECT_LT(Value::Compare(Value::Int(-3), Value::Int(2)), 0);
  EXPECT_EQ(Value::Compare(Value::Real(0.0), Value::Real(-0.0)), 0);
  EXPECT_LT(Value::Compare(Value::Text("ab"), Value::Text("abc")), 0);
  EXPECT_GT(Value::Compare(Value::Text("b"), Value::Text("abc")), 0);
  EXPECT_LT(Value::Compare(Value::Blob("\x01"), Value::Blob(std::string("\x01\x00", 2))), 0);
  EXPECT_GT(Value::Compare(Value::Text("\xc3\xa9"), Value::Text("z")), 0);  // bytes, no collation
}

// The verified tie-break table of §10: does `incoming` beat `local`?
TEST(ValueTest, SpecTieBreakTable) {
  struct Case {
    Value local, incoming;
    bool incoming_wins;
  } cases[] = {
      {Value::Int(5), Value::Real(4.9), false},    {Value::Int(5), Value::Text("zzz"), false},
      {Value::Text("abc"), Value::Blob("\x00"), false}, {Value::Text("abc"), Value::Int(1), true},
      {Value::Null(), Value::Blob(""), true},      {Value::Real(1.5), Value::Int(2), true},
      {Value::Int(2), Value::Real(1.4), false},    {Value::Blob("\x01"), Value::Null(), false},
      {Value::Blob("\x01"), Value::Text(""), true},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Value::Compare(c.incoming, c.local) > 0, c.incoming_wins)
        << c.local.ToSql() << " vs " << c.incoming.ToSql();
  }
}

// ApplyAffinity must store what SQLite stores: a merged key converted
// differently would be a second identity for the row SQLite writes to.
// Every text here goes through a real column of each affinity.
TEST(ValueTest, ApplyAffinityMatchesSqlite) {
  TestDb db;
  db.Exec("CREATE TABLE a (i INTEGER, n NUMERIC, r REAL, t TEXT, b BLOB)");
  const std::string texts[] = {
      "5", " 5", "5 ", "\t5\n", "5\f", "\v5", "\r5\r", "5\x0b\x0c", "+7", "-0", "0.0", "-0.0",
      "1.0", "1.5", ".5", "5.", "1e3", "1E-2", "1e", "e1", "0x10", "1e999", "-1e999", "1e-400",
      "9223372036854775807", "9223372036854775808", "-9223372036854775808", "12345678901234567890",
      "3.0000000000000001", "abc", "5 5", "", " ", "\xc2\xa0" "5", "inf", "nan", "1_000", "00012",
      "1.0e+2", "  -3.25e1  ", std::string("7\0a", 3), std::string("7\0", 2),
      std::string("\0" "1", 2), std::string("1.5\0", 4), std::string("\0", 1)};
  StmtPtr put, get;
  ASSERT_OK(Prepare(db.get(), "INSERT INTO a VALUES (?1, ?1, ?1, ?1, ?1)", &put));
  ASSERT_OK(Prepare(db.get(), "SELECT i, n, r, t, b FROM a", &get));
  for (const std::string& text : texts) {
    db.Exec("DELETE FROM a");
    sqlite3_bind_text(put.get(), 1, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
    ASSERT_EQ(sqlite3_step(put.get()), SQLITE_DONE);
    sqlite3_reset(put.get());
    ASSERT_EQ(sqlite3_step(get.get()), SQLITE_ROW);
    int col = 0;
    for (char affinity : {'i', 'n', 'r', 't', 'b'}) {
      const Value stored = Value::FromColumn(get.get(), col++);
      const Value ours = ApplyAffinity(Value::Text(text), affinity);
      EXPECT_EQ(ours.type, stored.type) << "'" << text << "' affinity " << affinity;
      EXPECT_EQ(Value::Compare(ours, stored), 0)
          << "'" << text << "' affinity " << affinity << ": " << ours.ToSql() << " vs " << stored.ToSql();
      // Compare treats -0.0 and 0.0 as equal; a key's packed bytes do not.
      if (ours.type == SQLITE_FLOAT && stored.type == SQLITE_FLOAT) {
        EXPECT_EQ(std::signbit(ours.d), std::signbit(stored.d)) << "'" << text << "' affinity " << affinity;
      }
    }
    sqlite3_reset(get.get());
  }
  // A REAL -0.0 (not text) too: a REAL column stores it as the integer 0.
  db.Exec("DELETE FROM a; INSERT INTO a VALUES (-0.0, -0.0, -0.0, -0.0, -0.0)");
  ASSERT_EQ(sqlite3_step(get.get()), SQLITE_ROW);
  int col = 0;
  for (char affinity : {'i', 'n', 'r', 't', 'b'}) {
    const Value stored = Value::FromColumn(get.get(), col++);
    const Value ours = ApplyAffinity(Value::Real(-0.0), affinity);
    EXPECT_EQ(ours.ToSql(), stored.ToSql()) << "affinity " << affinity;
    if (ours.type == SQLITE_FLOAT && stored.type == SQLITE_FLOAT) {
      EXPECT_EQ(std::signbit(ours.d), std::signbit(stored.d)) << "affinity " << affinity;
    }
  }
}

TEST(RowMetaTest, RoundTripsAndCompresses) {
  RowMeta m;
  m.cols.resize(4);
  m.sentinel = Clock{true, 3, 10, 0, 0, 0};
  m.cols[0] = Clock{true, 1, 10, 1, 0, 0};
  m.cols[1] = Clock{true, 7, 10, 2, 0, 0};
  m.cols[3] = Clock{true, 0, 12, 99, 5, 99};
  std::string blob;
  EncodeRowMeta(m, &blob);
  EXPECT_LT(blob.size(), 30u);
  RowMeta out;
  ASSERT_OK(DecodeRowMeta(blob, 4, &out));
  EXPECT_EQ(out.CausalLength(), 3);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(out.cols[i].present, m.cols[i].present);
    EXPECT_EQ(out.cols[i].col_version, m.cols[i].col_version);
    EXPECT_EQ(out.cols[i].db_version, m.cols[i].db_version);
    EXPECT_EQ(out.cols[i].seq, m.cols[i].seq);
    EXPECT_EQ(out.cols[i].site, m.cols[i].site);
    EXPECT_EQ(out.cols[i].run, m.cols[i].run);
  }
  EXPECT_FALSE(DecodeRowMeta(blob.substr(0, blob.size() - 1), 4, &out).ok());
  EXPECT_FALSE(DecodeRowMeta(blob + "x", 4, &out).ok());
}

// A merged change may carry seq INT64_MAX; the record after it must not be
// taken for its "next seq" (the successor overflowed: UBSan in CI names it).
TEST(RowMetaTest, TheLargestSeqRoundTrips) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  RowMeta m;
  m.cols.resize(3);
  m.sentinel = Clock{true, 1, 4, kMax, 2, kMax};
  m.cols[0] = Clock{true, 5, 4, 0, 2, 0};
  m.cols[1] = Clock{true, 5, 9, kMax, 3, kMax};
  m.cols[2] = Clock{true, 2, 9, kMax - 1, 3, kMax - 1};
  std::string blob;
  EncodeRowMeta(m, &blob);
  RowMeta out;
  ASSERT_OK(DecodeRowMeta(blob, 3, &out));
  EXPECT_EQ(out.sentinel.seq, kMax);
  EXPECT_EQ(out.cols[0].seq, 0);
  EXPECT_EQ(out.cols[1].seq, kMax);
  EXPECT_EQ(out.cols[2].seq, kMax - 1);
  EXPECT_EQ(out.cols[2].run, kMax - 1);  // the smallest seq of version 9
}

// The bulk load's encoder gives, byte for byte, what the general one gives
// for the same fresh row (a pk-only row: its sentinel at cl 1), across the
// varint boundaries of db_version and seq and 0, where they are implied.
TEST(RowMetaTest, FreshRowEncoderMatchesTheGeneralOne) {
  for (size_t slots : {0, 1, 2, 3, 7, 64}) {
    for (int64_t dbv : {int64_t{0}, int64_t{1}, int64_t{127}, int64_t{128}, int64_t{1} << 40}) {
      for (int64_t seq : {int64_t{0}, int64_t{1}, int64_t{127}, int64_t{128}, int64_t{299997}}) {
        SCOPED_TRACE(std::to_string(slots) + " slots, dbv " + std::to_string(dbv) + ", seq " +
                     std::to_string(seq));
        RowMeta m;
        m.cols.resize(slots);
        if (slots == 0) StampLocal(&m.sentinel, 1, dbv, seq);
        for (size_t i = 0; i < slots; ++i) {
          StampLocal(&m.cols[i], 1, dbv, seq + static_cast<int64_t>(i));
        }
        std::string want, got;
        EncodeRowMeta(m, &want);
        EncodeFreshRowMeta(slots, dbv, seq, &got);
        EXPECT_EQ(got, want);
        RowMeta out;
        ASSERT_OK(DecodeRowMeta(got, slots, &out));
        EXPECT_EQ(out.CausalLength(), 1);
      }
    }
  }
}

// A fresh local row (every column at version 1, consecutive seqs, one
// db_version) costs one byte per column beyond the first record's
// db_version and seq.
TEST(RowMetaTest, FreshRowIsOneBytePerColumn) {
  RowMeta m;
  m.cols.resize(3);
  for (int i = 0; i < 3; ++i) m.cols[i] = Clock{true, 1, 1, 299997 + i, 0, 299997};
  std::string blob;
  EncodeRowMeta(m, &blob);
  EXPECT_EQ(blob.size(), 1u + 1u + 3u + 2u);  // head, dbv, seq (3-byte varint), 2 heads
  RowMeta out;
  ASSERT_OK(DecodeRowMeta(blob, 3, &out));
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(out.cols[i].present);
    EXPECT_EQ(out.cols[i].seq, 299997 + i);
    EXPECT_EQ(out.cols[i].run, 299997);
  }
  int64_t run = 0;
  ASSERT_TRUE(FirstRecordRun(blob, &run));
  EXPECT_EQ(run, 299997);
}

// Random rows round-trip, and the runs come back as NormalizeRuns computes
// them (they are derived, not stored).
TEST(RowMetaTest, RandomRowsRoundTripWithDerivedRuns) {
  std::mt19937_64 rng(7);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  for (int iter = 0; iter < 2000; ++iter) {
    RowMeta m;
    m.cols.resize(static_cast<size_t>(pick(0, 40)));
    auto clock = [&] {
      int64_t big = pick(0, 3) == 0 ? (int64_t{1} << pick(4, 62)) : 0;
      return Clock{true, pick(0, 20) + big, pick(1, 4) + big, pick(0, 6) + big, pick(0, 3), 0};
    };
    if (pick(0, 2) == 0) m.sentinel = clock();
    for (Clock& c : m.cols)
      if (pick(0, 2) != 0) c = clock();
    NormalizeRuns(&m);
    std::string blob;
    EncodeRowMeta(m, &blob);
    RowMeta out;
    ASSERT_OK(DecodeRowMeta(blob, m.cols.size(), &out));
    auto same = [](const Clock& a, const Clock& b) {
      return a.present == b.present &&
             (!a.present || (a.col_version == b.col_version && a.db_version == b.db_version &&
                             a.seq == b.seq && a.site == b.site && a.run == b.run));
    };
    ASSERT_TRUE(same(out.sentinel, m.sentinel)) << iter;
    for (size_t i = 0; i < m.cols.size(); ++i) ASSERT_TRUE(same(out.cols[i], m.cols[i])) << iter;
    std::vector<FeedRun> from_blob, from_meta;
    ASSERT_OK(BlobFeedRuns(blob, &from_blob));
    FeedRuns(m, &from_meta);
    std::sort(from_blob.begin(), from_blob.end());
    std::sort(from_meta.begin(), from_meta.end());
    ASSERT_EQ(from_blob, from_meta) << iter;
    if (!m.Empty()) {
      int64_t run = -1;
      ASSERT_TRUE(FirstRecordRun(blob, &run));
      const Clock* first = &m.sentinel;
      for (size_t i = 0; !first->present && i < m.cols.size(); ++i) first = &m.cols[i];
      EXPECT_EQ(run, first->run);
    }
    // A strict prefix is refused, or decodes to fewer records (it ends
    // between records).
    auto count = [](const RowMeta& r) {
      size_t n = r.sentinel.present;
      for (const Clock& c : r.cols) n += c.present;
      return n;
    };
    for (size_t cut = 0; cut < blob.size(); ++cut) {
      RowMeta part;
      if (DecodeRowMeta(blob.substr(0, cut), m.cols.size(), &part).ok()) {
        ASSERT_LT(count(part), count(m)) << iter << " cut " << cut;
      }
    }
  }
}

// Decoding with fewer slots (a column dropped by an alter) keeps the runs the
// blob was stored with: they count the dropped records too.
TEST(RowMetaTest, DroppedSlotsStillCountForRuns) {
  RowMeta m;
  m.cols.resize(3);
  m.cols[0] = Clock{true, 1, 5, 11, 0, 0};
  m.cols[2] = Clock{true, 1, 5, 10, 0, 0};
  NormalizeRuns(&m);
  std::string blob;
  EncodeRowMeta(m, &blob);
  RowMeta out;
  ASSERT_OK(DecodeRowMeta(blob, 2, &out));
  EXPECT_EQ(out.cols[0].run, 10);
  EXPECT_FALSE(out.cols[1].present);
}

TEST(RowMetaTest, RefusesSlotsOutOfOrder) {
  RowMeta m;
  m.cols.resize(2);
  m.cols[1] = Clock{true, 1, 5, 11, 0, 0};
  std::string blob;
  EncodeRowMeta(m, &blob);  // one record, slot 2, explicit
  std::string twice = blob + blob;  // slot 2 again: out of order
  RowMeta out;
  Status s = DecodeRowMeta(twice, 2, &out);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), ::testing::HasSubstr("slots out of order"));
}

TEST(WriteLogTest, KeepsEachWritesBytesAndTruncatesCleanly) {
  WriteLog log;
  const std::vector<uint32_t> changed = {0, 2};
  for (int i = 0; i < 1000; ++i) {
    WriteLog::Write w;
    w.op = i % 3 == 0 ? WriteLog::Write::kUpdate : WriteLog::Write::kInsert;
    w.crr_id = i % 2 + 1;
    std::string key = "k" + std::to_string(i), old = i % 3 == 0 ? "old" + std::to_string(i) : "";
    w.key = key;
    w.old_key = old;
    w.moved = !old.empty();
    if (i % 3 == 0) w.changed = changed;
    log.Add(w);  // copies: key and old go out of scope
  }
  ASSERT_EQ(log.size(), 1000u);
  for (int i : {0, 1, 2, 3, 998, 999}) {
    WriteLog::Write w = log[static_cast<size_t>(i)];
    EXPECT_EQ(w.key, "k" + std::to_string(i));
    EXPECT_EQ(w.crr_id, i % 2 + 1);
    EXPECT_EQ(w.moved, i % 3 == 0);
    EXPECT_EQ(w.old_key, i % 3 == 0 ? "old" + std::to_string(i) : "");
    EXPECT_EQ(w.changed.size(), i % 3 == 0 ? 2u : 0u);
    if (i % 3 == 0) {
      EXPECT_EQ(w.changed[1], 2u);
    }
  }
  log.Truncate(500);
  ASSERT_EQ(log.size(), 500u);
  WriteLog::Write w;
  w.key = "again";
  log.Add(w);
  EXPECT_EQ(log[500].key, "again");  // written where the dropped writes' bytes were
  EXPECT_EQ(log[499].key, "k499");
  EXPECT_EQ(log[498].old_key, "old498");
  log.DropPrefix(498);  // renumbers: old 498 is now 0
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[0].old_key, "old498");
  EXPECT_EQ(log[0].changed.size(), 2u);
  EXPECT_EQ(log[1].key, "k499");
  EXPECT_EQ(log[2].key, "again");
  log.Clear();
  EXPECT_EQ(log.size(), 0u);
}

// Many writes (the buffers grow several times), truncated and cut at the
// front in the middle: every write keeps its bytes.
TEST(WriteLogTest, KeepsBytesThroughGrowthTruncationAndDroppedPrefix) {
  WriteLog log;
  auto add = [&](int i) {
    WriteLog::Write w;
    std::string key = "k" + std::to_string(i);
    w.key = key;
    w.crr_id = i;
    log.Add(w);
  };
  for (int i = 0; i < 10000; ++i) add(i);
  ASSERT_EQ(log.size(), 10000u);
  for (int i : {0, 4095, 4096, 8191, 8192, 9999}) {
    EXPECT_EQ(log[static_cast<size_t>(i)].key, "k" + std::to_string(i));
    EXPECT_EQ(log[static_cast<size_t>(i)].crr_id, i);
  }
  log.Truncate(4097);
  for (int i = 4097; i < 9000; ++i) add(i + 100000);
  EXPECT_EQ(log[4096].key, "k4096");
  EXPECT_EQ(log[4097].key, "k104097");
  EXPECT_EQ(log[8999].key, "k108999");
  log.DropPrefix(4100);
  ASSERT_EQ(log.size(), 4900u);
  EXPECT_EQ(log[0].key, "k104100");
  EXPECT_EQ(log[4899].key, "k108999");
  EXPECT_EQ(log[4899].crr_id, 108999);
  log.Clear();
  add(7);
  EXPECT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].key, "k7");
}

TEST(RowMetaTest, CausalLengthRules) {
  RowMeta m;
  m.cols.resize(2);
  EXPECT_EQ(m.CausalLength(), 0);
  m.cols[1] = Clock{true, 1, 1, 0, 0, 0};
  EXPECT_EQ(m.CausalLength(), 1);
  m.sentinel = Clock{true, 4, 1, 0, 0, 0};
  EXPECT_EQ(m.CausalLength(), 4);
}

}  // namespace
}  // namespace crsync
