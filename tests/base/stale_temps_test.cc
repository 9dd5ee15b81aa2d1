// Tagged temporaries: a later run removes those whose process is gone, and
// nothing else.
#include "base/stale_temps.h"

#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

// The PID of a process that has exited and been reaped.
pid_t dead_pid() {
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  return child;
}

TEST(StaleTemps, ATaggedDirectoryNamesThisProcess) {
  testing::ScratchDir dir;
  auto made = create_tagged_temp_dir(dir.path(), "publish");
  ASSERT_TRUE(made) << made.error().to_string();
  std::string name = made->path().filename().string();
  EXPECT_THAT(name, ::testing::StartsWith(".publish-" + process_tag() + "-"));
  EXPECT_THAT(process_tag(), ::testing::MatchesRegex("[0-9]+\\.[0-9]+"));
  EXPECT_NE(process_tag(), std::to_string(::getpid()) + ".0") << "the start time is read from /proc";
}

TEST(StaleTemps, OnlyThoseOfGoneProcessesAreRemoved) {
  testing::ScratchDir dir;
  std::string mine = std::to_string(::getpid());
  std::string start = process_tag().substr(mine.size() + 1);
  std::vector<std::string> kept = {
      ".publish-" + process_tag() + "-aaaaaa",             // this live process
      ".publish-XXXXXX",                                    // untagged: not provably kiln's
      ".publish-" + mine + "." + start + "-abc",           // not mkdtemp's six characters
      ".feed-" + std::to_string(dead_pid()) + ".1-aaaaaa",  // another prefix
      "publish-" + std::to_string(dead_pid()) + ".1-aaaaaa",
  };
  std::vector<std::string> stale = {
      ".publish-" + std::to_string(dead_pid()) + ".1-aaaaaa",
      // A live PID with another start time: the PID was reused.
      ".publish-" + mine + "." + start + "9-bbbbbb",
  };
  for (const auto& name : kept) std::filesystem::create_directories(dir / name / "inside");
  for (const auto& name : stale) std::filesystem::create_directories(dir / name / "inside");
  testing::write_text(dir / ".publish-1.1-cccccc", "a file, not a directory");
  kept.push_back(".publish-1.1-cccccc");

  EXPECT_EQ(remove_stale_temp_dirs(dir.path(), "publish"), stale.size());
  for (const auto& name : stale) EXPECT_FALSE(std::filesystem::exists(dir / name)) << name;
  for (const auto& name : kept) EXPECT_TRUE(std::filesystem::exists(dir / name)) << name;
  EXPECT_EQ(remove_stale_temp_dirs(dir / "missing", "publish"), 0u);
}

}  // namespace
}  // namespace kiln
