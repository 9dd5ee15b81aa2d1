// Freshness: a signed feed that is out of date (a freeze) or older than one
// already accepted (a rollback) is refused as a verification failure, and
// what pull remembers lives in its state file, per feed and signing key.
#include <ctime>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "feeds/rfc822_date.h"
#include "feeds/vmcast_feed.h"
#include "tests/feeds/published_site.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::read_text;
using testing::write_text;

constexpr int kUntrusted = 5;
constexpr int kBadInput = 2;

class PullFreshnessTest : public testing::PublishedSiteTest {
 protected:
  VmcastChannel channel() {
    auto feed = parse_vmcast_feed(read_text(site() / "vmcast.rss"), "vmcast.rss");
    EXPECT_TRUE(feed) << feed.error().to_string();
    return feed ? feed->channel : VmcastChannel{};
  }
  static int64_t now() { return static_cast<int64_t>(std::time(nullptr)); }
  // Publishes `which` as if at `epoch` (the feed's dates).
  void publish_at(const std::string& which, int64_t epoch) {
    publish(bake(which), file_url(), {"--no-virt-builder"}, {"SOURCE_DATE_EPOCH=" + std::to_string(epoch)});
  }
  std::filesystem::path other_out() const { return dir_ / "elsewhere" / "out"; }
  std::filesystem::path state_file() const { return state_home() / "kiln" / "pulled-feeds.json"; }
};

TEST_F(PullFreshnessTest, PublishSignsAValidUntilThirtyDaysAheadByDefault) {
  publish(bake(), file_url());
  auto until = parse_rfc822_date(channel().valid_until);
  ASSERT_TRUE(until) << channel().valid_until;
  EXPECT_NEAR(static_cast<double>(*until - now()), 30 * 86400.0, 120);
  EXPECT_THAT(read_text(site() / "vmcast.rss"), HasSubstr("<kiln:valid-until>"));
  // Inside the signed text: changing it breaks the signature.
  std::string text = read_text(site() / "vmcast.rss");
  text.replace(text.find("<kiln:valid-until>") + 18, 3, "Sat");
  write_text(site() / "vmcast.rss", text);
  auto done = pull(feed_file());
  EXPECT_EQ(done.exit_code, kUntrusted) << done.err;
  EXPECT_THAT(done.err, HasSubstr("BAD signature"));
}

TEST_F(PullFreshnessTest, ValidForSetsTheExpiry) {
  publish(bake(), file_url(), {"--no-virt-builder", "--valid-for", "12h"});
  auto until = parse_rfc822_date(channel().valid_until);
  ASSERT_TRUE(until);
  EXPECT_NEAR(static_cast<double>(*until - now()), 12 * 3600.0, 120);
  for (const char* bad : {"0", "soon", "-3d"}) {
    auto refused = testing::run_kiln({"publish", bake().string(), "--feed", site().string(), "--base-url", file_url(),
                                      "--sign-key", publisher_->fingerprint(), "--valid-for", bad},
                                     publisher_->env());
    EXPECT_EQ(refused.exit_code, kBadInput) << bad << ": " << refused.err;
    EXPECT_THAT(refused.err, HasSubstr("--valid-for")) << bad;
  }
}

TEST_F(PullFreshnessTest, AnExpiredFeedIsRefusedUnlessAllowed) {
  publish(bake(), file_url());
  std::string an_hour_ago = rfc822_date(now() - 3600);
  edit_feed([](VmcastItem&) {}, an_hour_ago);
  auto done = pull(feed_file());
  expect_refused(done, kUntrusted, "the feed expired on " + an_hour_ago + " (its valid-until); refusing it");
  EXPECT_THAT(done.err, HasSubstr("--allow-expired"));
  auto listed = pull(feed_file(), {"--list"});
  EXPECT_EQ(listed.exit_code, kUntrusted) << "--list refuses it too: " << listed.err;

  auto allowed = pull(feed_file(), {"--allow-expired"});
  ASSERT_EQ(allowed.exit_code, 0) << allowed.err;
  EXPECT_THAT(allowed.err, HasSubstr("kiln: warning:"));
  EXPECT_THAT(allowed.err, HasSubstr("accepted because of --allow-expired"));
}

TEST_F(PullFreshnessTest, AFeedWithoutValidUntilIsTakenWithAWarning) {
  publish(bake(), file_url());
  std::string text = read_text(site() / "vmcast.rss");
  size_t from = text.find("<kiln:valid-until>");
  size_t to = text.find("</kiln:valid-until>") + 19;
  text.erase(from, to - from);
  write_text(site() / "vmcast.rss", text);
  sign_feed(*publisher_);
  auto done = pull(feed_file());
  ASSERT_EQ(done.exit_code, 0) << done.err;
  EXPECT_THAT(done.err, HasSubstr("the feed says no valid-until"));
}

TEST_F(PullFreshnessTest, AnOlderFeedIsRefusedEvenIntoANewDirectory) {
  publish_at("bake-1.0", 1700000000);
  std::string old_feed = read_text(site() / "vmcast.rss"), old_signature = read_text(site() / "vmcast.rss.asc");
  publish_at("bake-2.0", 1700086400);
  ASSERT_EQ(pull(feed_file()).exit_code, 0);

  // The old feed, as an attacker who kept a copy would serve it.
  write_text(site() / "vmcast.rss", old_feed);
  write_text(site() / "vmcast.rss.asc", old_signature);
  auto done = pull_into(other_out(), feed_file());
  EXPECT_EQ(done.exit_code, kUntrusted) << done.err;
  EXPECT_THAT(done.err, HasSubstr("the feed is dated Tue, 14 Nov 2023 22:13:20 +0000, older than the feed of "
                                  "Wed, 15 Nov 2023 22:13:20 +0000 already accepted from there with the same key; "
                                  "refusing a rollback (--allow-downgrade accepts it)"));
  EXPECT_FALSE(std::filesystem::exists(other_out()));

  auto allowed = pull_into(other_out(), feed_file(), {"--allow-downgrade"});
  ASSERT_EQ(allowed.exit_code, 0) << allowed.err;
  EXPECT_THAT(allowed.err, HasSubstr("accepted because of --allow-downgrade"));
}

TEST_F(PullFreshnessTest, AnOlderImageVersionIsRefusedEvenIntoANewDirectory) {
  publish(bake("bake-1.0"), file_url());
  publish(bake("bake-2.0"), file_url());
  ASSERT_EQ(pull(feed_file()).exit_code, 0);
  auto done = pull_into(other_out(), feed_file(), {"--item", "fake 1.0"});
  EXPECT_EQ(done.exit_code, kUntrusted) << done.err;
  EXPECT_THAT(done.err, HasSubstr("\"fake 1.0\" is older than the \"2.0\" already pulled from this feed with the "
                                  "same key; refusing a rollback"));
  EXPECT_FALSE(std::filesystem::exists(other_out()));
  EXPECT_EQ(pull_into(other_out(), feed_file(), {"--item", "fake 1.0", "--allow-downgrade"}).exit_code, 0);
}

TEST_F(PullFreshnessTest, WhatIsRememberedIsKeptPerSigningKey) {
  publish_at("bake-1.0", 1700000000);
  std::string old_feed = read_text(site() / "vmcast.rss");
  publish_at("bake-2.0", 1700086400);
  ASSERT_EQ(pull(feed_file()).exit_code, 0);
  // The old feed signed by another trusted key: nothing was accepted from
  // that key yet (the archive inside is still the publisher's).
  write_text(site() / "vmcast.rss", old_feed);
  sign_feed(*stranger_);
  write_text(dir_ / "both.gpg", read_text(keyring()) + read_text(stranger_keyring()));
  auto done = pull_into(other_out(), feed_file(), {"--keyring", (dir_ / "both.gpg").string()});
  EXPECT_EQ(done.exit_code, 0) << done.err;
}

TEST_F(PullFreshnessTest, TheStateFileRecordsTheFeedDateAndVersionsUnderXdgStateHome) {
  publish_at("bake-2.0", 1700086400);
  ASSERT_EQ(pull(feed_file()).exit_code, 0);
  auto state = nlohmann::json::parse(read_text(state_file()));
  ASSERT_EQ(state["feeds"].size(), 1u);
  EXPECT_EQ(state["feeds"][0]["uri"], "file://" + feed_file());
  EXPECT_EQ(state["feeds"][0]["signer"], publisher_->fingerprint());
  EXPECT_EQ(state["feeds"][0]["date"], 1700086400);
  EXPECT_EQ(state["feeds"][0]["items"]["fake"], "2.0");
  EXPECT_THAT(testing::list_tree(state_home()), ::testing::ElementsAre("kiln", "kiln/pulled-feeds.json",
                                                                       "kiln/pulled-feeds.json.lock"))
      << "written atomically: no temporary is left";
}

TEST_F(PullFreshnessTest, WithoutXdgStateHomeTheStateIsUnderHome) {
  publish(bake(), file_url());
  auto env = publisher_->env();
  env.insert(env.end(), {"XDG_STATE_HOME=", "HOME=" + (dir_ / "home").string()});
  auto done = testing::run_kiln({"pull", feed_file(), "-o", out().string(), "--download-dir", (dir_ / "dl").string(),
                                 "--keyring", keyring().string()},
                                env);
  ASSERT_EQ(done.exit_code, 0) << done.err;
  EXPECT_TRUE(std::filesystem::exists(dir_ / "home" / ".local" / "state" / "kiln" / "pulled-feeds.json"));
}

TEST_F(PullFreshnessTest, ADamagedStateFileIsBadInputNamingIt) {
  publish(bake(), file_url());
  write_text(state_file(), "{\"version\": 1, \"feeds\": [{\"uri\": 3}]}");
  auto done = pull(feed_file());
  expect_refused(done, kBadInput, state_file().string() + ": not a state file kiln can read");
}

TEST_F(PullFreshnessTest, AnUnverifiedPullIsNotRemembered) {
  publish(bake(), file_url());
  ASSERT_EQ(pull(feed_file(), {"--no-verify"}).exit_code, 0);
  EXPECT_FALSE(std::filesystem::exists(state_file()));
}

}  // namespace
}  // namespace kiln
