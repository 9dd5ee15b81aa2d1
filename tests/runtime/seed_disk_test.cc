// The seed disk carries an instance's personality as an ext2 filesystem the
// guest agent reads.
#include "runtime/seed_disk.h"

#include <gtest/gtest.h>

#include "formats/ext4/ext4_image.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

TEST(SeedDisk, HoldsThePersonalityForTheGuestAgent) {
  testing::ScratchDir dir;
  testing::write_text(dir / "motd", "hello from the host\n");
  testing::write_text(dir / "first.sh", "#!/bin/sh\necho first\n");
  InstanceSpec spec;
  spec.id = "0123456789abcdef";
  spec.network.nics = {NicSpec{.mac = "00:16:3e:01:02:03"},
                       NicSpec{.kind = NetworkKind::kTap, .network = "lan0", .bridge = "lan0", .tap = "web0",
                               .mac = "00:16:3e:01:02:04", .address = "10.77.0.9/24", .gateway = "10.77.0.1",
                               .dns = "10.77.0.1"}};
  spec.personality = {"web1", "0123456789abcdef0123456789abcdef",
                      {"ssh-ed25519 AAAA one", "ssh-ed25519 BBBB two"},
                      {{dir / "motd", "/etc/motd"}}, dir / "first.sh",
                      {{"ssh_host_ed25519_key", "PRIVATE\n", "ssh-ed25519 AAAA root@web1\n", "SHA256:x"}}};
  ASSERT_TRUE(write_seed_disk(dir / "seed.img", spec, "", dir / "templates"));

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
  // eth1's static address; eth0 asks DHCP, as the image's own file says
  EXPECT_FALSE(seed->stat("/kiln/network/10-kiln-eth0.network")->has_value());
  EXPECT_EQ(*seed->read_file("/kiln/network/10-kiln-eth1.network"),
            "# Written by kiln: the address kiln gave this NIC.\n[Match]\nMACAddress=00:16:3e:01:02:04\n\n"
            "[Network]\nAddress=10.77.0.9/24\nGateway=10.77.0.1\nDNS=10.77.0.1\nDomains=lan0\n");
  EXPECT_EQ(*seed->read_file("/kiln/authorized_keys"), "ssh-ed25519 AAAA one\nssh-ed25519 BBBB two\n");
  EXPECT_EQ(*seed->read_file("/kiln/files/etc/motd"), "hello from the host\n");
  EXPECT_EQ((*seed->stat("/kiln/firstboot"))->mode, 0755u);
  // host keys as sshd wants them in /etc/ssh: the private one for root only
  EXPECT_EQ(*seed->read_file("/kiln/ssh/ssh_host_ed25519_key"), "PRIVATE\n");
  EXPECT_EQ((*seed->stat("/kiln/ssh/ssh_host_ed25519_key"))->mode, 0600u);
  EXPECT_EQ(*seed->read_file("/kiln/ssh/ssh_host_ed25519_key.pub"), "ssh-ed25519 AAAA root@web1\n");
  EXPECT_EQ((*seed->stat("/kiln/ssh/ssh_host_ed25519_key.pub"))->mode, 0644u);
}

TEST(SeedDisk, LargePersonalitiesGetAFilesystemOfTheirOwnSize) {
  testing::ScratchDir dir;
  testing::write_text(dir / "big", std::string(6 << 20, 'x'));
  InstanceSpec spec;
  spec.id = "0123456789abcdef";
  spec.personality.files = {{dir / "big", "/srv/big"}};
  ASSERT_TRUE(write_seed_disk(dir / "seed.img", spec, "", dir / "templates"));
  auto seed = Ext4Image::open(dir / "seed.img", 0, false);
  ASSERT_TRUE(seed);
  EXPECT_EQ(seed->read_file("/kiln/files/srv/big")->size(), 6u << 20);
  EXPECT_EQ(testing::run_program({"e2fsck", "-fn", (dir / "seed.img").string()}).exit_code, 0);
}

TEST(SeedDisk, WithoutAHostnameTheGuestKeepsItsOwn) {
  testing::ScratchDir dir;
  InstanceSpec spec;
  spec.id = "0123456789abcdef";
  ASSERT_TRUE(write_seed_disk(dir / "seed.img", spec, "", dir / "templates"));
  auto seed = Ext4Image::open(dir / "seed.img", 0, false);
  ASSERT_TRUE(seed);
  EXPECT_FALSE(seed->stat("/kiln/hostname")->has_value());  // the agent then leaves /etc/hostname alone
}

TEST(SeedDisk, SeedsFromTheTemplateAreIndependent) {
  testing::ScratchDir dir;
  InstanceSpec a, b;
  a.id = "aaaaaaaaaaaaaaaa";
  a.personality.hostname = "first";
  b.id = "bbbbbbbbbbbbbbbb";
  b.personality.hostname = "second";
  ASSERT_TRUE(write_seed_disk(dir / "a.img", a, "", dir / "templates"));
  ASSERT_TRUE(write_seed_disk(dir / "b.img", b, "", dir / "templates"));
  EXPECT_EQ(*Ext4Image::open(dir / "a.img", 0, false)->read_file("/kiln/hostname"), "first\n");
  EXPECT_EQ(*Ext4Image::open(dir / "b.img", 0, false)->read_file("/kiln/hostname"), "second\n");
  EXPECT_EQ(testing::run_program({"e2fsck", "-fn", (dir / "templates/seed-template-2.img").string()}).exit_code, 0);
}

}  // namespace
}  // namespace kiln
