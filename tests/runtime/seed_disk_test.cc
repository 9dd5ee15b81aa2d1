// The seed disk carries an instance's personality as an ext4 filesystem the
// guest agent reads.
#include "runtime/seed_disk.h"

#include <gtest/gtest.h>

#include "formats/ext4_image.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

TEST(SeedDisk, HoldsThePersonalityForTheGuestAgent) {
  testing::ScratchDir dir;
  testing::write_text(dir / "motd", "hello from the host\n");
  testing::write_text(dir / "first.sh", "#!/bin/sh\necho first\n");
  InstanceSpec spec;
  spec.id = "0123456789abcdef";
  spec.personality = {"web1", "0123456789abcdef0123456789abcdef", "00:16:3e:01:02:03",
                      {"ssh-ed25519 AAAA one", "ssh-ed25519 BBBB two"},
                      {{dir / "motd", "/etc/motd"}}, dir / "first.sh"};
  ASSERT_TRUE(write_seed_disk(dir / "seed.img", spec));

  auto fsck = testing::run_program({"e2fsck", "-fn", (dir / "seed.img").string()});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out;
  EXPECT_EQ(testing::run_program({"blkid", "-o", "value", "-s", "LABEL", (dir / "seed.img").string()}).out,
            "KILNSEED\n");
  auto seed = Ext4Image::open(dir / "seed.img", 0, false);
  ASSERT_TRUE(seed);
  EXPECT_EQ(*seed->read_file("/kiln/instance-id"), "0123456789abcdef\n");
  EXPECT_EQ(*seed->read_file("/kiln/hostname"), "web1\n");
  EXPECT_EQ(*seed->read_file("/kiln/machine-id"), "0123456789abcdef0123456789abcdef\n");
  EXPECT_EQ(*seed->read_file("/kiln/mac"), "00:16:3e:01:02:03\n");
  EXPECT_EQ(*seed->read_file("/kiln/authorized_keys"), "ssh-ed25519 AAAA one\nssh-ed25519 BBBB two\n");
  EXPECT_EQ(*seed->read_file("/kiln/files/etc/motd"), "hello from the host\n");
  EXPECT_EQ((*seed->stat("/kiln/firstboot"))->mode, 0755u);
}

}  // namespace
}  // namespace kiln
