// kiln's own live migration between two kiln hosts on one machine: two
// state directories, the second reached over ssh on loopback (an sshd of
// the test's own gives its sessions the second host's KILN_STATE_DIR and
// KILN_RUNTIME_DIR, as another machine with kiln installed would have).
// A process in the guest counts across the move and is the same process
// afterwards; the source keeps nothing; a second instance of the same
// image sends no image data again. Faults: a host key that does not match,
// a target without the space or without qemu, and a target whose qemu dies
// half-way: the guest runs on where it was and nothing of it is left on the
// target.
#include <signal.h>
#include <unistd.h>

#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/loopback_sshd.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ProcessResult;

const fs::path kImage = fs::path(KILN_INTEGRATION_DIR) / "default";

// One kiln host: its state and runtime directories.
struct KilnHost {
  fs::path dir;
  std::vector<std::string> env() const {
    return {"KILN_STATE_DIR=" + (dir / "state").string(), "KILN_RUNTIME_DIR=" + (dir / "run").string()};
  }
  ProcessResult kiln(const std::vector<std::string>& args) const { return testing::run_kiln(args, env()); }
  ProcessResult exec(const std::string& name, const std::string& script) const {
    return kiln({"exec", name, "--", "sh", "-c", script});
  }
  std::vector<std::string> instances() const { return testing::list_tree(dir / "state" / "instances"); }
  std::vector<std::string> processes(const std::string& name) const {
    return testing::processes_naming({(dir / "run" / name).string() + "/"});
  }
};

// The counter's value and its process id, as "VALUE PID".
std::pair<long, std::string> counter(const KilnHost& host, const std::string& name) {
  ProcessResult read = host.exec(name, "echo $(cat /run/counter) $(cat /run/counter.pid)");
  EXPECT_EQ(read.exit_code, 0) << read.err << "console:\n"
                               << testing::tail(host.kiln({"console", "--log", name}).out, 2500)
                               << "supervisor:\n" << testing::read_text(host.dir / "run" / name / "supervisor.log");
  long value = 0;
  char pid[32] = "";
  std::sscanf(read.out.c_str(), "%ld %31s", &value, pid);
  return {value, pid};
}

TEST(MigrationTest, ALiveGuestMovesToAnotherKilnHostWithItsProcessesAndLeavesNothingBehind) {
  if (::geteuid() != 0) GTEST_SKIP() << "sshd on loopback for a second host needs root";
  testing::ScratchDir dir;
  KilnHost source{dir / "host1"}, target{dir / "host2"};
  std::string path = fs::path(testing::kiln_binary()).parent_path().string() + ":/usr/sbin:/usr/bin:/sbin:/bin";
  std::vector<std::string> session_env = target.env();
  session_env.push_back("PATH=" + path);
  testing::LoopbackSshd sshd(session_env);
  ASSERT_TRUE(sshd.up());

  for (const char* name : {"web", "db"}) {
    ProcessResult booted = source.kiln({"boot", kImage.string(), "--name", name, "--backend", "qemu", "--detach",
                                        "--wait-ready=600"});
    ASSERT_EQ(booted.exit_code, 0) << booted.err;
  }
  ProcessResult started = source.exec(
      "web", "nohup sh -c 'i=0; while :; do i=$((i+1)); echo $i > /run/counter; sleep 0.1; done' "
             ">/dev/null 2>&1 & echo $! > /run/counter.pid; echo written-on-host1 > /var/tmp/mark; sync");
  ASSERT_EQ(started.exit_code, 0) << started.err;

  // A host whose key is not the one known: refused before anything moves.
  ASSERT_EQ(testing::run_program({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", (dir / "other").string()})
                .exit_code,
            0);
  testing::write_text(dir / "wrong_known_hosts",
                      fmt::format("[127.0.0.1]:{} {}", sshd.port(), testing::read_text(dir / "other.pub")));
  std::string wrong_uri = fmt::format("ssh://root@127.0.0.1:{}/?keyfile={}&known_hosts={}", sshd.port(),
                                      sshd.client_key().string(), (dir / "wrong_known_hosts").string());
  ProcessResult refused = source.kiln({"migrate", "web", "--live", "--to", wrong_uri});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("Host key verification failed"));
  EXPECT_TRUE(target.instances().empty());
  EXPECT_TRUE(testing::list_tree(target.dir / "state/images").empty());

  // Targets that cannot take it: refused before anything moves there.
  {
    fs::path small = dir / "small";
    fs::create_directories(small);
    ProcessResult mounted = testing::run_program({"mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", small.string()});
    ASSERT_EQ(mounted.exit_code, 0) << mounted.err;
    struct Unmount {
      fs::path path;
      ~Unmount() { testing::run_program({"umount", "-l", path.string()}); }
    } unmount{small};
    KilnHost full{small};
    std::vector<std::string> env = full.env();
    env.push_back("PATH=" + path);
    testing::LoopbackSshd full_sshd(env);
    ASSERT_TRUE(full_sshd.up());
    ProcessResult no_space = source.kiln({"migrate", "web", "--live", "--to", full_sshd.kiln_uri()});
    EXPECT_NE(no_space.exit_code, 0);
    EXPECT_THAT(no_space.err, HasSubstr("free, and web needs"));
    EXPECT_TRUE(testing::list_tree(small / "state" / "images").empty());
    EXPECT_TRUE(full.instances().empty());
  }
  {
    // Only kiln on the path: the target has no qemu.
    std::vector<std::string> env = target.env();
    env.push_back("PATH=" + fs::path(testing::kiln_binary()).parent_path().string());
    testing::LoopbackSshd bare_sshd(env);
    ASSERT_TRUE(bare_sshd.up());
    ProcessResult no_qemu = source.kiln({"migrate", "web", "--live", "--to", bare_sshd.kiln_uri()});
    EXPECT_NE(no_qemu.exit_code, 0);
    EXPECT_THAT(no_qemu.err, HasSubstr("qemu-system-x86_64"));
    EXPECT_TRUE(target.instances().empty());
  }

  // The target's qemu dies while the guest is on its way: the guest runs
  // on here, and nothing of it stays there, not even a console log.
  ProcessResult broken;
  std::thread migrating([&] { broken = source.kiln({"migrate", "web", "--live", "--to", sshd.kiln_uri()}); });
  // Once qemu there listens, the stream follows at once and takes seconds
  // under TCG: half a second into it is half-way.
  bool receiving = testing::wait_for(
      [&] { return testing::read_text(target.dir / "run/web/instance.json").find("receiving a migration") != std::string::npos; },
      std::chrono::seconds(120), [] { return std::string("no instance receiving on the target"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  bool killed = false;
  for (const std::string& process : target.processes("web"))
    if (process.find("qemu-system") != std::string::npos) killed = ::kill(std::stoi(process), SIGKILL) == 0;
  migrating.join();
  ASSERT_TRUE(receiving && killed) << "the target's qemu never ran; migrate said: " << broken.err;
  EXPECT_NE(broken.exit_code, 0);
  EXPECT_THAT(broken.err, HasSubstr("web"));
  auto before = counter(source, "web");
  EXPECT_GT(before.first, 0);
  EXPECT_TRUE(testing::wait_for([&] { return target.instances().empty() && !fs::exists(target.dir / "run/web"); },
                                std::chrono::seconds(60),
                                [&] { return fmt::format("{}", fmt::join(target.instances(), " ")); }));
  EXPECT_FALSE(fs::exists(target.dir / "state/logs/web.console.log"));
  // What did arrive whole stays, kept by content, for the next attempt:
  // the image's disk, kernel and initrd, and nothing else.
  EXPECT_EQ(testing::list_tree(target.dir / "state/images").size(), 3u);

  ProcessResult moved = source.kiln({"migrate", "web", "--live", "--json", "--to", sshd.kiln_uri()});
  ASSERT_EQ(moved.exit_code, 0) << moved.err;
  nlohmann::json outcome = testing::last_json_line(moved.out);
  ASSERT_TRUE(outcome.is_object()) << moved.out;
  EXPECT_GT(outcome.value("downtime_ms", 0.0), 0.0);
  EXPECT_TRUE(outcome["sent_files"].empty()) << "the failed attempt sent the image already";
  std::cout << "kiln migrate (TCG, 1 GiB guest, loopback ssh): downtime " << outcome["downtime_ms"] << " ms, total "
            << outcome["total_ms"] << " ms\n";

  // Here: nothing of web. There: the same process, counting on.
  EXPECT_THAT(source.kiln({"list"}).out, ::testing::Not(HasSubstr("web ")));
  EXPECT_TRUE(source.processes("web").empty());
  EXPECT_FALSE(fs::exists(source.dir / "state/instances/web"));
  EXPECT_FALSE(fs::exists(source.dir / "state/logs/web.console.log"));
  auto after = counter(target, "web");
  EXPECT_GT(after.first, before.first);
  EXPECT_EQ(after.second, before.second) << "the counter is another process: the guest was booted again";
  EXPECT_EQ(target.exec("web", "cat /var/tmp/mark").out, "written-on-host1\n");

  // Another instance of the image: no image data goes again.
  ProcessResult second = source.kiln({"migrate", "db", "--json", "--to", sshd.kiln_uri()});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_TRUE(testing::last_json_line(second.out)["sent_files"].empty()) << second.out;
  EXPECT_EQ(target.exec("db", "hostname").out, "db\n");

  for (const char* name : {"web", "db"}) EXPECT_EQ(target.kiln({"destroy", name}).exit_code, 0);
  EXPECT_TRUE(target.processes("web").empty());
}

}  // namespace
}  // namespace kiln
