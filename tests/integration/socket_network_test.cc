// A socket network for real, without root: the Xen book's web and db
// instances on one network of multicast sockets (web under qemu, db under
// UML, so both backends' transports meet), finding each other by name
// through the hosts files kiln keeps, web's port published through its
// user networking, no way out for db, and nothing of it left on the host
// once it is removed. kiln runs as nobody when nobody can reach the build;
// otherwise as root with --mode socket, and it says so.
#include <unistd.h>

#include <future>
#include <iostream>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ProcessResult;

const fs::path kImage = fs::path(KILN_INTEGRATION_DIR) / "default";
constexpr uid_t kNobody = 65534;

class SocketNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kImage / "disk.raw")) GTEST_SKIP() << "no integration image at " << kImage;
    if (::geteuid() == 0) {
      fs::permissions(dir_.path(), fs::perms(0755));
      ASSERT_EQ(::chown(dir_.path().c_str(), kNobody, kNobody), 0);
      auto reach = testing::run_program(as_nobody({"sh", "-c", fmt::format("test -x '{}' && test -r '{}'",
                                                                           testing::kiln_binary(),
                                                                           (kImage / "disk.raw").string())}));
      as_nobody_ = reach.exit_code == 0;
      if (!as_nobody_)
        std::cerr << "note: nobody cannot reach " << testing::kiln_binary() << " or " << kImage
                  << "; the socket network runs as root (--mode socket), which proves the mode, not that it "
                     "needs no root\n";
    }
  }
  void TearDown() override {
    for (const std::string& name : instances_) kiln({"destroy", name});
    if (!network_.empty()) kiln({"network", "rm", network_});
  }

  std::vector<std::string> as_nobody(std::vector<std::string> argv) const {
    std::vector<std::string> out = {"setpriv", "--reuid", std::to_string(kNobody), "--regid", std::to_string(kNobody),
                                    "--clear-groups", "--inh-caps=-all", "--"};
    out.insert(out.end(), argv.begin(), argv.end());
    return out;
  }
  ProcessResult kiln(std::vector<std::string> args) const {
    std::vector<std::string> env = {"KILN_RUNTIME_DIR=" + (dir_ / "run").string(),
                                    "KILN_STATE_DIR=" + (dir_ / "state").string(), "HOME=" + dir_.path().string()};
    if (::geteuid() != 0 || !as_nobody_) return testing::run_kiln(args, env);
    args.insert(args.begin(), testing::kiln_binary());
    std::vector<std::string> argv = {"env"};
    argv.insert(argv.end(), env.begin(), env.end());
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::run_program(as_nobody(argv));
  }
  std::string exec(const std::string& name, const std::string& script) const {
    return kiln({"exec", name, "--", "sh", "-c", script}).out;
  }
  nlohmann::json listed(const std::string& name) const {
    auto list = kiln({"network", "list", "--json"});
    EXPECT_EQ(list.exit_code, 0) << list.err;
    for (const auto& network : nlohmann::json::parse(list.out))
      if (network["name"] == name) return network;
    return nullptr;
  }
  bool unprivileged() const { return ::geteuid() != 0 || as_nobody_; }

  testing::ScratchDir dir_;
  bool as_nobody_ = false;
  std::string network_;
  std::vector<std::string> instances_;
};

TEST_F(SocketNetworkTest, WithoutRootWebAndDbTalkByNameAndAPublishedPortReachesWeb) {
  network_ = fmt::format("ksock{}", ::getpid() % 100000);
  std::vector<std::string> create = {"network", "create", network_, "--json"};
  if (!unprivileged()) create.insert(create.end(), {"--mode", "socket"});
  if (unprivileged()) {
    auto refused = kiln({"network", "create", network_, "--mode", "nat"});
    EXPECT_NE(refused.exit_code, 0);
    EXPECT_THAT(refused.err, HasSubstr("needs root"));
    EXPECT_THAT(refused.err, HasSubstr("without root: --mode socket"));
  }
  auto made = kiln(create);
  ASSERT_EQ(made.exit_code, 0) << made.err;
  auto network = nlohmann::json::parse(made.out);
  EXPECT_EQ(network["kind"], "socket");  // the default without root
  std::string socket = network["socket"];
  std::string socket_port = socket.substr(socket.rfind(':'));

  // Booted at once: whichever joins first learns the other's name only
  // from kiln's push through the exec channel, as it booted before it.
  uint16_t port = testing::free_loopback_port();
  std::vector<std::pair<std::string, std::vector<std::string>>> boots = {
      {"db", {"--net", network_, "--backend", "uml"}},
      {"web", {"--net", "user", "--net", network_, "--publish", fmt::format("127.0.0.1:{}:80", port), "--backend", "qemu"}}};
  std::vector<std::future<ProcessResult>> started;
  for (const auto& [name, flags] : boots) {
    instances_.push_back(name);
    std::vector<std::string> args = {"boot", kImage.string(), "--name", name, "--detach", "--wait-ready=300"};
    args.insert(args.end(), flags.begin(), flags.end());
    started.push_back(std::async(std::launch::async, [this, args] { return kiln(args); }));
  }
  for (size_t i = 0; i < started.size(); ++i) {
    ProcessResult result = started[i].get();
    ASSERT_EQ(result.exit_code, 0) << boots[i].first << ": " << result.err;
  }
  ASSERT_EQ(kiln({"exec", "db", "--", "sh", "-c", testing::guest_listener(5432, "hello from db")}).exit_code, 0);
  ASSERT_EQ(kiln({"exec", "web", "--", "sh", "-c", testing::guest_listener(80, "hello from web")}).exit_code, 0);

  for (const auto& [from, to] : {std::pair{"web", "db"}, std::pair{"db", "web"}})
    EXPECT_TRUE(testing::wait_for([&] { return exec(from, std::string("getent hosts ") + to).find(std::string(to) + "." + network_) != std::string::npos; },
                                  std::chrono::seconds(30), [&] { return exec(from, "cat /etc/hosts"); }))
        << from << " does not name " << to;
  EXPECT_TRUE(testing::wait_for([&] { return exec("web", testing::first_line_from("db", 5432)) == "hello from db\n"; },
                                std::chrono::seconds(60), [&] { return exec("web", testing::first_line_from("db", 5432)); }));
  EXPECT_EQ(exec("db", testing::first_line_from("web", 80)), "hello from web\n");
  // From the host, through web's user networking.
  auto through = testing::run_program(
      {"timeout", "10", "bash", "-c", fmt::format("exec 3<>/dev/tcp/127.0.0.1/{} && head -1 <&3", port)});
  EXPECT_EQ(through.out, "hello from web\n") << through.err;
  // db, on the socket network alone, has no way out of it.
  EXPECT_THAT(exec("db", "ip route; echo end"), Not(HasSubstr("default")));
  EXPECT_EQ(exec("db", "ip route get 1.1.1.1 >/dev/null 2>&1 || echo unreachable"), "unreachable\n");

  auto list = listed(network_);
  EXPECT_EQ(list["kind"], "socket");
  EXPECT_EQ(list["instances"], (nlohmann::json{"db", "web"}));
  EXPECT_EQ(kiln({"network", "rm", network_}).exit_code, 2);  // in use

  // web gone, db's hosts file no longer names it.
  ASSERT_EQ(kiln({"destroy", "web"}).exit_code, 0);
  EXPECT_TRUE(testing::wait_for([&] { return exec("db", "cat /etc/hosts; echo end").find(" web") == std::string::npos; },
                                std::chrono::seconds(30), [&] { return exec("db", "cat /etc/hosts"); }));
  ASSERT_EQ(kiln({"destroy", "db"}).exit_code, 0);
  auto removed = kiln({"network", "rm", network_});
  ASSERT_EQ(removed.exit_code, 0) << removed.err;
  network_.clear();
  // Nothing holds the network's port, and none of its processes is left.
  auto sockets = testing::run_program({"ss", "-uan"});
  EXPECT_THAT(sockets.out, Not(HasSubstr(socket_port + " "))) << sockets.out;
  EXPECT_THAT(testing::processes_naming({dir_.path().string()}), ::testing::IsEmpty());
}

}  // namespace
}  // namespace kiln
