// What `kiln migrate --to` accepts as a kiln host, and how a remote command
// line is quoted for the remote shell.
#include "runtime/ssh_target.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/subprocess.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

TEST(SshUriTest, TakesUserHostPortAndLibvirtsKeyParameters) {
  auto uri = parse_ssh_uri("ssh://root@host2:2222/?keyfile=/k%20ey&known_hosts=/etc/kh");
  ASSERT_TRUE(uri) << uri.error().to_string();
  EXPECT_EQ(uri->user, "root");
  EXPECT_EQ(uri->host, "host2");
  EXPECT_EQ(uri->port, 2222);
  EXPECT_EQ(uri->keyfile, "/k ey");
  EXPECT_EQ(uri->known_hosts, "/etc/kh");
}

TEST(SshUriTest, HostAloneUsesSshsDefaults) {
  auto uri = parse_ssh_uri("ssh://host2");
  ASSERT_TRUE(uri);
  EXPECT_EQ(uri->user, "");
  EXPECT_EQ(uri->port, 0);
  EXPECT_EQ(uri->host, "host2");
}

TEST(SshUriTest, RefusesWhatItCannotUseNamingTheUri) {
  for (const char* bad : {"qemu+ssh://host/system", "ssh://", "ssh://host:99999", "ssh://host:x", "ssh://host/system",
                          "ssh://host/?password=x", "ssh://-oProxyCommand=x", "ssh://host/?keyfile=%zz"}) {
    auto uri = parse_ssh_uri(bad);
    ASSERT_FALSE(uri) << bad;
    EXPECT_THAT(uri.error().message, HasSubstr(bad)) << bad;
  }
}

TEST(ShellQuotedTest, TheRemoteShellSeesEachWordAsGiven) {
  for (const std::string word : {"plain", "two words", "it's", "$(reboot)", "", "a;b|c&d", "back\\slash"}) {
    auto echoed = run({"sh", "-c", "printf %s " + shell_quoted(word)});
    ASSERT_TRUE(echoed) << word;
    EXPECT_EQ(echoed->out, word);
  }
}

}  // namespace
}  // namespace kiln
