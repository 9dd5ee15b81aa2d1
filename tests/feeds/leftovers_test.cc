// Nothing is orphaned: what a `kiln pull` or `kiln publish` killed outright
// (SIGKILL: no destructor runs) leaves behind is removed by the next run of
// the same command, and only what provably belongs to a dead kiln process.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/stale_temps.h"
#include "base/subprocess.h"
#include "tests/feeds/published_site.h"
#include "tests/feeds/test_http_server.h"

namespace kiln {
namespace {

using ::testing::IsEmpty;
using testing::write_text;

class LeftoversTest : public testing::PublishedSiteTest {
 protected:
  // Names in `dir` (not recursive) that start with `prefix`.
  static std::vector<std::string> named(const std::filesystem::path& dir, const std::string& prefix) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
      if (entry.path().filename().string().starts_with(prefix)) out.push_back(entry.path().filename().string());
    return out;
  }
  // A leftover that looks like kiln's but whose process is gone.
  static std::string dead_leftover(const std::string& prefix) {
    pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    ::waitpid(child, nullptr, 0);
    return "." + prefix + "-" + std::to_string(child) + ".1-Zq3xYw";
  }
  // Starts kiln in the background and SIGKILLs it once `ready` holds.
  void kill_midway(const std::vector<std::string>& args, const std::vector<std::string>& env,
                   const std::function<bool()>& ready) {
    Command command;
    command.argv = {testing::kiln_binary()};
    command.argv.insert(command.argv.end(), args.begin(), args.end());
    command.env = env;
    auto child = spawn(command);
    ASSERT_TRUE(child) << child.error().to_string();
    ::close(child->in);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!ready() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    bool was_ready = ready();
    ::kill(child->pid, SIGKILL);
    int status = 0;
    ::waitpid(child->pid, &status, 0);
    ::close(child->out);
    ASSERT_TRUE(was_ready) << "kiln never reached the point to be killed at";
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "kiln ended before it was killed";
  }
};

TEST_F(LeftoversTest, WhatAKilledPullLeftIsRemovedByTheNextPull) {
  testing::TestHttpServer server(dir_.path(), dir_ / "requests.log");
  publish(bake(), server.url("site/"));
  // The feed trickles: the pull waits in its fetch, with its GnuPG home and
  // the feed's scratch directory made, and is killed there.
  write_text(site() / "vmcast.rss.trickle", "");
  auto tmp = dir_ / "tmp";
  std::filesystem::create_directories(tmp);
  auto env = pull_env();
  env.push_back("TMPDIR=" + tmp.string());
  std::vector<std::string> args = {"pull", server.url("site/vmcast.rss"), "-o", out().string(), "--download-dir",
                                   (dir_ / "dl").string(), "--keyring", keyring().string()};
  kill_midway(args, env, [&] { return !named(dir_ / "dl", ".feed-").empty(); });
  EXPECT_EQ(named(dir_ / "dl", ".feed-").size(), 1u);
  EXPECT_EQ(named(tmp, ".kiln-gnupg-").size(), 1u);
  // And a staging directory as a pull killed while unpacking leaves it.
  std::string staging = dead_leftover("out.pull");
  std::filesystem::create_directories(out().parent_path() / staging / "disk.raw");
  std::string live = ".out.pull-" + process_tag() + "-Ab12Cd";  // a live pull's: not to be touched
  std::filesystem::create_directories(out().parent_path() / live);

  std::filesystem::remove(site() / "vmcast.rss.trickle");
  auto done = testing::run_kiln(args, env);
  ASSERT_EQ(done.exit_code, 0) << done.err;
  EXPECT_THAT(named(dir_ / "dl", ".feed-"), IsEmpty());
  EXPECT_THAT(named(tmp, ".kiln-gnupg-"), IsEmpty());
  EXPECT_THAT(named(out().parent_path(), ".out.pull-"), ::testing::ElementsAre(live));
}

TEST_F(LeftoversTest, WhatAKilledPublishLeftIsRemovedByTheNextPublish) {
  std::filesystem::create_directories(site());
  std::string stale = dead_leftover("publish");
  std::filesystem::create_directories(site() / stale / ".package-Xy12Zw");
  write_text(site() / stale / "fake-1.0.xvm", "half an archive");
  std::string live = ".publish-" + process_tag() + "-Ab12Cd";
  std::string foreign = ".publish-notkilns";
  for (const std::string& name : {live, foreign}) std::filesystem::create_directories(site() / name);

  publish(bake(), file_url());
  EXPECT_FALSE(std::filesystem::exists(site() / stale));
  EXPECT_TRUE(std::filesystem::exists(site() / live)) << "a running publish's directory was removed";
  EXPECT_TRUE(std::filesystem::exists(site() / foreign)) << "a directory kiln cannot tell is its own was removed";
}

}  // namespace
}  // namespace kiln
