// kiln networks for real, as root: the Xen book's web and db instances on
// one network, finding each other by name, web's port published to the
// host; a NAT network's way out and an isolated one's none; a Xen config's
// vifs as NICs with their addresses; and nothing of a network left on the
// host once it is removed. Instances boot on the default image with the
// fastest backend here (UML, on taps).
#include <unistd.h>

#include <future>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ProcessResult;

const fs::path kImage = fs::path(KILN_INTEGRATION_DIR) / "default";

class NetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "kiln networks are made of bridges, nftables and dnsmasq: root only";
  }
  void TearDown() override {
    for (const std::string& name : instances_) kiln({"destroy", name});
    for (const std::string& name : networks_) kiln({"network", "rm", name});
  }

  std::vector<std::string> env() const {
    return {"KILN_RUNTIME_DIR=" + (dir_ / "run").string(), "KILN_STATE_DIR=" + (dir_ / "state").string()};
  }
  ProcessResult kiln(std::vector<std::string> args) const { return testing::run_kiln(args, env()); }

  // A name unique to this test process: networks name host bridges.
  std::string network(const std::string& stem, std::vector<std::string> flags = {}) {
    std::string name = fmt::format("{}{}", stem, ::getpid() % 100000);
    std::vector<std::string> args = {"network", "create", name, "--json"};
    args.insert(args.end(), flags.begin(), flags.end());
    auto made = kiln(args);
    EXPECT_EQ(made.exit_code, 0) << made.err;
    networks_.push_back(name);
    return name;
  }

  // Boots each (name, source, flags) at once, as a person with two
  // terminals would, and waits for all.
  void boot_all(const std::vector<std::tuple<std::string, std::string, std::vector<std::string>>>& boots) {
    std::vector<std::future<ProcessResult>> started;
    for (const auto& [name, source, flags] : boots) {
      instances_.push_back(name);
      std::vector<std::string> args = {"boot", source, "--name", name, "--detach", "--wait-ready=300"};
      args.insert(args.end(), flags.begin(), flags.end());
      started.push_back(std::async(std::launch::async, [this, args] { return kiln(args); }));
    }
    for (size_t i = 0; i < started.size(); ++i) {
      ProcessResult result = started[i].get();
      ASSERT_EQ(result.exit_code, 0) << std::get<0>(boots[i]) << ": " << result.err;
    }
  }

  std::string exec(const std::string& name, const std::string& script) const {
    auto result = kiln({"exec", name, "--", "sh", "-c", script});
    return result.out;
  }

  nlohmann::json listed_network(const std::string& name) const {
    auto listed = kiln({"network", "list", "--json"});
    EXPECT_EQ(listed.exit_code, 0) << listed.err;
    for (const auto& network : nlohmann::json::parse(listed.out))
      if (network["name"] == name) return network;
    return nullptr;
  }

  // What of network `name` is on the host: its bridge, its nftables table,
  // its dnsmasq, one line each.
  std::vector<std::string> host_parts_of(const std::string& name) const {
    std::vector<std::string> parts;
    if (fs::exists("/sys/class/net/" + name)) parts.push_back("bridge " + name);
    if (fs::exists("/run/kiln-dnsmasq/" + name)) parts.push_back("directory /run/kiln-dnsmasq/" + name);
    if (testing::run_program({"nft", "list", "table", "ip", "kiln-" + name}).exit_code == 0)
      parts.push_back("nftables table kiln-" + name);
    for (const std::string& process : testing::processes_naming({"--interface=" + name + " "}))
      parts.push_back("process " + process);
    return parts;
  }

  testing::ScratchDir dir_;
  std::vector<std::string> instances_, networks_;
};

TEST_F(NetworkTest, WebAndDbOnOneNetworkTalkByNameAndAPublishedPortReachesWeb) {
  std::string lan = network("kweb", {"--subnet", fmt::format("10.79.{}.0/24", ::getpid() % 200)});
  uint16_t port = testing::free_loopback_port();
  boot_all({{"db", kImage.string(), {"--net", lan}},
            {"web", kImage.string(), {"--net", lan, "--publish", fmt::format("127.0.0.1:{}:80", port)}}});
  ASSERT_EQ(kiln({"exec", "db", "--", "sh", "-c", testing::guest_listener(5432, "hello from db")}).exit_code, 0);
  ASSERT_EQ(kiln({"exec", "web", "--", "sh", "-c", testing::guest_listener(80, "hello from web")}).exit_code, 0);

  // From web, db answers by its instance name, resolved by the network's DNS.
  EXPECT_TRUE(testing::wait_for([&] { return exec("web", testing::first_line_from("db", 5432)) == "hello from db\n"; },
                                std::chrono::seconds(90), [&] { return exec("web", testing::first_line_from("db", 5432)); }));
  // By the network's DNS (not by LLMNR, which names only "db"): its answer
  // carries the network's domain.
  EXPECT_THAT(exec("web", "getent ahostsv4 db"), HasSubstr("db." + lan));
  // From the host, the published port reaches web's listener.
  auto through = testing::run_program(
      {"timeout", "10", "bash", "-c", fmt::format("exec 3<>/dev/tcp/127.0.0.1/{} && head -1 <&3", port)});
  EXPECT_EQ(through.out, "hello from web\n") << through.err;

  // Its DNAT rule holds no socket; the port is web's all the same.
  auto taken = kiln({"boot", kImage.string(), "--name", "web2", "--net", lan, "--publish",
                     fmt::format("127.0.0.1:{}:80", port), "--detach"});
  EXPECT_EQ(taken.exit_code, 2);
  EXPECT_THAT(taken.err, HasSubstr(fmt::format("instance web publishes 127.0.0.1:{}/tcp already", port)));

  auto listed = listed_network(lan);
  EXPECT_EQ(listed["mode"], "nat");
  EXPECT_EQ(listed["up"], true);
  EXPECT_EQ(listed["instances"], (nlohmann::json{"db", "web"}));
  auto busy = kiln({"network", "rm", lan});
  EXPECT_EQ(busy.exit_code, 2);
  EXPECT_THAT(busy.err, HasSubstr("network " + lan + " is in use by db, web"));

  std::vector<std::string> taps;
  for (const char* name : {"web", "db"}) {
    auto record = nlohmann::json::parse(kiln({"list", "--json"}).out);
    for (const auto& instance : record)
      if (instance["name"] == name) taps.push_back(instance["network"]["nics"][0]["tap"]);
  }
  ASSERT_EQ(taps.size(), 2u);
  // Destroyed, web's port and address are gone from the network's rules.
  ASSERT_EQ(kiln({"destroy", "web"}).exit_code, 0);
  auto rules = testing::run_program({"nft", "list", "table", "ip", "kiln-" + lan});
  EXPECT_THAT(rules.out, ::testing::Not(HasSubstr(fmt::format("dport {}", port))));
  ASSERT_EQ(kiln({"destroy", "db"}).exit_code, 0);
  auto removed = kiln({"network", "rm", lan});
  ASSERT_EQ(removed.exit_code, 0) << removed.err;
  EXPECT_THAT(host_parts_of(lan), ::testing::IsEmpty());
  for (const std::string& tap : taps) EXPECT_FALSE(fs::exists("/sys/class/net/" + tap)) << tap << " is left";
}

// Another host on the LAN, as a network namespace behind a veth pair that
// routes `subnets` (kiln networks') through this host; it
// listens on `port` and answers each connection with the address it came
// from. Removed when it goes.
class LanPeer {
 public:
  LanPeer(int n, const std::vector<std::string>& subnets, int port)
      : name_(fmt::format("kpeer{}", n)), host_end_(fmt::format("kvh{}", n)), link_(fmt::format("10.81.{}", n % 200)) {
    std::string peer_end = fmt::format("kvp{}", n);
    for (const std::vector<std::string>& step : std::vector<std::vector<std::string>>{
             {"ip", "netns", "add", name_},
             {"ip", "link", "add", host_end_, "type", "veth", "peer", "name", peer_end},
             {"ip", "link", "set", peer_end, "netns", name_},
             {"ip", "address", "add", link_ + ".1/30", "dev", host_end_},
             {"ip", "link", "set", host_end_, "up"},
             {"ip", "-n", name_, "address", "add", link_ + ".2/30", "dev", peer_end},
             {"ip", "-n", name_, "link", "set", peer_end, "up"},
             {"ip", "-n", name_, "link", "set", "lo", "up"}}) {
      auto done = testing::run_program(step);
      EXPECT_EQ(done.exit_code, 0) << fmt::format("{}", fmt::join(step, " ")) << ": " << done.err;
    }
    for (const std::string& subnet : subnets)
      EXPECT_EQ(testing::run_program({"ip", "-n", name_, "route", "add", subnet, "via", link_ + ".1"}).exit_code, 0);
    testing::run_program(
        {"sh", "-c",
         fmt::format("ip netns exec {} timeout 600 perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalPort=>{},"
                     "Listen=>5,ReuseAddr=>1) or die; while($c=$s->accept){{print $c $c->peerhost.qq(\\n); close $c}}' "
                     ">/dev/null 2>&1 &",
                     name_, port)});
  }
  ~LanPeer() {
    testing::run_program({"sh", "-c", fmt::format("ip netns pids {} | xargs -r kill", name_)});
    testing::run_program({"ip", "netns", "del", name_});
    testing::run_program({"ip", "link", "del", host_end_});
  }
  std::string address() const { return link_ + ".2"; }
  // Runs `script` on the peer.
  testing::ProcessResult run(const std::string& script) const {
    return testing::run_program({"ip", "netns", "exec", name_, "sh", "-c", script});
  }

 private:
  std::string name_, host_end_, link_;
};

// Xen's routed mode against NAT: a routed network's guest reaches the LAN
// as itself and the LAN reaches it; a NAT network's reaches the LAN as the
// host, and the LAN reaches it not at all.
TEST_F(NetworkTest, ARoutedNetworksGuestIsItselfOnTheLanAndANatOnesIsTheHost) {
  int n = ::getpid() % 200;
  std::string routed_subnet = fmt::format("10.82.{}.0/24", n);
  std::string routed = network("krt", {"--mode", "routed", "--subnet", routed_subnet});
  std::string natted_subnet = fmt::format("10.83.{}.0/24", n);
  std::string natted = network("knt", {"--subnet", natted_subnet});
  LanPeer peer(::getpid() % 100000, {routed_subnet, natted_subnet}, 7000);
  boot_all({{"rt", kImage.string(), {"--net", routed}}, {"nt", kImage.string(), {"--net", natted}}});
  ASSERT_EQ(kiln({"exec", "rt", "--", "sh", "-c", testing::guest_listener(80, "hello from rt")}).exit_code, 0);
  ASSERT_EQ(kiln({"exec", "nt", "--", "sh", "-c", testing::guest_listener(80, "hello from nt")}).exit_code, 0);
  std::string rt_address = fmt::format("10.82.{}.2", n);

  EXPECT_EQ(exec("rt", testing::first_line_from(peer.address(), 7000)), rt_address + "\n");
  EXPECT_EQ(exec("nt", testing::first_line_from(peer.address(), 7000)), fmt::format("10.81.{}.1\n", n));
  EXPECT_EQ(peer.run(testing::first_line_from(rt_address, 80)).out, "hello from rt\n");
  EXPECT_EQ(peer.run(testing::first_line_from(fmt::format("10.83.{}.2", n), 80)).out, "");
  EXPECT_EQ(listed_network(routed)["mode"], "routed");
  EXPECT_THAT(exec("rt", "ip route"), HasSubstr(fmt::format("default via 10.82.{}.1", n)));
}

TEST_F(NetworkTest, ANatNetworkGoesOutThroughTheHostAndAnIsolatedOneNowhere) {
  auto mirror = testing::run_program({"getent", "ahostsv4", "deb.debian.org"});
  std::string address = mirror.out.substr(0, mirror.out.find(' '));
  auto reachable = testing::run_program(
      {"timeout", "10", "bash", "-c", "exec 3<>/dev/tcp/" + address + "/80"});
  if (mirror.exit_code != 0 || reachable.exit_code != 0)
    GTEST_SKIP() << "this host reaches no Debian mirror itself (deb.debian.org), so there is nothing to reach out to";
  std::string out = network("knat");
  std::string quiet = network("kiso", {"--mode", "isolated"});
  boot_all({{"out", kImage.string(), {"--net", out}}, {"in", kImage.string(), {"--net", quiet}}});
  std::string connect = "timeout 10 bash -c 'exec 3<>/dev/tcp/" + address + "/80' && echo connected";
  EXPECT_EQ(exec("out", connect), "connected\n");
  EXPECT_EQ(exec("in", connect), "");
  EXPECT_THAT(exec("in", "ip route"), ::testing::Not(HasSubstr("default")));
  EXPECT_EQ(listed_network(quiet)["mode"], "isolated");
}

TEST_F(NetworkTest, AXenConfigsVifsAreNicsWithTheirAddressesAndKilnsOwnConfigBootsOnceItsBridgeIsMade) {
  std::string lan = network("kxen", {"--subnet", fmt::format("10.80.{}.0/24", ::getpid() % 200)});
  std::string quiet = network("kxq", {"--mode", "isolated"});
  std::string prefix = fmt::format("10.80.{}.", ::getpid() % 200);
  testing::write_text(dir_ / "two.cfg",
                      "name = \"two\"\nmemory = 384\n"
                      "kernel = \"" + (kImage / "vmlinuz").string() + "\"\n"
                      "disk = ['file:" + (kImage / "disk.raw").string() + ",xvda,w']\n"
                      "root = \"/dev/xvda2 ro\"\n"
                      "vif = [ 'bridge=" + lan + ", ip=" + prefix + "50', 'mac=00:16:3e:12:34:56, bridge=" + quiet +
                          "' ]\n");
  // kiln's own NAME.xl.cfg names bridge xenbr0: the error says how to have
  // one, and with it made the config boots as written.
  fs::path own = kImage / "debian-12-minimal.xl.cfg";
  testing::HostWideLock xenbr0("xenbr0");  // XenConfigTest's feisty wants none
  bool host_has_xenbr0 = fs::exists("/sys/class/net/xenbr0");
  if (!host_has_xenbr0) {
    auto refused = kiln({"boot", own.string(), "--detach"});
    EXPECT_EQ(refused.exit_code, 2);
    EXPECT_THAT(refused.err, HasSubstr("vif bridge=xenbr0: no kiln network and no host bridge named xenbr0: "
                                       "`kiln network create xenbr0` makes one"));
    auto made = kiln({"network", "create", "xenbr0"});
    ASSERT_EQ(made.exit_code, 0) << made.err;
    networks_.push_back("xenbr0");
  }
  boot_all({{"two", (dir_ / "two.cfg").string(), {}}, {"own", own.string(), {}}});
  std::string addresses = exec("two", "ip -br -4 addr show dev eth0; ip -br -4 addr show dev eth1; "
                                      "cat /sys/class/net/eth1/address");
  EXPECT_THAT(addresses, HasSubstr(prefix + "50/24"));
  EXPECT_THAT(addresses, ::testing::ContainsRegex("eth1 +[A-Z]+ +10\\.77\\.[0-9]+\\.2/24"));
  EXPECT_THAT(addresses, HasSubstr("00:16:3e:12:34:56"));
  if (!host_has_xenbr0) EXPECT_THAT(exec("own", "ip -br -4 addr show dev eth0"), HasSubstr("/24"));
}

TEST_F(NetworkTest, BadInputIsAClearErrorAndStartsNothing) {
  std::string lan = network("kbad", {"--subnet", fmt::format("10.81.{}.0/24", ::getpid() % 200)});
  auto overlap = kiln({"network", "create", "other", "--subnet", fmt::format("10.81.{}.128/25", ::getpid() % 200)});
  EXPECT_EQ(overlap.exit_code, 2);
  EXPECT_THAT(overlap.err, HasSubstr("overlaps network " + lan));
  auto unknown = kiln({"boot", kImage.string(), "--net", "nosuchnet", "--detach"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("no network named nosuchnet: `kiln network create nosuchnet` makes one"));
  auto publish = kiln({"boot", kImage.string(), "--net", lan, "--publish", "80:http", "--detach"});
  EXPECT_EQ(publish.exit_code, 2);
  EXPECT_THAT(publish.err, HasSubstr("--publish 80:http: 'http' is not a port"));
  auto rm = kiln({"network", "rm", "nosuchnet"});
  EXPECT_EQ(rm.exit_code, 2);
  auto listed = kiln({"list", "--json"});
  EXPECT_EQ(nlohmann::json::parse(listed.out).size(), 0u) << "nothing started";
  EXPECT_FALSE(fs::exists("/sys/class/net/other"));
}

}  // namespace
}  // namespace kiln
