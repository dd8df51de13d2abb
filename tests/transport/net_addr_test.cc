// transport/net_addr.h: what crsyncd accepts as HOST:PORT, and what it
// refuses with a message naming the address.
#include "transport/net_addr.h"

#include <netinet/in.h>

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
  ASSERT_OK(SockAddr("::1:65535", &a));  // the last colon splits
  EXPECT_EQ(PortOf(a), 65535);
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
}

}  // namespace
}  // namespace crsync
