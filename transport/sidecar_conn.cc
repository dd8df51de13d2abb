// transport/sidecar_conn.cc — the sidecar's connections (loop thread):
// reading with backpressure, writing with a bounded queue, closing, and
// dialing configured peers with backoff.
#include <algorithm>

#include "transport/codec.h"
#include "transport/net_addr.h"
#include "transport/sidecar_impl.h"

namespace crsync {

namespace {
// Milliseconds now, not uv_now(): that is the loop's cached time, which
// stands still while a long callback (a large batch of sends) runs.
uint64_t NowMs() { return uv_hrtime() / 1000000; }
}  // namespace

Sidecar::Impl::Conn::Conn(Impl* i, uint64_t n)
    : impl(i), id(n), reader(FrameReaderOptions{}, [this](capnp::MessageReader& m) {
        Message msg;
        CRSYNC_RETURN_IF_ERROR(DecodeMessage(m, &msg));
        if (talks_to_itself) return Status::OK();  // nothing from it goes to the strand
        if (const auto* hello = std::get_if<HelloMsg>(&msg)) {
          if (hello->instance == impl->instance) {
            // Our own Hello come back: a configured peer address reaches
            // this very process. The dialled end hangs up (CloseSelfLoop,
            // which closes the accepted end too); an accepted end left
            // over is closed after the handshake timeout.
            talks_to_itself = true;
            if (dialer) return Status::FailedPrecondition("it is this crsyncd itself");
            return Status::OK();
          }
          if (!heard && !dialer) {  // a peer, not a port scan or health check
            impl->LogAbout(subject, 1, "accepted connection %llu (%s)",
                           static_cast<unsigned long long>(id), peer.c_str());
          }
          peer_heartbeat_ms = hello->heartbeat_ms;
          peer_answers_probes = hello->answers_probes;
          reader.set_max_payload_bytes(kDefaultMaxFramePayload);  // it said who it is
        } else if (const auto* ack = std::get_if<AckMsg>(&msg)) {
          probe_asked |= ack->probe;
        }
        heard = true;
        ++queued;
        impl->Enqueue(Task::kMessage, id, std::move(msg));
        return Status::OK();
      }) {
  // Until a peer's Hello, a frame may be no larger than a Hello can be: a
  // connection that never says who it is holds little memory.
  reader.set_max_payload_bytes(kMaxPayloadBeforeHello);
}

void Sidecar::Impl::Send(uint64_t conn_id, const Message& msg) {
  auto it = conns.find(conn_id);
  if (it == conns.end() || it->second->closing) return;
  Conn* c = it->second;
  auto* stream = reinterpret_cast<uv_stream_t*>(&c->tcp);
  if (CloseIfNotReading(c)) return;
  // One segment: cheaper to build, serialise and (for the peer) to read.
  capnp::MallocMessageBuilder builder(static_cast<unsigned>(
      std::min<size_t>(EstimateMessageWords(msg), size_t{1} << 26)));
  Status st = EncodeMessage(msg, &builder);
  auto req = std::make_unique<WriteReq>();
  if (st.ok()) st = encoder.Encode(builder, &req->bytes);
  if (!st.ok()) {
    Log(0, "cannot encode a message: %s", st.ToString().c_str());
    CloseConn(conn_id);
    return;
  }
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(req->bytes.begin()),
                             static_cast<unsigned>(req->bytes.size()));
  req->req.data = req.get();
  req->conn = c;
  const size_t before = uv_stream_get_write_queue_size(stream);
  int rc = uv_write(&req->req, stream, &buf, 1, [](uv_write_t* r, int status) {
    std::unique_ptr<WriteReq> owned(static_cast<WriteReq*>(r->data));
    // A failed write shows up as a read error or EOF.
    if (status != 0) return;
    Conn* conn = owned->conn;
    conn->drained_at = NowMs();
    if (conn->send_paused && !conn->closing) {
      conn->impl->Guarded("resuming sending", [&] { conn->impl->MaybeResumeSending(conn); });
    }
  });
  if (rc == 0) {
    req.release();  // owned by libuv until the callback
    c->sent_at = NowMs();
    c->said_anything = true;
    const size_t waiting = uv_stream_get_write_queue_size(stream);
    c->last_waiting = waiting;
    // The peer's time to read starts when something waits for it; more
    // queued behind it does not restart the clock (a peer sent data to
    // answer would otherwise never be found not reading).
    if (before == 0) c->drained_at = NowMs();
    // Timed only when it left at once: one queued behind our own data
    // waits on the peer reading that (CloseIfNotReading's business).
    const auto* ack = std::get_if<AckMsg>(&msg);
    if (ack && ack->probe && waiting == 0 && c->peer_answers_probes &&
        options.probe_timeout_ms > 0 && c->probe_sent_at == 0) {
      c->probe_sent_at = NowMs();
    }
    if (!c->send_paused && waiting > options.max_write_queue_bytes) {
      c->send_paused = true;
      send_paused_conns.push_back(c->id);
    }
  } else {
    CloseConn(conn_id);
  }
}

Sidecar::Impl::Conn* Sidecar::Impl::NewConn() {
  auto* c = new Conn(this, next_conn++);
  uv_tcp_init(&loop, &c->tcp);
  c->tcp.data = c;
  return c;
}

void Sidecar::Impl::StartConn(Conn* c) {
  conns[c->id] = c;
  c->opened_at = uv_now(&loop);
  c->drained_at = c->heard_at = c->sent_at = NowMs();
  uv_tcp_nodelay(&c->tcp, 1);
  SetLiveness(&c->tcp);
  StartReading(c);
  if (c->closing) return;  // it could not read: already closed (and its kClose queued)
  Enqueue(Task::kOpen, c->id, Message{}, {}, 1, c->subject);
}

void Sidecar::Impl::OnAlloc(uv_handle_t*, size_t suggested, uv_buf_t* buf) {
  buf->base = nullptr;
  buf->len = 0;  // libuv then reports UV_ENOBUFS to OnRead
  GuardVoidCall([&] {
    buf->base = new char[suggested];
    buf->len = static_cast<decltype(buf->len)>(suggested);
  });
}

void Sidecar::Impl::OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  std::unique_ptr<char[]> owned(buf->base);
  auto* c = static_cast<Conn*>(s->data);
  if (nread == 0) return;  // EAGAIN
  auto handle = [&] {
    if (nread < 0) {
      // A peer closing or vanishing is routine; other read errors are not.
      // An inbound one that never said a whole message (a port scan, a
      // health check) is a debug line, like its accept.
      bool routine = nread == UV_EOF || nread == UV_ECONNRESET;
      if (c->talks_to_itself) {  // the accepted end of a dial of ourselves
        c->impl->Log(2, "connection %llu (%s): this crsyncd dialled itself; closed",
                     static_cast<unsigned long long>(c->id), c->peer.c_str());
        c->impl->CloseConn(c->id);
        return;
      }
      const int level = !c->heard && !c->dialer ? 2 : routine ? 1 : 0;
      // Logged by the strand, after what the peer sent before it ended.
      c->impl->CloseConn(c->id,
                         "connection " + std::to_string(c->id) + " (" + c->peer +
                             ") ended: " + uv_strerror(static_cast<int>(nread)),
                         level);
      return;
    }
    c->heard_at = NowMs();
    Status st =
        c->reader.Feed(reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(nread));
    if (!st.ok() && c->talks_to_itself) {
      c->impl->CloseSelfLoop(c);
      return;
    }
    if (!st.ok()) {
      c->impl->LogAbout(c->subject, 0, "connection %llu (%s): bad frame, closing: %s%s",
                        static_cast<unsigned long long>(c->id), c->peer.c_str(),
                        st.message().c_str(),
                        c->heard ? "" : " (nothing valid came from it yet: is it a crsyncd?)");
      c->impl->Send(c->id, ErrorMsg{ErrorMsg::kProtocol, "bad frame: " + st.message()});
      c->impl->CloseConn(c->id);
      return;
    }
    // Answered here, not by the strand, which may be busy merging for a
    // while. Our Hello went first (a probe comes from a peer in session).
    if (c->probe_asked && !c->closing) {
      c->probe_asked = false;
      if (c->said_anything) c->impl->Send(c->id, AckMsg{0, 0});
    }
    if (!c->paused && c->queued >= kMaxQueuedMessages && !c->closing) {
      c->paused = true;  // resumed by MessagesTaken
      uv_read_stop(s);
    }
  };
  if (!c->impl->Guarded("reading", handle)) {
    c->impl->Guarded("closing a connection", [&] { c->impl->CloseConn(c->id); });
  }
}

void Sidecar::Impl::StartReading(Conn* c) {
  int rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), &Impl::OnAlloc, &Impl::OnRead);
  if (rc != 0) {
    LogAbout(c->subject, 0, "connection %llu (%s): cannot read: %s",
             static_cast<unsigned long long>(c->id), c->peer.c_str(), uv_strerror(rc));
    CloseConn(c->id);
  }
}

void Sidecar::Impl::MessagesTaken(uint64_t id, size_t n) {
  auto it = conns.find(id);
  if (it == conns.end()) return;
  Conn* c = it->second;
  c->queued = c->queued > n ? c->queued - n : 0;
  if (c->paused && !c->closing && c->queued <= kMaxQueuedMessages / 2) {
    c->paused = false;
    c->heard_at = NowMs();  // the silence while we did not read was ours
    StartReading(c);
  }
}

void Sidecar::Impl::MaybeResumeSending(Conn* c) {
  const size_t waiting = uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(&c->tcp));
  if (waiting > options.max_write_queue_bytes / 2) return;
  StopPausing(c);
  if (!stopping) Enqueue(Task::kPump, 0);  // its session sends again
}

void Sidecar::Impl::StopPausing(Conn* c) {
  if (!c->send_paused) return;
  c->send_paused = false;
  send_paused_conns.erase(std::remove(send_paused_conns.begin(), send_paused_conns.end(), c->id),
                          send_paused_conns.end());
}

void Sidecar::Impl::DropQueuedMessages(uint64_t id) {
  for (auto it = queue.begin(); it != queue.end();) {
    // A peer's Error stays: it is often the last thing before the peer
    // hangs up, and one (resync) changes what this node must do.
    if ((*it)->kind == Task::kMessage && (*it)->conn == id &&
        !std::holds_alternative<ErrorMsg>((*it)->msg)) {
      it = queue.erase(it);
    } else {
      ++it;
    }
  }
}

void Sidecar::Impl::CloseConn(uint64_t id, std::string ended, int ended_level) {
  auto it = conns.find(id);
  if (it == conns.end()) return;
  Conn* c = it->second;
  conns.erase(it);
  if (c->closing) return;
  StopPausing(c);
  DropQueuedMessages(id);
  Dialer* d = c->dialer;
  const bool stable = uv_now(&loop) - c->connected_at >= kStableConnectionMs;
  CloseAndFree(c);  // before anything that allocates: the handle must close
  if (d) {
    d->conn = nullptr;
    // Only a connection that stayed up a while restarts the backoff: one
    // refused right after connecting (schema mismatch, bad frames, a
    // peer that is this node) must not be redialled ten times a second.
    if (stable) d->backoff_ms = kFirstBackoffMs;
    if (d->redial_slowly) {
      d->redial_slowly = false;
      d->backoff_ms = kSelfRedialMs;
    }
    if (!stopping) ScheduleDial(d);
  }
  Enqueue(Task::kClose, id, Message{}, std::move(ended), ended_level);
}

void Sidecar::Impl::CloseSelfLoop(Conn* c) {
  if (Dialer* d = c->dialer) {
    d->redial_slowly = true;  // CloseConn's redial waits kSelfRedialMs
    // Said once; then debug, every minute.
    LogAbout(d->address, ++d->reached_itself == 1 ? 1 : 2,
             "%s reaches this crsyncd itself (the Hello that came back carries this process's "
             "instance): dialling it only once a minute from now on",
             d->address.c_str());
  }
  // The accepted end: closed here too, quietly (it may not have had our
  // Hello yet, and would log the hang-up as a peer's).
  const std::string other_end = "inbound from " + LocalAddress(&c->tcp);
  uint64_t accepted = 0;
  for (const auto& [id, other] : conns) {
    if (other != c && !other->dialer && other->peer == other_end) accepted = id;
  }
  CloseConn(c->id);
  if (accepted) {
    Log(2, "connection %llu (%s): this crsyncd dialled itself, closing",
        static_cast<unsigned long long>(accepted), other_end.c_str());
    CloseConn(accepted);
  }
}

void Sidecar::Impl::CloseAndFree(Conn* c) {
  if (c->closing) return;
  c->closing = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), [](uv_handle_t* h) {
    delete static_cast<Conn*>(h->data);
  });
}

void Sidecar::Impl::AbandonConn(Conn* c) {
  if (conns.count(c->id)) {
    CloseConn(c->id);
    return;
  }
  Dialer* d = c->dialer;
  if (d && d->conn == c) d->conn = nullptr;
  CloseAndFree(c);
  if (d && !stopping) ScheduleDial(d);
}

bool Sidecar::Impl::CloseIfNotReading(Conn* c) {
  const size_t waiting = uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(&c->tcp));
  const uint64_t now = NowMs();
  // Progress is the queue shrinking (part of a large write counts), or
  // being empty; a completed write also counts (OnWrite).
  if (waiting == 0 || waiting < c->last_waiting) c->drained_at = now;
  c->last_waiting = waiting;
  if (waiting <= options.max_write_queue_bytes ||
      now - c->drained_at <= static_cast<uint64_t>(std::max(options.write_stall_ms, 0))) {
    return false;
  }
  LogAbout(c->subject, 0,
           "connection %llu (%s): the peer is not reading (%zu bytes waiting to be sent, "
           "none written for %llu ms), closing",
           static_cast<unsigned long long>(c->id), c->peer.c_str(), waiting,
           static_cast<unsigned long long>(now - c->drained_at));
  CloseConn(c->id);
  return true;
}

void Sidecar::Impl::CloseUnresponsiveConns() {
  const uint64_t now = uv_now(&loop);
  std::vector<uint64_t> silent, all;
  for (auto& [id, c] : conns) {
    all.push_back(id);
    if (options.handshake_timeout_ms > 0 && (!c->heard || c->talks_to_itself) &&
        now - c->opened_at >= static_cast<uint64_t>(options.handshake_timeout_ms)) {
      silent.push_back(id);
    }
  }
  for (uint64_t id : silent) {
    auto it = conns.find(id);
    if (it == conns.end() || it->second->closing) continue;
    Conn* c = it->second;
    if (c->talks_to_itself) {  // the accepted end of our own dial, left over
      Log(2, "connection %llu (%s): this crsyncd dialled itself; closing",
          static_cast<unsigned long long>(id), c->peer.c_str());
    } else {
      LogAbout(c->subject, 0, "connection %llu (%s): no hello within %d ms, closing",
               static_cast<unsigned long long>(id), c->peer.c_str(), options.handshake_timeout_ms);
    }
    CloseConn(id);
  }
  // A peer that stopped reading while we have nothing more to send is
  // found here, not in Send.
  for (uint64_t id : all) {
    auto it = conns.find(id);
    if (it != conns.end() && !it->second->closing) CloseIfNotReading(it->second);
  }
  KeepAlive();
}

void Sidecar::Impl::KeepAlive() {
  const uint64_t now = NowMs();
  std::vector<uint64_t> silent, unanswered, idle;
  for (auto& [id, c] : conns) {
    if (c->closing) continue;
    if (c->paused) c->heard_at = now;  // we are not reading: its silence says nothing
    // Anything read since the probe left answers it (>=: both in one ms).
    if (c->probe_sent_at != 0 && c->heard_at >= c->probe_sent_at) c->probe_sent_at = 0;
    const uint64_t limit = 3 * uint64_t{c->peer_heartbeat_ms} +
                           static_cast<uint64_t>(options.pump_interval_ms);
    if (c->heard && c->peer_heartbeat_ms > 0 && now - c->heard_at > limit) {
      silent.push_back(id);
    } else if (c->probe_sent_at != 0 &&
               now - c->probe_sent_at > static_cast<uint64_t>(options.probe_timeout_ms)) {
      unanswered.push_back(id);
    } else if (options.heartbeat_ms > 0 && c->said_anything &&
               now - c->sent_at >= static_cast<uint64_t>(options.heartbeat_ms)) {
      idle.push_back(id);
    }
  }
  for (uint64_t id : silent) {
    auto it = conns.find(id);
    if (it == conns.end() || it->second->closing) continue;
    Conn* c = it->second;
    LogAbout(
        c->subject, 0,
        "connection %llu (%s): nothing heard for %llu ms (the peer speaks at least every %u ms): "
        "the peer or the path to it is gone, closing",
        static_cast<unsigned long long>(id), c->peer.c_str(),
        static_cast<unsigned long long>(now - c->heard_at), c->peer_heartbeat_ms);
    CloseConn(id);
  }
  for (uint64_t id : unanswered) {
    auto it = conns.find(id);
    if (it == conns.end() || it->second->closing) continue;
    Conn* c = it->second;
    LogAbout(c->subject, 0,
             "connection %llu (%s): no answer to a probe in %llu ms (sent when another instance of "
             "its site id asked to be admitted): the peer or the path to it is gone, closing",
             static_cast<unsigned long long>(id), c->peer.c_str(),
             static_cast<unsigned long long>(now - c->probe_sent_at));
    CloseConn(id);
  }
  // Acknowledges nothing (up to 0, no credit): a no-op the peer's session
  // takes after our Hello, which was the first message queued.
  for (uint64_t id : idle) Send(id, AckMsg{0, 0});
}

void Sidecar::Impl::CancelDial(Dialer* d) {
  Conn* c = d->conn;
  d->conn = nullptr;
  if (!c || conns.count(c->id)) return;
  CloseAndFree(c);
}

void Sidecar::Impl::ScheduleDial(Dialer* d) {
  uv_timer_start(&d->timer, [](uv_timer_t* t) {
    auto* d = static_cast<Dialer*>(t->data);
    Impl* self = d->impl;
    if (!self->Guarded("dialing", [&] { self->Dial(d); })) {
      // Out of memory before the connect was under way: try again later.
      if (d->conn) self->AbandonConn(d->conn); else if (!self->stopping) self->ScheduleDial(d);
    }
  }, static_cast<uint64_t>(d->backoff_ms), 0);
  d->backoff_ms = std::min(d->backoff_ms * 2, kMaxBackoffMs);
}

void Sidecar::Impl::Dial(Dialer* d) {
  if (stopping) return;
  sockaddr_storage addr;
  if (!SockAddr(d->address, &addr).ok()) return;
  Conn* c = NewConn();
  c->dialer = d;
  d->conn = c;
  d->req.data = c;
  c->peer = c->subject = d->address;
  int rc = uv_tcp_connect(&d->req, &c->tcp, reinterpret_cast<sockaddr*>(&addr), &Impl::OnConnect);
  if (rc != 0) DialFailed(c, rc);  // no socket (too many open files), say
}

void Sidecar::Impl::DialFailed(Conn* c, int status) {
  Dialer* d = c->dialer;
  const int failures = d ? ++d->failures : 1;
  const bool warn = (failures - 1) % kDialFailuresPerWarning == 0;
  LogAbout(c->subject, warn ? kWarning : 2,
           "cannot reach %s: %s (attempt %d; retrying, at most every %d s)", c->peer.c_str(),
           uv_strerror(status), failures, kMaxBackoffMs / 1000);
  AbandonConn(c);  // redials with backoff
}

void Sidecar::Impl::OnConnect(uv_connect_t* req, int status) {
  auto* c = static_cast<Conn*>(req->data);
  Impl* self = c->impl;
  if (c->closing) return;  // cancelled by Shutdown()
  if (status != 0) {
    self->DialFailed(c, status);
    return;
  }
  if (self->stopping) {  // connected after Stop(): drop it
    self->AbandonConn(c);
    return;
  }
  bool ok = self->Guarded("connecting", [&] {
    Dialer* d = c->dialer;
    if (d && d->failures > 0) {
      self->LogAbout(c->subject, 1, "connected to %s after %d failed attempts", c->peer.c_str(),
                     d->failures);
      d->failures = 0;
    } else {
      // An address that reached this node itself: said once (CloseSelfLoop).
      self->LogAbout(c->subject, d && d->reached_itself > 0 ? 2 : 1, "connected to %s",
                     c->peer.c_str());
    }
    c->connected_at = uv_now(&self->loop);
    self->StartConn(c);
  });
  if (!ok) self->Guarded("dropping a connection", [&] { self->AbandonConn(c); });
}

void Sidecar::Impl::OnAccept(uv_stream_t* server, int status) {
  auto* self = static_cast<Impl*>(server->data);
  if (status != 0) {
    self->Log(0, "cannot accept a connection: %s", uv_strerror(status));
    return;
  }
  Conn* c = nullptr;
  bool ok = self->Guarded("accepting", [&] {
    c = self->NewConn();
    if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
      CloseAndFree(c);
      return;
    }
    const std::string from = PeerAddress(&c->tcp);
    c->peer = from.empty() ? "inbound" : "inbound from " + from;
    c->subject = from.substr(0, from.rfind(':'));  // the host: its ports vary
    // At info once it says something (Conn's reader): a health check or a
    // port scan connecting every second would otherwise fill the log.
    self->Log(2, "accepted connection %llu (%s)", static_cast<unsigned long long>(c->id),
              c->peer.c_str());
    self->StartConn(c);
  });
  if (!ok && c) self->Guarded("dropping a connection", [&] { self->AbandonConn(c); });
}

}  // namespace crsync
