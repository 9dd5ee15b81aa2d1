// kiln-exec-agent, the real static binary, driven as the host drives it,
// over a socket pair (or a pty, as UML's serial line): exit codes and
// signals, stdout and stderr apart, large output and holding it back, input,
// ptys and their size, timeouts, users, environment and working directory,
// sessions at once, background processes, bad frames and a broken stream.
// It runs the commands on this machine, as root.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/hash.h"
#include "formats/image/guest_protocol.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// What the agent said about one session.
struct Outcome {
  std::string out;
  std::string err;
  std::optional<ExecExit> exit;
  std::optional<std::string> error;  // a kError's message
  int frames = 0;
  bool ended() const { return exit || error; }
};

// The agent, started for one test, and the host's end of its channel: sends
// frames and gathers what comes back per session.
class AgentUnderTest {
 public:
  // The agent on a socket (--fd), or on a pty's slave (--channel PATH), as
  // on UML's serial line, or on a socket that hands over one packet per
  // read, as a virtio port hands over one page.
  enum class Line { kSocket, kTerminal, kPackets };

  // `waiting` is on the line before the agent starts (packets of kPacket).
  explicit AgentUnderTest(Line line = Line::kSocket, std::string_view waiting = {}) : socket_line_(line != Line::kTerminal) {
    std::vector<std::string> argv = {KILN_EXEC_AGENT};
    int agent_end = -1;
    if (socket_line_) {
      int ends[2];
      int type = line == Line::kPackets ? SOCK_SEQPACKET : SOCK_STREAM;
      if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, ends) != 0) throw std::runtime_error("socketpair");
      socket_ = ends[0];
      agent_end = ends[1];
      argv.insert(argv.end(), {"--fd", "3"});
      for (size_t at = 0; at < waiting.size(); at += kPacket)
        if (::send(socket_, waiting.data() + at, std::min(kPacket, waiting.size() - at), MSG_NOSIGNAL) <= 0)
          throw std::runtime_error("send");
    } else {
      socket_ = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
      char slave[128];
      if (socket_ < 0 || ::grantpt(socket_) != 0 || ::unlockpt(socket_) != 0 ||
          ::ptsname_r(socket_, slave, sizeof slave) != 0)
        throw std::runtime_error("no pty");
      argv.insert(argv.end(), {"--channel", slave});
    }
    std::vector<char*> args;
    for (std::string& word : argv) args.push_back(word.data());
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a test that dies does not leave the agent behind
      if (agent_end >= 0) ::dup2(agent_end, 3);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    if (agent_end >= 0) ::close(agent_end);
  }

  ~AgentUnderTest() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(socket_);
  }

  void send(uint32_t session, FrameType type, std::string_view payload) {
    std::string frame = encode_frame(session, type, payload);
    for (size_t at = 0; at < frame.size();) {
      ssize_t n = socket_line_ ? ::send(socket_, frame.data() + at, frame.size() - at, MSG_NOSIGNAL)
                               : ::write(socket_, frame.data() + at, frame.size() - at);
      if (n <= 0) throw std::runtime_error("the agent's socket closed");
      at += n;
    }
  }

  // Input in frames as large as a frame may be; "" ends it.
  void send_input(uint32_t session, std::string_view bytes) {
    do {
      send(session, FrameType::kStdin, bytes.substr(0, kMaxFramePayload));
      bytes.remove_prefix(std::min<size_t>(bytes.size(), kMaxFramePayload));
    } while (!bytes.empty());
  }

  // Opens a session for `request`; its number.
  uint32_t open(const ExecRequest& request) {
    uint32_t session = next_session_++;
    send(session, FrameType::kOpen, encode_exec_request(request));
    return session;
  }

  // Reads frames until `done` holds or the timeout passes.
  bool read_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (!done()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd fd{socket_, POLLIN, 0};
      if (::poll(&fd, 1, static_cast<int>(left)) <= 0) continue;
      char buffer[65536];
      ssize_t n = ::read(socket_, buffer, sizeof buffer);
      if (n <= 0) return done();
      decoder_.feed(std::string_view(buffer, n));
      take_frames();
    }
    return true;
  }

  // What came for `session` once it ended (kExit or kError); the test
  // fails if it did not end within the timeout.
  Outcome& wait(uint32_t session, std::chrono::milliseconds timeout = 20s) {
    Outcome& outcome = outcomes_[session];
    EXPECT_TRUE(read_until([&] { return outcome.ended(); }, timeout))
        << "session " << session << " did not end; stdout so far:\n"
        << testing::tail(outcome.out) << "\nstderr:\n"
        << testing::tail(outcome.err);
    return outcome;
  }

  Outcome run(const ExecRequest& request) { return wait(open(request)); }

  // Reads until the session's stdout holds `text`.
  bool wait_output(uint32_t session, const std::string& text, std::chrono::milliseconds timeout = 10s) {
    return read_until([&] { return outcomes_[session].out.find(text) != std::string::npos; }, timeout);
  }

  Outcome& outcome(uint32_t session) { return outcomes_[session]; }
  pid_t pid() const { return pid_; }
  // The host's end stops sending, as a host that goes away.
  void hang_up() { ::shutdown(socket_, SHUT_WR); }
  int hellos() const { return hellos_; }
  uint64_t acked() const { return acked_; }
  int acks() const { return acks_; }

  static constexpr size_t kPacket = 4096;

  // The agent's wait status once it ended by itself, or nothing.
  std::optional<int> wait_ended(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      std::this_thread::sleep_for(20ms);
    }
    return std::nullopt;
  }

 private:
  void take_frames() {
    while (true) {
      auto frame = decoder_.next();
      if (!frame) {
        ADD_FAILURE() << "a malformed frame from the agent: " << frame.error();
        return;
      }
      if (!*frame) return;
      take(**frame);
    }
  }

  void take(const Frame& frame) {
    if (frame.session == 0) {
      if (frame.type == FrameType::kHello) ++hellos_;
      if (frame.type == FrameType::kAck) {
        acked_ += decode_ack(frame.payload).value_or(0);
        ++acks_;
      }
      return;
    }
    Outcome& outcome = outcomes_[frame.session];
    ++outcome.frames;
    EXPECT_FALSE(outcome.ended()) << "a frame after session " << frame.session << " ended";
    if (frame.type == FrameType::kStdout) outcome.out += frame.payload;
    if (frame.type == FrameType::kStderr) outcome.err += frame.payload;
    if (frame.type == FrameType::kExit) {
      auto exit = decode_exec_exit(frame.payload);
      EXPECT_TRUE(exit) << exit.error();
      if (exit) outcome.exit = *exit;
    }
    if (frame.type == FrameType::kError)
      outcome.error = nlohmann::json::parse(frame.payload).at("message").get<std::string>();
  }

  bool socket_line_;
  int socket_ = -1;
  pid_t pid_ = -1;
  FrameDecoder decoder_;
  std::map<uint32_t, Outcome> outcomes_;
  uint32_t next_session_ = 1;
  int hellos_ = 0;
  uint64_t acked_ = 0;
  int acks_ = 0;
};

ExecRequest command(std::vector<std::string> argv) {
  ExecRequest request;
  request.argv = std::move(argv);
  return request;
}

ExecRequest shell(const std::string& script) { return command({"sh", "-c", script}); }

ExecExit exited(int code) { return ExecExit{code, 0, false}; }

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

TEST(ExecAgent, GreetsTheHostAndAnswersItsGreeting) {
  AgentUnderTest agent;
  ASSERT_TRUE(agent.read_until([&] { return agent.hellos() == 1; }, 10s)) << "no kHello when it started";
  agent.send(0, FrameType::kHello, R"({"version":1})");
  EXPECT_TRUE(agent.read_until([&] { return agent.hellos() == 2; }, 10s)) << "the host's kHello went unanswered";
}

TEST(ExecAgent, ReportsExitCodes) {
  AgentUnderTest agent;
  EXPECT_EQ(agent.run(command({"true"})).exit, exited(0));
  EXPECT_EQ(agent.run(command({"false"})).exit, exited(1));
  EXPECT_EQ(agent.run(shell("exit 42")).exit, exited(42));
}

TEST(ExecAgent, AMissingCommandExits127AndSaysWhyOnStderr) {
  AgentUnderTest agent;
  Outcome outcome = agent.run(command({"kiln-no-such-command"}));
  EXPECT_EQ(outcome.exit, exited(127));
  EXPECT_EQ(outcome.err, "kiln-exec-agent: kiln-no-such-command: No such file or directory\n");
  EXPECT_EQ(outcome.out, "");
}

TEST(ExecAgent, AFileThatCannotRunExits126) {
  testing::ScratchDir scratch;
  testing::write_text(scratch / "not-executable", "#!/bin/sh\n");
  AgentUnderTest agent;
  Outcome outcome = agent.run(command({(scratch / "not-executable").string()}));
  EXPECT_EQ(outcome.exit, exited(126));
  EXPECT_THAT(outcome.err, HasSubstr("Permission denied"));
}

TEST(ExecAgent, ReportsTheSignalThatKilledTheCommand) {
  AgentUnderTest agent;
  Outcome outcome = agent.run(shell("kill -9 $$"));
  ASSERT_TRUE(outcome.exit);
  EXPECT_EQ(outcome.exit->signal, 9);
  EXPECT_FALSE(outcome.exit->timed_out);
  EXPECT_EQ(shell_exit_code(*outcome.exit), 137);
}

TEST(ExecAgent, KeepsStdoutAndStderrApart) {
  AgentUnderTest agent;
  Outcome outcome = agent.run(shell("echo out; echo err >&2; echo more out; echo more err >&2"));
  EXPECT_EQ(outcome.out, "out\nmore out\n");
  EXPECT_EQ(outcome.err, "err\nmore err\n");
  EXPECT_EQ(outcome.exit, exited(0));
}

TEST(ExecAgent, RelaysTenMebibytesOfOutputIntact) {
  testing::ScratchDir scratch;
  std::string data(10u << 20, '\0');
  std::mt19937 random(7);
  for (char& byte : data) byte = static_cast<char>(random());
  testing::write_text(scratch / "data", data);
  AgentUnderTest agent;
  Outcome outcome = agent.run(command({"cat", (scratch / "data").string()}));
  EXPECT_EQ(outcome.exit, exited(0));
  ASSERT_EQ(outcome.out.size(), data.size());
  EXPECT_TRUE(outcome.out == data) << "the bytes differ";
}

// The agent's peak resident memory, in KiB.
long peak_memory_kib(pid_t pid) {
  std::istringstream status(testing::read_text("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(status, line);)
    if (line.starts_with("VmHWM:")) return std::stol(line.substr(6));
  return -1;
}

TEST(ExecAgent, HoldsBackOutputWhileTheHostDoesNotRead) {
  AgentUnderTest agent;
  uint32_t session = agent.open(command({"head", "-c", "67108864", "/dev/zero"}));
  std::this_thread::sleep_for(2s);  // the host reads nothing meanwhile
  long peak = peak_memory_kib(agent.pid());
  Outcome& outcome = agent.wait(session, 60s);
  EXPECT_EQ(outcome.exit, exited(0));
  EXPECT_EQ(outcome.out.size(), 67108864u);
  EXPECT_GT(peak, 0);
  EXPECT_LT(peak, 32 * 1024) << "KiB: the agent buffered the output instead of leaving it in the pipe";
}

TEST(ExecAgent, PipesInputThroughAndAnEmptyFrameEndsIt) {
  AgentUnderTest agent;
  uint32_t session = agent.open(command({"cat"}));
  agent.send(session, FrameType::kStdin, "first line\n");
  ASSERT_TRUE(agent.wait_output(session, "first line\n")) << "input did not reach cat before its end";
  agent.send_input(session, std::string(1 << 20, 'x'));
  agent.send(session, FrameType::kStdin, "");
  Outcome& outcome = agent.wait(session);
  EXPECT_EQ(outcome.out, "first line\n" + std::string(1 << 20, 'x'));
  EXPECT_EQ(outcome.exit, exited(0));
}

TEST(ExecAgent, RunsOnAPtyOfTheAskedSize) {
  AgentUnderTest agent;
  ExecRequest request = shell("tty; stty size; echo to stderr >&2; echo TERM=$TERM");
  request.tty = true;
  request.rows = 33;
  request.cols = 101;
  Outcome outcome = agent.run(request);
  EXPECT_THAT(outcome.out, MatchesRegex("/dev/pts/[0-9]+\r\n33 101\r\nto stderr\r\nTERM=xterm-256color\r\n"));
  EXPECT_EQ(outcome.err, "") << "a pty merges stderr into stdout";
  EXPECT_EQ(outcome.exit, exited(0));
}

TEST(ExecAgent, AResizeChangesThePtySize) {
  AgentUnderTest agent;
  ExecRequest request = shell("stty size; read line; stty size");
  request.tty = true;
  request.rows = 33;
  request.cols = 101;
  uint32_t session = agent.open(request);
  ASSERT_TRUE(agent.wait_output(session, "33 101"));
  agent.send(session, FrameType::kResize, R"({"rows": 50, "cols": 132})");
  agent.send(session, FrameType::kStdin, "go\n");
  Outcome& outcome = agent.wait(session);
  EXPECT_THAT(outcome.out, HasSubstr("50 132"));
  EXPECT_EQ(outcome.exit, exited(0));
}

TEST(ExecAgent, EndsInputOnAPtyWithEndOfFile) {
  AgentUnderTest agent;
  ExecRequest request = command({"cat"});
  request.tty = true;
  uint32_t session = agent.open(request);
  agent.send(session, FrameType::kStdin, "no line end");
  agent.send(session, FrameType::kStdin, "");
  Outcome& outcome = agent.wait(session, 10s);
  EXPECT_EQ(outcome.exit, exited(0)) << "cat did not see the end of its input";
  EXPECT_THAT(outcome.out, HasSubstr("no line end"));
}

TEST(ExecAgent, ATimeoutKillsTheWholeProcessGroup) {
  AgentUnderTest agent;
  ExecRequest request = shell("sleep 3071; echo not reached");
  request.timeout_seconds = 1;
  auto start = Clock::now();
  Outcome outcome = agent.run(request);
  EXPECT_LT(seconds_since(start), 5.0);
  EXPECT_EQ(outcome.exit, (ExecExit{0, 9, true}));
  EXPECT_EQ(outcome.out, "");
  EXPECT_TRUE(testing::wait_for([] { return testing::processes_naming({"sleep 3071"}).empty(); }, 5s, [] {
    return ::testing::PrintToString(testing::processes_naming({"sleep 3071"}));
  }));
}

TEST(ExecAgent, RunsAsTheAskedUserInTheirLoginEnvironment) {
  AgentUnderTest agent;
  ExecRequest request = shell("id -u; id -g; echo $USER $LOGNAME $HOME $SHELL $PATH; pwd");
  request.user = "nobody";
  Outcome outcome = agent.run(request);
  EXPECT_EQ(outcome.out,
            "65534\n65534\nnobody nobody /nonexistent /usr/sbin/nologin /usr/local/bin:/usr/bin:/bin\n/\n")
      << "stderr: " << outcome.err;
  request.user = "65534";
  EXPECT_THAT(agent.run(request).out, ::testing::StartsWith("65534\n65534\nnobody "));
}

TEST(ExecAgent, RootGetsTheRootPathAndHome) {
  AgentUnderTest agent;
  Outcome outcome = agent.run(shell("echo $PATH; pwd"));
  EXPECT_EQ(outcome.out, "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/root\n");
}

TEST(ExecAgent, RefusesAnUnknownUserWithoutRunningAnything) {
  testing::ScratchDir scratch;
  AgentUnderTest agent;
  ExecRequest request = command({"touch", (scratch / "ran").string()});
  request.user = "kiln-no-such-user";
  Outcome outcome = agent.run(request);
  ASSERT_TRUE(outcome.error);
  EXPECT_THAT(*outcome.error, HasSubstr("kiln-no-such-user"));
  EXPECT_FALSE(outcome.exit);
  EXPECT_FALSE(std::filesystem::exists(scratch / "ran"));
}

TEST(ExecAgent, RefusesAMissingWorkdir) {
  AgentUnderTest agent;
  ExecRequest request = command({"true"});
  request.workdir = "/kiln-no-such-directory";
  Outcome outcome = agent.run(request);
  ASSERT_TRUE(outcome.error);
  EXPECT_THAT(*outcome.error, HasSubstr("/kiln-no-such-directory"));
}

TEST(ExecAgent, AppliesTheRequestsEnvironmentAndWorkdir) {
  testing::ScratchDir scratch;
  AgentUnderTest agent;
  ExecRequest request = shell("echo $GREETING; echo $HOME; pwd");
  request.env = {"GREETING=hello there", "HOME=/elsewhere"};
  request.workdir = scratch.path().string();
  Outcome outcome = agent.run(request);
  EXPECT_EQ(outcome.out, "hello there\n/elsewhere\n" + scratch.path().string() + "\n");
}

TEST(ExecAgent, RunsSessionsAtOnce) {
  AgentUnderTest agent;
  auto start = Clock::now();
  uint32_t first = agent.open(shell("sleep 2; echo 1"));
  uint32_t second = agent.open(shell("sleep 2; echo 2"));
  EXPECT_EQ(agent.wait(first).out, "1\n");
  EXPECT_EQ(agent.wait(second).out, "2\n");
  EXPECT_LT(seconds_since(start), 3.5) << "the sessions ran one after the other";
}

TEST(ExecAgent, DoesNotWaitForABackgroundProcessHoldingTheOutput) {
  AgentUnderTest agent;
  auto start = Clock::now();
  Outcome outcome = agent.run(shell("sleep 3072 & echo done"));
  double took = seconds_since(start);
  for (const std::string& process : testing::processes_naming({"sleep 3072"}))
    ::kill(std::stoi(process), SIGKILL);  // the sleep this test started
  EXPECT_EQ(outcome.out, "done\n");
  EXPECT_EQ(outcome.exit, exited(0));
  EXPECT_LT(took, 3.0);
}

TEST(ExecAgent, PassesASignalToTheCommand) {
  AgentUnderTest agent;
  uint32_t session = agent.open(shell("echo started; sleep 3073"));
  ASSERT_TRUE(agent.wait_output(session, "started"));
  agent.send(session, FrameType::kSignal, R"({"signal": 15})");
  Outcome& outcome = agent.wait(session, 10s);
  ASSERT_TRUE(outcome.exit);
  EXPECT_EQ(outcome.exit->signal, 15);
}

TEST(ExecAgent, CloseKillsTheCommandAndEndsTheSessionSilently) {
  AgentUnderTest agent;
  uint32_t closed = agent.open(shell("echo started; sleep 3074"));
  ASSERT_TRUE(agent.wait_output(closed, "started"));
  int frames_before = agent.outcome(closed).frames;
  agent.send(closed, FrameType::kClose, "");
  EXPECT_TRUE(testing::wait_for([] { return testing::processes_naming({"sleep 3074"}).empty(); }, 5s, [] {
    return ::testing::PrintToString(testing::processes_naming({"sleep 3074"}));
  }));
  // A later session's end shows the agent went on; nothing more came for the closed one.
  Outcome later = agent.run(command({"true"}));
  EXPECT_EQ(later.exit, exited(0));
  EXPECT_EQ(agent.outcome(closed).frames, frames_before) << "frames after kClose";
}

TEST(ExecAgent, RefusesASessionNumberInUseAndIgnoresUnknownSessions) {
  AgentUnderTest agent;
  uint32_t session = agent.open(command({"cat"}));
  agent.send(session, FrameType::kOpen, encode_exec_request(command({"true"})));
  ASSERT_TRUE(agent.read_until([&] { return agent.outcome(session).error.has_value(); }, 10s));
  EXPECT_THAT(*agent.outcome(session).error, HasSubstr("already"));
  agent.send(999, FrameType::kStdin, "to nobody");
  agent.send(999, FrameType::kClose, "");
  EXPECT_EQ(agent.run(shell("echo still here")).out, "still here\n");
}

TEST(ExecAgent, IgnoresControlFramesItCannotRead) {
  AgentUnderTest agent;
  uint32_t session = agent.open(command({"cat"}));
  agent.send(session, FrameType::kSignal, R"({"signal": "TERM"})");
  agent.send(session, FrameType::kSignal, "not json");
  agent.send(session, FrameType::kResize, R"({"rows": "many", "cols": 80})");
  agent.send(session, FrameType::kStdout, "the agent's own kind of frame");
  agent.send_input(session, "still served\n");
  agent.send_input(session, "");
  Outcome& outcome = agent.wait(session);
  EXPECT_EQ(outcome.out, "still served\n");
  EXPECT_EQ(outcome.exit, exited(0));
}

TEST(ExecAgent, SpeaksOverARawTerminalLine) {
  AgentUnderTest agent(AgentUnderTest::Line::kTerminal);
  ASSERT_TRUE(agent.read_until([&] { return agent.hellos() == 1; }, 35s)) << "no kHello on the line";
  std::string every_byte;
  for (int round = 0; round < 4; ++round)
    for (int byte = 0; byte < 256; ++byte) every_byte += static_cast<char>(byte);
  uint32_t session = agent.open(command({"cat"}));
  agent.send_input(session, every_byte);
  agent.send_input(session, "");
  Outcome& outcome = agent.wait(session);
  EXPECT_EQ(outcome.exit, exited(0));
  EXPECT_TRUE(outcome.out == every_byte) << "the line changed the bytes: " << ::testing::PrintToString(outcome.out);
}

TEST(ExecAgent, AcknowledgesEveryByteItReadsFromTheChannel) {
  AgentUnderTest agent;
  std::string input(300000, 'k');
  uint32_t session = agent.open(command({"wc", "-c"}));
  agent.send_input(session, input);
  agent.send_input(session, "");
  Outcome& outcome = agent.wait(session);
  EXPECT_EQ(outcome.out, "300000\n");
  size_t sent = encode_frame(session, FrameType::kOpen, encode_exec_request(command({"wc", "-c"}))).size() +
                encode_frame(session, FrameType::kStdin, input.substr(0, kMaxFramePayload)).size() +
                encode_frame(session, FrameType::kStdin, input.substr(kMaxFramePayload)).size() +
                encode_frame(session, FrameType::kStdin, "").size();
  EXPECT_TRUE(agent.read_until([&] { return agent.acked() == sent; }, 5s)) << agent.acked() << " of " << sent;
}

// Each frame toward the host costs a guest a notification of qemu's: what
// waits on the channel is read in as many reads as it takes (a virtio port
// gives one page per read) and acknowledged once.
TEST(ExecAgent, AcknowledgesWhatWaitsOnTheChannelInOneFrame) {
  std::string waiting = encode_frame(1, FrameType::kOpen, encode_exec_request(command({"wc", "-c"}))) +
                        encode_frame(1, FrameType::kStdin, std::string(60000, 'k')) +
                        encode_frame(1, FrameType::kStdin, "");
  AgentUnderTest agent(AgentUnderTest::Line::kPackets, waiting);
  Outcome& outcome = agent.wait(1);
  EXPECT_EQ(outcome.out, "60000\n");
  EXPECT_TRUE(agent.read_until([&] { return agent.acked() == waiting.size(); }, 5s))
      << agent.acked() << " of " << waiting.size();
  EXPECT_EQ(agent.acks(), 1) << "for " << (waiting.size() + AgentUnderTest::kPacket - 1) / AgentUnderTest::kPacket
                             << " packets";
}

// A terminal line holds 4 KiB: input larger than that must wait for the
// command, not be lost or stall the line.
TEST(ExecAgent, TakesMebibytesOfInputOverATerminalLine) {
  AgentUnderTest agent(AgentUnderTest::Line::kTerminal);
  ASSERT_TRUE(agent.read_until([&] { return agent.hellos() == 1; }, 35s)) << "no kHello on the line";
  std::string input(4 << 20, '\0');
  for (size_t at = 0; at < input.size(); ++at) input[at] = static_cast<char>((at * 7919) >> 3);
  uint32_t session = agent.open(command({"sha256sum"}));
  agent.send_input(session, input);
  agent.send_input(session, "");
  Outcome& outcome = agent.wait(session);
  EXPECT_EQ(outcome.exit, exited(0));
  EXPECT_EQ(outcome.out.substr(0, 64), sha256_hex(input));
}

// /proc/PID/stat's user and system time, in clock ticks.
long cpu_ticks(pid_t pid) {
  std::string stat = testing::read_text("/proc/" + std::to_string(pid) + "/stat");
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  long ticks = 0;
  for (int index = 3; fields >> field && index <= 15; ++index)
    if (index >= 14) ticks += std::stol(field);
  return ticks;
}

TEST(ExecAgent, WaitsWithoutSpinningWhenTheHostEndCloses) {
  AgentUnderTest agent;
  ASSERT_TRUE(agent.read_until([&] { return agent.hellos() == 1; }, 10s));
  agent.hang_up();
  long before = cpu_ticks(agent.pid());
  EXPECT_FALSE(agent.wait_ended(1500ms)) << "the agent ended when the host's end closed";
  EXPECT_LT(cpu_ticks(agent.pid()) - before, 20) << "the agent spun while the host was away";
}

TEST(ExecAgent, EndsQuietlyWhenTheBootNamesNoChannel) {
  if (testing::read_text("/proc/cmdline").find(kAgentArgument) != std::string::npos)
    GTEST_SKIP() << "this machine's own command line names an exec channel";
  testing::ProcessResult result = testing::run_program({KILN_EXEC_AGENT});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out + result.err, "");
}

TEST(ExecAgent, RefusesBadArguments) {
  testing::ProcessResult result = testing::run_program({KILN_EXEC_AGENT, "--fd", "987"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("--fd 987"));
}

TEST(ExecAgent, ExitsNonZeroOnAMalformedStream) {
  AgentUnderTest agent;
  agent.send(0, static_cast<FrameType>(99), "garbage");
  std::optional<int> status = agent.wait_ended(10s);
  ASSERT_TRUE(status) << "the agent kept running";
  EXPECT_TRUE(WIFEXITED(*status)) << "it crashed, signal " << WTERMSIG(*status);
  EXPECT_NE(WEXITSTATUS(*status), 0);
}

}  // namespace
}  // namespace kiln
