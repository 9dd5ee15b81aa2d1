#include "base/subprocess.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace kiln {
namespace {

TEST(Run, CapturesStdoutAndExitCode) {
  auto done = run({"sh", "-c", "echo hello; exit 0"});
  ASSERT_TRUE(done) << done.error().to_string();
  EXPECT_EQ(done->out, "hello\n");
  EXPECT_EQ(done->exit_code, 0);
}

TEST(Run, NonZeroExitIsAnErrorCarryingTheToolsKeyLines) {
  auto done = run({"sh", "-c", "echo 'I: progress' >&2; echo 'E: Unable to locate package nosuch' >&2; exit 100"});
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().kind, ErrorKind::kFailed);
  EXPECT_NE(done.error().message.find("exit code 100"), std::string::npos);
  EXPECT_NE(done.error().detail.find("E: Unable to locate package nosuch"), std::string::npos);
}

TEST(Run, TimeoutKillsTheProcessGroup) {
  Command command;
  command.argv = {"sh", "-c", "sleep 30 & sleep 30"};
  command.timeout = std::chrono::milliseconds(300);
  auto started = std::chrono::steady_clock::now();
  auto done = run(command);
  ASSERT_FALSE(done);
  EXPECT_NE(done.error().message.find("timed out"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
}

TEST(Run, FeedsStdinText) {
  Command command;
  command.argv = {"cat"};
  command.stdin_text = "line one\nline two\n";
  auto done = run(command);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->out, "line one\nline two\n");
}

TEST(Run, PassesExtraEnvironment) {
  Command command;
  command.argv = {"sh", "-c", "echo $KILN_TEST_VALUE"};
  command.env = {"KILN_TEST_VALUE=42"};
  auto done = run(command);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->out, "42\n");
}

// Reads a spawned program's output to the end and waits for it.
std::pair<std::string, int> finish(const Spawned& spawned) {
  ::close(spawned.in);
  std::string out;
  char buffer[256];
  for (ssize_t n; (n = ::read(spawned.out, buffer, sizeof buffer)) > 0;) out.append(buffer, static_cast<size_t>(n));
  ::close(spawned.out);
  int status = 0;
  ::waitpid(spawned.pid, &status, 0);
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

TEST(Spawn, RunsInChildBetweenForkAndExec) {
  Command command;
  command.argv = {"sh", "-c", "umask"};
  command.in_child = [] {
    ::umask(027);
    return true;
  };
  auto spawned = spawn(command);
  ASSERT_TRUE(spawned) << spawned.error().message;
  EXPECT_EQ(finish(*spawned), std::make_pair(std::string("0027\n"), 0));
  command.in_child = [] { return false; };  // refused: the program never runs
  spawned = spawn(command);
  ASSERT_TRUE(spawned) << spawned.error().message;
  EXPECT_EQ(finish(*spawned), std::make_pair(std::string(), 126));
}

TEST(FindProgram, MissingProgramNamesTheDebianPackage) {
  EXPECT_EQ(debian_package_for("mmdebstrap"), "mmdebstrap");
  auto found = find_program("qemu-img-that-does-not-exist");
  ASSERT_FALSE(found);
  EXPECT_EQ(found.error().kind, ErrorKind::kMissingTool);
}

TEST(KeyLines, ALineQuotedAgainAsAnIndentedDetailComesOnce) {
  std::string output = "qemu: could not load kernel\n[kiln] supervisor error: qemu did not start\n"
                       "  qemu: could not load kernel\n";
  EXPECT_EQ(key_lines(output), "[kiln] supervisor error: qemu did not start\nqemu: could not load kernel");
}

TEST(KeyLines, KeepsErrorsAndTheTail) {
  std::string output = "I: a\nI: b\nE: broken thing\nI: c\nI: d\nI: e\nI: f\n";
  std::string lines = key_lines(output);
  EXPECT_NE(lines.find("E: broken thing"), std::string::npos);
  EXPECT_NE(lines.find("I: f"), std::string::npos);
  EXPECT_EQ(lines.find("I: a"), std::string::npos);
}

}  // namespace
}  // namespace kiln
