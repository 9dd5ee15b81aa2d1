// fetch_uri's bounds against servers that misbehave on purpose (see
// tests/feeds/http_server.py): one that streams without end, one that
// trickles, one that cannot resume. Each must end quickly, with its cause
// named and nothing left to be resumed.
#include "fetch/uri_fetch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>

#include "tests/feeds/test_http_server.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using testing::read_text;
using testing::write_text;
using Clock = std::chrono::steady_clock;

class UriFetchTest : public ::testing::Test {
 protected:
  UriFetchTest() : server_(dir_ / "www", dir_ / "requests.log") {
    write_text(dir_ / "www" / "file", testing_body());
  }
  static std::string testing_body() {
    std::string body;
    for (int i = 0; body.size() < 300000; ++i) body += std::to_string(i) + ",";
    return body;
  }
  FetchOptions bounded(uint64_t max_bytes, std::chrono::seconds deadline, std::chrono::seconds stall) {
    FetchOptions options;
    options.limits = DownloadLimits{max_bytes, deadline, stall};
    return options;
  }
  double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
  }
  std::filesystem::path target() const { return dir_ / "got"; }
  std::filesystem::path part() const { return dir_ / "got.part"; }

  testing::ScratchDir dir_;
  testing::TestHttpServer server_;
};

TEST_F(UriFetchTest, ABodyWithoutLengthThatNeverEndsIsCutAtTheCap) {
  write_text(dir_ / "www" / "file.endless", "");
  auto start = Clock::now();
  auto got = fetch_uri(server_.url("file"), target(), bounded(4 << 20, std::chrono::seconds(60), std::chrono::seconds(60)));
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().kind, ErrorKind::kFailed);
  EXPECT_THAT(got.error().message, HasSubstr("more than 4.0 MiB (4194304 bytes), the most kiln downloads when the size "
                                             "is not declared; stopped (KILN_MAX_DOWNLOAD"));
  EXPECT_LT(seconds_since(start), 20);
  EXPECT_FALSE(std::filesystem::exists(part())) << "a refused body is not kept to resume";
  EXPECT_FALSE(std::filesystem::exists(target()));
}

TEST_F(UriFetchTest, ADeclaredSizeIsHeldAgainstTheAnnouncedLength) {
  FetchOptions options;
  options.max_bytes = 1000;
  auto got = fetch_uri(server_.url("file"), target(), options);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().kind, ErrorKind::kUntrusted);
  EXPECT_THAT(got.error().message, HasSubstr("larger than the 1000 bytes allowed; refusing it"));
  EXPECT_FALSE(std::filesystem::exists(part()));
}

TEST_F(UriFetchTest, ATricklingServerIsCutByTheDeadline) {
  write_text(dir_ / "www" / "file.trickle", "");
  auto start = Clock::now();
  auto got = fetch_uri(server_.url("file"), target(), bounded(1 << 30, std::chrono::seconds(2), std::chrono::seconds(600)));
  ASSERT_FALSE(got);
  EXPECT_THAT(got.error().message, HasSubstr("not complete after 2s, the deadline of a transfer; stopped"));
  EXPECT_LT(seconds_since(start), 10);
}

TEST_F(UriFetchTest, ATricklingServerIsCutByTheLowSpeedLimit) {
  write_text(dir_ / "www" / "file.trickle", "");
  auto start = Clock::now();
  auto got = fetch_uri(server_.url("file"), target(), bounded(1 << 30, std::chrono::seconds(600), std::chrono::seconds(2)));
  ASSERT_FALSE(got);
  EXPECT_THAT(got.error().message, HasSubstr("slower than 1024 bytes/s for 2s; stopped (KILN_DOWNLOAD_STALL"));
  EXPECT_LT(seconds_since(start), 10);
}

TEST_F(UriFetchTest, APartTheServerAnswers416ToStartsAgainFromZero) {
  write_text(part(), std::string(testing_body().size(), 'x'));  // as long as the file, but not it
  auto got = fetch_uri(server_.url("file"), target());
  ASSERT_TRUE(got) << got.error().to_string();
  EXPECT_FALSE(got->resumed);
  EXPECT_EQ(read_text(target()), testing_body());
  EXPECT_EQ(server_.requests(), "GET /file bytes=" + std::to_string(testing_body().size()) + "-\nGET /file -\n");
}

TEST_F(UriFetchTest, APartLongerThanTheDeclaredSizeIsDroppedBeforeAsking) {
  write_text(part(), std::string(testing_body().size() + 10, 'x'));
  FetchOptions options;
  options.max_bytes = testing_body().size();
  auto got = fetch_uri(server_.url("file"), target(), options);
  ASSERT_TRUE(got) << got.error().to_string();
  EXPECT_EQ(read_text(target()), testing_body());
  EXPECT_EQ(server_.requests(), "GET /file -\n");
}

TEST_F(UriFetchTest, ControlCharactersInTheUriAreNotEchoed) {
  auto got = fetch_uri(server_.url("missing\x1b[2J") + std::string(500, 'a'), target());
  ASSERT_FALSE(got);
  EXPECT_THAT(got.error().message, ::testing::Not(HasSubstr("\x1b")));
  EXPECT_THAT(got.error().message, HasSubstr("…"));
  EXPECT_LT(got.error().message.size(), 300u);
}

class DownloadLimitsEnv : public ::testing::Test {
 protected:
  ~DownloadLimitsEnv() override {
    for (const char* name : {"KILN_MAX_DOWNLOAD", "KILN_DOWNLOAD_TIMEOUT", "KILN_DOWNLOAD_STALL"}) ::unsetenv(name);
  }
};

TEST_F(DownloadLimitsEnv, DefaultsAreDocumentedValues) {
  auto limits = download_limits_from_env();
  ASSERT_TRUE(limits);
  EXPECT_EQ(limits->max_bytes, 32ull << 30);
  EXPECT_EQ(limits->deadline, std::chrono::hours(6));
  EXPECT_EQ(limits->stall, std::chrono::seconds(60));
}

TEST_F(DownloadLimitsEnv, TheVariablesOverrideThem) {
  ::setenv("KILN_MAX_DOWNLOAD", "10M", 1);
  ::setenv("KILN_DOWNLOAD_TIMEOUT", "90m", 1);
  ::setenv("KILN_DOWNLOAD_STALL", "5s", 1);
  auto limits = download_limits_from_env();
  ASSERT_TRUE(limits) << limits.error().to_string();
  EXPECT_EQ(limits->max_bytes, 10u << 20);
  EXPECT_EQ(limits->deadline, std::chrono::minutes(90));
  EXPECT_EQ(limits->stall, std::chrono::seconds(5));
}

TEST_F(DownloadLimitsEnv, AMalformedValueIsBadInputNamingTheVariable) {
  for (auto [name, value] : {std::pair{"KILN_MAX_DOWNLOAD", "lots"}, std::pair{"KILN_MAX_DOWNLOAD", "0"},
                             std::pair{"KILN_DOWNLOAD_TIMEOUT", "soon"}, std::pair{"KILN_DOWNLOAD_STALL", "0s"}}) {
    ::setenv(name, value, 1);
    auto limits = download_limits_from_env();
    ASSERT_FALSE(limits) << name << "=" << value;
    EXPECT_EQ(limits.error().kind, ErrorKind::kBadInput);
    EXPECT_THAT(limits.error().message, HasSubstr(name));
    ::unsetenv(name);
  }
}

}  // namespace
}  // namespace kiln
