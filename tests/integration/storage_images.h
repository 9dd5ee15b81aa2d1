// The images of the shipped storage recipes (recipes/debian-12-NAME.toml:
// "luks", "lvm"), baked into the integration directory on first use and
// reused while they are newer than kiln and their recipe. Their bootstrap
// is the default recipe's, cached by the bake_default_image fixture. Tests
// of several files use them and ctest runs two at once: a lock file per
// image keeps two of them from baking it into one directory together.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln::testing {

inline bool newer_than_inputs(const std::filesystem::path& output, const std::filesystem::path& recipe) {
  std::error_code ec;
  auto made = std::filesystem::last_write_time(output / "manifest.json", ec);
  if (ec) return false;
  for (const std::filesystem::path& input : {std::filesystem::path(kiln_binary()), recipe})
    if (std::filesystem::last_write_time(input, ec) > made) return false;
  return true;
}

inline std::filesystem::path baked_storage_image(const std::string& name) {
  const std::filesystem::path dir = KILN_INTEGRATION_DIR;
  auto recipe = source_path("recipes/debian-12-" + name + ".toml");
  auto output = dir / name;
  std::filesystem::create_directories(dir);
  int lock = ::open((dir / (name + ".lock")).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  EXPECT_GE(lock, 0) << "cannot open the lock of " << output;
  if (lock >= 0) ::flock(lock, LOCK_EX);
  if (!newer_than_inputs(output, recipe)) {
    auto result = run_kiln({"bake", recipe.string(), "-o", output.string(), "--cache", (dir / "cache").string()},
                           {"SOURCE_DATE_EPOCH=1700000000"});
    EXPECT_EQ(result.exit_code, 0) << result.err;
  }
  if (lock >= 0) ::close(lock);
  return output;
}

}  // namespace kiln::testing
