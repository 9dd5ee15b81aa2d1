// The QMP client against a real QEMU (no guest: -machine none): handshake,
// commands, errors, events, and passing a file descriptor.
#include "runtime/qmp_client.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

class QmpClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    socket_ = dir_ / "qmp.sock";
    pid_ = ::fork();
    if (pid_ == 0) {
      int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 0);
      ::dup2(null, 1);
      std::string qmp = "unix:" + socket_.string() + ",server=on,wait=off";
      ::execlp("qemu-system-x86_64", "qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
               "-qmp", qmp.c_str(), nullptr);
      _exit(127);
    }
  }
  void TearDown() override {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }

  testing::ScratchDir dir_;
  std::filesystem::path socket_;
  pid_t pid_ = -1;
};

TEST_F(QmpClientTest, NegotiatesAndRunsCommands) {
  auto qmp = QmpClient::connect(socket_);
  ASSERT_TRUE(qmp) << qmp.error().to_string();
  auto status = qmp->execute("query-status");
  ASSERT_TRUE(status) << status.error().to_string();
  EXPECT_TRUE(status->contains("status"));
  auto version = qmp->execute("query-version");
  ASSERT_TRUE(version);
  EXPECT_EQ((*version)["qemu"]["major"].get<int>(), 7);
}

TEST_F(QmpClientTest, RefusalsCarryQemusReason) {
  auto qmp = QmpClient::connect(socket_);
  ASSERT_TRUE(qmp);
  auto bad = qmp->execute("no-such-command");
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, HasSubstr("The command no-such-command has not been found"));
}

TEST_F(QmpClientTest, KeepsEventsForWhoeverWaitsForThem) {
  auto qmp = QmpClient::connect(socket_);
  ASSERT_TRUE(qmp);
  ASSERT_TRUE(qmp->execute("stop"));
  ASSERT_TRUE(qmp->execute("cont"));
  auto resume = qmp->wait_event("RESUME", std::chrono::seconds(5));
  ASSERT_TRUE(resume) << resume.error().to_string();
  EXPECT_EQ((*resume)["event"], "RESUME");
  auto stop = qmp->wait_event("STOP", std::chrono::seconds(5));
  ASSERT_TRUE(stop);  // it arrived first and was kept
}

TEST_F(QmpClientTest, PassesAFileDescriptor) {
  auto qmp = QmpClient::connect(socket_);
  ASSERT_TRUE(qmp);
  testing::write_text(dir_ / "file", "data");
  int fd = ::open((dir_ / "file").c_str(), O_RDONLY);
  ASSERT_TRUE(qmp->execute_with_fd("getfd", {{"fdname", "mine"}}, fd));
  ::close(fd);
  // Only a descriptor QEMU really holds can be closed by name.
  EXPECT_TRUE(qmp->execute("closefd", {{"fdname", "mine"}}));
  EXPECT_FALSE(qmp->execute("closefd", {{"fdname", "mine"}}));
}

// A QMP peer that greets, accepts the capabilities, then sends an event
// unasked: what the supervisor sees when a guest powers off.
TEST(QmpClient, APollWithNoTimeToWaitStillTakesTheEventsThatArrived) {
  testing::ScratchDir dir;
  std::string path = (dir / "qmp.sock").string();
  int server = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(server, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(server, 1), 0);
  std::thread peer([server] {
    int client = ::accept(server, nullptr, nullptr);
    auto say = [client](const std::string& line) { (void)!::write(client, line.data(), line.size()); };
    say("{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n");
    char request[256];
    (void)!::read(client, request, sizeof request);
    say("{\"return\": {}}\n");
    say("{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true}}\n");
    ::usleep(300 * 1000);
    ::close(client);
  });
  auto qmp = QmpClient::connect(path);
  ASSERT_TRUE(qmp) << qmp.error().to_string();
  ::usleep(100 * 1000);  // the event is in the socket
  ASSERT_TRUE(qmp->poll(std::chrono::milliseconds(0)));
  auto events = qmp->take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["event"], "SHUTDOWN");
  peer.join();
  ::close(server);
}

TEST(QmpClient, ConnectingToNothingFailsInTime) {
  testing::ScratchDir dir;
  auto started = std::chrono::steady_clock::now();
  auto qmp = QmpClient::connect(dir / "missing.sock", std::chrono::milliseconds(300));
  EXPECT_FALSE(qmp);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(3));
}

}  // namespace
}  // namespace kiln
