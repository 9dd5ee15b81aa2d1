// `kiln exec`, `kiln cp` and `kiln run` on the default image, for real,
// under UML and under qemu (TCG here): exit codes, output kept apart and
// intact, input, ptys, timeouts, sessions at once, copies both ways, and a
// one-shot run that leaves nothing behind, Ctrl-C included.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <random>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/hash.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ProcessResult;
using Clock = std::chrono::steady_clock;

const fs::path kImage = fs::path(KILN_INTEGRATION_DIR) / "default";

// The instances this suite shares, one per backend, booted by the ctest
// fixture exec_instance_BACKEND_up (tests/CMakeLists.txt).
const fs::path kExecDir = KILN_EXEC_DIR;

std::vector<std::string> shared_env() {
  return {"KILN_RUNTIME_DIR=" + (kExecDir / "run").string(), "KILN_STATE_DIR=" + (kExecDir / "state").string()};
}

class ExecTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto ready = kiln({"exec", name(), "--wait-ready=240", "--", "true"});
    ASSERT_EQ(ready.exit_code, 0) << "the shared instance " << name() << " does not answer (its ctest fixture "
                                  << "exec_instance_" << GetParam() << "_up boots it): " << ready.err;
  }

  std::string name() const { return "exec-" + GetParam(); }
  ProcessResult kiln(std::vector<std::string> args) const { return testing::run_kiln(args, shared_env()); }

  ProcessResult exec(std::vector<std::string> command, std::vector<std::string> options = {}) const {
    std::vector<std::string> args = {"exec", name()};
    args.insert(args.end(), options.begin(), options.end());
    args.push_back("--");
    args.insert(args.end(), command.begin(), command.end());
    return kiln(args);
  }

  // A shell line run on the host with kiln's environment; $KILN is kiln.
  ProcessResult host_shell(const std::string& line) const {
    std::vector<std::string> env = shared_env();
    env.push_back("KILN=" + testing::kiln_binary());
    env.push_back("NAME=" + name());
    return testing::run_program({"/bin/sh", "-c", line}, env);
  }

  // Under UML a copy into the guest is staged in the instance's disk
  // directory and mounted in the guest with hostfs: neither may outlast it.
  void expect_no_copy_staging_left() const {
    if (GetParam() != "uml") return;
    for (const auto& entry : fs::directory_iterator(kExecDir / "state/instances" / name()))
      EXPECT_THAT(entry.path().filename().string(), Not(HasSubstr("cp-inbox"))) << "a copy's staging was left";
    EXPECT_EQ(exec({"findmnt", "-n", "-t", "hostfs", "-o", "TARGET"}).out, "") << "a copy's hostfs mount was left";
  }

  testing::ScratchDir local_;
};

void write_random(const fs::path& path, size_t size, unsigned seed) {
  std::mt19937_64 random(seed);
  std::ofstream out(path, std::ios::binary);
  std::vector<uint64_t> block(8192);
  for (size_t written = 0; written < size;) {
    for (auto& word : block) word = random();
    size_t n = std::min(size - written, block.size() * sizeof(uint64_t));
    out.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(n));
    written += n;
  }
}

std::string file_sha256(const fs::path& path) {
  auto digest = file_digest_hex(path);
  return digest ? *digest : "unreadable: " + digest.error().to_string();
}

// A TCP port on the loopback that nothing listens on right now.
int unused_tcp_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof address;
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), size);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  ::close(fd);
  return ntohs(address.sin_port);
}

unsigned mode_of(const fs::path& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 ? st.st_mode & 07777 : 0;
}

TEST_P(ExecTest, ExitCodesAreTheCommandsOwnAndASignalGives128PlusIt) {
  EXPECT_EQ(exec({"true"}).exit_code, 0);
  EXPECT_EQ(exec({"false"}).exit_code, 1);
  EXPECT_EQ(exec({"sh", "-c", "exit 42"}).exit_code, 42);
  EXPECT_EQ(exec({"sh", "-c", "kill -TERM $$"}).exit_code, 128 + SIGTERM);
  auto missing = exec({"no-such-command-here"});
  EXPECT_EQ(missing.exit_code, 127);
  EXPECT_THAT(missing.err, HasSubstr("no-such-command-here"));
}

TEST_P(ExecTest, KeepsStdoutAndStderrApart) {
  auto result = exec({"sh", "-c", "echo to-out; echo to-err >&2; echo more-out"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "to-out\nmore-out\n");
  EXPECT_EQ(result.err, "to-err\n");
}

TEST_P(ExecTest, TenMebibytesOfOutputArriveIntact) {
  auto result = exec({"sh", "-c", "head -c 10485760 /dev/urandom > /tmp/ten; sha256sum /tmp/ten >&2; cat /tmp/ten"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out.size(), 10485760u);
  EXPECT_EQ(result.err.substr(0, 64), sha256_hex(result.out));
}

TEST_P(ExecTest, PipesStdinThrough) {
  write_random(local_.path() / "input", 1 << 20, 7);
  auto result = host_shell("\"$KILN\" exec -i \"$NAME\" -- sha256sum < " + (local_.path() / "input").string());
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out.substr(0, 64), file_sha256(local_.path() / "input"));
}

TEST_P(ExecTest, ATtyCommandRunsOnAPty) {
  // script(1) gives kiln a terminal of its own, as a user's shell would.
  auto result = host_shell("script -qec '\"$KILN\" exec -t \"$NAME\" -- tty' /dev/null");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("/dev/pts/"));
  EXPECT_THAT(result.out, Not(HasSubstr("\r\r\n"))) << "the local terminal rewrote the guest pty's line ends";
  auto plain = exec({"tty"});
  EXPECT_EQ(plain.exit_code, 1) << "without -t there is no terminal: " << plain.out;
}

TEST_P(ExecTest, UserEnvAndWorkdirApply) {
  auto result = exec({"sh", "-c", "echo $(id -un) $A $(pwd)"}, {"--user", "nobody", "--env", "A=1", "--workdir", "/tmp"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "nobody 1 /tmp\n");
}

TEST_P(ExecTest, ATimeoutKillsTheCommandsProcessGroup) {
  auto start = Clock::now();
  auto result = exec({"sh", "-c", "sleep 300 & sleep 301"}, {"--timeout", "2"});
  EXPECT_EQ(result.exit_code, 124) << result.err;
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(30));
  auto left = exec({"sh", "-c", "ps -eo args | grep -c '^sleep 30[01]$' || true"});
  EXPECT_EQ(left.out, "0\n") << "the timeout left the group's processes running";
}

TEST_P(ExecTest, SeveralExecsRunAtOnce) {
  auto start = Clock::now();
  std::vector<std::future<ProcessResult>> runs;
  for (int i = 0; i < 3; ++i)
    runs.push_back(std::async(std::launch::async, [this, i] {
      return exec({"sh", "-c", "sleep 3; echo session-" + std::to_string(i)});
    }));
  for (int i = 0; i < 3; ++i) {
    ProcessResult result = runs[i].get();
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_EQ(result.out, "session-" + std::to_string(i) + "\n");
  }
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(8)) << "the sessions ran one after another";
}

TEST_P(ExecTest, CpRoundTripsAHundredMebibyteFileAndItsMode) {
  fs::path original = local_.path() / "big";
  write_random(original, 100u << 20, 11);
  ::chmod(original.c_str(), 0640);
  auto started = Clock::now();
  auto in = kiln({"cp", original.string(), name() + ":/root/big"});
  ASSERT_EQ(in.exit_code, 0) << in.err;
  // UML's serial line carries about a megabyte a second into the guest;
  // the copy goes by hostfs instead (2 s here).
  if (GetParam() == "uml")
    EXPECT_LT(Clock::now() - started, std::chrono::seconds(60)) << "the copy took the serial line";
  expect_no_copy_staging_left();
  EXPECT_EQ(exec({"stat", "-c", "%a %s", "/root/big"}).out, "640 104857600\n");
  auto out = kiln({"cp", name() + ":/root/big", (local_.path() / "back").string()});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(file_sha256(local_.path() / "back"), file_sha256(original));
  EXPECT_EQ(mode_of(local_.path() / "back"), 0640u);
  exec({"rm", "-f", "/root/big"});
}

TEST_P(ExecTest, CpCopiesADirectoryTreeBothWaysWithModes) {
  fs::path tree = local_.path() / "tree";
  testing::write_text(tree / "run.sh", "#!/bin/sh\necho ran\n");
  testing::write_text(tree / "sub/secret", "s");
  testing::write_text(tree / "sub/deeper/plain", "p");
  ::chmod((tree / "run.sh").c_str(), 0755);
  ::chmod((tree / "sub/secret").c_str(), 0600);
  ::chmod((tree / "sub").c_str(), 0700);
  exec({"rm", "-rf", "/root/tree", "/root/copied"});
  EXPECT_NE(kiln({"cp", tree.string(), name() + ":/root/"}).exit_code, 0) << "a directory needs -r";
  auto in = kiln({"cp", "-r", tree.string(), name() + ":/root/"});
  ASSERT_EQ(in.exit_code, 0) << in.err;
  EXPECT_EQ(exec({"/root/tree/run.sh"}).out, "ran\n");
  EXPECT_EQ(exec({"stat", "-c", "%a", "/root/tree/sub", "/root/tree/sub/secret"}).out, "700\n600\n");
  auto out = kiln({"cp", "-r", name() + ":/root/tree", (local_.path() / "copied").string()});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(testing::read_text(local_.path() / "copied/sub/deeper/plain"), "p");
  EXPECT_EQ(mode_of(local_.path() / "copied/run.sh"), 0755u);
  EXPECT_EQ(mode_of(local_.path() / "copied/sub/secret"), 0600u);
  EXPECT_EQ(mode_of(local_.path() / "copied/sub"), 0700u);
}

TEST_P(ExecTest, ACopyThatFailsLeavesNothingUnderTheFinalName) {
  auto missing = kiln({"cp", name() + ":/no/such/file", (local_.path() / "never").string()});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_THAT(missing.err, HasSubstr("/no/such/file"));
  EXPECT_FALSE(fs::exists(local_.path() / "never"));
  EXPECT_EQ(testing::list_tree(local_.path()), std::vector<std::string>{}) << "a temporary file was left behind";
  testing::write_text(local_.path() / "small", "x");
  auto unwritable = kiln({"cp", (local_.path() / "small").string(), name() + ":/proc/small"});
  EXPECT_NE(unwritable.exit_code, 0);
  expect_no_copy_staging_left();
}

// A copy into a UML guest that was killed (SIGKILL) left its staging in
// the instance's disk directory: the next copy removes it.
TEST_P(ExecTest, WhatAKilledCopyStagedGoesWithTheNextCopy) {
  if (GetParam() != "uml") GTEST_SKIP() << "only copies into UML guests are staged";
  fs::path abandoned = kExecDir / "state/instances" / name() / ".cp-inbox-4194303.1-AbCdEf";
  testing::write_text(abandoned / "data", "left by a copy that was killed");
  testing::write_text(local_.path() / "small", "x");
  auto copy = kiln({"cp", (local_.path() / "small").string(), name() + ":/root/small"});
  ASSERT_EQ(copy.exit_code, 0) << copy.err;
  EXPECT_FALSE(fs::exists(abandoned));
  expect_no_copy_staging_left();
}

TEST_P(ExecTest, SshRefusesAnInstanceWithoutAForwardedPort) {
  auto result = kiln({"ssh", name(), "--", "true"});
  EXPECT_EQ(result.exit_code, 255);
  EXPECT_THAT(result.err, HasSubstr("--ssh-port"));
}

TEST_P(ExecTest, AFullGuestDiskFailsTheCopyAndLeavesNothingBehind) {
  ASSERT_EQ(exec({"sh", "-c", "mkdir -p /mnt/small && (mountpoint -q /mnt/small || mount -t tmpfs -o size=1m tmpfs /mnt/small)"}).exit_code, 0);
  write_random(local_.path() / "two", 2 << 20, 5);
  auto copy = kiln({"cp", (local_.path() / "two").string(), name() + ":/mnt/small/two"});
  EXPECT_NE(copy.exit_code, 0);
  EXPECT_THAT(copy.err, HasSubstr("No space left"));
  EXPECT_EQ(exec({"ls", "-A", "/mnt/small"}).out, "") << "a half-written file was left in the guest";
  expect_no_copy_staging_left();
  exec({"umount", "/mnt/small"});
}

// Other instances, of either backend, and qemu's tools open the same baked
// image while this one runs.
TEST_P(ExecTest, TheImageStaysOpenToOthersWhileTheInstanceRuns) {
  auto read = testing::run_program(
      {"qemu-io", "-r", "-f", "raw", "-c", "read 0 512", (kImage / "disk.raw").string()});
  EXPECT_EQ(read.exit_code, 0) << read.out << read.err;
}

// UML's kernel is a host process with hostfs built in: root in the guest
// may mount it, and must find nothing of the host's there to read or write.
TEST_P(ExecTest, AUmlGuestReachesNoHostFileThroughHostfs) {
  if (GetParam() != "uml") GTEST_SKIP() << "only UML has hostfs";
  testing::write_text(local_.path() / "host-secret", "not for guests\n");
  std::string script = "mkdir -p /mnt/host && (mountpoint -q /mnt/host || mount -t hostfs none /mnt/host); "
                       "cat /mnt/host" + (local_.path() / "host-secret").string() + "; "
                       "echo planted > /mnt/host" + (local_.path() / "planted").string() + "; "
                       "chmod 666 /mnt/host" + (local_.path() / "host-secret").string();
  ::chmod((local_.path() / "host-secret").c_str(), 0600);
  auto result = exec({"sh", "-c", script});
  EXPECT_THAT(result.out, Not(HasSubstr("not for guests")));
  EXPECT_THAT(result.err, HasSubstr("Permission denied"));
  EXPECT_FALSE(fs::exists(local_.path() / "planted")) << "the guest wrote a file on the host";
  EXPECT_EQ(mode_of(local_.path() / "host-secret"), 0600u) << "the guest changed a host file's mode";
  exec({"umount", "/mnt/host"});
}

INSTANTIATE_TEST_SUITE_P(Backends, ExecTest, ::testing::Values("uml", "qemu"),
                         [](const auto& info) { return info.param; });

// Faults, kiln ssh and kiln run: each test makes its own instance.
class OwnInstanceTest : public ::testing::Test {
 protected:
  std::vector<std::string> env() const {
    return {"KILN_RUNTIME_DIR=" + (dir_.path() / "run").string(), "KILN_STATE_DIR=" + (dir_.path() / "state").string()};
  }
  ProcessResult kiln(std::vector<std::string> args) const { return testing::run_kiln(args, env()); }
  void TearDown() override {
    for (const std::string& name : names_) kiln({"destroy", name});
  }

  // Nothing of instance `name` is left: not listed, no runtime or state
  // directory, no process.
  void expect_nothing_left(const std::string& name) const {
    auto list = kiln({"list", "--json"});
    EXPECT_EQ(nlohmann::json::parse(list.out, nullptr, false), nlohmann::json::array()) << list.out << list.err;
    EXPECT_FALSE(fs::exists(dir_.path() / "run" / name));
    EXPECT_FALSE(fs::exists(dir_.path() / "state/instances" / name));
    EXPECT_EQ(testing::processes_naming({(dir_.path() / "run" / name).string() + "/"}), std::vector<std::string>{});
  }

  testing::ScratchDir dir_;
  testing::ScratchDir local_;
  std::vector<std::string> names_;
};

TEST_F(OwnInstanceTest, AnUnknownInstanceIsNamed) {
  auto result = kiln({"exec", "nobody-here", "--", "true"});
  EXPECT_EQ(result.exit_code, 255);
  EXPECT_THAT(result.err, HasSubstr("nobody-here"));
}

TEST_F(OwnInstanceTest, APausedGuestIsRefusedAndOneThatDiesMidCommandEndsTheExec) {
  names_.push_back("dies");
  auto boot = kiln({"boot", kImage.string(), "--name", "dies", "--backend", "uml", "--net", "none", "--detach",
                    "--wait-ready=240"});
  ASSERT_EQ(boot.exit_code, 0) << boot.err;
  ASSERT_EQ(kiln({"pause", "dies"}).exit_code, 0);
  auto paused = kiln({"exec", "dies", "--", "true"});
  EXPECT_EQ(paused.exit_code, 255);
  EXPECT_THAT(paused.err, HasSubstr("paused"));
  ASSERT_EQ(kiln({"unpause", "dies"}).exit_code, 0);
  auto running = std::async(std::launch::async, [this] { return kiln({"exec", "dies", "--", "sleep", "600"}); });
  std::this_thread::sleep_for(std::chrono::seconds(2));
  auto listed = nlohmann::json::parse(kiln({"list", "--json"}).out, nullptr, false);
  ASSERT_TRUE(listed.is_array() && listed.size() == 1) << listed;
  fs::path memory = fs::path("/dev/shm") / ("kiln-uml-" + listed[0]["id"].get<std::string>());
  EXPECT_TRUE(fs::is_directory(memory)) << "UML's memory directory is not where this test looks";
  auto start = Clock::now();
  EXPECT_EQ(kiln({"destroy", "dies"}).exit_code, 0);
  EXPECT_FALSE(fs::exists(memory)) << "destroy left UML's memory directory behind";
  ASSERT_EQ(running.wait_for(std::chrono::seconds(30)), std::future_status::ready) << "exec hung on a dead guest";
  ProcessResult result = running.get();
  EXPECT_EQ(result.exit_code, 255);
  EXPECT_THAT(result.err, HasSubstr("dies"));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(30));
}

TEST_F(OwnInstanceTest, SshUsesTheInstancesHostKeysAndLeavesTheUsersKnownHostsAlone) {
  fs::path key = local_.path() / "id";
  ASSERT_EQ(testing::run_program({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key.string()}).exit_code, 0);
  names_.push_back("sshable");
  auto boot = kiln({"boot", kImage.string(), "--name", "sshable", "--ssh-port", std::to_string(unused_tcp_port()),
                    "--ssh-key", key.string() + ".pub", "--detach", "--wait-ready=240"});
  ASSERT_EQ(boot.exit_code, 0) << boot.err;
  std::vector<std::string> env = this->env();
  env.push_back("HOME=" + local_.path().string());
  // sshd under TCG on a loaded host can take a while over its first answer.
  auto result = testing::run_program({testing::kiln_binary(), "ssh", "sshable", "--", "-i", key.string(), "-o",
                                      "BatchMode=yes", "-o", "ConnectTimeout=90", "uname", "-n"},
                                     env);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "sshable\n");
  EXPECT_FALSE(fs::exists(local_.path() / ".ssh/known_hosts")) << "kiln ssh wrote to the user's known_hosts";
  auto status = testing::run_program({testing::kiln_binary(), "ssh", "sshable", "--", "-i", key.string(), "-o",
                                      "BatchMode=yes", "exit 9"},
                                     env);
  EXPECT_EQ(status.exit_code, 9) << "the command's exit code is ssh's, and ssh's is kiln's";
}

TEST_F(OwnInstanceTest, RunReturnsTheCommandsCodeCollectsAndLeavesNothing) {
  testing::write_text(local_.path() / "in/data", "payload\n");
  auto result = kiln({"run", kImage.string(), "--name", "oneshot", "--backend", "uml", "--net", "none", "--json", "--copy",
                      (local_.path() / "in").string() + ":/root/in", "--collect",
                      "/root/out:" + (local_.path() / "out").string(), "--", "sh", "-c",
                      "cp /root/in/data /root/out; echo done; exit 7"});
  EXPECT_EQ(result.exit_code, 7) << result.err;
  EXPECT_EQ(result.out, "done\n");
  EXPECT_EQ(testing::read_text(local_.path() / "out"), "payload\n");
  auto report = nlohmann::json::parse(result.err.substr(result.err.rfind('{')), nullptr, false);
  ASSERT_TRUE(report.is_object()) << result.err;
  EXPECT_EQ(report["exit_code"], 7);
  EXPECT_EQ(report["backend"], "uml");
  EXPECT_GT(report["ready_seconds"].get<double>(), 0.0);
  expect_nothing_left("oneshot");
}

TEST_F(OwnInstanceTest, CtrlCDuringRunRemovesTheInstance) {
  std::string out_path = (local_.path() / "run.out").string();
  pid_t pid = ::fork();
  if (pid == 0) {
    for (const std::string& entry : env()) ::putenv(::strdup(entry.c_str()));
    ::freopen(out_path.c_str(), "w", stderr);
    ::execl(testing::kiln_binary().c_str(), "kiln", "run", kImage.c_str(), "--name", "interrupted", "--backend", "uml",
            "--net", "none", "--", "sh", "-c", "touch /root/started; sleep 600", nullptr);
    ::_exit(127);
  }
  // Interrupted once the command runs in the guest.
  auto started = testing::wait_for(
      [&] { return kiln({"exec", "interrupted", "--", "test", "-e", "/root/started"}).exit_code == 0; },
      std::chrono::seconds(240), [&] { return testing::read_text(out_path); });
  names_.push_back("interrupted");
  ASSERT_TRUE(started);
  ::kill(pid, SIGINT);
  int status = 0;
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (::waitpid(pid, &status, WNOHANG) == 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(WIFEXITED(status)) << "kiln run did not end after Ctrl-C:\n" << testing::read_text(out_path);
  EXPECT_NE(WEXITSTATUS(status), 0);
  expect_nothing_left("interrupted");
}

}  // namespace
}  // namespace kiln
