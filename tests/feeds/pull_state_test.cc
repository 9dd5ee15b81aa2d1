// PullState: what pull remembers only ever rises, per feed URI and key.
#include "feeds/pull_state.h"

#include <cstdlib>
#include <optional>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

TEST(PullState, RecordsOnlyRiseAndArePerUriAndKey) {
  testing::ScratchDir dir;
  auto state = dir / "kiln" / "pulled-feeds.json";
  auto empty = load_accepted(state, "https://a/vmcast.rss", "AAAA");
  ASSERT_TRUE(empty) << empty.error().to_string();
  EXPECT_EQ(empty->date, 0);
  EXPECT_TRUE(empty->items.empty());

  ASSERT_TRUE(record_accepted(state, "https://a/vmcast.rss", "AAAA", 200, "web", "2.0"));
  ASSERT_TRUE(record_accepted(state, "https://a/vmcast.rss", "AAAA", 100, "web", "1.10"));
  ASSERT_TRUE(record_accepted(state, "https://a/vmcast.rss", "AAAA", 150, "db", "1.0"));
  ASSERT_TRUE(record_accepted(state, "https://a/vmcast.rss", "BBBB", 50, "web", "0.1"));
  auto a = load_accepted(state, "https://a/vmcast.rss", "AAAA");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->date, 200);
  EXPECT_EQ(a->items, (std::map<std::string, std::string>{{"db", "1.0"}, {"web", "2.0"}}));
  auto b = load_accepted(state, "https://a/vmcast.rss", "BBBB");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->date, 50);
  EXPECT_EQ(b->items.at("web"), "0.1");
  EXPECT_TRUE(load_accepted(state, "https://other/vmcast.rss", "AAAA")->items.empty());
  ASSERT_TRUE(record_accepted(state, "https://a/vmcast.rss", "AAAA", 300, "web", "2.0.1"));
  EXPECT_EQ(load_accepted(state, "https://a/vmcast.rss", "AAAA")->items.at("web"), "2.0.1");
}

TEST(PullState, ADamagedFileIsBadInputAndIsNotOverwritten) {
  testing::ScratchDir dir;
  auto state = dir / "pulled-feeds.json";
  for (const char* text : {"not json", "[]", "{\"version\": 2, \"feeds\": []}", "{\"version\": 1, \"feeds\": [{}]}"}) {
    testing::write_text(state, text);
    auto loaded = load_accepted(state, "u", "k");
    ASSERT_FALSE(loaded) << text;
    EXPECT_EQ(loaded.error().kind, ErrorKind::kBadInput);
    EXPECT_THAT(loaded.error().message, ::testing::HasSubstr(state.string() + ": not a state file kiln can read"));
    EXPECT_FALSE(record_accepted(state, "u", "k", 1, "n", "1"));
    EXPECT_EQ(testing::read_text(state), text);
  }
}

// Sets environment variables for a test and puts the old values back.
class ScopedEnv {
 public:
  void set(const char* name, const char* value) {
    const char* old = std::getenv(name);
    saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
    value ? ::setenv(name, value, 1) : ::unsetenv(name);
  }
  ~ScopedEnv() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it)
      it->second ? ::setenv(it->first.c_str(), it->second->c_str(), 1) : ::unsetenv(it->first.c_str());
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(PullState, TheDefaultPlaceFollowsXdgStateHome) {
  ScopedEnv env;
  env.set("HOME", "/home/u");
  env.set("XDG_STATE_HOME", "/var/tmp/state");
  EXPECT_EQ(default_pull_state_path(), "/var/tmp/state/kiln/pulled-feeds.json");
  env.set("XDG_STATE_HOME", "relative");  // ignored, as the spec says
  EXPECT_EQ(default_pull_state_path(), "/home/u/.local/state/kiln/pulled-feeds.json");
  env.set("XDG_STATE_HOME", nullptr);
  EXPECT_EQ(default_pull_state_path(), "/home/u/.local/state/kiln/pulled-feeds.json");
}

}  // namespace
}  // namespace kiln
