// plan_ssh: the ssh command kiln ssh runs, and when it refuses to.
#include "runtime/guest_ssh.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "formats/image/guest_protocol.h"

namespace kiln {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

InstanceRecord reachable() {
  InstanceRecord record;
  record.spec.name = "web1";
  record.state = InstanceState::kRunning;
  record.spec.network.nics = {NicSpec{.mac = "00:16:3e:00:00:01"}};
  record.spec.network.ssh_port = 2222;
  record.spec.personality.ssh_host_keys = {{"ssh_host_ed25519_key", "private", "ssh-ed25519 AAAAkey root@web1\n", "SHA256:x"}};
  record.guest_ssh_host_keys = std::string(kHostKeysFromKiln);
  return record;
}

TEST(GuestSsh, TrustsOnlyTheInstancesOwnKeysOnItsForwardedPort) {
  auto ssh = plan_ssh(reachable(), "/run/kiln/web1/known_hosts", "admin", {"-i", "key", "uptime"});
  ASSERT_TRUE(ssh) << ssh.error().to_string();
  EXPECT_EQ(ssh->known_hosts, "[127.0.0.1]:2222 ssh-ed25519 AAAAkey root@web1\n");
  EXPECT_THAT(ssh->argv, Contains("UserKnownHostsFile=/run/kiln/web1/known_hosts"));
  EXPECT_THAT(ssh->argv, Contains("StrictHostKeyChecking=yes"));
  EXPECT_THAT(ssh->argv, Contains("GlobalKnownHostsFile=/dev/null"));
  std::vector<std::string> tail(ssh->argv.end() - 6, ssh->argv.end());
  EXPECT_EQ(tail, (std::vector<std::string>{"-l", "admin", "127.0.0.1", "-i", "key", "uptime"}));
}

TEST(GuestSsh, RefusesAnInstanceWithoutAForwardedPort) {
  InstanceRecord record = reachable();
  record.spec.network.ssh_port = 0;
  EXPECT_THAT(plan_ssh(record, "k", "root", {}).error().message, HasSubstr("--ssh-port"));
  record.spec.network.nics.clear();
  EXPECT_THAT(plan_ssh(record, "k", "root", {}).error().message, HasSubstr("no network"));
}

TEST(GuestSsh, RefusesKeysKilnCannotVouchFor) {
  InstanceRecord record = reachable();
  record.guest_ssh_host_keys = std::string(kHostKeysOwn);
  EXPECT_THAT(plan_ssh(record, "k", "root", {}).error().message, HasSubstr("cannot vouch"));
}

TEST(GuestSsh, RefusesAnInstanceThatIsNotRunning) {
  InstanceRecord record = reachable();
  record.state = InstanceState::kPaused;
  EXPECT_THAT(plan_ssh(record, "k", "root", {}).error().message, HasSubstr("not running"));
}

}  // namespace
}  // namespace kiln
