// transport/net_addr.h — socket addresses and liveness settings for the
// sidecar's TCP connections.
//
// Thread safety: plain functions; call them on the loop thread that owns
// the handle.
#ifndef CRSYNC_TRANSPORT_NET_ADDR_H_
#define CRSYNC_TRANSPORT_NET_ADDR_H_

#include <sys/socket.h>
#include <uv.h>

#include <string>

#include "crsync/status.h"

namespace crsync {

// Parses "HOST:PORT" ("[v6]:PORT" too) into a numeric IPv4 or IPv6 address.
// InvalidArgument naming `hostport` when it is not one (empty host or port,
// port outside 0..65535, a name instead of an address).
Status SockAddr(const std::string& hostport, sockaddr_storage* out);

// "HOST:PORT" of the other end of a connected socket ("[v6]:PORT" for IPv6),
// or "" when it cannot be had.
std::string PeerAddress(const uv_tcp_t* tcp);
// Likewise, this end's address.
std::string LocalAddress(const uv_tcp_t* tcp);

// TCP keepalive (idle 30 s, then 3 probes 10 s apart) and a 60 s limit on
// unacknowledged writes, so a peer that vanished without a FIN or RST is
// noticed within about a minute. Best effort: a socket without them still
// works, it just notices later.
void SetLiveness(uv_tcp_t* tcp);

}  // namespace crsync

#endif  // CRSYNC_TRANSPORT_NET_ADDR_H_
