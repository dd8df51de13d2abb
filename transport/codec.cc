#include "transport/codec.h"

#include <kj/exception.h>
#include <sqlite3.h>

#include <algorithm>
#include <exception>
#include <string>
#include <utility>

namespace crsync {
namespace {

// Cap'n Proto lists hold at most 2^29 - 1 elements.
constexpr size_t kMaxListElements = (size_t{1} << 29) - 1;

capnp::Data::Reader AsData(std::string_view bytes) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size());
}

// REQUIRES: text.data()[text.size()] == '\0', which std::string guarantees.
capnp::Text::Reader AsText(const std::string& text) {
  return capnp::Text::Reader(text.data(), text.size());
}

std::string FromData(capnp::Data::Reader data) {
  return std::string(reinterpret_cast<const char*>(data.begin()), data.size());
}

std::string FromText(capnp::Text::Reader text) { return std::string(text.begin(), text.size()); }

std::string Range(int64_t start, int64_t end) {
  std::string r = "[";  // appended piecewise: GCC 12 -O3 misreports "lit" + string&&
  r += std::to_string(start);
  r += ", ";
  r += std::to_string(end);
  r += "]";
  return r;
}

// OK if `size` is a site id's size; otherwise `make`("<what> has N bytes...").
Status CheckSiteId(size_t size, std::string_view what, Status (*make)(std::string_view)) {
  if (size == kSiteIdSize) return Status::OK();
  return make(std::string(what) + " has " + std::to_string(size) + " bytes, expected " +
              std::to_string(kSiteIdSize));
}

Status CheckRange(int64_t start, int64_t end, Status (*make)(std::string_view)) {
  if (start < 1 || start > end) {
    return make("version range " + Range(start, end) + " is not 1 <= startVersion <= endVersion");
  }
  return Status::OK();
}

Status CheckChangeVersion(size_t index, int64_t db_version, int64_t start, int64_t end,
                          Status (*make)(std::string_view)) {
  if (db_version >= start && db_version <= end) return Status::OK();
  return make("change " + std::to_string(index) + ": dbVersion " + std::to_string(db_version) +
              " is outside the changeset's range " + Range(start, end));
}

Status EncodeChangeUnchecked(const Change& in, wire::Change::Builder out) {
  CRSYNC_RETURN_IF_ERROR(CheckSiteId(in.site_id.size(), "siteId", &Status::InvalidArgument));
  auto val = out.initVal();
  switch (in.val_type) {
    case SQLITE_NULL:
      val.setNull();
      break;
    case SQLITE_INTEGER:
      val.setInt(in.val_int);
      break;
    case SQLITE_FLOAT:
      val.setReal(in.val_real);
      break;
    case SQLITE_TEXT:
      val.setText(AsText(in.val_bytes));
      break;
    case SQLITE_BLOB:
      val.setBlob(AsData(in.val_bytes));
      break;
    default:
      return Status::InvalidArgument("unknown val_type " + std::to_string(in.val_type));
  }
  out.setTable(AsText(in.table));
  out.setPk(AsData(in.pk));
  out.setCid(AsText(in.cid));
  out.setColVersion(in.col_version);
  out.setDbVersion(in.db_version);
  out.setSiteId(AsData(in.site_id));
  out.setCl(in.cl);
  out.setSeq(in.seq);
  return Status::OK();
}

Status DecodeChangeUnchecked(wire::Change::Reader in, Change* out) {
  Change c;
  capnp::Data::Reader site = in.getSiteId();
  CRSYNC_RETURN_IF_ERROR(CheckSiteId(site.size(), "siteId", &Status::Corruption));
  c.site_id = FromData(site);
  auto val = in.getVal();
  switch (val.which()) {
    case wire::Change::Val::NULL_:
      c.val_type = SQLITE_NULL;
      break;
    case wire::Change::Val::INT:
      c.val_type = SQLITE_INTEGER;
      c.val_int = val.getInt();
      break;
    case wire::Change::Val::REAL:
      c.val_type = SQLITE_FLOAT;
      c.val_real = val.getReal();
      break;
    case wire::Change::Val::TEXT:
      c.val_type = SQLITE_TEXT;
      c.val_bytes = FromText(val.getText());
      break;
    case wire::Change::Val::BLOB:
      c.val_type = SQLITE_BLOB;
      c.val_bytes = FromData(val.getBlob());
      break;
    default:
      return Status::Corruption("unknown value type " +
                                std::to_string(static_cast<unsigned>(val.which())));
  }
  c.table = FromText(in.getTable());
  c.pk = FromData(in.getPk());
  c.cid = FromText(in.getCid());
  c.col_version = in.getColVersion();
  c.db_version = in.getDbVersion();
  c.cl = in.getCl();
  c.seq = in.getSeq();
  *out = std::move(c);
  return Status::OK();
}

Status DecodeChangesetUnchecked(wire::Changeset::Reader in, DecodedChangeset* out) {
  DecodedChangeset d;
  capnp::Data::Reader sender = in.getSenderSiteId();
  CRSYNC_RETURN_IF_ERROR(CheckSiteId(sender.size(), "senderSiteId", &Status::Corruption));
  d.sender_site_id = FromData(sender);
  d.start_version = in.getStartVersion();
  d.end_version = in.getEndVersion();
  CRSYNC_RETURN_IF_ERROR(CheckRange(d.start_version, d.end_version, &Status::Corruption));
  d.part = in.getPart();
  d.parts = in.getParts();
  if (d.parts == 0 || d.part >= d.parts) {
    return Status::Corruption("changeset part " + std::to_string(d.part) + " of " +
                              std::to_string(d.parts));
  }
  auto changes = in.getChanges();
  // Not reserve(changes.size()): a list of empty structs costs the peer
  // almost nothing to send. Each change that decodes holds a 16-byte site id
  // behind its fifth pointer, so beyond this bound the vector grows with the
  // payload's size.
  constexpr unsigned kReserveBound = 4096;
  d.changes.reserve(std::min(changes.size(), kReserveBound));
  for (unsigned i = 0; i < changes.size(); ++i) {
    wire::Change::Reader change = changes[i];
    CRSYNC_RETURN_IF_ERROR(CheckChangeVersion(i, change.getDbVersion(), d.start_version,
                                              d.end_version, &Status::Corruption));
    Status s = DecodeChangeUnchecked(change, &d.changes.emplace_back());
    if (!s.ok()) return s.WithContext("change " + std::to_string(i));
  }
  *out = std::move(d);
  return Status::OK();
}

// Runs `body`, turning exceptions into a status: kj::Exception (capnp's
// complaint about the data) into `on_kj`, anything else into Transport.
template <typename Body>
Status Guarded(std::string_view what, Status (*on_kj)(std::string_view), Body&& body) {
  try {
    return body();
  } catch (const kj::Exception& e) {
    return on_kj(std::string(what) + ": " + e.getDescription().cStr());
  } catch (const std::exception& e) {
    return Status::Transport(std::string(what) + ": " + e.what());
  }
}

}  // namespace

Status EncodeChange(const Change& in, wire::Change::Builder out) {
  return Guarded("cannot encode change", &Status::InvalidArgument,
                 [&] { return EncodeChangeUnchecked(in, out); });
}

Status DecodeChange(wire::Change::Reader in, Change* out) {
  return Guarded("malformed change", &Status::Corruption,
                 [&] { return DecodeChangeUnchecked(in, out); });
}

Status BuildChangesetMessage(std::string_view sender_site_id, int64_t start_version,
                             int64_t end_version, uint32_t part, uint32_t parts,
                             const std::vector<Change>& changes, capnp::MessageBuilder* message) {
  if (parts == 0 || part >= parts) {
    return Status::InvalidArgument("changeset part " + std::to_string(part) + " of " +
                                   std::to_string(parts));
  }
  CRSYNC_RETURN_IF_ERROR(
      CheckSiteId(sender_site_id.size(), "sender site id", &Status::InvalidArgument));
  CRSYNC_RETURN_IF_ERROR(CheckRange(start_version, end_version, &Status::InvalidArgument));
  if (changes.size() > kMaxListElements) {
    return Status::InvalidArgument(std::to_string(changes.size()) +
                                   " changes do not fit in one changeset");
  }
  for (size_t i = 0; i < changes.size(); ++i) {
    CRSYNC_RETURN_IF_ERROR(CheckChangeVersion(i, changes[i].db_version, start_version, end_version,
                                              &Status::InvalidArgument));
  }
  return Guarded("cannot encode changeset", &Status::InvalidArgument, [&]() -> Status {
    auto changeset = message->initRoot<wire::Message>().initChangeset();
    changeset.setSenderSiteId(AsData(sender_site_id));
    changeset.setStartVersion(start_version);
    changeset.setEndVersion(end_version);
    changeset.setPart(part);
    changeset.setParts(parts);
    auto list = changeset.initChanges(static_cast<unsigned>(changes.size()));
    for (size_t i = 0; i < changes.size(); ++i) {
      Status s = EncodeChangeUnchecked(changes[i], list[static_cast<unsigned>(i)]);
      if (!s.ok()) return s.WithContext("change " + std::to_string(i));
    }
    return Status::OK();
  });
}

Status DecodeChangeset(wire::Changeset::Reader in, DecodedChangeset* out) {
  return Guarded("malformed changeset", &Status::Corruption,
                 [&] { return DecodeChangesetUnchecked(in, out); });
}

Status DecodeChangesetMessage(capnp::MessageReader& message, DecodedChangeset* out) {
  return Guarded("malformed message", &Status::Corruption, [&]() -> Status {
    wire::Message::Reader root = message.getRoot<wire::Message>();
    if (root.which() != wire::Message::CHANGESET) {
      return Status::Corruption("expected a changeset message, got union member " +
                                std::to_string(static_cast<unsigned>(root.which())));
    }
    return DecodeChangesetUnchecked(root.getChangeset(), out);
  });
}

namespace {
size_t Words(size_t bytes) { return (bytes + 1 + sizeof(capnp::word) - 1) / sizeof(capnp::word); }
}  // namespace

size_t EstimateChangeWords(const Change& ch) {
  // Its list pointer, its struct (5 data words, 6 pointers), each blob.
  return 1 + 11 + Words(ch.table.size()) + Words(ch.pk.size()) + Words(ch.cid.size()) +
         Words(ch.site_id.size()) + Words(ch.val_bytes.size());
}

size_t EstimateMessageWords(const Message& in) {
  constexpr size_t kEnvelope = 16;  // root, union, the small messages' own fields
  if (const auto* c = std::get_if<ChangesetMsg>(&in)) {
    size_t n = kEnvelope + Words(c->sender.size());
    for (const Change& ch : c->changes) n += EstimateChangeWords(ch);
    return n;
  }
  if (const auto* h = std::get_if<HelloMsg>(&in)) {
    return kEnvelope + Words(h->site_id.size()) + 1 + h->have_from.size() * 6;
  }
  if (const auto* e = std::get_if<ErrorMsg>(&in)) return kEnvelope + Words(e->message.size());
  return kEnvelope;
}

Status EncodeMessage(const Message& in, capnp::MessageBuilder* message) {
  if (const auto* c = std::get_if<ChangesetMsg>(&in)) {
    return BuildChangesetMessage(c->sender, c->start, c->end, c->part, c->parts, c->changes,
                                 message);
  }
  return Guarded("cannot encode message", &Status::InvalidArgument, [&]() -> Status {
    auto root = message->initRoot<wire::Message>();
    if (const auto* h = std::get_if<HelloMsg>(&in)) {
      CRSYNC_RETURN_IF_ERROR(CheckSiteId(h->site_id.size(), "site id", &Status::InvalidArgument));
      auto hello = root.initHello();
      hello.setProtocolVersion(h->protocol_version);
      hello.setSiteId(AsData(h->site_id));
      hello.setSchemaFingerprint(h->fingerprint);
      hello.setCurrentVersion(h->current_version);
      hello.setRestoreEpoch(h->restore_epoch);
      hello.setInstance(h->instance);
      hello.setHeartbeatMs(h->heartbeat_ms);
      hello.setAnswersProbes(h->answers_probes);
      auto have = hello.initHaveFrom(static_cast<unsigned>(h->have_from.size()));
      for (size_t i = 0; i < h->have_from.size(); ++i) {
        CRSYNC_RETURN_IF_ERROR(
            CheckSiteId(h->have_from[i].first.size(), "cursor site id", &Status::InvalidArgument));
        have[static_cast<unsigned>(i)].setSiteId(AsData(h->have_from[i].first));
        have[static_cast<unsigned>(i)].setDbVersion(h->have_from[i].second);
      }
    } else if (const auto* a = std::get_if<AckMsg>(&in)) {
      auto ack = root.initAck();
      ack.setUpToVersion(a->up_to);
      ack.setCredits(a->credits);
      ack.setProbe(a->probe);
    } else {
      const auto& e = std::get<ErrorMsg>(in);
      auto err = root.initError();
      err.setCode(e.code);
      err.setMessage(AsText(e.message));
      err.setRestoreEpoch(e.restore_epoch);
    }
    return Status::OK();
  });
}

Status DecodeMessage(capnp::MessageReader& message, Message* out) {
  return Guarded("malformed message", &Status::Corruption, [&]() -> Status {
    wire::Message::Reader root = message.getRoot<wire::Message>();
    switch (root.which()) {
      case wire::Message::HELLO: {
        auto h = root.getHello();
        HelloMsg m;
        m.protocol_version = h.getProtocolVersion();
        // Each field read once: every read counts against the frame's
        // traversal limit (FrameReader), so reading one twice per cursor
        // failed a Hello of a few dozen cursors.
        capnp::Data::Reader site = h.getSiteId();
        CRSYNC_RETURN_IF_ERROR(CheckSiteId(site.size(), "hello siteId", &Status::Corruption));
        m.site_id = FromData(site);
        m.fingerprint = h.getSchemaFingerprint();
        m.current_version = h.getCurrentVersion();
        if (m.current_version < -1) return Status::Corruption("hello currentVersion below -1");
        m.restore_epoch = h.getRestoreEpoch();
        m.instance = h.getInstance();
        m.heartbeat_ms = h.getHeartbeatMs();
        m.answers_probes = h.getAnswersProbes();
        for (auto c : h.getHaveFrom()) {
          capnp::Data::Reader from = c.getSiteId();
          CRSYNC_RETURN_IF_ERROR(CheckSiteId(from.size(), "haveFrom siteId", &Status::Corruption));
          // A receive cursor is a version the peer committed: never negative
          // (the session would resume from it and send start < 1).
          const int64_t version = c.getDbVersion();
          if (version < 0) return Status::Corruption("haveFrom cursor for a negative version");
          m.have_from.emplace_back(FromData(from), version);
        }
        *out = std::move(m);
        return Status::OK();
      }
      case wire::Message::CHANGESET: {
        DecodedChangeset d;
        CRSYNC_RETURN_IF_ERROR(DecodeChangesetUnchecked(root.getChangeset(), &d));
        *out = ChangesetMsg{std::move(d.sender_site_id), d.start_version, d.end_version, d.part,
                            d.parts, std::move(d.changes)};
        return Status::OK();
      }
      case wire::Message::ACK: {
        auto a = root.getAck();
        if (a.getUpToVersion() < 0) return Status::Corruption("ack for a negative version");
        *out = AckMsg{a.getUpToVersion(), a.getCredits(), a.getProbe()};
        return Status::OK();
      }
      case wire::Message::ERROR: {
        auto e = root.getError();
        *out = ErrorMsg{e.getCode(), FromText(e.getMessage()), e.getRestoreEpoch()};
        return Status::OK();
      }
      default:
        return Status::Corruption("unknown message kind " +
                                  std::to_string(static_cast<unsigned>(root.which())));
    }
  });
}

}  // namespace crsync
