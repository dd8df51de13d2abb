#include "engine/packed.h"

#include "tests/test_util.h"

namespace crsync {
namespace {

std::string Hex(const std::string& bytes) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : bytes) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

std::string Bytes(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

std::string PackHex(const std::vector<Value>& v) {
  std::string out;
  PackValues(v, &out);
  return Hex(out);
}

// Every example of crr-semantics §9.2 (verified against cr-sqlite 0.16).
TEST(PackedTest, EncodesSpecExamples) {
  EXPECT_EQ(PackHex({Value::Int(0)}), "0101");
  EXPECT_EQ(PackHex({Value::Int(1)}), "010901");
  EXPECT_EQ(PackHex({Value::Int(127)}), "01097F");
  EXPECT_EQ(PackHex({Value::Int(128)}), "010980");
  EXPECT_EQ(PackHex({Value::Int(200)}), "0109C8");
  EXPECT_EQ(PackHex({Value::Int(255)}), "0109FF");
  EXPECT_EQ(PackHex({Value::Int(256)}), "01110100");
  EXPECT_EQ(PackHex({Value::Int(65535)}), "0111FFFF");
  EXPECT_EQ(PackHex({Value::Int(65536)}), "0119010000");
  EXPECT_EQ(PackHex({Value::Int(2147483647)}), "01217FFFFFFF");
  EXPECT_EQ(PackHex({Value::Int(2147483648LL)}), "012180000000");
  EXPECT_EQ(PackHex({Value::Int(4294967296LL)}), "01290100000000");
  EXPECT_EQ(PackHex({Value::Int(INT64_MAX)}), "01417FFFFFFFFFFFFFFF");
  EXPECT_EQ(PackHex({Value::Int(-1)}), "0141FFFFFFFFFFFFFFFF");
  EXPECT_EQ(PackHex({Value::Int(-128)}), "0141FFFFFFFFFFFFFF80");
  EXPECT_EQ(PackHex({Value::Int(INT64_MIN)}), "01418000000000000000");
  EXPECT_EQ(PackHex({Value::Real(1.5)}), "01023FF8000000000000");
  EXPECT_EQ(PackHex({Value::Real(0.0)}), "01020000000000000000");
  EXPECT_EQ(PackHex({Value::Real(-0.0)}), "01028000000000000000");
  EXPECT_EQ(PackHex({Value::Text("a")}), "010B0161");
  EXPECT_EQ(PackHex({Value::Text("")}), "0103");
  EXPECT_EQ(PackHex({Value::Text("h\xC3\xA9llo")}), "010B0668C3A96C6C6F");
  EXPECT_EQ(PackHex({Value::Text(std::string(200, 'x'))}).substr(0, 6), "010BC8");
  EXPECT_EQ(PackHex({Value::Text(std::string(300, 'x'))}).substr(0, 8), "0113012C");
  EXPECT_EQ(PackHex({Value::Blob("")}), "0104");
  EXPECT_EQ(PackHex({Value::Blob("\x01\x02")}), "010C020102");
  EXPECT_EQ(PackHex({Value::Null()}), "0105");
  EXPECT_EQ(PackHex({Value::Int(1), Value::Text("a"), Value::Blob("\xff"), Value::Null(),
                     Value::Real(2.5)}),
            "0509010B01610C01FF05024004000000000000");
  EXPECT_EQ(PackHex({}), "00");
}

TEST(PackedTest, RoundTripsEveryType) {
  std::vector<Value> in = {Value::Int(-5),           Value::Int(0),          Value::Int(1 << 20),
                           Value::Real(-0.0),        Value::Text("héllo"),   Value::Blob(""),
                           Value::Blob(std::string(70000, '\x07')), Value::Null()};
  std::string packed;
  PackValues(in, &packed);
  std::vector<Value> out;
  ASSERT_OK(UnpackValues(packed, &out));
  ASSERT_EQ(out.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(out[i].type, in[i].type) << i;
    EXPECT_EQ(Value::Compare(out[i], in[i]), 0) << i;
  }
  EXPECT_TRUE(std::signbit(out[3].d));
}

TEST(PackedTest, DecoderZeroExtendsAndAcceptsNonMinimalIntegers) {
  std::vector<Value> out;
  ASSERT_OK(UnpackValues(Bytes("0109C8"), &out));
  EXPECT_EQ(out[0].i, 200);
  ASSERT_OK(UnpackValues(Bytes("0119000001"), &out));
  EXPECT_EQ(out[0].i, 1);
  // W bits of REAL and NULL headers are ignored.
  ASSERT_OK(UnpackValues(Bytes("010D"), &out));
  EXPECT_EQ(out[0].type, SQLITE_NULL);
}

// Keys whose packed order is their numeric order (Crr's bound on how many
// rows a key range of a rowid table holds).
TEST(PackedTest, SmallUnsignedKeysAndOnlyThose) {
  uint64_t v = 99;
  EXPECT_TRUE(PackedSmallUint(Bytes("0109C8"), &v));
  EXPECT_EQ(v, 200u);
  EXPECT_TRUE(PackedSmallUint(Bytes("0101"), &v));  // 0: no payload bytes
  EXPECT_EQ(v, 0u);
  EXPECT_TRUE(PackedSmallUint(Bytes("0139FFFFFFFFFFFFFF"), &v));
  EXPECT_EQ(v, (uint64_t{1} << 56) - 1);
  std::vector<std::string> refused = {
      "0141FFFFFFFFFFFFFFFB",  // -5: eight bytes
      "01410100000000000000",  // 2^56: eight bytes
      "0119000001",            // 1, not minimal
      "010B61",                // TEXT 'a'
      "020901090102",          // two columns
      "0109",                  // truncated
      "0109C8C8",              // trailing byte
      ""};
  for (const std::string& hex : refused) EXPECT_FALSE(PackedSmallUint(Bytes(hex), &v)) << hex;
  // Minimal small integers sort by value.
  std::string a, b;
  PackValues({Value::Int(255)}, &a);
  PackValues({Value::Int(256)}, &b);
  EXPECT_LT(a, b);
}

TEST(PackedTest, DecoderRejectsMalformedInputWithReason) {
  std::vector<Value> out;
  EXPECT_THAT(UnpackValues("", &out).message(), ::testing::HasSubstr("empty"));
  EXPECT_THAT(UnpackValues(Bytes("0100"), &out).message(), ::testing::HasSubstr("type code 0"));
  EXPECT_THAT(UnpackValues(Bytes("0106"), &out).message(), ::testing::HasSubstr("type code 6"));
  EXPECT_THAT(UnpackValues(Bytes("0107"), &out).message(), ::testing::HasSubstr("type code 7"));
  EXPECT_THAT(UnpackValues(Bytes("0149"), &out).message(), ::testing::HasSubstr("> 8"));
  EXPECT_THAT(UnpackValues(Bytes("014B"), &out).message(), ::testing::HasSubstr("> 8"));
  EXPECT_THAT(UnpackValues(Bytes("0111FF"), &out).message(), ::testing::HasSubstr("truncated"));
  EXPECT_THAT(UnpackValues(Bytes("010B0561"), &out).message(), ::testing::HasSubstr("truncated"));
  EXPECT_THAT(UnpackValues(Bytes("020901"), &out).message(), ::testing::HasSubstr("truncated"));
  EXPECT_THAT(UnpackValues(Bytes("01090100"), &out).message(), ::testing::HasSubstr("trailing"));
  EXPECT_THAT(UnpackValues(Bytes("0102000000"), &out).message(), ::testing::HasSubstr("truncated"));
}

TEST(PackedTest, SqlFunctionsPackAndUnpack) {
  TestDb db;
  EXPECT_EQ(db.One("SELECT hex(crsql_pack_columns(1, 'a'))"), "'0209010B0161'");
  EXPECT_EQ(db.Query("SELECT cell FROM crsql_unpack_columns(X'0209010B0161')"),
            (Rows{{"1"}, {"'a'"}}));
  EXPECT_THAT(db.Error("SELECT cell FROM crsql_unpack_columns(X'0209')"),
              ::testing::HasSubstr("truncated"));
  EXPECT_THAT(db.Error("SELECT cell FROM crsql_unpack_columns('0209010B0161')"),
              ::testing::HasSubstr("expects a packed BLOB"));
  // NULL, as in `WHERE package = NULL`, matches nothing, like = NULL anywhere.
  EXPECT_EQ(db.Query("SELECT cell FROM crsql_unpack_columns(NULL)"), Rows{});
  EXPECT_EQ(db.Query("SELECT cell FROM crsql_unpack_columns WHERE package = NULL"), Rows{});
}

}  // namespace
}  // namespace crsync
