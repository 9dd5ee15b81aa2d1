// The enclosure download of `kiln pull` against hostile or broken servers:
// bounded in size and time, never pointed from the network at a local file,
// a stale part fetched again rather than kept, and what a feed says echoed
// safely in errors.
#include <chrono>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/hash.h"
#include "tests/feeds/published_site.h"
#include "tests/feeds/test_http_server.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::read_text;
using testing::write_text;
using Clock = std::chrono::steady_clock;

constexpr int kFailed = 1;
constexpr int kBadInput = 2;
constexpr int kUntrusted = 5;

class PullDownloadTest : public testing::PublishedSiteTest {
 protected:
  void SetUp() override {
    server_ = std::make_unique<testing::TestHttpServer>(dir_.path(), dir_ / "requests.log");
    publish(bake(), server_->url("site/"));
  }
  std::string feed_url() const { return server_->url("site/vmcast.rss"); }
  std::string xvm_url() const { return server_->url("site/fake-1.0.xvm"); }
  // Where pull keeps the download of the enclosure (see feeds/puller.cc).
  std::filesystem::path part() const {
    return dir_ / "dl" / (sha256_hex(xvm_url()).substr(0, 16) + "-fake-1.0.xvm.part");
  }
  static double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
  }
  // Nothing of the enclosure stays in the download directory.
  void expect_no_download_left() {
    for (const std::string& name : testing::list_tree(dir_ / "dl"))
      EXPECT_THAT(name, Not(HasSubstr("fake-1.0.xvm"))) << "left in the download directory";
  }

  std::unique_ptr<testing::TestHttpServer> server_;
};

TEST_F(PullDownloadTest, AnEndlessEnclosureWithoutALengthIsCutAtTheCap) {
  for (std::optional<uint64_t> length : {std::optional<uint64_t>(), std::optional<uint64_t>(0)}) {
    edit_feed([&](VmcastItem& item) { item.enclosure->length = length; });
    write_text(xvm().string() + ".endless", "");
    auto start = Clock::now();
    auto done = pull(feed_url(), {"--max-download", "8M"});
    expect_refused(done, kFailed, "more than 8.0 MiB (8388608 bytes), the most kiln downloads when the size is not "
                                  "declared; stopped (KILN_MAX_DOWNLOAD or kiln pull --max-download raises it)");
    EXPECT_LT(seconds_since(start), 30);
    expect_no_download_left();
  }
}

TEST_F(PullDownloadTest, ATricklingServerIsCutByTheDeadline) {
  write_text(xvm().string() + ".trickle", "");
  auto start = Clock::now();
  auto done = pull(feed_url(), {"--download-timeout", "2s"});
  expect_refused(done, kFailed, "not complete after 2s, the deadline of a transfer; stopped");
  EXPECT_LT(seconds_since(start), 15);
}

TEST_F(PullDownloadTest, ATricklingServerIsCutByTheLowSpeedLimit) {
  write_text(xvm().string() + ".trickle", "");
  auto start = Clock::now();
  auto env = pull_env();
  env.push_back("KILN_DOWNLOAD_STALL=2s");
  auto done = testing::run_kiln({"pull", feed_url(), "-o", out().string(), "--download-dir", (dir_ / "dl").string(),
                                 "--keyring", keyring().string()},
                                env);
  expect_refused(done, kFailed, "slower than 1024 bytes/s for 2s; stopped (KILN_DOWNLOAD_STALL allows longer)");
  EXPECT_LT(seconds_since(start), 15);
}

TEST_F(PullDownloadTest, AFeedFromTheNetworkMayNotPointAtALocalFile) {
  std::filesystem::copy_file(xvm(), dir_ / "local.xvm");
  edit_feed([&](VmcastItem& item) { item.enclosure->url = "file://" + (dir_ / "local.xvm").string(); });
  auto done = pull(feed_url());
  expect_refused(done, kUntrusted, "the feed points at file://" + (dir_ / "local.xvm").string() +
                                       ", which is not on the network as the feed is; refusing it before reading it");
  EXPECT_THAT(testing::list_tree(dir_ / "dl"), ::testing::IsEmpty()) << "the local file was read";
}

TEST_F(PullDownloadTest, AResumedPartThatDoesNotVerifyIsFetchedAgainFromZero) {
  write_text(part(), std::string(100000, 'x'));  // the start of some other file
  auto done = pull(feed_url());
  ASSERT_EQ(done.exit_code, 0) << done.err;
  EXPECT_THAT(done.err, HasSubstr("the download resumed from an earlier pull does not verify"));
  EXPECT_THAT(done.err, HasSubstr("fetching it again from the start"));
  EXPECT_THAT(server_->requests(), HasSubstr("GET /site/fake-1.0.xvm bytes=100000-\nGET /site/fake-1.0.xvm -\n"));
  EXPECT_EQ(read_text(out() / "disk.raw"), read_text(bake() / "disk.raw"));
  expect_no_download_left();
}

TEST_F(PullDownloadTest, APartTheServerAnswers416ToIsFetchedAgainFromZero) {
  write_text(part(), std::string(std::filesystem::file_size(xvm()), 'x'));
  auto done = pull(feed_url());
  ASSERT_EQ(done.exit_code, 0) << done.err;
  std::string length = std::to_string(std::filesystem::file_size(xvm()));
  EXPECT_THAT(server_->requests(),
              HasSubstr("GET /site/fake-1.0.xvm bytes=" + length + "-\nGET /site/fake-1.0.xvm -\n"));
  expect_no_download_left();
}

TEST_F(PullDownloadTest, AMissingKeyringIsBadInput) {
  auto done = pull(feed_url(), {"--keyring", (dir_ / "no-such.gpg").string()});
  expect_refused(done, kBadInput, "--keyring " + (dir_ / "no-such.gpg").string() + ": no such file");
  auto directory = pull(feed_url(), {"--keyring", dir_.path().string()});
  expect_refused(directory, kBadInput, "not a file");
}

TEST_F(PullDownloadTest, TheItemMustNameTheImageInTheArchive) {
  edit_feed([](VmcastItem& item) {
    item.image_name = "other";
    item.title = "other 1.0";
  });
  auto done = pull(feed_url());
  expect_refused(done, kUntrusted, "the feed's item \"other\" carries an archive of the image \"fake\"; refusing it");
}

TEST_F(PullDownloadTest, FeedValuesInErrorsHaveNoControlCharactersAndAreCut) {
  std::string hostile = "\x1b]0;owned\x07\x1b[2J" + std::string(5000, 'A');
  edit_feed([&](VmcastItem& item) { item.image_name = hostile; });
  auto done = pull(feed_url(), {"--item", "wanted\x1b[31m"});
  expect_refused(done, kBadInput, "no item \"wanted\\x1b[31m\" in the feed; it offers: \"\\x1b]0;owned\\x07\\x1b[2J");
  EXPECT_THAT(done.err, Not(HasSubstr("\x1b")));
  EXPECT_THAT(done.err, Not(HasSubstr("\x07")));
  EXPECT_LT(done.err.size(), 600u) << done.err;

  edit_feed([&](VmcastItem& item) {
    item.image_name = "fake";
    item.enclosure->url = "http://127.0.0.1:1/\x1b[2J" + std::string(5000, 'B');
  });
  auto fetch = pull(feed_url());
  EXPECT_NE(fetch.exit_code, 0);
  EXPECT_THAT(fetch.err, Not(HasSubstr("\x1b")));
  EXPECT_LT(fetch.err.size(), 800u) << fetch.err;
}

}  // namespace
}  // namespace kiln
