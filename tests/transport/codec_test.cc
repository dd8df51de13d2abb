#include "transport/codec.h"

#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "tests/change_util.h"
#include "tests/test_util.h"
#include "transport/frame.h"
#include "transport/wire.capnp.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

const std::string kSender(16, '\x5a');
const std::string kOrigin("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\xff", 16);

Change MakeChange(int64_t db_version, int val_type) {
  Change c;
  c.table = "todo";
  c.pk = std::string("\x01\x0b\x01\x00a", 5);  // NUL inside, as packed pks may have
  c.cid = "title";
  c.val_type = val_type;
  c.col_version = 3;
  c.db_version = db_version;
  c.site_id = kOrigin;
  c.cl = 1;
  c.seq = 2;
  return c;
}

Change IntChange(int64_t db_version, int64_t v) {
  Change c = MakeChange(db_version, SQLITE_INTEGER);
  c.val_int = v;
  return c;
}
Change RealChange(int64_t db_version, double v) {
  Change c = MakeChange(db_version, SQLITE_FLOAT);
  c.val_real = v;
  return c;
}
Change BytesChange(int64_t db_version, int type, std::string v) {
  Change c = MakeChange(db_version, type);
  c.val_bytes = std::move(v);
  return c;
}

uint64_t Bits(double d) {
  uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return u;
}

void ExpectSameChange(const Change& want, const Change& got, size_t i) {
  SCOPED_TRACE("change " + std::to_string(i));
  EXPECT_EQ(got.table, want.table);
  EXPECT_EQ(got.pk, want.pk);
  EXPECT_EQ(got.cid, want.cid);
  EXPECT_EQ(got.val_type, want.val_type);
  EXPECT_EQ(got.val_int, want.val_int);
  EXPECT_EQ(Bits(got.val_real), Bits(want.val_real));  // -0.0 and NaN exactly
  EXPECT_EQ(got.val_bytes, want.val_bytes);
  EXPECT_EQ(got.col_version, want.col_version);
  EXPECT_EQ(got.db_version, want.db_version);
  EXPECT_EQ(got.site_id, want.site_id);
  EXPECT_EQ(got.cl, want.cl);
  EXPECT_EQ(got.seq, want.seq);
}

// Copies the serialised `message` into a word array a reader can use.
kj::Array<capnp::word> Serialise(capnp::MessageBuilder& message) {
  return capnp::messageToFlatArray(message);
}

// Sends `message` through a frame and a FrameReader and decodes the
// changeset from the callback, as the sidecar does.
Status RoundTrip(capnp::MessageBuilder& message, DecodedChangeset* out) {
  kj::Array<kj::byte> frame;
  CRSYNC_RETURN_IF_ERROR(FrameEncoder().Encode(message, &frame));
  int calls = 0;
  FrameReader reader(FrameReaderOptions(), [&](capnp::MessageReader& m) {
    ++calls;
    return DecodeChangesetMessage(m, out);
  });
  CRSYNC_RETURN_IF_ERROR(reader.Feed(frame.begin(), frame.size()));
  if (calls != 1) return Status::Transport("expected one message, got " + std::to_string(calls));
  return Status::OK();
}

// The codec against the schema itself, not against its own other half: a
// Change written with Cap'n Proto's generated setters decodes field by
// field, and one the codec encodes reads back with the generated getters.
// (A round trip alone passes when both halves swap two fields alike.)
TEST(CodecTest, EveryChangeFieldMatchesTheSchemaBothWays) {
  capnp::MallocMessageBuilder raw;
  auto w = raw.initRoot<wire::Change>();
  w.setTable("todo");
  w.setPk(kj::arrayPtr(reinterpret_cast<const kj::byte*>("\x01\x09\x07"), 3));
  w.setCid("title");
  w.getVal().setText("milk");
  w.setColVersion(3);
  w.setDbVersion(17);
  w.setSiteId(kj::arrayPtr(reinterpret_cast<const kj::byte*>(kOrigin.data()), kOrigin.size()));
  w.setCl(5);
  w.setSeq(2);
  Change c;
  ASSERT_OK(DecodeChange(raw.getRoot<wire::Change>().asReader(), &c));
  EXPECT_EQ(c.table, "todo");
  EXPECT_EQ(c.pk, std::string("\x01\x09\x07", 3));
  EXPECT_EQ(c.cid, "title");
  EXPECT_EQ(c.val_type, SQLITE_TEXT);
  EXPECT_EQ(c.val_bytes, "milk");
  EXPECT_EQ(c.col_version, 3);
  EXPECT_EQ(c.db_version, 17);
  EXPECT_EQ(c.site_id, kOrigin);
  EXPECT_EQ(c.cl, 5);
  EXPECT_EQ(c.seq, 2);

  Change in = IntChange(23, -42);
  in.col_version = 4;
  in.cl = 7;
  in.seq = 9;
  capnp::MallocMessageBuilder encoded;
  ASSERT_OK(EncodeChange(in, encoded.initRoot<wire::Change>()));
  auto r = encoded.getRoot<wire::Change>().asReader();
  EXPECT_EQ(std::string(r.getTable().cStr()), in.table);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(r.getPk().begin()), r.getPk().size()), in.pk);
  EXPECT_EQ(std::string(r.getCid().cStr()), in.cid);
  ASSERT_EQ(r.getVal().which(), wire::Change::Val::INT);
  EXPECT_EQ(r.getVal().getInt(), -42);
  EXPECT_EQ(r.getColVersion(), 4);
  EXPECT_EQ(r.getDbVersion(), 23);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(r.getSiteId().begin()), r.getSiteId().size()),
            kOrigin);
  EXPECT_EQ(r.getCl(), 7);
  EXPECT_EQ(r.getSeq(), 9);
  // The other value kinds land in their own union members.
  for (const Change& v : {RealChange(1, 2.5), BytesChange(1, SQLITE_BLOB, std::string("\0x", 2)),
                          MakeChange(1, SQLITE_NULL)}) {
    capnp::MallocMessageBuilder b;
    ASSERT_OK(EncodeChange(v, b.initRoot<wire::Change>()));
    auto val = b.getRoot<wire::Change>().asReader().getVal();
    switch (v.val_type) {
      case SQLITE_FLOAT:
        ASSERT_EQ(val.which(), wire::Change::Val::REAL);
        EXPECT_EQ(val.getReal(), 2.5);
        break;
      case SQLITE_BLOB:
        ASSERT_EQ(val.which(), wire::Change::Val::BLOB);
        EXPECT_EQ(std::string(reinterpret_cast<const char*>(val.getBlob().begin()),
                              val.getBlob().size()),
                  std::string("\0x", 2));
        break;
      default:
        EXPECT_EQ(val.which(), wire::Change::Val::NULL_);
    }
  }
}

TEST(CodecTest, RoundTripsEveryValueType) {
  std::string large_blob(1 << 20, '\0');
  for (size_t i = 0; i < large_blob.size(); ++i) large_blob[i] = static_cast<char>(i * 7 + i / 251);
  std::vector<Change> changes = {
      MakeChange(10, SQLITE_NULL),
      IntChange(10, 0),
      IntChange(10, std::numeric_limits<int64_t>::min()),
      IntChange(11, std::numeric_limits<int64_t>::max()),
      IntChange(11, -1),
      RealChange(11, -0.0),
      RealChange(12, 1.5),
      RealChange(12, std::numeric_limits<double>::max()),
      RealChange(12, -std::numeric_limits<double>::infinity()),
      RealChange(12, std::numeric_limits<double>::quiet_NaN()),
      RealChange(12, std::numeric_limits<double>::denorm_min()),
      BytesChange(13, SQLITE_TEXT, ""),
      BytesChange(13, SQLITE_TEXT,
                  "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac"),
      BytesChange(14, SQLITE_BLOB, ""),
      BytesChange(14, SQLITE_BLOB, std::string("\x00\xff\x00", 3)),
      BytesChange(15, SQLITE_BLOB, large_blob),
  };
  changes[0].cid = "-1";  // the row sentinel
  changes[0].cl = 2;
  changes[3].col_version = std::numeric_limits<int64_t>::max();
  changes[4].seq = 0;

  capnp::MallocMessageBuilder message;
  ASSERT_OK(BuildChangesetMessage(kSender, 10, 20, 0, 1, changes, &message));
  DecodedChangeset got;
  ASSERT_OK(RoundTrip(message, &got));

  EXPECT_EQ(got.sender_site_id, kSender);
  EXPECT_EQ(got.start_version, 10);
  EXPECT_EQ(got.end_version, 20);
  EXPECT_EQ(got.part, 0u);
  EXPECT_EQ(got.parts, 1u);
  ASSERT_EQ(got.changes.size(), changes.size());
  for (size_t i = 0; i < changes.size(); ++i) ExpectSameChange(changes[i], got.changes[i], i);
  // Spelled out, the cases most likely to be confused.
  EXPECT_EQ(got.changes[0].val_type, SQLITE_NULL);
  EXPECT_EQ(got.changes[2].val_int, std::numeric_limits<int64_t>::min());
  EXPECT_TRUE(std::signbit(got.changes[5].val_real));
  EXPECT_EQ(got.changes[5].val_real, 0.0);
  EXPECT_TRUE(std::isnan(got.changes[9].val_real));
  EXPECT_EQ(got.changes[11].val_type, SQLITE_TEXT);  // empty text is not NULL
  EXPECT_EQ(got.changes[13].val_type, SQLITE_BLOB);  // empty blob is not NULL
  EXPECT_EQ(got.changes[13].val_bytes, "");
  EXPECT_EQ(got.changes[15].val_bytes.size(), size_t{1} << 20);
}

TEST(CodecTest, RoundTripsAnEmptyPartOfASplitTransaction) {
  capnp::MallocMessageBuilder message;
  ASSERT_OK(BuildChangesetMessage(kSender, 7, 7, 2, 3, {}, &message));
  DecodedChangeset got;
  got.changes.push_back(MakeChange(1, SQLITE_NULL));  // overwritten
  ASSERT_OK(RoundTrip(message, &got));
  EXPECT_EQ(got.start_version, 7);
  EXPECT_EQ(got.end_version, 7);
  EXPECT_EQ(got.part, 2u);
  EXPECT_EQ(got.parts, 3u);
  EXPECT_TRUE(got.changes.empty());
}

TEST(CodecTest, SingleChangeRoundTripsWithoutAChangeset) {
  Change want = BytesChange(3, SQLITE_TEXT, "solo");
  capnp::MallocMessageBuilder message;
  auto builder = message.initRoot<wire::Change>();
  ASSERT_OK(EncodeChange(want, builder));
  Change got;
  ASSERT_OK(DecodeChange(builder.asReader(), &got));
  ExpectSameChange(want, got, 0);
}

// ---- Encoding rejects bad input from the caller.

TEST(CodecTest, BuildRejectsSenderSiteIdNotSixteenBytes) {
  capnp::MallocMessageBuilder message;
  Status s = BuildChangesetMessage(std::string(15, 'a'), 1, 1, 0, 1, {}, &message);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("15 bytes, expected 16"));
}

TEST(CodecTest, BuildRejectsBadRanges) {
  capnp::MallocMessageBuilder message;
  Status s = BuildChangesetMessage(kSender, 5, 4, 0, 1, {}, &message);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("[5, 4]"));
  EXPECT_EQ(BuildChangesetMessage(kSender, 0, 4, 0, 1, {}, &message).code(),
            Status::Code::kInvalidArgument);
}

TEST(CodecTest, BuildRejectsChangeOutsideTheRange) {
  capnp::MallocMessageBuilder message;
  Status s = BuildChangesetMessage(
      kSender, 5, 6, 0, 1, {MakeChange(5, SQLITE_NULL), MakeChange(7, SQLITE_NULL)}, &message);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("change 1: dbVersion 7 is outside"));
}

TEST(CodecTest, BuildRejectsBadChangeSiteIdAndUnknownValueType) {
  capnp::MallocMessageBuilder message;
  Change short_site = MakeChange(5, SQLITE_NULL);
  short_site.site_id = "abc";
  Status s = BuildChangesetMessage(kSender, 5, 5, 0, 1, {short_site}, &message);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("change 0: siteId has 3 bytes"));

  Change bad_type = MakeChange(5, 42);
  s = BuildChangesetMessage(kSender, 5, 5, 0, 1, {MakeChange(5, SQLITE_NULL), bad_type}, &message);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("change 1: unknown val_type 42"));
}

// ---- Decoding rejects what a peer should not have sent. These messages are
// built with the raw schema, bypassing BuildChangesetMessage's checks.

class DecodeTest : public ::testing::Test {
 protected:
  DecodeTest()
      : message_(std::make_unique<capnp::MallocMessageBuilder>()),
        changeset_(message_->initRoot<wire::Message>().initChangeset()) {
    changeset_.setSenderSiteId(Data(kSender));
    changeset_.setStartVersion(5);
    changeset_.setEndVersion(9);
    changeset_.setPart(0);
    changeset_.setParts(1);
  }

  static capnp::Data::Reader Data(const std::string& s) {
    return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s.data()), s.size());
  }

  // Adds changes with these db_versions (valid otherwise).
  void SetChanges(const std::vector<int64_t>& versions) {
    auto list = changeset_.initChanges(static_cast<unsigned>(versions.size()));
    for (unsigned i = 0; i < versions.size(); ++i) {
      ASSERT_OK(EncodeChange(IntChange(versions[i], i), list[i]));
    }
  }

  // Decodes after a full serialise/frame/read cycle; checks that *out is
  // untouched on failure.
  Status Decode() {
    DecodedChangeset out;
    out.sender_site_id = "untouched";
    Status s = RoundTrip(*message_, &out);
    if (!s.ok()) {
      EXPECT_EQ(out.sender_site_id, "untouched");
    }
    return s;
  }

  // Behind a pointer: MallocMessageBuilder's destructor may throw, which the
  // fixture's (noexcept) destructor must not inherit.
  std::unique_ptr<capnp::MallocMessageBuilder> message_;
  wire::Changeset::Builder changeset_;
};

TEST_F(DecodeTest, AcceptsAValidChangeset) {
  SetChanges({5, 7, 9});
  EXPECT_OK(Decode());
}

TEST_F(DecodeTest, SenderSiteIdNotSixteenBytesIsCorruption) {
  for (size_t size : {0u, 15u, 17u}) {
    changeset_.setSenderSiteId(Data(std::string(size, 's')));
    Status s = Decode();
    EXPECT_EQ(s.code(), Status::Code::kCorruption) << size << ": " << s.ToString();
    EXPECT_THAT(s.message(),
                HasSubstr("senderSiteId has " + std::to_string(size) + " bytes, expected 16"));
  }
}

TEST_F(DecodeTest, StartAfterEndIsCorruption) {
  changeset_.setStartVersion(10);
  Status s = Decode();
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("version range [10, 9]"));
}

TEST_F(DecodeTest, NonPositiveStartIsCorruption) {
  changeset_.setStartVersion(0);
  EXPECT_EQ(Decode().code(), Status::Code::kCorruption);
  changeset_.setStartVersion(std::numeric_limits<int64_t>::min());
  EXPECT_EQ(Decode().code(), Status::Code::kCorruption);
}

TEST_F(DecodeTest, ChangeAfterTheRangeIsCorruption) {
  SetChanges({5, 9, 10});
  Status s = Decode();
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_THAT(s.message(),
              HasSubstr("change 2: dbVersion 10 is outside the changeset's range [5, 9]"));
}

TEST_F(DecodeTest, ChangeBeforeTheRangeIsCorruption) {
  SetChanges({4});
  Status s = Decode();
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("change 0: dbVersion 4 is outside"));
}

TEST_F(DecodeTest, ChangeSiteIdNotSixteenBytesIsCorruption) {
  SetChanges({5, 6});
  changeset_.getChanges()[1].setSiteId(Data("short"));
  Status s = Decode();
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("change 1: siteId has 5 bytes, expected 16"));
}

TEST_F(DecodeTest, UnknownValueTypeIsCorruption) {
  SetChanges({5});
  // A union member this build does not know, as a newer peer could send:
  // the discriminant is the first 16 bits of Change's data section.
  capnp::AnyStruct::Builder any = changeset_.getChanges()[0];
  any.getDataSection()[0] = 7;
  any.getDataSection()[1] = 0;
  Status s = Decode();
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("unknown value type 7"));
}

TEST_F(DecodeTest, ARootOtherThanAChangesetIsCorruption) {
  message_->initRoot<wire::Message>().initAck().setUpToVersion(3);
  Status s = Decode();
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("expected a changeset"));
}

TEST_F(DecodeTest, TextWithoutTerminatorIsCorruptionNotAnException) {
  SetChanges({5});
  changeset_.getChanges()[0].setTable("abcdefg");  // 7 bytes + NUL: one word
  kj::Array<capnp::word> words = Serialise(*message_);
  kj::ArrayPtr<kj::byte> bytes = words.asBytes();
  const char needle[] = "abcdefg";
  kj::byte* at = std::search(bytes.begin(), bytes.end(), needle, needle + sizeof needle);
  ASSERT_NE(at, bytes.end());
  at[7] = 'h';
  capnp::FlatArrayMessageReader reader(words);
  DecodedChangeset out;
  Status s = DecodeChangesetMessage(reader, &out);
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("malformed"));
}

}  // namespace
}  // namespace crsync

namespace crsync {
namespace {

// Every kind of protocol message through the wire and back.
Message ThroughWire(const Message& in) {
  capnp::MallocMessageBuilder builder;
  EXPECT_OK(EncodeMessage(in, &builder));
  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  capnp::FlatArrayMessageReader reader(words);
  Message out;
  EXPECT_OK(DecodeMessage(reader, &out));
  return out;
}

// A node tracking many origin sites says a cursor for each in its Hello:
// it must decode through a real frame reader (each field counts against the
// frame's traversal limit: reading one twice failed at some 40 cursors),
// within the limit a sidecar applies before the Hello.
TEST(MessageCodecTest, AHelloOfManyCursorsFitsBeforeTheHelloLimit) {
  for (size_t n : {size_t{40}, size_t{1000}, size_t{80000}}) {
    SCOPED_TRACE(n);
    HelloMsg hello{kProtocolVersion, std::string(16, 'a'), 7, {}};
    for (size_t i = 0; i < n; ++i) {
      std::string site(16, '\0');
      std::memcpy(site.data(), &i, sizeof i);
      hello.have_from.emplace_back(site, static_cast<int64_t>(i) * 1000 + 1);
    }
    capnp::MallocMessageBuilder builder;
    ASSERT_OK(EncodeMessage(Message{hello}, &builder));
    kj::Array<kj::byte> frame;
    ASSERT_OK(FrameEncoder().Encode(builder, &frame));
    EXPECT_LE(frame.size(), kMaxPayloadBeforeHello);
    FrameReaderOptions options;
    options.max_payload_bytes = kMaxPayloadBeforeHello;
    Message got;
    FrameReader reader(options, [&](capnp::MessageReader& m) { return DecodeMessage(m, &got); });
    ASSERT_OK(reader.Feed(frame.begin(), frame.size()));
    const auto* h = std::get_if<HelloMsg>(&got);
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(h->have_from, hello.have_from);
  }
}

TEST(MessageCodecTest, EveryMessageKindRoundTrips) {
  std::string a(16, 'a'), b(16, 'b');
  HelloMsg hello{kProtocolVersion, a, 0xfeedfacecafebeefULL, {{b, 42}, {std::string(16, 'c'), 7}}};
  auto h = std::get<HelloMsg>(ThroughWire(hello));
  EXPECT_EQ(h.site_id, a);
  EXPECT_EQ(h.fingerprint, 0xfeedfacecafebeefULL);
  ASSERT_EQ(h.have_from.size(), 2u);
  EXPECT_EQ(h.have_from[0], std::make_pair(b, int64_t{42}));
  EXPECT_EQ(h.current_version, -1);  // not said
  hello.current_version = 1234;
  EXPECT_EQ(std::get<HelloMsg>(ThroughWire(hello)).current_version, 1234);
  EXPECT_EQ(h.restore_epoch, 0);  // never restored
  hello.restore_epoch = -0x123456789abcdefLL;  // any 64 bits
  EXPECT_EQ(std::get<HelloMsg>(ThroughWire(hello)).restore_epoch, -0x123456789abcdefLL);
  EXPECT_EQ(h.instance, 0u);  // not said
  hello.instance = 0xfedcba9876543210ULL;
  EXPECT_EQ(std::get<HelloMsg>(ThroughWire(hello)).instance, 0xfedcba9876543210ULL);
  EXPECT_EQ(h.heartbeat_ms, 0u);  // not said
  hello.heartbeat_ms = 10000;
  EXPECT_EQ(std::get<HelloMsg>(ThroughWire(hello)).heartbeat_ms, 10000u);
  EXPECT_FALSE(h.answers_probes);  // not said
  hello.answers_probes = true;
  EXPECT_TRUE(std::get<HelloMsg>(ThroughWire(hello)).answers_probes);

  auto k = std::get<AckMsg>(ThroughWire(AckMsg{99, 3}));
  EXPECT_EQ(k.up_to, 99);
  EXPECT_EQ(k.credits, 3u);
  EXPECT_FALSE(k.probe);
  EXPECT_TRUE(std::get<AckMsg>(ThroughWire(AckMsg{0, 0, true})).probe);

  auto e = std::get<ErrorMsg>(ThroughWire(ErrorMsg{ErrorMsg::kSchemaMismatch, "schemas differ"}));
  EXPECT_EQ(e.code, ErrorMsg::kSchemaMismatch);
  EXPECT_EQ(e.message, "schemas differ");
  EXPECT_EQ(e.restore_epoch, 0);
  e = std::get<ErrorMsg>(ThroughWire(ErrorMsg{ErrorMsg::kResync, "renew", int64_t{7} << 32 | 5}));
  EXPECT_EQ(e.restore_epoch, int64_t{7} << 32 | 5);

  Change c = TextChange("t", SmallIntPk(1), "v", "x", 0, 5, b);
  auto cs = std::get<ChangesetMsg>(ThroughWire(ChangesetMsg{a, 4, 6, 1, 2, {c}}));
  EXPECT_EQ(cs.start, 4);
  EXPECT_EQ(cs.end, 6);
  EXPECT_EQ(cs.part, 1u);
  EXPECT_EQ(cs.parts, 2u);
  ASSERT_EQ(cs.changes.size(), 1u);
  EXPECT_EQ(cs.changes[0].val_bytes, "x");
}

TEST(MessageCodecTest, BadMessagesAreRejectedOnBothSides) {
  capnp::MallocMessageBuilder builder;
  EXPECT_EQ(EncodeMessage(HelloMsg{kProtocolVersion, "short", 1, {}}, &builder).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(EncodeMessage(ChangesetMsg{std::string(16, 'a'), 1, 1, 3, 2, {}}, &builder).code(),
            Status::Code::kInvalidArgument);
  // A peer's hello with a short site id and a changeset with parts = 0.
  capnp::MallocMessageBuilder bad;
  bad.initRoot<wire::Message>().initHello().setSiteId(capnp::Data::Reader(
      reinterpret_cast<const kj::byte*>("abc"), 3));
  kj::Array<capnp::word> words = capnp::messageToFlatArray(bad);
  capnp::FlatArrayMessageReader reader(words);
  Message out = AckMsg{7, 1};
  Status s = DecodeMessage(reader, &out);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_EQ(std::get<AckMsg>(out).up_to, 7);  // untouched
  capnp::MallocMessageBuilder bad2;
  auto cs = bad2.initRoot<wire::Message>().initChangeset();
  std::string site(16, 'a');
  cs.setSenderSiteId(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(site.data()), 16));
  cs.setStartVersion(1);
  cs.setEndVersion(1);
  cs.setParts(0);
  kj::Array<capnp::word> words2 = capnp::messageToFlatArray(bad2);
  capnp::FlatArrayMessageReader reader2(words2);
  EXPECT_THAT(DecodeMessage(reader2, &out).message(), HasSubstr("part 0 of 0"));
  // A hello whose version is below "not said".
  capnp::MallocMessageBuilder bad3;
  auto h3 = bad3.initRoot<wire::Message>().initHello();
  h3.setSiteId(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(site.data()), 16));
  h3.setCurrentVersion(-2);
  kj::Array<capnp::word> words3 = capnp::messageToFlatArray(bad3);
  capnp::FlatArrayMessageReader reader3(words3);
  EXPECT_THAT(DecodeMessage(reader3, &out).message(), HasSubstr("currentVersion below -1"));
}

}  // namespace
}  // namespace crsync
