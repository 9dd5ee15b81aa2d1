// Xen disk specs as xl-disk-configuration(5) and xm's configs wrote them.
#include "formats/domain/xen_disk_spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kiln {
namespace {

using ::testing::HasSubstr;

DomainDisk disk(std::string_view spec) {
  auto parsed = parse_xen_disk_spec(spec, {"d.cfg", 3});
  EXPECT_TRUE(parsed) << spec << ": " << parsed.error().to_string();
  return parsed ? *parsed : DomainDisk{};
}

std::string refusal(std::string_view spec) {
  auto parsed = parse_xen_disk_spec(spec, {"d.cfg", 3});
  if (parsed) return "(parsed)";
  EXPECT_EQ(parsed.error().kind, ErrorKind::kBadInput);
  return parsed.error().to_string();
}

// The equivalent spellings xl-disk-configuration(5) lists side by side.
TEST(XenDiskSpec, TheManualsEquivalentFormsReadAlike) {
  DomainDisk expected = disk("format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume");
  for (std::string_view spec : {"/dev/vg/guest-volume,,hda", "/dev/vg/guest-volume,raw,hda,rw",
                                "raw:/dev/vg/guest-volume,hda,w"}) {
    EXPECT_EQ(disk(spec), expected) << spec;
  }
  EXPECT_EQ(expected.path, "/dev/vg/guest-volume");
  EXPECT_EQ(expected.frontend, "hda");
  EXPECT_FALSE(expected.read_only);
  EXPECT_FALSE(expected.cdrom);

  DomainDisk cdrom = disk("format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso");
  for (std::string_view spec : {"/root/image.iso,,hdc,cdrom", "/root/image.iso,,hdc,,cdrom",
                                "/root/image.iso,raw,hdc,devtype=cdrom", "raw:/root/image.iso,hdc:cdrom,ro"}) {
    EXPECT_EQ(disk(spec), cdrom) << spec;
  }
  EXPECT_TRUE(cdrom.cdrom);
  EXPECT_TRUE(cdrom.read_only);
}

TEST(XenDiskSpec, XlsExampleConfigsPositionalForm) {
  DomainDisk d = disk("/dev/vg/guest-volume,raw,xvda,rw");
  EXPECT_EQ(d.path, "/dev/vg/guest-volume");
  EXPECT_EQ(d.format, DiskFormat::kRaw);
  EXPECT_EQ(d.frontend, "xvda");
  EXPECT_EQ(d.where.to_string(), "d.cfg:3");
  EXPECT_EQ(disk("/srv/a.qcow2,qcow2,xvdb").format, DiskFormat::kQcow2);
  EXPECT_TRUE(disk("/srv/a.raw,,xvdb,r").read_only);
}

TEST(XenDiskSpec, XmPrefixesSayTheBackendAndSometimesTheFormat) {
  EXPECT_EQ(disk("phy:vg0/feisty,sda1,w").path, "/dev/vg0/feisty");  // xm's phy: is under /dev
  EXPECT_EQ(disk("phy:vg0/feisty,sda1,w").backend, DiskBackend::kPhy);
  EXPECT_EQ(disk("file:/srv/a.img,xvda1,w").backend, DiskBackend::kFile);
  DomainDisk aio = disk("tap:aio:/srv/feisty.img,sda1,w");
  EXPECT_EQ(aio.backend, DiskBackend::kTapAio);
  EXPECT_EQ(aio.path, "/srv/feisty.img");
  EXPECT_EQ(aio.frontend, "sda1");
  DomainDisk qcow = disk("tap:qcow2:/srv/feisty.qcow2,xvda,w");
  EXPECT_EQ(qcow.format, DiskFormat::kQcow2);
  EXPECT_EQ(qcow.path, "/srv/feisty.qcow2");
  EXPECT_EQ(disk("file:/srv/a.img,xvda1").read_only, false);  // xl's default access
  EXPECT_EQ(disk("file:/srv/a.img,ioemu:hda,w").frontend, "hda");
  EXPECT_TRUE(disk("file:/srv/install.iso,hdc:cdrom,r").cdrom);
}

TEST(XenDiskSpec, TargetTakesTheRestCommasIncludedAndKeywordsComeInAnyOrder) {
  DomainDisk d = disk("vdev=xvda, access=ro, format=qcow2, target=/srv/a,b.qcow2");
  EXPECT_EQ(d.path, "/srv/a,b.qcow2");
  EXPECT_TRUE(d.read_only);
  EXPECT_EQ(d.format, DiskFormat::kQcow2);
  EXPECT_EQ(disk("vdev=xvdb, backendtype=phy, target=vg0/data").path, "/dev/vg0/data");
  // Positional parameters fill the slots not given by name.
  DomainDisk named = disk("format=raw, /srv/x.img, xvdc");
  EXPECT_EQ(named.path, "/srv/x.img");
  EXPECT_EQ(named.frontend, "xvdc");
}

TEST(XenDiskSpec, HostSideFlagsAreAcceptedAndChangeNothing) {
  EXPECT_EQ(disk("/srv/a.img,raw,xvda,rw,direct-io-safe,discard"), disk("/srv/a.img,raw,xvda,rw"));
  EXPECT_EQ(disk("specification=virtio, /srv/a.img,raw,xvda"), disk("/srv/a.img,raw,xvda"));
}

TEST(XenDiskSpec, AnEmptyCdromDriveHasNoTarget) {
  DomainDisk empty = disk(",,hdc:cdrom,r");
  EXPECT_TRUE(empty.cdrom);
  EXPECT_TRUE(empty.path.empty());
  EXPECT_THAT(refusal(",,xvda,w"), HasSubstr("no target"));
}

TEST(XenDiskSpec, ErrorsQuoteTheSpecAndNameTheLine) {
  EXPECT_EQ(refusal("/srv/a.img"),
            "d.cfg:3: bad disk spec '/srv/a.img': no guest device (vdev): write it as in "
            "'/srv/disk.raw,raw,xvda,rw' or 'phy:vg0/feisty,xvda1,w'");
  EXPECT_EQ(refusal("phy:vg0/feisty"),
            "d.cfg:3: bad disk spec 'phy:vg0/feisty': no guest device (vdev): write it as in "
            "'/srv/disk.raw,raw,xvda,rw' or 'phy:vg0/feisty,xvda1,w'");
  EXPECT_EQ(refusal("file:,xvda,w"), "d.cfg:3: bad disk spec 'file:,xvda,w': the path after file: is empty");
  EXPECT_THAT(refusal("/a.img,raw,xvda,x"), HasSubstr("bad access 'x': expected r, ro, w or rw"));
  EXPECT_THAT(refusal("/a.img,raw,vda,w"), HasSubstr("bad guest device 'vda'"));
  EXPECT_THAT(refusal("/a.vhd,vhd,xvda"), HasSubstr("format vhd: kiln reads raw and qcow2"));
  EXPECT_THAT(refusal("tap:vhd:/a.vhd,xvda,w"), HasSubstr("'tap:vhd' images: kiln reads raw and qcow2"));
  EXPECT_THAT(refusal("/a.img,raw,xvda,rw,extra"), HasSubstr("too many parameters at 'extra'"));
  EXPECT_THAT(refusal("vdev=xvda, vdev=xvdb, target=/a"), HasSubstr("vdev is given twice"));
  EXPECT_THAT(refusal("/a.img,,xvda,rw,backend=driverdom"), HasSubstr("driver domain"));
  EXPECT_THAT(refusal("/a.img,,xvda,script=block-iscsi"), HasSubstr("dom0 block script"));
  EXPECT_THAT(refusal("/a.img,,xvda,frobnicate=1"), HasSubstr("unknown parameter 'frobnicate'"));
  EXPECT_THAT(refusal("/a.iso,,hdc,rw,cdrom"), HasSubstr("a cdrom is read-only"));
  EXPECT_THAT(refusal("/a.iso,,hdc,devtype=floppy"), HasSubstr("bad devtype 'floppy'"));
}

TEST(XenDiskSpec, WrittenSpecsReadBackAlike) {
  for (std::string_view spec : {"file:/srv/a.img,xvda1,w", "phy:/dev/vg0/x,sda1,r",
                                "format=qcow2, vdev=xvda, access=rw, target=/srv/a,b.qcow2",
                                "/root/x.iso,,hdc,cdrom", ",,hdc:cdrom,r", "tap:aio:/srv/f.img,sda3,w"}) {
    DomainDisk original = disk(spec);
    EXPECT_EQ(disk(write_xen_disk_spec(original)), original) << spec << " -> " << write_xen_disk_spec(original);
  }
}

}  // namespace
}  // namespace kiln
