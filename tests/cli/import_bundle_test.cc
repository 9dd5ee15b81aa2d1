// `kiln import` of a jailtime-style bundle as a user runs it, on a tiny
// root filesystem made here (mke2fs -d: an os-release, the host's shell, a
// stand-in kernel and initramfs), a swap image made by mkswap and a Xen
// config, tarred plain or compressed: told from a disk by its content, the
// config's memory honoured unless --memory says otherwise, the swap carried
// and attached in the Xen config written beside it, the provenance in the
// manifest. And each bundle that is refused: named, exit 2, nothing left.
// The boot of such an import is tests/integration/import_test.cc's.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ProcessResult;
using testing::read_text;
using testing::run_kiln;
using testing::run_program;
using testing::write_text;

constexpr std::string_view kConfig = R"(#  -*- mode: python; -*-
kernel = "/boot/vmlinuz-2.6.18-xenU"
memory = 192
name = "debian"
vif = [ '' ]
dhcp = "dhcp"
disk = ['file:/path/to/debian-5.0.img,sda1,w', 'file:/path/to/debian-5.0.swap,sda2,w']
root = "/dev/sda1 ro"
)";

class ImportBundle : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::path tree = dir_ / "tree";
    write_text(tree / "etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 5.0 (lenny)\"\nID=debian\n");
    write_text(tree / "boot/vmlinuz-2.6.26-2-amd64", "a kernel\n");
    write_text(tree / "boot/initrd.img-2.6.26-2-amd64", "an initramfs\n");
    fs::create_directories(tree / "bin");
    fs::copy_file("/bin/sh", tree / "bin/sh");
    fs::create_directories(dir_ / "bundle/debian-5.0");
    run({"mke2fs", "-q", "-t", "ext3", "-d", tree.string(), path("bundle/debian-5.0/debian-5.0.img"), "16M"});
    run({"truncate", "-s", "8M", path("bundle/debian-5.0/debian-5.0.swap")});
    run({"mkswap", "-q", path("bundle/debian-5.0/debian-5.0.swap")});
    write_text(dir_ / "bundle/debian-5.0/debian-5.0.xen.cfg", std::string(kConfig));
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  ProcessResult run(const std::vector<std::string>& argv) {
    ProcessResult result = run_program(argv);
    EXPECT_EQ(result.exit_code, 0) << argv[0] << ": " << result.err;
    return result;
  }
  // tar of bundle/ with `flags` (-j for bzip2...), the named members.
  std::string tar(const std::string& name, const std::string& flags, const std::vector<std::string>& members) {
    std::vector<std::string> argv = {"tar", "-c" + flags + "f", path(name), "-C", path("bundle")};
    argv.insert(argv.end(), members.begin(), members.end());
    run(argv);
    return path(name);
  }
  std::string jailtime(const std::string& name, const std::string& flags = "j") {
    return tar(name, flags, {"debian-5.0"});
  }
  ProcessResult import(const std::string& bundle, std::vector<std::string> more = {}) {
    std::vector<std::string> args = {"import", bundle, "-o", path("out/jail")};
    args.insert(args.end(), more.begin(), more.end());
    return run_kiln(args);
  }
  // A refusal: exit 2, the message, and neither an output nor a staging
  // directory left in out/.
  void expect_refused(const ProcessResult& result, const std::string& message) {
    EXPECT_EQ(result.exit_code, 2) << result.err;
    EXPECT_THAT(result.err, HasSubstr(message));
    EXPECT_THAT(testing::list_tree(dir_ / "out"), ::testing::IsEmpty());
  }
  testing::ScratchDir dir_;
};

TEST_F(ImportBundle, EveryCompressionIsToldByContentAndImports) {
  for (const std::string flags : {"", "z", "j", "J"}) {
    SCOPED_TRACE("tar -c" + flags);
    std::string bundle = jailtime("jail.bin", flags);
    ProcessResult imported = import(bundle);
    ASSERT_EQ(imported.exit_code, 0) << imported.err;
    EXPECT_THAT(imported.out, HasSubstr("root: sda1 (debian-5.0/debian-5.0.img), which root=/dev/sda1 names: the "
                                        "whole disk (it has /etc/os-release)"));
    nlohmann::json m = nlohmann::json::parse(read_text(dir_ / "out/jail/manifest.json"));
    EXPECT_EQ(m["imported"]["format"], "tar");
    EXPECT_EQ(m["image"]["layout"], "plain");
    fs::remove(bundle);
  }
}

TEST_F(ImportBundle, TheOutputHasTheRootTheSwapAndAXenConfigThatAttachesIt) {
  std::string bundle = jailtime("debian-5.0.tar.bz2");
  ProcessResult imported = import(bundle, {"--vcpus", "3"});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_THAT(imported.out, HasSubstr("config: debian-5.0/debian-5.0.xen.cfg (192 MiB, 3 vCPUs)"));
  EXPECT_THAT(imported.out, HasSubstr("swap: debian-5.0/debian-5.0.swap (sda2) as swap.img"));
  fs::path out = dir_ / "out/jail";
  EXPECT_EQ(testing::list_tree(out), (std::vector<std::string>{"debian.xl.cfg", "initrd.img", "manifest.json",
                                                               "root.img", "swap.img", "vmlinuz"}));
  EXPECT_EQ(read_text(out / "vmlinuz"), "a kernel\n");
  uint64_t allocated = std::stoull(run({"stat", "-c", "%b", (out / "root.img").string()}).out) * 512;
  EXPECT_LT(allocated, 8u << 20) << "the 16 MiB image, stored whole in the tar, stays sparse";
  EXPECT_EQ(run({"cmp", path("bundle/debian-5.0/debian-5.0.img"), (out / "root.img").string()}).exit_code, 0)
      << "but for kiln's agent, which is not installed without systemd";
  EXPECT_EQ(run({"cmp", path("bundle/debian-5.0/debian-5.0.swap"), (out / "swap.img").string()}).exit_code, 0);

  nlohmann::json m = nlohmann::json::parse(read_text(out / "manifest.json"));
  EXPECT_EQ(m["image"]["name"], "debian") << "the config's name";
  EXPECT_EQ(m["image"]["memory_mib"], 192) << "the config's memory";
  EXPECT_EQ(m["image"]["vcpus"], 3) << "--vcpus wins over the config (which has none)";
  EXPECT_EQ(m["image"]["root_filesystem"]["type"], "ext3");
  EXPECT_EQ(m["imported"]["file"], bundle);
  EXPECT_EQ(m["imported"]["sha256"], run({"sha256sum", bundle}).out.substr(0, 64));
  EXPECT_EQ(m["imported"]["config"], "debian-5.0/debian-5.0.xen.cfg");
  EXPECT_EQ(m["imported"]["disks"],
            nlohmann::json::parse(R"([{"member": "debian-5.0/debian-5.0.img", "device": "sda1", "use": "root",
                                       "file": "root.img"},
                                      {"member": "debian-5.0/debian-5.0.swap", "device": "sda2", "use": "swap",
                                       "file": "swap.img"}])"));
  std::vector<std::string> artifacts;
  for (const auto& a : m["artifacts"]) artifacts.push_back(a["file"]);
  EXPECT_THAT(artifacts, ::testing::UnorderedElementsAre("root.img", "vmlinuz", "initrd.img", "swap.img",
                                                         "debian.xl.cfg"));

  std::string cfg = read_text(out / "debian.xl.cfg");
  EXPECT_THAT(cfg, HasSubstr("kernel = \"" + (out / "vmlinuz").string() + "\""));
  EXPECT_THAT(cfg, HasSubstr("memory = 192\n"));
  EXPECT_THAT(cfg, HasSubstr("vcpus = 3\n"));
  EXPECT_THAT(cfg, HasSubstr("root = \"/dev/sda1 ro\"")) << "a device name, which UML boots without an initramfs";
  EXPECT_THAT(cfg, HasSubstr("disk = [\n    'file:" + (out / "root.img").string() + ",sda1,w',\n    'file:" +
                             (out / "swap.img").string() + ",sda2,w',\n]\n"));
  EXPECT_THAT(cfg, HasSubstr("vif = ['']\n")) << "the bundle's";

  // Again, with --memory: the flag wins, and the output is replaced whole.
  ProcessResult again = import(bundle, {"--memory", "512M"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(nlohmann::json::parse(read_text(out / "manifest.json"))["image"]["memory_mib"], 512);
  EXPECT_EQ(testing::list_tree(dir_ / "out"), (std::vector<std::string>{"jail", "jail/debian.xl.cfg",
                                                                        "jail/initrd.img", "jail/manifest.json",
                                                                        "jail/root.img", "jail/swap.img",
                                                                        "jail/vmlinuz"}));
}

TEST_F(ImportBundle, ABundleWithoutAConfigIsRefused) {
  std::string bundle = tar("noconfig.tar.bz2", "j", {"debian-5.0/debian-5.0.img", "debian-5.0/debian-5.0.swap"});
  expect_refused(import(bundle), bundle + ": no Xen domain config (a file named *.cfg) in the bundle");
}

TEST_F(ImportBundle, ABundleWithTwoConfigsIsRefusedNamingThem) {
  write_text(dir_ / "bundle/debian-5.0/debian-5.0.xen3.cfg", std::string(kConfig));
  std::string bundle = jailtime("two.tar.bz2");
  expect_refused(import(bundle), "2 Xen domain configs in the bundle (debian-5.0/debian-5.0.xen.cfg, "
                                 "debian-5.0/debian-5.0.xen3.cfg)");
  EXPECT_THAT(import(bundle).err, HasSubstr(bundle));
}

TEST_F(ImportBundle, AConfigWhoseDiskIsNotInTheBundleIsRefusedAtItsLine) {
  std::string bundle =
      tar("noswap.tar.bz2", "j", {"debian-5.0/debian-5.0.img", "debian-5.0/debian-5.0.xen.cfg"});
  expect_refused(import(bundle), bundle + "(debian-5.0/debian-5.0.xen.cfg):7:48: disk sda2: "
                                          "\"/path/to/debian-5.0.swap\" is not in the bundle");
}

TEST_F(ImportBundle, AMalformedConfigIsRefusedAtItsLine) {
  write_text(dir_ / "bundle/debian-5.0/debian-5.0.xen.cfg", "name = \"debian\"\nmemory = 12O\n");
  std::string bundle = jailtime("bad.tar.bz2");
  expect_refused(import(bundle), bundle + "(debian-5.0/debian-5.0.xen.cfg):2:10: bad number '12O'");
}

TEST_F(ImportBundle, WhatIsNoArchiveIsRefusedByName) {
  write_text(dir_ / "notes.tar.bz2", "these are not the files you are looking for\n");
  ProcessResult text = import(path("notes.tar.bz2"));
  expect_refused(text, path("notes.tar.bz2") + ": not a disk image kiln reads");
  EXPECT_THAT(text.err, HasSubstr("nor an archive"));

  run({"sh", "-c", "echo 'not a tar' | bzip2 > " + path("fake.tar.bz2")});
  ProcessResult compressed = import(path("fake.tar.bz2"));
  expect_refused(compressed, "not a readable tar or cpio archive (after bzip2 decompression)");
  EXPECT_THAT(compressed.err, HasSubstr(path("fake.tar.bz2")));
}

TEST_F(ImportBundle, ASymlinkInTheBundleIsRefusedByName) {
  fs::create_symlink("/etc/shadow", dir_ / "bundle/debian-5.0/shadow");
  std::string bundle = jailtime("link.tar.bz2");
  expect_refused(import(bundle), "entry \"debian-5.0/shadow\" is a symlink; kiln takes only regular files");
}

TEST_F(ImportBundle, AnEntryClimbingOutIsRefusedAsTheArchiveItIs) {
  // GNU tar strips a leading "../"; Python's tarfile writes the name as given.
  run({"python3", "-c",
       "import io, sys, tarfile\n"
       "t = tarfile.open(sys.argv[1], 'w:bz2')\n"
       "i = tarfile.TarInfo('../../debian.cfg'); i.size = 4\n"
       "t.addfile(i, io.BytesIO(b'x=1\\n')); t.close()\n",
       path("climb.tar.bz2")});
  ProcessResult imported = import(path("climb.tar.bz2"));
  expect_refused(imported, path("climb.tar.bz2"));
  EXPECT_THAT(imported.err, HasSubstr(".."));
  EXPECT_THAT(imported.err, ::testing::Not(HasSubstr("not a disk image")));
  EXPECT_FALSE(fs::exists(dir_.path().parent_path() / "debian.cfg"));
}

TEST_F(ImportBundle, AnOutputThatIsNoKilnOutputIsRefusedBeforeUnpacking) {
  write_text(dir_ / "out/jail/precious", "keep\n");
  ProcessResult imported = import(jailtime("j.tar.bz2"));
  EXPECT_EQ(imported.exit_code, 2);
  EXPECT_THAT(imported.err, HasSubstr("exists and is not a kiln output directory"));
  EXPECT_EQ(testing::list_tree(dir_ / "out"), (std::vector<std::string>{"jail", "jail/precious"}));
}

}  // namespace
}  // namespace kiln
