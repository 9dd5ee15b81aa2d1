// An instance's record (instance.json) is what list, console and the
// lifecycle commands read back.
#include "runtime/instance.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kiln {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(InstanceRecord, KeepsTheHostKeysPublicHalvesAndNeverThePrivateOnes) {
  InstanceRecord record;
  record.spec.name = "web1";
  record.spec.id = "0123456789abcdef";
  auto key = generate_ssh_host_key(SshKeyType::kEd25519, "root@web1");
  ASSERT_TRUE(key) << key.error().message;
  record.spec.personality.ssh_host_keys.push_back(*key);

  std::string text = to_json(record).dump();
  EXPECT_THAT(text, Not(HasSubstr("PRIVATE KEY")));
  auto back = record_from_json(nlohmann::json::parse(text), "instance.json");
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_EQ(back->spec.personality.ssh_host_keys.size(), 1u);
  const SshHostKey& read = back->spec.personality.ssh_host_keys[0];
  EXPECT_EQ(read.file_name, "ssh_host_ed25519_key");
  EXPECT_EQ(read.public_key, key->public_key);
  EXPECT_EQ(read.fingerprint, key->fingerprint);
  EXPECT_EQ(read.private_key, "");
}

TEST(InstanceRecord, HostKeysCountAsTheGuestsOnlyOnceItSaidSo) {
  InstanceRecord record;
  auto key = generate_ssh_host_key(SshKeyType::kEd25519, "root@web1");
  ASSERT_TRUE(key) << key.error().message;
  record.spec.personality.ssh_host_keys.push_back(*key);
  EXPECT_TRUE(record.confirmed_ssh_host_keys().empty()) << "not ready yet";
  record.guest_ssh_host_keys = "own";
  EXPECT_TRUE(record.confirmed_ssh_host_keys().empty()) << "the machine kept its own keys";
  record.guest_ssh_host_keys = "kiln";
  auto back = record_from_json(to_json(record), "instance.json");
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->guest_ssh_host_keys, "kiln");
  ASSERT_EQ(back->confirmed_ssh_host_keys().size(), 1u);
  EXPECT_EQ(back->confirmed_ssh_host_keys()[0].fingerprint, key->fingerprint);
}

TEST(InstanceRecord, ARecordFromBeforeSeveralNicsStillReadsSoItsInstanceCanBeDestroyed) {
  InstanceRecord record;
  record.spec.id = "0123456789abcdef";
  nlohmann::json json = to_json(record);
  json["spec"]["network"] = {{"kind", "tap"}, {"bridge", "br0"}, {"ssh_port", 0}};
  json["spec"]["personality"]["mac"] = "00:16:3e:00:00:10";
  auto back = record_from_json(json, "instance.json");
  ASSERT_TRUE(back) << back.error().to_string();
  ASSERT_EQ(back->spec.network.nics.size(), 1u);
  EXPECT_EQ(back->spec.network.nics[0].bridge, "br0");
  EXPECT_EQ(back->spec.network.nics[0].tap, "kiln-0123456789");  // the name that kiln gave its tap
  EXPECT_EQ(back->spec.network.nics[0].mac, "00:16:3e:00:00:10");
  json["spec"]["network"]["kind"] = "none";
  EXPECT_TRUE(record_from_json(json, "instance.json")->spec.network.nics.empty());
}

TEST(InstanceRecord, ARecordWithoutHostKeysStillReads) {
  InstanceRecord record;
  record.spec.name = "old";
  nlohmann::json json = to_json(record);
  json["spec"]["personality"].erase("ssh_host_keys");
  auto back = record_from_json(json, "instance.json");
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_TRUE(back->spec.personality.ssh_host_keys.empty());
}

}  // namespace
}  // namespace kiln
