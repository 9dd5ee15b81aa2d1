// AgentRelay, between exec clients on its socket and a fake agent on a
// socket pair: it waits for the agent to speak first, keeps no more than
// the window unacknowledged on the channel, and follows an agent that lost
// the stream and restarted.
#include "runtime/agent_relay.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "base/unix_socket.h"
#include "formats/image/guest_protocol.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using namespace std::chrono_literals;

// One end of a stream of frames: what it sends, and the frames it reads.
class FrameEnd {
 public:
  explicit FrameEnd(UniqueFd fd) : fd_(std::move(fd)) {}

  void send_bytes(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      ASSERT_GT(n, 0) << "the relay closed the socket";
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }
  void send(uint32_t session, FrameType type, std::string_view payload) {
    send_bytes(encode_frame(session, type, payload));
  }

  // Whatever bytes arrive within `wait`.
  std::string read_bytes(std::chrono::milliseconds wait) {
    std::string bytes;
    pollfd p{fd_.get(), POLLIN, 0};
    while (::poll(&p, 1, static_cast<int>(wait.count())) > 0) {
      char buffer[65536];
      ssize_t n = ::recv(fd_.get(), buffer, sizeof buffer, MSG_DONTWAIT);
      if (n <= 0) break;
      bytes.append(buffer, static_cast<size_t>(n));
      wait = 50ms;
    }
    return bytes;
  }

  // The next frame, or nothing within `wait` or at the end of the stream.
  std::optional<Frame> next(std::chrono::milliseconds wait = 5s) {
    auto deadline = std::chrono::steady_clock::now() + wait;
    while (true) {
      auto frame = decoder_.next();
      if (!frame || *frame) return frame ? *frame : std::nullopt;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) return std::nullopt;
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buffer[65536];
      ssize_t n = ::recv(fd_.get(), buffer, sizeof buffer, 0);
      if (n <= 0) return std::nullopt;
      decoder_.feed(std::string_view(buffer, static_cast<size_t>(n)));
    }
  }

 private:
  UniqueFd fd_;
  FrameDecoder decoder_;
};

class AgentRelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto relay = AgentRelay::start(dir_.path() / "exec.sock");
    ASSERT_TRUE(relay) << relay.error().to_string();
    relay_ = std::move(*relay);
  }

  // The relay's channel, its agent end returned.
  FrameEnd attach_agent(size_t window = 4096) {
    int ends[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
    relay_->attach(UniqueFd(ends[0]), window);
    return FrameEnd(UniqueFd(ends[1]));
  }

  FrameEnd connect_client() {
    auto fd = connect_unix(dir_.path() / "exec.sock");
    EXPECT_TRUE(fd);
    return FrameEnd(std::move(*fd));
  }

  static void say_hello(FrameEnd& agent) { agent.send(0, FrameType::kHello, R"({"version":1})"); }

  testing::ScratchDir dir_;
  std::unique_ptr<AgentRelay> relay_;
};

TEST_F(AgentRelayTest, SendsTheAgentNothingBeforeItsHelloThenGreetsWaitingClients) {
  FrameEnd agent = attach_agent();
  FrameEnd client = connect_client();
  EXPECT_EQ(agent.read_bytes(200ms), "") << "a serial line would echo it before the agent made it raw";
  EXPECT_FALSE(client.next(200ms));
  say_hello(agent);
  auto hello = client.next();
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->type, FrameType::kHello);
  EXPECT_EQ(agent.read_bytes(200ms), "");
}

TEST_F(AgentRelayTest, PassesFramesBothWaysUnderTheClientsSession) {
  FrameEnd agent = attach_agent();
  say_hello(agent);
  FrameEnd client = connect_client();
  ASSERT_TRUE(client.next());
  client.send(0, FrameType::kOpen, R"({"argv":["true"]})");
  auto open = agent.next();
  ASSERT_TRUE(open);
  EXPECT_EQ(open->type, FrameType::kOpen);
  ASSERT_NE(open->session, 0u);
  agent.send_bytes(encode_ack(static_cast<uint32_t>(encode_frame(0, FrameType::kOpen, open->payload).size())));
  agent.send(open->session, FrameType::kStdout, "out");
  agent.send(open->session, FrameType::kExit, encode_exec_exit({3, 0, false}));
  auto out = client.next();
  ASSERT_TRUE(out);
  EXPECT_EQ(out->type, FrameType::kStdout);
  EXPECT_EQ(out->payload, "out");
  auto exit = client.next();
  ASSERT_TRUE(exit);
  EXPECT_EQ(decode_exec_exit(exit->payload), (ExecExit{3, 0, false}));
}

TEST_F(AgentRelayTest, KeepsNoMoreThanTheWindowUnacknowledged) {
  FrameEnd agent = attach_agent(2048);
  say_hello(agent);
  FrameEnd client = connect_client();
  ASSERT_TRUE(client.next());
  client.send(0, FrameType::kOpen, R"({"argv":["cat"]})");
  std::string input(20000, 'x');
  client.send(0, FrameType::kStdin, input);
  std::string arrived = agent.read_bytes(300ms);
  EXPECT_EQ(arrived.size(), 2048u);
  agent.send_bytes(encode_ack(1000));
  std::string more = agent.read_bytes(300ms);
  EXPECT_EQ(more.size(), 1000u) << "an ack of 1000 bytes lets 1000 more go";
  size_t total = arrived.size() + more.size();
  while (true) {
    agent.send_bytes(encode_ack(2048));
    std::string piece = agent.read_bytes(200ms);
    ASSERT_LE(piece.size(), 2048u);
    if (piece.empty()) break;
    total += piece.size();
  }
  EXPECT_EQ(total, encode_frame(1, FrameType::kOpen, R"({"argv":["cat"]})").size() +
                       encode_frame(1, FrameType::kStdin, input).size());
}

TEST_F(AgentRelayTest, AMalformedStreamEndsTheSessionsAndTheRestartedAgentIsFollowed) {
  FrameEnd agent = attach_agent();
  say_hello(agent);
  FrameEnd running = connect_client();
  ASSERT_TRUE(running.next());
  running.send(0, FrameType::kOpen, R"({"argv":["sleep","9"]})");
  ASSERT_TRUE(agent.next());
  agent.send_bytes(std::string("\0\0\0\x05\0\0\0\x01\x63garbage", 16));  // type 99
  auto error = running.next();
  ASSERT_TRUE(error);
  EXPECT_EQ(error->type, FrameType::kError);
  EXPECT_NE(error->payload.find("malformed"), std::string::npos) << error->payload;

  FrameEnd waiting = connect_client();
  EXPECT_FALSE(waiting.next(200ms)) << "no agent is listening until it says hello again";
  agent.send_bytes("more line noise");
  say_hello(agent);
  auto hello = waiting.next();
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->type, FrameType::kHello);
}

TEST_F(AgentRelayTest, AHelloFromARestartedAgentEndsWhatWasUnderWay) {
  FrameEnd agent = attach_agent();
  say_hello(agent);
  FrameEnd client = connect_client();
  ASSERT_TRUE(client.next());
  client.send(0, FrameType::kOpen, R"({"argv":["sleep","9"]})");
  ASSERT_TRUE(agent.next());
  say_hello(agent);
  auto error = client.next();
  ASSERT_TRUE(error);
  EXPECT_EQ(error->type, FrameType::kError);
  EXPECT_NE(error->payload.find("restarted"), std::string::npos) << error->payload;
}

TEST_F(AgentRelayTest, AStoppedHypervisorEndsEveryClient) {
  FrameEnd agent = attach_agent();
  say_hello(agent);
  FrameEnd client = connect_client();
  ASSERT_TRUE(client.next());
  relay_->detach("the instance stopped while the command ran");
  auto error = client.next();
  ASSERT_TRUE(error);
  EXPECT_EQ(error->type, FrameType::kError);
  EXPECT_NE(error->payload.find("stopped"), std::string::npos);
}

}  // namespace
}  // namespace kiln
