#include "engine/value.h"

#include "engine/row_meta.h"
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
