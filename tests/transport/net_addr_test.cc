// transport/net_addr.h: what crsyncd accepts as HOST:PORT, and what it
// refuses with a message naming the address.
#include "transport/net_addr.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/test_util.h"

namespace crsync {
namespace {

using ::testing::HasSubstr;

int PortOf(const sockaddr_storage& a) {
  return ntohs(a.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&a)->sin6_port
                                       : reinterpret_cast<const sockaddr_in*>(&a)->sin_port);
}

TEST(NetAddrTest, NumericHostsAndDecimalPortsParse) {
  sockaddr_storage a;
  ASSERT_OK(SockAddr("127.0.0.1:8080", &a));
  EXPECT_EQ(a.ss_family, AF_INET);
  EXPECT_EQ(PortOf(a), 8080);
  ASSERT_OK(SockAddr("[::1]:0", &a));
  EXPECT_EQ(a.ss_family, AF_INET6);
  EXPECT_EQ(PortOf(a), 0);
  ASSERT_OK(SockAddr("[::ffff:127.0.0.1]:65535", &a));
  EXPECT_EQ(PortOf(a), 65535);
}

// Without brackets, "::1:80" could be ::1 port 80 or the address ::1:80.
TEST(NetAddrTest, AnIPv6AddressWithoutBracketsIsRefused) {
  sockaddr_storage a;
  EXPECT_THAT(SockAddr("::1:65535", &a).message(),
              HasSubstr("bad address '::1:65535': put an IPv6 address in brackets, as in "
                        "[::1]:65535"));
  EXPECT_FALSE(SockAddr("fe80::1:80", &a).ok());
  EXPECT_FALSE(SockAddr("[::1:80", &a).ok());
}

TEST(NetAddrTest, AnythingButDigitsInThePortIsRefusedByName) {
  sockaddr_storage a;
  for (const char* bad : {"127.0.0.1:+80", "127.0.0.1: 80", "127.0.0.1:-0", "127.0.0.1:80 ",
                          "127.0.0.1:0x50", "127.0.0.1:65536", "127.0.0.1:", "127.0.0.1",
                          ":80", "127.0.0.1:0000000000080", "127.0.0.1:99999999999999999999"}) {
    Status st = SockAddr(bad, &a);
    EXPECT_FALSE(st.ok()) << bad;
    EXPECT_THAT(st.message(), HasSubstr(std::string("'") + bad + "'")) << bad;
  }
  EXPECT_THAT(SockAddr("localhost:80", &a).message(), HasSubstr("numeric IPv4 or IPv6 only"));
  EXPECT_THAT(SockAddr("127.0.0.1:99999", &a).message(), HasSubstr("port 99999 is out of range"));
  EXPECT_THAT(SockAddr("[::1]:65536", &a).message(), HasSubstr("port 65536 is out of range"));
}

// The address an inbound connection is logged under: the other end's.
TEST(NetAddrTest, PeerAddressNamesTheOtherEnd) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  uv_tcp_t server, accepted;
  uv_tcp_init(&loop, &server);
  uv_tcp_init(&loop, &accepted);
  sockaddr_storage any;
  ASSERT_OK(SockAddr("127.0.0.1:0", &any));
  ASSERT_EQ(uv_tcp_bind(&server, reinterpret_cast<sockaddr*>(&any), 0), 0);
  server.data = &accepted;
  ASSERT_EQ(uv_listen(reinterpret_cast<uv_stream_t*>(&server), 1, [](uv_stream_t* s, int) {
              uv_accept(s, static_cast<uv_stream_t*>(s->data));
            }), 0);
  sockaddr_storage bound{};
  int len = static_cast<int>(sizeof bound);
  ASSERT_EQ(uv_tcp_getsockname(&server, reinterpret_cast<sockaddr*>(&bound), &len), 0);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&bound), sizeof(sockaddr_in)), 0);
  sockaddr_storage mine{};
  socklen_t mine_len = sizeof mine;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&mine), &mine_len), 0);
  EXPECT_EQ(PeerAddress(&accepted), "");  // not connected yet
  for (int i = 0; i < 100 && PeerAddress(&accepted).empty(); ++i) uv_run(&loop, UV_RUN_NOWAIT);
  EXPECT_EQ(PeerAddress(&accepted), "127.0.0.1:" + std::to_string(PortOf(mine)));
  close(fd);
  uv_close(reinterpret_cast<uv_handle_t*>(&server), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&accepted), nullptr);
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

}  // namespace
}  // namespace crsync
