// kiln networks as data: their subnets, names and modes, the addresses
// they hand out, and what their host parts (nftables, dnsmasq) are told,
// without root or a bridge.
#include "runtime/kiln_network.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "runtime/network_host.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

Ipv4Subnet subnet(const char* text) { return *Ipv4Subnet::parse(text); }

TEST(Ipv4Subnet, ReadsCidrAndSaysWhatWasMeant) {
  auto net = Ipv4Subnet::parse("10.77.0.0/24");
  ASSERT_TRUE(net) << net.error().to_string();
  EXPECT_EQ(ipv4_text(net->host(1)), "10.77.0.1");
  EXPECT_EQ(ipv4_text(net->broadcast()), "10.77.0.255");
  EXPECT_EQ(net->netmask_text(), "255.255.255.0");
  EXPECT_TRUE(net->contains(*parse_ipv4("10.77.0.200")));
  EXPECT_FALSE(net->contains(*parse_ipv4("10.77.1.2")));
  EXPECT_EQ(Ipv4Subnet::parse("10.77.0.5/24").error().message,
            "subnet '10.77.0.5/24' has host bits set: did you mean 10.77.0.0/24?");
  EXPECT_THAT(Ipv4Subnet::parse("10.77.0.0").error().message, HasSubstr("expected ADDRESS/PREFIX"));
  EXPECT_THAT(Ipv4Subnet::parse("10.77.0.0/33").error().message, HasSubstr("the prefix must be 0 to 32"));
  EXPECT_THAT(Ipv4Subnet::parse("10.777.0.0/24").error().message, HasSubstr("'10.777.0.0' is not an IPv4 address"));
}

TEST(Ipv4Subnet, OverlapsWhenEitherHoldsTheOther) {
  EXPECT_TRUE(subnet("10.77.0.0/24").overlaps(subnet("10.77.0.128/25")));
  EXPECT_TRUE(subnet("10.0.0.0/8").overlaps(subnet("10.77.0.0/24")));
  EXPECT_FALSE(subnet("10.77.0.0/24").overlaps(subnet("10.77.1.0/24")));
}

TEST(KilnNetworkPlan, PicksTheFirstFreeSubnetOfKilnsRange) {
  std::vector<KilnNetwork> others = {{"a", NetworkMode::kNat, subnet("10.77.0.0/24")}};
  std::vector<HostSubnet> host = {{"eth0", subnet("10.77.1.0/24")}};
  auto network = plan_network({"lan0"}, others, host, false);
  ASSERT_TRUE(network) << network.error().to_string();
  EXPECT_EQ(network->subnet.to_string(), "10.77.2.0/24");
  EXPECT_EQ(network->mode, NetworkMode::kNat);
  EXPECT_EQ(network->bridge(), "lan0");
}

TEST(KilnNetworkPlan, RefusesOverlapsNamesAndModesItCannotMake) {
  std::vector<KilnNetwork> others = {{"a", NetworkMode::kNat, subnet("10.77.0.0/24")}};
  std::vector<HostSubnet> host = {{"eth0", subnet("192.168.1.0/24")}};
  EXPECT_EQ(plan_network({"lan0", "nat", "10.77.0.0/16"}, others, host, false).error().message,
            "--subnet 10.77.0.0/16 overlaps network a (10.77.0.0/24)");
  EXPECT_EQ(plan_network({"lan0", "nat", "192.168.1.0/25"}, others, host, false).error().message,
            "--subnet 192.168.1.0/25 overlaps the host's eth0 (192.168.1.0/24)");
  EXPECT_THAT(plan_network({"lan0", "nat", "10.9.0.0/30"}, others, host, false).error().message,
              HasSubstr("the prefix must be /8 to /29"));
  EXPECT_THAT(plan_network({"a"}, others, host, false).error().message, HasSubstr("a network named a exists"));
  EXPECT_THAT(plan_network({"a-name-too-long-for-a-bridge"}, others, host, false).error().message,
              HasSubstr("bad network name"));
  EXPECT_THAT(plan_network({"lan0", "bridged"}, others, host, false).error().message,
              HasSubstr("--mode bridged: expected nat, routed, isolated, bridge:HOSTBRIDGE or socket"));
  EXPECT_THAT(plan_network({"eth0"}, others, host, true).error().message,
              HasSubstr("the host has an interface named eth0 already"));
  auto joined = plan_network({"lan1", "bridge:br0"}, others, host, false);
  ASSERT_TRUE(joined) << joined.error().to_string();
  EXPECT_EQ(joined->bridge(), "br0");
  EXPECT_FALSE(joined->kiln_addressed());
}

// A socket network needs no bridge, so a host interface of its name is
// no clash; its multicast group and port differ from other socket
// networks' and from the same name's under another state root.
TEST(KilnNetworkPlan, ASocketNetworkGetsAGroupAndPortOfItsOwn) {
  std::vector<HostSubnet> host = {{"eth0", subnet("10.77.0.0/24")}};
  auto first = plan_network({"eth0", "socket", "", "/var/lib/kiln"}, {}, host, true);
  ASSERT_TRUE(first) << first.error().to_string();
  EXPECT_EQ(first->kind(), "socket");
  EXPECT_EQ(first->bridge(), "");
  EXPECT_EQ(first->subnet.to_string(), "10.77.1.0/24");
  EXPECT_EQ(first->group >> 16, (239u << 8) | 255u);
  EXPECT_GE(first->port, 20000);
  EXPECT_EQ(plan_network({"eth0", "socket", "", "/var/lib/kiln"}, {}, host, true)->socket_text(),
            first->socket_text());  // stable for one state root
  EXPECT_NE(plan_network({"eth0", "socket", "", "/home/me/.kiln"}, {}, host, true)->socket_text(),
            first->socket_text());
  // A clash with another network's group or port moves it on.
  KilnNetwork other = *first;
  other.name = "other";
  other.subnet = subnet("10.78.0.0/24");
  auto second = plan_network({"eth0", "socket", "", "/var/lib/kiln"}, {other}, host, true);
  ASSERT_TRUE(second) << second.error().to_string();
  EXPECT_NE(second->group, other.group);
  EXPECT_NE(second->port, other.port);
}

TEST(KilnNetworkPlan, AddressesAreHandedOutLowestFirstAndNeverTwice) {
  KilnNetwork network{"lan0", NetworkMode::kNat, subnet("10.77.0.0/29")};
  std::set<uint32_t> taken;
  for (const char* expected : {"10.77.0.2", "10.77.0.3", "10.77.0.4", "10.77.0.5", "10.77.0.6"}) {
    auto address = allocate_address(network, taken, std::nullopt, "--net lan0");
    ASSERT_TRUE(address) << address.error().to_string();
    EXPECT_EQ(ipv4_text(*address), expected);
    taken.insert(*address);
  }
  EXPECT_EQ(allocate_address(network, taken, std::nullopt, "--net lan0").error().message,
            "--net lan0: network lan0 (10.77.0.0/29) has no free address");
  EXPECT_THAT(allocate_address(network, {}, *parse_ipv4("10.77.0.7"), "vif").error().message,
              HasSubstr("10.77.0.7 is not an instance's address"));  // the broadcast address
}

TEST(NetworkStore, KeepsDefinitionsAndSaysWhatIsMissing) {
  testing::ScratchDir dir;
  NetworkStore store(dir / "networks");
  EXPECT_TRUE(store.list().empty());
  ASSERT_TRUE(store.save({"lan0", NetworkMode::kIsolated, subnet("10.77.5.0/24")}));
  ASSERT_TRUE(store.save({"lan1", NetworkMode::kBridge, {}, "br0"}));
  ASSERT_TRUE(store.save({"lan2", NetworkMode::kSocket, subnet("10.77.6.0/24"), "", *parse_ipv4("239.255.1.2"), 20001}));
  auto lan0 = store.load("lan0");
  ASSERT_TRUE(lan0) << lan0.error().to_string();
  EXPECT_EQ(lan0->mode, NetworkMode::kIsolated);
  EXPECT_EQ(lan0->subnet.to_string(), "10.77.5.0/24");
  ASSERT_EQ(store.list().size(), 3u);
  EXPECT_EQ(store.list()[1].host_bridge, "br0");
  EXPECT_EQ(store.list()[2].socket_text(), "239.255.1.2:20001");
  EXPECT_EQ(store.list()[2].mode_text(), "socket");
  EXPECT_EQ(store.load("lan3").error().message, "no network named lan3: `kiln network create lan3` makes one");
  ASSERT_TRUE(store.remove("lan0"));
  EXPECT_FALSE(store.exists("lan0"));
}

std::vector<NetworkMember> two_members() {
  return {{"web", "00:16:3e:00:00:01", *parse_ipv4("10.77.0.2"),
           {{"127.0.0.1", 8080, 80, "tcp"}, {"0.0.0.0", 5353, 53, "udp"}}},
          {"db", "00:16:3e:00:00:02", *parse_ipv4("10.77.0.3"), {}}};
}

TEST(NetworkHost, ANatNetworksTableMasqueradesAndPublishes) {
  KilnNetwork network{"lan0", NetworkMode::kNat, subnet("10.77.0.0/24")};
  std::string rules = nft_ruleset(network, two_members());
  // It replaces the whole table in one transaction.
  EXPECT_THAT(rules, HasSubstr("table ip kiln-lan0\ndelete table ip kiln-lan0\ntable ip kiln-lan0 {\n"));
  EXPECT_THAT(rules, HasSubstr("ip saddr 10.77.0.0/24 ip daddr != 10.77.0.0/24 masquerade"));
  EXPECT_THAT(rules, HasSubstr("oifname \"lan0\" ip saddr 127.0.0.0/8 masquerade"));
  EXPECT_THAT(rules, HasSubstr("ip daddr 127.0.0.1 tcp dport 8080 dnat to 10.77.0.2:80"));
  EXPECT_THAT(rules, HasSubstr("fib daddr type local udp dport 5353 dnat to 10.77.0.2:53"));
  EXPECT_THAT(rules, HasSubstr("oifname \"lan0\" ct state established,related accept\n    oifname \"lan0\" drop"));
  EXPECT_THAT(rules, ::testing::Not(HasSubstr("iifname \"lan0\" drop")));
}

// Xen's routed mode: the guests go out and are reached as themselves.
TEST(NetworkHost, ARoutedNetworksTableForwardsBothWaysAndMasqueradesNothing) {
  KilnNetwork network{"lan0", NetworkMode::kRouted, subnet("10.77.0.0/24")};
  std::string rules = nft_ruleset(network, two_members());
  EXPECT_THAT(rules, HasSubstr("    iifname \"lan0\" accept\n    oifname \"lan0\" accept\n"));
  EXPECT_THAT(rules, ::testing::Not(HasSubstr("10.77.0.0/24 masquerade")));
  EXPECT_THAT(rules, ::testing::Not(HasSubstr("drop")));
  EXPECT_THAT(rules, HasSubstr("ip daddr 127.0.0.1 tcp dport 8080 dnat to 10.77.0.2:80"));
  EXPECT_THAT(dnsmasq_arguments(network, "/d", "/h"), ::testing::Not(::testing::Contains("--dhcp-option=option:router")));
  EXPECT_TRUE(network.has_way_out());
}

TEST(NetworkHost, AnIsolatedNetworkForwardsNothingButPublishedPorts) {
  KilnNetwork network{"quiet", NetworkMode::kIsolated, subnet("10.78.0.0/24")};
  std::string rules = nft_ruleset(network, {});
  EXPECT_THAT(rules, HasSubstr("oifname \"quiet\" ct status dnat accept\n    iifname \"quiet\" drop\n    oifname \"quiet\" drop"));
  EXPECT_THAT(rules, ::testing::Not(HasSubstr("masquerade\n    oifname \"quiet\" ip saddr 127")));
  EXPECT_THAT(rules, ::testing::Not(HasSubstr("10.78.0.0/24 masquerade")));
  auto argv = dnsmasq_arguments(network, "/run/kiln/.networks/quiet", "/run/kiln-dnsmasq/quiet");
  EXPECT_THAT(argv, ::testing::Contains("--no-resolv"));
  EXPECT_THAT(argv, ::testing::Contains("--dhcp-option=option:router"));
}

TEST(NetworkHost, ASocketNetworksNamesAreHostsLinesItKeepsInItsDirectory) {
  KilnNetwork network{"lan0", NetworkMode::kSocket, subnet("10.77.0.0/24"), "", *parse_ipv4("239.255.1.2"), 20001};
  EXPECT_EQ(socket_hosts_file(network, two_members()), "10.77.0.2 web.lan0 web\n10.77.0.3 db.lan0 db\n");
  testing::ScratchDir dir;
  ASSERT_TRUE(sync_network(network, dir.path(), two_members()));
  EXPECT_EQ(*read_file(socket_hosts_path(dir.path())), "10.77.0.2 web.lan0 web\n10.77.0.3 db.lan0 db\n");
  EXPECT_TRUE(network_is_up(network, dir.path()));
  EXPECT_TRUE(tear_down_network(network, dir.path()));  // nothing of it on the host
}

TEST(NetworkHost, DnsmasqNamesEveryInstanceAndKeepsItsAddress) {
  KilnNetwork network{"lan0", NetworkMode::kNat, subnet("10.77.0.0/24")};
  EXPECT_EQ(dns_hosts_file(two_members()), "10.77.0.2 web\n10.77.0.3 db\n");
  EXPECT_EQ(dhcp_hosts_file(two_members()), "00:16:3e:00:00:01,10.77.0.2,web\n00:16:3e:00:00:02,10.77.0.3,db\n");
  auto argv = dnsmasq_arguments(network, "/d", "/h");
  for (const char* expected : {"--interface=lan0", "--listen-address=10.77.0.1",
                               "--dhcp-range=10.77.0.2,10.77.0.254,255.255.255.0,1h", "--addn-hosts=/h/hosts",
                               "--dhcp-hostsfile=/h/dhcp-hosts", "--pid-file=/d/dnsmasq.pid", "--domain=lan0",
                               "--local=/lan0/", "--expand-hosts"})
    EXPECT_THAT(argv, ::testing::Contains(expected));
  EXPECT_THAT(argv, ::testing::Not(::testing::Contains("--no-resolv")));
}

TEST(NetworkHost, MembersAreTheNicsOnTheNetworkAndPortsGoThroughTheFirst) {
  KilnNetwork network{"lan0", NetworkMode::kNat, subnet("10.77.0.0/24")};
  InstanceRecord web;
  web.spec.name = "web";
  web.spec.network.nics = {NicSpec{.mac = "00:16:3e:00:00:09"},
                           NicSpec{.kind = NetworkKind::kTap, .network = "lan0", .mac = "00:16:3e:00:00:01",
                                   .address = "10.77.0.2/24"}};
  web.spec.network.published = {{"127.0.0.1", 8080, 80, "tcp"}};
  InstanceRecord db;
  db.spec.name = "db";
  db.spec.network.nics = {NicSpec{.kind = NetworkKind::kTap, .network = "lan0", .mac = "00:16:3e:00:00:02",
                                  .address = "10.77.0.3/24"}};
  db.spec.network.published = {{"127.0.0.1", 5432, 5432, "tcp"}};
  auto members = network_members(network, {web, db});
  ASSERT_EQ(members.size(), 2u);
  EXPECT_EQ(members[0].instance, "web");
  EXPECT_TRUE(members[0].published.empty());  // web publishes through its eth0, user networking
  EXPECT_EQ(members[1].published.size(), 1u);
  EXPECT_EQ(ipv4_text(members[1].address), "10.77.0.3");
}

}  // namespace
}  // namespace kiln
