// Xen domain configs as people wrote them boot as they are: xl's three
// example files as Debian ships them (only their paths changed), a config as
// xen-tools writes it (bootloader = 'pygrub', a bare filesystem as xvda2),
// a partitioned disk with a grub.cfg, a menu.lst-only one, and the Xen
// book's feisty config with its bridge. The disks are made once per bake of
// the default image, from it, and shared by the tests.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "formats/ext4/ext4_image.h"
#include "tests/integration/root_filesystem.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ProcessResult;

const fs::path kImage = fs::path(KILN_INTEGRATION_DIR) / "default";
const fs::path kDisks = fs::path(KILN_INTEGRATION_DIR) / "xen-disks";

// The disks every test here boots, made from the default image.
struct XenDisks {
  fs::path bare;            // the root filesystem alone, as xen-tools' disk.img
  fs::path partition_one;   // disk.raw with the ESP removed: the root is partition 1
  fs::path grub_disk;       // partition_one with a /boot/grub/grub.cfg
  fs::path menu_lst;        // bare with a /boot/grub/menu.lst only
  fs::path swap;            // a swap area, as xen-tools adds
  fs::path qcow2;           // partition_one as a qcow2 image
  std::string kernel;       // "vmlinuz-6.1.0-X-amd64" in the image's /boot
  std::string initrd;       // its initrd.img-...
};

std::string trimmed(const std::string& text) {
  size_t end = text.find_last_not_of(" \n");
  return end == std::string::npos ? "" : text.substr(0, end + 1);
}

std::string sh(const std::string& script) {
  ProcessResult result = testing::run_program({"sh", "-ec", script});
  EXPECT_EQ(result.exit_code, 0) << script << "\n" << result.err;
  return result.out;
}

void write_into(const fs::path& image, const std::string& path, const std::string& text) {
  auto fs = Ext4Image::open(image, 0, /*writable=*/true);
  ASSERT_TRUE(fs) << fs.error().to_string();
  ASSERT_TRUE(fs->make_directory("/boot/grub", {0755, 0, 0, 1700000000}));
  ASSERT_TRUE(fs->write_file(path, text, {0644, 0, 0, 1700000000}));
  ASSERT_TRUE(fs->close());
}

// grub.cfg and menu.lst naming the image's own kernel and initrd, root on
// the device the config gives the disk.
std::string grub_cfg(const XenDisks& d) {
  return "set default=\"0\"\nset timeout=5\n"
         "menuentry 'Debian GNU/Linux' --class debian {\n"
         "\tinsmod ext2\n\tsearch --no-floppy --set=root --label root\n"
         "\tlinux /boot/" + d.kernel + " root=/dev/xvda1 ro quiet\n"
         "\tinitrd /boot/" + d.initrd + "\n}\n";
}

std::string menu_lst(const XenDisks& d) {
  return "default 0\ntimeout 2\n\ntitle Debian GNU/Linux\nroot (hd0,0)\n"
         "kernel /boot/" + d.kernel + " root=/dev/xvda2 ro\ninitrd /boot/" + d.initrd + "\n";
}

// Made once for each bake (keyed by disk.raw's mtime), under a lock: ctest
// runs these tests in parallel.
XenDisks xen_disks() {
  XenDisks d{kDisks / "disk.img", kDisks / "partition-one.raw", kDisks / "grub.raw", kDisks / "menu-lst.img",
             kDisks / "swap.img", kDisks / "partition-one.qcow2", "", ""};
  fs::create_directories(kDisks);
  int lock = ::open((kDisks / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ::flock(lock, LOCK_EX);
  auto image = Ext4Image::open(testing::root_filesystem_file(kImage), testing::root_filesystem_offset(kImage), false);
  EXPECT_TRUE(image) << image.error().to_string();
  if (image) {
    for (const std::string& name : image->list_directory("/boot").value_or(std::vector<std::string>{})) {
      if (name.starts_with("vmlinuz-")) d.kernel = name;
      if (name.starts_with("initrd.img-")) d.initrd = name;
    }
  }
  std::string stamp = std::to_string(fs::last_write_time(kImage / "disk.raw").time_since_epoch().count());
  if (testing::read_text(kDisks / "stamp") != stamp) {
    uint64_t offset = testing::root_filesystem_offset(kImage);
    auto manifest = nlohmann::json::parse(testing::read_text(kImage / "manifest.json"));
    uint64_t size = 0;
    for (const auto& partition : manifest["image"]["partitions"])
      if (partition["name"] == "root") size = partition["size"].get<uint64_t>();
    std::string raw = (kImage / "disk.raw").string();
    sh("cd " + kDisks.string() + "\n"
       "dd if=" + raw + " of=disk.img.tmp bs=1M iflag=skip_bytes,count_bytes skip=" + std::to_string(offset) +
       " count=" + std::to_string(size) + " conv=sparse status=none\n"
       "mv disk.img.tmp disk.img\n"
       "cp --sparse=always " + raw + " partition-one.tmp\n"
       "sfdisk --quiet --delete partition-one.tmp 1 && sfdisk --quiet --reorder partition-one.tmp\n"
       "mv partition-one.tmp partition-one.raw\n"
       "qemu-img convert -O qcow2 partition-one.raw partition-one.qcow2.tmp && mv partition-one.qcow2.tmp partition-one.qcow2\n"
       "rm -f swap.img && truncate -s 64M swap.img && mkswap -q swap.img\n"
       "cp --sparse=always disk.img menu-lst.img\n"
       "cp --sparse=always partition-one.raw grub.raw\n");
    write_into(d.menu_lst, "/boot/grub/menu.lst", menu_lst(d));
    // The root keeps its offset in grub.raw: Ext4Image reads it there.
    auto grub = Ext4Image::open(d.grub_disk, offset, true);
    EXPECT_TRUE(grub) << grub.error().to_string();
    if (grub) {
      EXPECT_TRUE(grub->make_directory("/boot/grub", {0755, 0, 0, 1700000000}));
      EXPECT_TRUE(grub->write_file("/boot/grub/grub.cfg", grub_cfg(d), {0644, 0, 0, 1700000000}));
      EXPECT_TRUE(grub->close());
    }
    testing::write_text(kDisks / "stamp", stamp);
  }
  ::close(lock);
  return d;
}

class XenConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    disks_ = xen_disks();
    ASSERT_FALSE(disks_.kernel.empty()) << "no /boot/vmlinuz-* in the default image";
  }
  void TearDown() override {
    for (const std::string& name : names_) kiln({"destroy", name});
  }

  std::vector<std::string> env() const {
    return {"KILN_RUNTIME_DIR=" + (dir_ / "run").string(), "KILN_STATE_DIR=" + (dir_ / "state").string()};
  }
  ProcessResult kiln(std::vector<std::string> args) const { return testing::run_kiln(args, env()); }

  fs::path config(const std::string& file, const std::string& text) const {
    testing::write_text(dir_ / file, text);
    return dir_ / file;
  }

  // Boots `cfg` to ready, detached; the instance is destroyed afterwards.
  ProcessResult boot(const fs::path& cfg, const std::string& name, std::vector<std::string> more) {
    names_.push_back(name);
    std::vector<std::string> args = {"boot", cfg.string(), "--name", name, "--detach", "--wait-ready=300"};
    args.insert(args.end(), more.begin(), more.end());
    return kiln(args);
  }

  // The device the guest mounted as /.
  std::string root_source(const std::string& name) const {
    auto result = kiln({"exec", name, "--", "findmnt", "-n", "-o", "SOURCE", "/"});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return trimmed(result.out);
  }

  std::string console(const std::string& name) const {
    return testing::tail(testing::read_text(dir_ / "run" / name / "console.log"));
  }

  XenDisks disks_;
  testing::ScratchDir dir_;
  std::vector<std::string> names_;
};

// Debian's /etc/xen/xlexample.pvlinux, with only the paths changed.
TEST_F(XenConfigTest, XlExamplePvlinuxBootsAsItIs) {
  fs::path cfg = config("xlexample.pvlinux",
                        "name = \"example.pvlinux\"\n"
                        "kernel = \"" + (kImage / "vmlinuz").string() + "\"\n"
                        "extra = \"root=/dev/xvda1\"\n"
                        "memory = 128\nvcpus = 2\nvif = [ '' ]\n"
                        "disk = [ '" + disks_.partition_one.string() + ",raw,xvda,rw' ]\n");
  auto result = boot(cfg, "pvlinux", {"--backend", "uml", "--net", "none"});
  ASSERT_EQ(result.exit_code, 0) << result.err << console("pvlinux");
  EXPECT_EQ(root_source("pvlinux"), "/dev/ubda1") << "root=/dev/xvda1 is the first disk's first partition";
}

TEST_F(XenConfigTest, XlExamplePvhlinuxBootsAsItIs) {
  fs::path cfg = config("xlexample.pvhlinux",
                        "type = \"pvh\"\nname = \"example.pvhlinux\"\n"
                        "kernel = \"" + (kImage / "vmlinuz").string() + "\"\n"
                        "extra = \"root=/dev/xvda1\"\n"
                        "memory = 512\nvcpus = 4\nvif = [ '' ]\n"
                        "disk = [ '" + disks_.partition_one.string() + ",raw,xvda,rw' ]\n");
  auto result = boot(cfg, "pvhlinux", {"--backend", "uml", "--net", "none"});
  ASSERT_EQ(result.exit_code, 0) << result.err << console("pvhlinux");
  EXPECT_EQ(root_source("pvhlinux"), "/dev/ubda1");
}

// type = "hvm": the disk boots through firmware, on qemu, whatever the
// machine; sdl = 1 gets a word, not a failure. The example's memory = 128
// is the one change besides the paths: Debian 12's 36 MB initramfs does not
// unpack in 128 MiB under any hypervisor (the firmware's loader resets the
// machine), and that is the image's need, not the config's syntax.
TEST_F(XenConfigTest, XlExampleHvmBootsTheDiskThroughFirmware) {
  fs::path cfg = config("xlexample.hvm",
                        "type = \"hvm\"\nname = \"example.hvm\"\nmemory = 256\nvcpus = 2\nvif = [ '' ]\n"
                        "disk = [ '" + (kImage / "disk.raw").string() + ",raw,xvda,rw' ]\nsdl = 1\n");
  auto result = boot(cfg, "hvm", {"--net", "none"});
  ASSERT_EQ(result.exit_code, 0) << result.err << console("hvm");
  EXPECT_THAT(result.err, HasSubstr("xlexample.hvm:7:1: 'sdl' is not acted on: kiln's guests have no display"));
  auto listed = kiln({"list", "--json"});
  auto instances = nlohmann::json::parse(listed.out);
  ASSERT_EQ(instances.size(), 1u) << listed.out;
  EXPECT_EQ(instances[0]["backend"], "qemu");
  EXPECT_EQ(root_source("hvm"), "/dev/vda2") << "the disk's own boot loader found its root";
  EXPECT_THAT(kiln({"boot", cfg.string(), "--name", "hvm-uml", "--backend", "uml"}).err,
              HasSubstr("an hvm domain boots its disk through firmware, which needs the qemu backend"));
}

// As xen-tools writes it: pygrub, the root filesystem alone as xvda2, swap
// as xvda1, no kernel anywhere in the config.
std::string xen_tools_config(const XenDisks& d, const std::string& name) {
  return "bootloader = 'pygrub'\nvcpus = '1'\nmemory = '512'\n"
         "root = '/dev/xvda2 ro'\n"
         "disk = [\n"
         "    'file:" + d.bare.string() + ",xvda2,w',\n"
         "    'file:" + d.swap.string() + ",xvda1,w',\n"
         "]\nname = '" + name + "'\n"
         "vif = [ 'ip=10.0.2.15,mac=00:16:3E:5A:11:22' ]\n"
         "on_poweroff = 'destroy'\non_reboot = 'restart'\non_crash = 'restart'\n";
}

TEST_F(XenConfigTest, AXenToolsConfigWithPygrubBootsUnderUmlAndQemu) {
  for (std::string backend : {"uml", "qemu"}) {
    std::string name = "xentools-" + backend;
    fs::path cfg = config(name + ".cfg", xen_tools_config(disks_, name));
    auto result = boot(cfg, name, {"--backend", backend, "--net", "none"});
    ASSERT_EQ(result.exit_code, 0) << backend << ": " << result.err << console(name);
    EXPECT_EQ(root_source(name), backend == "uml" ? "/dev/ubda" : "/dev/vda")
        << "xvda2 exports a bare filesystem: the guest sees a whole disk";
    if (backend == "qemu") {
      auto kernel = kiln({"exec", name, "--", "uname", "-r"});
      EXPECT_EQ("vmlinuz-" + trimmed(kernel.out), disks_.kernel)
          << "the kernel pygrub would pick from the guest's /boot";
    }
  }
}

TEST_F(XenConfigTest, APartitionedDiskWithAGrubCfgBootsItsDefaultEntry) {
  for (std::string backend : {"qemu", "uml"}) {
    std::string name = "grubcfg-" + backend;
    fs::path cfg = config(name + ".cfg", "name = '" + name + "'\nbootloader = 'pygrub'\nmemory = 512\n"
                                         "disk = ['" + disks_.grub_disk.string() + ",raw,xvda,rw']\n");
    auto result = boot(cfg, name, {"--backend", backend, "--net", "none"});
    ASSERT_EQ(result.exit_code, 0) << backend << ": " << result.err << console(name);
    EXPECT_EQ(root_source(name), backend == "uml" ? "/dev/ubda1" : "/dev/vda1")
        << "root=/dev/xvda1 from grub.cfg's entry, translated";
    auto cmdline = kiln({"exec", name, "--", "cat", "/proc/cmdline"});
    EXPECT_THAT(cmdline.out, HasSubstr("quiet")) << "the entry's own arguments are kept";
  }
}

TEST_F(XenConfigTest, AMenuLstOnlyDiskBootsUnderUmlAndQemu) {
  for (std::string backend : {"uml", "qemu"}) {
    std::string name = "menulst-" + backend;
    fs::path cfg = config(name + ".cfg", "name = '" + name + "'\nbootloader = 'pygrub'\nmemory = 512\n"
                                         "disk = ['file:" + disks_.menu_lst.string() + ",xvda2,w']\n");
    auto result = boot(cfg, name, {"--backend", backend, "--net", "none"});
    ASSERT_EQ(result.exit_code, 0) << backend << ": " << result.err << console(name);
    EXPECT_EQ(root_source(name), backend == "uml" ? "/dev/ubda" : "/dev/vda")
        << "root=/dev/xvda2 from menu.lst's entry, a bare filesystem";
  }
}

// xl's keyword form with a qcow2 image, and a cdrom: only qemu attaches
// them, so kiln picks it and says why; the cdrom is read-only in the guest.
TEST_F(XenConfigTest, AQcow2DiskAndACdromBootOnQemu) {
  fs::path cfg = config("qcow2.cfg",
                        "name = 'qcow2'\nmemory = 512\n"
                        "kernel = '" + (kImage / "vmlinuz").string() + "'\nramdisk = '" + (kImage / "initrd.img").string() + "'\n"
                        "disk = [ 'format=qcow2, vdev=xvda, access=rw, target=" + disks_.qcow2.string() + "',\n"
                        "         '" + disks_.swap.string() + ",raw,hdc,cdrom' ]\n"
                        "extra = 'root=/dev/xvda1'\n");
  auto result = boot(cfg, "qcow2", {"--net", "none"});
  ASSERT_EQ(result.exit_code, 0) << result.err << console("qcow2");
  EXPECT_THAT(result.err, HasSubstr("xvda"));
  EXPECT_THAT(result.err, HasSubstr("is a qcow2 image, which UML cannot read"));
  EXPECT_EQ(root_source("qcow2"), "/dev/vda1");
  auto ro = kiln({"exec", "qcow2", "--", "cat", "/sys/block/vdb/ro"});
  EXPECT_EQ(trimmed(ro.out), "1") << "the cdrom is attached read-only";
  EXPECT_THAT(kiln({"boot", cfg.string(), "--name", "qcow2-uml", "--backend", "uml"}).err,
              HasSubstr("is a qcow2 image, which UML cannot read: use --backend qemu"));
}

// The Xen book's feisty config: sda1 root, sda3 swap, a bridge on the vif.
TEST_F(XenConfigTest, TheBooksFeistyConfigNamesItsBridgeAndBootsWithTheFallback) {
  fs::path cfg = config("feisty.cfg",
                        "kernel = \"" + (kImage / "vmlinuz").string() + "\"\n"
                        "ramdisk = \"" + (kImage / "initrd.img").string() + "\"\n"
                        "memory = 256\nname = \"feisty\"\nvcpus = 1\nbuilder = 'linux'\n"
                        "disk = ['tap:aio:" + disks_.bare.string() + ",sda1,w',\n"
                        "        'tap:aio:" + disks_.swap.string() + ",sda3,w']\n"
                        "vif = [ 'mac=00:16:3e:00:00:10, bridge=xenbr0' ]\n"
                        "root = \"/dev/sda1 ro\"\nextra = \"console=hvc0 xencons=tty\"\n");
  testing::HostWideLock xenbr0("xenbr0");  // NetworkTest makes one for a while
  auto refused = kiln({"boot", cfg.string(), "--detach"});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.err, HasSubstr("feisty.cfg:9:9: vif bridge=xenbr0: no kiln network and no host bridge named "
                                     "xenbr0: `kiln network create xenbr0` makes one; or boot it with --net user"));
  auto result = boot(cfg, "feisty", {"--net", "user"});
  ASSERT_EQ(result.exit_code, 0) << result.err << console("feisty");
  EXPECT_THAT(root_source("feisty"), ::testing::AnyOf("/dev/ubda", "/dev/vda"));
  auto cmdline = kiln({"exec", "feisty", "--", "cat", "/proc/cmdline"});
  EXPECT_THAT(cmdline.out, HasSubstr("xencons=tty")) << "what the user wrote is kept";
}

}  // namespace
}  // namespace kiln
