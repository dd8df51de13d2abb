// tests/transport/session_util.h — nodes and handshakes for PeerSession tests.
#ifndef CRSYNC_TESTS_TRANSPORT_SESSION_UTIL_H_
#define CRSYNC_TESTS_TRANSPORT_SESSION_UTIL_H_

#include <string>
#include <vector>

#include "tests/test_util.h"
#include "transport/peer_session.h"

namespace crsync {

constexpr char kSchema[] =
    "CREATE TABLE items (id PRIMARY KEY NOT NULL, name, qty); SELECT crsql_as_crr('items');";

// One database with the test schema.
struct Node {
  TestDb db;
  explicit Node(const std::string& schema = kSchema) { db.Exec(schema); }
};

// Exchanges the two sessions' Hellos; both are ready afterwards.
inline void Handshake(PeerSession& a, PeerSession& b) {
  std::vector<Message> ha, hb, out;
  ASSERT_OK(a.Start(&ha));
  ASSERT_OK(b.Start(&hb));
  ASSERT_OK(b.OnMessage(ha[0], &out));
  out.clear();
  ASSERT_OK(a.OnMessage(hb[0], &out));
}

}  // namespace crsync

#endif  // CRSYNC_TESTS_TRANSPORT_SESSION_UTIL_H_
