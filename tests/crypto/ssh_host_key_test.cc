#include "crypto/ssh_host_key.h"

#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::run_program;
using testing::ScratchDir;
using testing::write_text;

class SshHostKeyTest : public ::testing::TestWithParam<SshKeyType> {};

// ssh-keygen, OpenSSH's own reader, must load the private key, derive the
// same public key from it, and print the same fingerprint. Sixteen keys of
// each type, so that ECDSA scalars with the top bit set and clear (an mpint
// then needs a leading zero byte) both occur but once in 65536 runs.
TEST_P(SshHostKeyTest, OpenSshReadsThePrivateKeyAndAgreesOnThePublicOne) {
  ScratchDir dir;
  for (int i = 0; i < 16; ++i) {
    auto key = generate_ssh_host_key(GetParam(), "root@web1");
    ASSERT_TRUE(key) << key.error().message;
    EXPECT_THAT(key->private_key, StartsWith("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
    write_text(dir / key->file_name, key->private_key);
    ASSERT_EQ(::chmod((dir / key->file_name).c_str(), 0600), 0);
    write_text(dir / (key->file_name + ".pub"), key->public_key);

    auto derived = run_program({"ssh-keygen", "-y", "-f", (dir / key->file_name).string()});
    ASSERT_EQ(derived.exit_code, 0) << derived.err << key->private_key;
    std::string without_comment = key->public_key.substr(0, key->public_key.rfind(' '));
    EXPECT_THAT(derived.out, StartsWith(without_comment));

    auto listed = run_program({"ssh-keygen", "-l", "-f", (dir / (key->file_name + ".pub")).string()});
    ASSERT_EQ(listed.exit_code, 0) << listed.err;
    EXPECT_THAT(listed.out, HasSubstr(" " + key->fingerprint + " root@web1"));
  }
}

TEST_P(SshHostKeyTest, EveryKeyIsNew) {
  auto a = generate_ssh_host_key(GetParam(), "a");
  auto b = generate_ssh_host_key(GetParam(), "a");
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->public_key, b->public_key);
  EXPECT_NE(a->fingerprint, b->fingerprint);
}

INSTANTIATE_TEST_SUITE_P(Types, SshHostKeyTest, ::testing::Values(SshKeyType::kEd25519, SshKeyType::kEcdsaP256),
                         [](const auto& info) { return info.param == SshKeyType::kEd25519 ? "Ed25519" : "Ecdsa"; });

}  // namespace
}  // namespace kiln
