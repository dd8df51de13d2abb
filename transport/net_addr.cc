#include "transport/net_addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cstring>

namespace crsync {
namespace {

// TCP keepalive: probes after this long idle, then every kKeepAliveIntervalS;
// the connection is dropped after kKeepAliveProbes unanswered ones. Writes
// unacknowledged for kUserTimeoutMs also drop it.
constexpr unsigned kKeepAliveIdleS = 30;
constexpr int kKeepAliveIntervalS = 10;
constexpr int kKeepAliveProbes = 3;
constexpr unsigned kUserTimeoutMs = 60000;

// "HOST:PORT" split; brackets around an IPv6 host removed.
bool ParseHostPort(const std::string& s, std::string* host, int* port) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  *host = s.substr(0, colon);
  if (host->size() > 1 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  // The port: 1 to 5 decimal digits, nothing else (no sign, no spaces).
  const std::string digits = s.substr(colon + 1);
  if (host->empty() || digits.empty() || digits.size() > 5) return false;
  int p = 0;
  for (char ch : digits) {
    if (ch < '0' || ch > '9') return false;
    p = p * 10 + (ch - '0');
  }
  if (p > 65535) return false;
  *port = p;
  return true;
}

}  // namespace

void SetLiveness(uv_tcp_t* tcp) {
  uv_tcp_keepalive(tcp, 1, kKeepAliveIdleS);
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(tcp), &fd) != 0) return;
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &kKeepAliveIntervalS, sizeof kKeepAliveIntervalS);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &kKeepAliveProbes, sizeof kKeepAliveProbes);
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &kUserTimeoutMs, sizeof kUserTimeoutMs);
}

namespace {
std::string AddressText(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "";
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    if (uv_ip4_name(in, host, sizeof host) != 0) return "";
    return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {  // an IPv4 peer of a [::] listener
      sockaddr_in in{};
      in.sin_family = AF_INET;
      in.sin_port = in6->sin6_port;
      std::memcpy(&in.sin_addr, in6->sin6_addr.s6_addr + 12, 4);
      if (uv_ip4_name(&in, host, sizeof host) != 0) return "";
      return std::string(host) + ":" + std::to_string(ntohs(in.sin_port));
    }
    if (uv_ip6_name(in6, host, sizeof host) != 0) return "";
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "";
}
}  // namespace

std::string PeerAddress(const uv_tcp_t* tcp) {
  sockaddr_storage addr{};
  int len = static_cast<int>(sizeof addr);
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "";
  return AddressText(addr);
}

std::string LocalAddress(const uv_tcp_t* tcp) {
  sockaddr_storage addr{};
  int len = static_cast<int>(sizeof addr);
  if (uv_tcp_getsockname(tcp, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "";
  return AddressText(addr);
}

Status SockAddr(const std::string& hostport, sockaddr_storage* out) {
  std::string host;
  int port;
  if (!ParseHostPort(hostport, &host, &port)) {
    const size_t colon = hostport.rfind(':');
    const std::string digits = colon == std::string::npos ? "" : hostport.substr(colon + 1);
    if (!digits.empty() && digits.size() <= 9 &&
        digits.find_first_not_of("0123456789") == std::string::npos && std::stol(digits) > 65535) {
      return Status::InvalidArgument("bad address '" + hostport + "': port " + digits +
                                     " is out of range (0 to 65535)");
    }
    return Status::InvalidArgument("bad address '" + hostport + "' (expected HOST:PORT)");
  }
  // "::1:80" could be [::1]:80 or the address ::1:80 with its port left
  // out: an IPv6 address must be in brackets, as in URLs.
  if (host.find(':') != std::string::npos && hostport.front() != '[') {
    return Status::InvalidArgument("bad address '" + hostport +
                                   "': put an IPv6 address in brackets, as in [" + host +
                                   "]:" + std::to_string(port));
  }
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(out)) == 0) return Status::OK();
  if (uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(out)) == 0) return Status::OK();
  return Status::InvalidArgument("bad address '" + hostport + "' (numeric IPv4 or IPv6 only)");
}

}  // namespace crsync
