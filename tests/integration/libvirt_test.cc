// kiln's NAME.libvirt.xml on Debian 12's own libvirtd, for real: defined and
// started as a libvirt user would (virsh), it boots the image through UEFI
// to a login prompt, on firmware without Secure Boot (libvirt's first pick,
// the Secure Boot firmware with Microsoft's keys, refuses kiln's unsigned
// systemd-boot). The test starts libvirtd (and virtlogd) itself when they
// are not running, PID 1 here being no service manager, and stops what it
// started.
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::ProcessResult;

const fs::path kImage = fs::path(KILN_INTEGRATION_DIR) / "default";
constexpr const char* kUri = "qemu:///system";

ProcessResult virsh(std::vector<std::string> args) {
  args.insert(args.begin(), {"virsh", "-c", kUri});
  return testing::run_program(args);
}

// libvirtd and virtlogd for the test's life: the running ones, or ones it
// starts (as daemons, their pid files in /run) and ends.
class LibvirtDaemons {
 public:
  LibvirtDaemons() {
    if (virsh({"version"}).exit_code == 0) return;
    for (const char* daemon : {"virtlogd", "libvirtd"}) {
      if (testing::run_program({daemon, "--daemon"}).exit_code == 0) started_.push_back(daemon);
    }
    up_ = testing::wait_for([] { return virsh({"version"}).exit_code == 0; }, std::chrono::seconds(30),
                            [] { return virsh({"version"}).err; });
  }
  ~LibvirtDaemons() {
    for (auto daemon = started_.rbegin(); daemon != started_.rend(); ++daemon) {
      std::ifstream pid_file("/run/" + *daemon + ".pid");
      pid_t pid = 0;
      if (pid_file >> pid && pid > 1) ::kill(pid, SIGTERM);
    }
  }
  ::testing::AssertionResult up() const { return up_; }

 private:
  std::vector<std::string> started_;
  ::testing::AssertionResult up_ = ::testing::AssertionSuccess();
};

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from << " is not in\n" << text;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

TEST(LibvirtTest, KilnsDomainXmlBootsOnDebiansLibvirtdWithoutSecureBoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "qemu:///system and starting libvirtd need root";
  if (testing::run_program({"sh", "-c", "command -v libvirtd virsh virtlogd"}).exit_code != 0)
    GTEST_SKIP() << "libvirt-daemon-system is not installed (scripts/install-deps.sh installs it)";
  fs::path xml_file = kImage / "debian-12-minimal.libvirt.xml";
  ASSERT_TRUE(fs::exists(xml_file)) << xml_file;
  LibvirtDaemons daemons;
  ASSERT_TRUE(daemons.up());

  // qemu runs as libvirt-qemu and is given the disk (libvirt changes its
  // owner): a copy of the shared image, in a directory it can reach.
  testing::ScratchDir dir;
  fs::permissions(dir.path(), fs::perms(0755));
  ASSERT_EQ(testing::run_program({"cp", "--sparse=always", (kImage / "disk.raw").string(), (dir / "disk.raw").string()})
                .exit_code,
            0);
  std::string name = fmt::format("kiln-test-{}", ::getpid());
  std::string xml = testing::read_text(xml_file);
  // The file is for KVM hosts; the backend that boots through libvirt
  // will say qemu where a host has no KVM, as this test does everywhere
  // (it is about the firmware, and TCG runs on every machine).
  xml = replaced(xml, "<domain type='kvm'>", "<domain type='qemu'>");
  xml = replaced(xml, "<name>debian-12-minimal</name>", "<name>" + name + "</name>");
  xml = replaced(xml, (kImage / "disk.raw").string(), (dir / "disk.raw").string());
  fs::path console = dir / "console.log";
  xml = replaced(xml, "<serial type='pty'>", fmt::format("<serial type='pty'><log file='{}' append='off'/>", console.string()));
  testing::write_text(dir / "domain.xml", xml);

  ProcessResult defined = virsh({"define", (dir / "domain.xml").string()});
  ASSERT_EQ(defined.exit_code, 0) << defined.err;
  struct Undefine {
    std::string name;
    ~Undefine() {
      virsh({"destroy", name});
      virsh({"undefine", name, "--nvram"});
    }
  } undefine{name};
  ProcessResult started = virsh({"start", name});
  ASSERT_EQ(started.exit_code, 0) << started.err;

  ProcessResult dumped = virsh({"dumpxml", name});
  EXPECT_THAT(dumped.out, HasSubstr("OVMF_CODE"));
  EXPECT_THAT(dumped.out, Not(HasSubstr("secboot")));
  EXPECT_THAT(dumped.out, Not(HasSubstr("secure='yes'")));
  EXPECT_TRUE(testing::wait_for(
      [&] { return testing::read_text(console).find("login:") != std::string::npos; }, std::chrono::seconds(300),
      [&] { return testing::tail(testing::read_text(console)); }));
  EXPECT_THAT(testing::read_text(console), Not(HasSubstr("Access Denied")));
}

}  // namespace
}  // namespace kiln
