// What `kiln import` decides about a jailtime-style bundle from its file
// names and its Xen config alone: which file is the config, which file each
// disk names, which disk is the root and which are swap, and whose memory
// and vcpus the image gets.
#include "builder/bundle_import.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "formats/domain/xen_config.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A jailtime debian-5.0 config, as its bundle had it.
constexpr std::string_view kJailtime = R"(#  -*- mode: python; -*-
kernel = "/boot/vmlinuz-2.6.18-xenU"
memory = 128
name = "debian"
vif = [ '' ]
dhcp = "dhcp"
disk = ['file:/path/to/debian-5.0.img,sda1,w', 'file:/path/to/debian-5.0.swap,sda2,w']
root = "/dev/sda1 ro"
)";

DomainSpec parsed(std::string_view text) {
  auto spec = parse_xen_config(text, "b.tar(debian.cfg)");
  EXPECT_TRUE(spec) << spec.error().to_string();
  return spec.value_or(DomainSpec{});
}

const std::vector<std::string> kFiles = {"debian-5.0/debian-5.0.img", "debian-5.0/debian-5.0.swap",
                                         "debian-5.0/debian-5.0.xen.cfg", "debian-5.0/README"};

TEST(BundleImport, TheConfigIsTheOneCfgFile) {
  EXPECT_EQ(find_bundle_config(kFiles, "b.tar").value(), "debian-5.0/debian-5.0.xen.cfg");
}

TEST(BundleImport, NoConfigOrTwoAreRefusedWithTheirNames) {
  auto none = find_bundle_config({"a.img", "a.swap"}, "b.tar.bz2");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().kind, ErrorKind::kBadInput);
  EXPECT_THAT(none.error().message, HasSubstr("b.tar.bz2: no Xen domain config (a file named *.cfg)"));
  EXPECT_THAT(none.error().message, HasSubstr("a.img, a.swap"));
  auto two = find_bundle_config({"x/a.xen.cfg", "a.img", "x/a.xen3.cfg"}, "b.tar");
  ASSERT_FALSE(two);
  EXPECT_THAT(two.error().message, HasSubstr("b.tar: 2 Xen domain configs in the bundle (x/a.xen.cfg, x/a.xen3.cfg)"));
}

TEST(BundleImport, ADiskIsTheBundlesFileOfItsName) {
  DomainSpec spec = parsed(kJailtime);
  ASSERT_EQ(spec.disks.size(), 2u);
  EXPECT_EQ(bundle_member_for(spec.disks[0], kFiles).value(), "debian-5.0/debian-5.0.img");
  EXPECT_EQ(bundle_member_for(spec.disks[1], kFiles).value(), "debian-5.0/debian-5.0.swap");
}

TEST(BundleImport, ADiskNotInTheBundleIsRefusedAtItsLine) {
  DomainSpec spec = parsed(kJailtime);
  auto missing = bundle_member_for(spec.disks[1], {"debian-5.0.img", "debian.cfg"});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().where.to_string(), "b.tar(debian.cfg):7:48");
  EXPECT_THAT(missing.error().message,
              HasSubstr("disk sda2: \"/path/to/debian-5.0.swap\" is not in the bundle, which holds debian-5.0.img, "
                        "debian.cfg"));
  auto twice = bundle_member_for(spec.disks[0], {"a/debian-5.0.img", "b/debian-5.0.img"});
  ASSERT_FALSE(twice);
  EXPECT_THAT(twice.error().message,
              HasSubstr("2 files named \"debian-5.0.img\" (a/debian-5.0.img, b/debian-5.0.img)"));
}

TEST(BundleImport, TheRootIsTheDiskRootNamesAndTheSwapTheOther) {
  DomainSpec spec = parsed(kJailtime);
  // The swap first in the config's order does not matter.
  std::vector<BundleDisk> disks = {{&spec.disks[0], "debian-5.0.img", false, false},
                                   {&spec.disks[1], "debian-5.0.swap", true, false}};
  auto choice = choose_bundle_disks(spec, disks);
  ASSERT_TRUE(choice) << choice.error().to_string();
  EXPECT_EQ(choice->root, 0u) << "root= decides, even where kiln saw no os-release";
  EXPECT_THAT(choice->swaps, ElementsAre(1u));
  EXPECT_EQ(choice->how, "sda1 (debian-5.0.img), which root=/dev/sda1 names");
}

TEST(BundleImport, RootNamesAPartitionOfAWholeDisk) {
  DomainSpec spec = parsed(R"(name = "d"
disk = ['file:/x/swap.img,xvdb,w', 'file:/x/disk.img,xvda,w']
root = "/dev/xvda2 ro"
)");
  std::vector<BundleDisk> disks = {{&spec.disks[0], "swap.img", true, false}, {&spec.disks[1], "disk.img"}};
  auto choice = choose_bundle_disks(spec, disks);
  ASSERT_TRUE(choice) << choice.error().to_string();
  EXPECT_EQ(choice->root, 1u);
  EXPECT_THAT(choice->swaps, ElementsAre(0u));
}

TEST(BundleImport, WithoutAUsableRootTheFirstRootFilesystemIsTheRoot) {
  for (std::string_view root : {"", "root = \"UUID=0e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c ro\"\n",
                                "root = \"/dev/hda1 ro\"\n"}) {
    SCOPED_TRACE(root);
    DomainSpec spec = parsed(std::string("disk = ['file:/a.swap,sda2,w', 'file:/a.img,sda1,w']\n") + std::string(root));
    std::vector<BundleDisk> disks = {{&spec.disks[0], "a.swap", true, false}, {&spec.disks[1], "a.img", false, true}};
    auto choice = choose_bundle_disks(spec, disks);
    ASSERT_TRUE(choice) << choice.error().to_string();
    EXPECT_EQ(choice->root, 1u);
    EXPECT_THAT(choice->how, HasSubstr("sda1 (a.img), "));
    EXPECT_THAT(choice->how, HasSubstr("the first disk with a root filesystem"));
  }
}

TEST(BundleImport, NoRootOrAThirdKindOfDiskIsRefused) {
  DomainSpec spec = parsed("disk = ['file:/a.img,sda1,w', 'file:/a.swap,sda2,w']\n");
  auto none = choose_bundle_disks(spec, {{&spec.disks[0], "a.img"}, {&spec.disks[1], "a.swap", true}});
  ASSERT_FALSE(none);
  EXPECT_THAT(none.error().message, HasSubstr("no disk of the config is a root filesystem"));
  EXPECT_THAT(none.error().detail, HasSubstr("sda1 (a.img): no ext2/3/4 filesystem with /etc/os-release"));
  EXPECT_THAT(none.error().detail, HasSubstr("sda2 (a.swap): a swap area"));

  DomainSpec three = parsed(
      "root = '/dev/sda1 ro'\ndisk = ['file:/a.img,sda1,w', 'file:/a.swap,sda2,w', 'file:/home.img,sda3,w']\n");
  auto data = choose_bundle_disks(
      three, {{&three.disks[0], "a.img"}, {&three.disks[1], "a.swap", true}, {&three.disks[2], "home.img"}});
  ASSERT_FALSE(data);
  EXPECT_EQ(data.error().where.line, 2);
  EXPECT_THAT(data.error().message,
              HasSubstr("disk sda3 (home.img) is neither the root (sda1 (a.img)) nor a swap area"));

  DomainSpec swapped = parsed("root = '/dev/sda2 ro'\ndisk = ['file:/a.img,sda1,w', 'file:/a.swap,sda2,w']\n");
  auto on_swap =
      choose_bundle_disks(swapped, {{&swapped.disks[0], "a.img", false, true}, {&swapped.disks[1], "a.swap", true}});
  ASSERT_FALSE(on_swap);
  EXPECT_THAT(on_swap.error().message, HasSubstr("root names /dev/sda2, but sda2 (a.swap) is a swap area"));
  EXPECT_EQ(on_swap.error().where.line, 1);
}

TEST(BundleImport, RootMayComeFromExtra) {
  DomainSpec spec = parsed("extra = 'root=/dev/xvda1 console=hvc0'\ndisk = ['file:/a.img,xvda1,w']\n");
  EXPECT_EQ(config_root_device(spec), "xvda1");
  EXPECT_EQ(config_root_device(parsed("root = 'LABEL=root ro'\n")), "");
}

TEST(BundleImport, FlagsWinOverTheConfigsShapeWhichWinsOverTheDefaults) {
  DomainSpec spec = parsed("memory = 384\nvcpus = 3\n");
  std::optional<uint64_t> memory;
  std::optional<int> vcpus;
  take_config_shape(spec, memory, vcpus);
  EXPECT_EQ(memory, 384u);
  EXPECT_EQ(vcpus, 3);

  memory = 2048;
  vcpus.reset();
  take_config_shape(spec, memory, vcpus);
  EXPECT_EQ(memory, 2048u) << "--memory wins";
  EXPECT_EQ(vcpus, 3);

  memory.reset();
  vcpus.reset();
  take_config_shape(parsed("name = 'd'\n"), memory, vcpus);
  EXPECT_FALSE(memory) << "no memory = ...: kiln import's default";
  EXPECT_FALSE(vcpus) << "no vcpus = ...: kiln import's default, not Xen's 1";
}

}  // namespace
}  // namespace kiln
