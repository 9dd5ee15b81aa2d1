// `kiln boot` refuses what cannot work before it makes anything: an
// encrypted root on a backend that cannot unlock it, a passphrase for a root
// that has no encryption, a passphrase file that is not there.
#include <functional>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "formats/image/image_manifest.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using testing::ScratchDir;
using testing::write_text;

class BootCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* file : {"vmlinuz", "initrd.img", "root.img"}) write_text(dir_ / "image" / file, "x");
  }
  // An image whose manifest says what `shape` sets.
  void image(const std::function<void(ImageManifest&)>& shape) {
    ImageManifest manifest;
    manifest.name = "vault";
    manifest.version = "1";
    manifest.layout = "gpt";
    shape(manifest);
    write_text(dir_ / "image/manifest.json", write_image_manifest(manifest));
  }
  static void encrypted(ImageManifest& m) { m.encryption = ManifestEncryption{.type = "luks2"}; }
  testing::ProcessResult boot(std::vector<std::string> more) {
    std::vector<std::string> args = {"boot", (dir_ / "image").string(), "--detach"};
    args.insert(args.end(), more.begin(), more.end());
    return testing::run_kiln(args, {"KILN_RUNTIME_DIR=" + (dir_ / "run").string(),
                                    "KILN_STATE_DIR=" + (dir_ / "state").string()});
  }
  bool nothing_made() const { return testing::list_tree(dir_ / "run").empty(); }

  ScratchDir dir_;
};

TEST_F(BootCommandTest, AnEncryptedRootDoesNotBootUnderUml) {
  image(encrypted);
  auto result = boot({"--backend", "uml"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("an encrypted root (luks2) opens only with the image's own kernel and "
                                    "initramfs, and the uml backend boots neither: use --backend qemu"));
  EXPECT_TRUE(nothing_made());
}

TEST_F(BootCommandTest, APassphraseForAPlainRootIsAMistake) {
  image([](ImageManifest&) {});
  write_text(dir_ / "pass", "secret\n");
  auto result = boot({"--luks-passphrase-file", (dir_ / "pass").string()});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("--luks-passphrase-file: the root of " + (dir_ / "image").string() +
                                    " is not encrypted; nothing to unlock"));
  EXPECT_TRUE(nothing_made());
}

TEST_F(BootCommandTest, AMissingPassphraseFileIsNamed) {
  image(encrypted);
  auto result = boot({"--luks-passphrase-file", (dir_ / "nope").string()});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, HasSubstr("--luks-passphrase-file: "));
  EXPECT_THAT(result.err, HasSubstr((dir_ / "nope").string()));
  EXPECT_TRUE(nothing_made());
}

// The flags go by the same rule as a recipe's [output] (base/vm_shape.h).
TEST_F(BootCommandTest, MemoryAndVcpusFlagsGoByTheRuleForEveryDoor) {
  image([](ImageManifest&) {});
  auto little = boot({"--memory", "32M"});
  EXPECT_EQ(little.exit_code, 2);
  EXPECT_THAT(little.err, HasSubstr("--memory 32M: 32 MiB is less than the 64 MiB a Debian guest needs to boot"));
  auto many = boot({"--vcpus", "0"});
  EXPECT_EQ(many.exit_code, 2);
  EXPECT_THAT(many.err, HasSubstr("--vcpus 0: 0 virtual CPUs: expected 1 to 255"));
  EXPECT_TRUE(nothing_made());
}

}  // namespace
}  // namespace kiln
