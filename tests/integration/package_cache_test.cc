// The package cache for real (mmdebstrap from the Debian archive, a small
// minbase recipe with a private cache): the first bake keeps what it
// downloaded; a bake adding one package takes all of that from the cache and
// downloads that one package; a cached file that was changed is refused and
// replaced; the image is the same bytes with or without the cache; and
// `kiln cache prune` removes the files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <regex>

#include <fmt/format.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using testing::ProcessResult;
using testing::run_kiln;

constexpr const char* kRecipe = R"([image]
name = "small"
[bootstrap]
suite = "bookworm"
variant = "minbase"
[storage]
size = "1G"
layout = "plain"
[output]
formats = ["partitions"]
)";

// The count in the hook's note "took N .deb files" / "kept N .deb files".
int note_count(const std::string& output, const std::string& verb) {
  std::smatch match;
  if (!std::regex_search(output, match, std::regex(verb + " ([0-9]+) \\.deb files"))) return -1;
  return std::stoi(match[1]);
}

class PackageCacheBake {
 public:
  PackageCacheBake() { testing::write_text(dir_ / "small.toml", kRecipe); }

  ProcessResult bake(const std::string& out, const std::string& packages, bool cached = true) const {
    std::vector<std::string> args = {"bake", (dir_ / "small.toml").string(), "-o", (dir_ / out).string(),
                                     "--set", "bootstrap.packages=[" + packages + "]", "--json"};
    if (cached) {
      args.insert(args.end(), {"--cache", cache().string()});
    } else {
      args.push_back("--no-cache");
    }
    ProcessResult result = run_kiln(args, {"SOURCE_DATE_EPOCH=1700000000"});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return result;
  }
  std::vector<std::filesystem::path> cached_files() const {
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(cache() / "packages"))
      if (entry.path().extension() == ".deb") files.push_back(entry.path());
    return files;
  }
  std::filesystem::path cache() const { return dir_ / "cache"; }
  std::filesystem::path operator/(const std::string& name) const { return dir_ / name; }

 private:
  testing::ScratchDir dir_;
};

// One test, as each step builds on the cache the one before left: four
// small bakes of about 15 to 30 s each.
TEST(PackageCache, KeepsServesRefusesAndPrunesDownloadedPackages) {
  PackageCacheBake bakes;
  size_t kept = 0;
  {
    SCOPED_TRACE("the first bake keeps what it downloaded");
    ProcessResult first = bakes.bake("first", "");
    int count = note_count(first.out, "kept");
    EXPECT_GT(count, 50) << first.out;  // minbase is about ninety packages
    kept = static_cast<size_t>(std::max(count, 0));
    EXPECT_EQ(bakes.cached_files().size(), kept);
  }
  {
    SCOPED_TRACE("adding one package downloads one package");
    // hello depends on nothing minbase lacks.
    ProcessResult second = bakes.bake("second", "\"hello\"");
    EXPECT_EQ(note_count(second.out, "took"), static_cast<int>(kept)) << second.out;
    EXPECT_EQ(note_count(second.out, "kept"), 1) << second.out;
    EXPECT_EQ(bakes.cached_files().size(), kept + 1);
  }
  {
    SCOPED_TRACE("the image is the same bytes with or without the cache");
    bakes.bake("uncached", "\"hello\"", false);
    EXPECT_EQ(testing::run_program({"cmp", (bakes / "second/root.img").string(), (bakes / "uncached/root.img").string()})
                  .exit_code,
              0);
  }
  {
    SCOPED_TRACE("a changed cached file is refused, fetched again and kept whole");
    auto files = bakes.cached_files();
    ASSERT_FALSE(files.empty());
    const std::filesystem::path victim = files.front();
    std::string bytes = testing::read_text(victim);
    bytes[bytes.size() / 2] ^= 0x20;
    std::filesystem::remove(victim);
    testing::write_text(victim, bytes);
    ProcessResult third = bakes.bake("third", "\"hello\", \"less\"");
    EXPECT_THAT(third.out, HasSubstr("1 cached .deb files did not match the hash the index lists"));
    ASSERT_TRUE(std::filesystem::exists(victim));
    EXPECT_EQ(testing::run_program({"sha256sum", victim.string()}).out.substr(0, 64), victim.stem().string());
  }
  {
    SCOPED_TRACE("kiln cache list shows them and prune removes them");
    ProcessResult listed = run_kiln({"cache", "list", "--cache", bakes.cache().string(), "--json"});
    ASSERT_EQ(listed.exit_code, 0) << listed.err;
    bool has_packages = false;
    for (const auto& entry : nlohmann::json::parse(listed.out))
      if (entry["stage"] == "packages") has_packages = entry["size"].get<uint64_t>() > (10u << 20);
    EXPECT_TRUE(has_packages) << listed.out;
    ProcessResult pruned = run_kiln({"cache", "prune", "--all", "--cache", bakes.cache().string()});
    ASSERT_EQ(pruned.exit_code, 0) << pruned.err;
    EXPECT_THAT(pruned.out, HasSubstr(fmt::format("removed {} cached .deb files", kept + 2)));
    EXPECT_TRUE(bakes.cached_files().empty());
  }
}

}  // namespace
}  // namespace kiln
