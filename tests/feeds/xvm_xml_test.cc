// xvm.xml: the published sample reads as the format says; what kiln writes
// reads back the same; a src that would reach outside the archive, or any
// other inconsistency, is refused with its line.
#include "feeds/xvm_xml.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kiln {
namespace {

using ::testing::HasSubstr;

// The shape of the 2007 vmcast sample (a Debian 3.1 image).
constexpr const char* kSample = R"(<?xml version="1.0" ?>
<appliance>
  <name xml:lang="en">
    <label>Debian 3.1</label>
    <shortdesc>Debian 3.1</shortdesc>
    <longdesc>Debian 3.1 minimal install optimized for XEN</longdesc>
    <detail>Debian 3.1 minimal install optimized for XEN</detail>
  </name>
  <version>1.0</version>
  <vm name="debian 3.1">
    <name xml:lang="en">
      <label>debian 3.1</label>
      <shortdesc>debian 3.1</shortdesc>
      <longdesc>debian 3.1</longdesc>
      <detail>debian 3.1</detail>
    </name>
    <memory static_min="128 MiB" />
    <vbd name="sda1" vdi="sda1" mode="RW" />
  </vm>
  <vdi name="sda1" src="file:///sda1.img.gz" variety="system" compression='gzip'>
    <name><label>debian 3.1 scsi disk 1</label></name>
  </vdi>
</appliance>
)";

std::string with_vdi(const std::string& attributes) {
  return "<appliance>\n<version>1</version>\n<vdi name=\"d\" " + attributes + " />\n</appliance>\n";
}

TEST(XvmXml, ReadsThePublishedSample) {
  auto xvm = parse_xvm_xml(kSample, "xvm.xml");
  ASSERT_TRUE(xvm) << xvm.error().to_string();
  EXPECT_EQ(xvm->names.label, "Debian 3.1");
  EXPECT_EQ(xvm->names.longdesc, "Debian 3.1 minimal install optimized for XEN");
  EXPECT_EQ(xvm->version, "1.0");
  ASSERT_EQ(xvm->vms.size(), 1u);
  EXPECT_EQ(xvm->vms[0].memory_static_min, "128 MiB");
  ASSERT_EQ(xvm->vms[0].vbds.size(), 1u);
  EXPECT_EQ(xvm->vms[0].vbds[0].mode, "RW");
  ASSERT_EQ(xvm->vdis.size(), 1u);
  EXPECT_EQ(xvm->vdis[0].member, "sda1.img.gz");
  EXPECT_EQ(xvm->vdis[0].compression, "gzip");
  EXPECT_EQ(xvm->vdis[0].variety, "system");
  EXPECT_EQ(xvm->vdis[0].label, "debian 3.1 scsi disk 1");
  EXPECT_FALSE(xvm->vdis[0].size);
}

TEST(XvmXml, WhatKilnWritesReadsBackTheSame) {
  XvmDescription description;
  description.names = {"web", "web 2.0", "A web server & <friends>", "Baked by kiln"};
  description.version = "2.0";
  description.vms.push_back({"web", {"web", "web", "long", "detail"}, "1024 MiB", {{"xvda", "disk.raw", "RW"}}});
  description.vdis.push_back({"disk.raw", "disk.raw.img.gz", "system", "gzip", 2147483648u, "disk.raw", "web disk"});
  description.vdis.push_back({"vmlinuz", "vmlinuz.img.gz", "kernel", "gzip", 8222656u, "vmlinuz", "web kernel"});
  auto text = write_xvm_xml(description);
  ASSERT_TRUE(text) << text.error().to_string();
  EXPECT_THAT(*text, HasSubstr("src=\"file:///disk.raw.img.gz\""));
  EXPECT_THAT(*text, HasSubstr("compression=\"gzip\""));
  EXPECT_THAT(*text, HasSubstr("<memory static_min=\"1024 MiB\" />"));
  auto back = parse_xvm_xml(*text, "xvm.xml");
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, description);
}

TEST(XvmXml, ASrcOutsideTheArchiveIsRefusedWithItsLine) {
  for (const char* src : {"file:///../etc/shadow", "file:////etc/shadow", "../x.img.gz", "http://elsewhere/x.img.gz",
                          "file:///a/../../b", "file://host/x.img.gz"}) {
    auto xvm = parse_xvm_xml(with_vdi(std::string("src=\"") + src + "\""), "xvm.xml");
    ASSERT_FALSE(xvm) << src;
    EXPECT_EQ(xvm.error().where.to_string(), "xvm.xml:3") << src;
    EXPECT_THAT(xvm.error().message, HasSubstr("vdi 'd'")) << src;
  }
}

TEST(XvmXml, InconsistentDescriptionsAreRefused) {
  auto compression = parse_xvm_xml(with_vdi("src=\"file:///d.img.bz2\" compression=\"bzip2\""), "x");
  ASSERT_FALSE(compression);
  EXPECT_THAT(compression.error().message, HasSubstr("only gzip"));
  auto size = parse_xvm_xml(with_vdi("src=\"file:///d.img.gz\" size=\"12k\""), "x");
  ASSERT_FALSE(size);
  EXPECT_THAT(size.error().message, HasSubstr("not a number of bytes"));
  auto twice = parse_xvm_xml("<appliance><vdi name=\"a\" src=\"file:///a.gz\"/><vdi name=\"b\" src=\"file:///a.gz\"/>"
                             "</appliance>",
                             "x");
  ASSERT_FALSE(twice);
  EXPECT_THAT(twice.error().message, HasSubstr("another vdi names too"));
  auto dangling = parse_xvm_xml("<appliance><vm name=\"v\"><vbd name=\"xvda\" vdi=\"nope\" mode=\"RW\"/></vm>"
                                "</appliance>",
                                "x");
  ASSERT_FALSE(dangling);
  EXPECT_THAT(dangling.error().message, HasSubstr("vdi 'nope', which is not described"));
  auto malformed = parse_xvm_xml("<appliance>\n<version>1</appliance>\n", "xvm.xml");
  ASSERT_FALSE(malformed);
  EXPECT_THAT(malformed.error().to_string(), HasSubstr("xvm.xml:2: not well-formed XML"));
  auto other = parse_xvm_xml("<rss/>", "xvm.xml");
  ASSERT_FALSE(other);
  EXPECT_THAT(other.error().message, HasSubstr("not <appliance>"));
}

TEST(XvmXml, SafeMemberNames) {
  EXPECT_TRUE(is_safe_member_name("disk.raw.img.gz"));
  EXPECT_TRUE(is_safe_member_name("images/disk.img.gz"));
  for (const char* bad : {"", "/abs", "../up", "a/../b", "a//b", "./a", "a/", "tab\there", "back\\slash", ".."})
    EXPECT_FALSE(is_safe_member_name(bad)) << bad;
}

}  // namespace
}  // namespace kiln
