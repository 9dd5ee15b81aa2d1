// The QMP client against a real QEMU (no guest: -machine none): handshake,
// commands, errors, events, and passing a file descriptor.
#include "runtime/qmp_client.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

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

TEST(QmpClient, ConnectingToNothingFailsInTime) {
  testing::ScratchDir dir;
  auto started = std::chrono::steady_clock::now();
  auto qmp = QmpClient::connect(dir / "missing.sock", std::chrono::milliseconds(300));
  EXPECT_FALSE(qmp);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(3));
}

}  // namespace
}  // namespace kiln
