// libvirt on Debian 12's own libvirtd, for real. kiln's NAME.libvirt.xml,
// defined and started as a libvirt user would (virsh), boots the image
// through UEFI to a login prompt, on firmware without Secure Boot (libvirt's
// first pick, the Secure Boot firmware with Microsoft's keys, refuses kiln's
// unsigned systemd-boot). `kiln boot --connect qemu:///system` boots the
// image to ready through libvirt's API, uploading it to the storage pool
// once, and the lifecycle verbs and `kiln list --connect` act on kiln's
// domains only. The test starts libvirtd (and virtlogd) itself when they
// are not running, PID 1 here being no service manager, and stops what it
// started.
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <thread>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

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
// starts (as daemons, their pid files in /run) and ends. Held by one test
// at a time: another test's end would take them away mid-way.
class LibvirtDaemons {
 public:
  LibvirtDaemons() : lock_("libvirtd") {
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
  testing::HostWideLock lock_;
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

// The instances `kiln list --connect` shows, by name: their state and
// ready time.
// `kiln boot --json` prints its progress as JSON lines, the result last.
nlohmann::json last_json_line(const std::string& out) {
  std::string text = out.substr(0, out.find_last_not_of('\n') + 1);
  return nlohmann::json::parse(text.substr(text.rfind('\n') + 1));
}

std::map<std::string, nlohmann::json> listed(const std::vector<std::string>& env) {
  std::map<std::string, nlohmann::json> out;
  ProcessResult list = testing::run_kiln({"list", "--connect", kUri, "--json"}, env);
  EXPECT_EQ(list.exit_code, 0) << list.err;
  if (list.exit_code == 0)
    for (const auto& instance : nlohmann::json::parse(list.out)) out[instance["name"]] = instance;
  return out;
}

TEST(LibvirtTest, KilnBootsThroughLibvirtUploadsAnImageOnceAndActsOnItsOwnDomainsOnly) {
  if (::geteuid() != 0) GTEST_SKIP() << "qemu:///system and starting libvirtd need root";
  if (testing::run_program({"sh", "-c", "command -v libvirtd virsh virtlogd"}).exit_code != 0)
    GTEST_SKIP() << "libvirt-daemon-system is not installed (scripts/install-deps.sh installs it)";
  LibvirtDaemons daemons;
  ASSERT_TRUE(daemons.up());
  testing::ScratchDir dir;
  std::vector<std::string> env = {"KILN_RUNTIME_DIR=" + (dir / "run").string(),
                                  "KILN_STATE_DIR=" + (dir / "state").string()};
  std::string web = fmt::format("lvweb{}", ::getpid()), db = fmt::format("lvdb{}", ::getpid());
  std::string other = fmt::format("notkiln{}", ::getpid());
  struct Cleanup {
    std::vector<std::string> env;
    std::vector<std::string> names;
    std::string other;
    ~Cleanup() {
      for (const std::string& name : names) testing::run_kiln({"destroy", name, "--connect", kUri}, env);
      virsh({"undefine", other});
    }
  } cleanup{env, {web, db}, other};
  // A domain kiln did not make, which kiln leaves alone.
  testing::write_text(dir / "other.xml", fmt::format("<domain type='qemu'><name>{}</name><memory unit='MiB'>64</memory>"
                                                     "<os><type arch='x86_64'>hvm</type></os></domain>", other));
  ASSERT_EQ(virsh({"define", (dir / "other.xml").string()}).exit_code, 0);

  ProcessResult booted = testing::run_kiln(
      {"boot", kImage.string(), "--name", web, "--connect", kUri, "--wait-ready=300", "--json"}, env);
  ASSERT_EQ(booted.exit_code, 0) << booted.err;
  auto outcome = last_json_line(booted.out);
  EXPECT_GT(outcome["ready_seconds"].get<double>(), 0);
  EXPECT_THAT(booted.err, HasSubstr("libvirt at qemu:///system"));
  // The same image again: nothing but its own seed goes to the host.
  ProcessResult again = testing::run_kiln({"boot", kImage.string(), "--name", db, "--connect", kUri, "--json"}, env);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(last_json_line(again.out)["uploaded"], nlohmann::json::array());

  auto instances = listed(env);
  EXPECT_FALSE(instances.contains(other));
  ASSERT_TRUE(instances.contains(web));
  EXPECT_EQ(instances[web]["id"], outcome["id"]);
  EXPECT_EQ(instances[web]["state"], "running");
  EXPECT_GT(instances[web]["ready_seconds"].get<double>(), 0);
  ProcessResult dumped = virsh({"dumpxml", web});
  testing::write_text(dir / "web.xml", dumped.out);
  ProcessResult valid = testing::run_program({"virt-xml-validate", (dir / "web.xml").string(), "domain"});
  EXPECT_EQ(valid.exit_code, 0) << valid.out << valid.err;

  ASSERT_EQ(testing::run_kiln({"pause", web, "--connect", kUri}, env).exit_code, 0);
  EXPECT_EQ(listed(env)[web]["state"], "paused");
  ASSERT_EQ(testing::run_kiln({"unpause", web, "--connect", kUri}, env).exit_code, 0);
  EXPECT_EQ(listed(env)[web]["state"], "running");
  ProcessResult shut = testing::run_kiln({"shutdown", web, "--connect", kUri, "--wait=120"}, env);
  ASSERT_EQ(shut.exit_code, 0) << shut.err;
  EXPECT_EQ(listed(env)[web]["state"], "stopped");
  ProcessResult refused = testing::run_kiln({"pause", other, "--connect", kUri}, env);
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.err, HasSubstr("has no instance named " + other));

  for (const std::string& name : {web, db})
    ASSERT_EQ(testing::run_kiln({"destroy", name, "--connect", kUri}, env).exit_code, 0) << name;
  EXPECT_TRUE(listed(env).empty());
  ProcessResult volumes = virsh({"vol-list", "kiln"});
  EXPECT_THAT(volumes.out, Not(HasSubstr(web + ".")));
  EXPECT_THAT(volumes.out, Not(HasSubstr(db + ".")));
}

// What libvirt cannot do for kiln yet is refused by name before anything
// reaches a host, and a host that cannot be reached is an error naming it.
TEST(LibvirtTest, WhatItCannotDoYetAndAnUnreachableHostAreClearErrors) {
  testing::ScratchDir dir;
  std::vector<std::string> env = {"KILN_RUNTIME_DIR=" + (dir / "run").string(),
                                  "KILN_STATE_DIR=" + (dir / "state").string()};
  for (const auto& [flags, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--publish", "8080:80"}, "--publish with --connect qemu:///system: not through libvirt yet"},
           {{"--net", "lan0"}, "--net lan0 with --connect qemu:///system"},
           {{"--backend", "uml"}, "--backend uml with --connect qemu:///system"},
           {{"--console"}, "--console with --connect: not through libvirt yet"}}) {
    std::vector<std::string> args = {"boot", kImage.string(), "--name", "never", "--connect", kUri};
    args.insert(args.end(), flags.begin(), flags.end());
    ProcessResult refused = testing::run_kiln(args, env);
    EXPECT_EQ(refused.exit_code, 2) << flags[0];
    EXPECT_THAT(refused.err, HasSubstr(message));
  }
  ProcessResult unreachable = testing::run_kiln(
      {"list", "--connect", "qemu+ssh://root@127.0.0.1:1/system?no_tty=1"}, env);
  EXPECT_NE(unreachable.exit_code, 0);
  EXPECT_THAT(unreachable.err, HasSubstr("cannot reach libvirt at qemu+ssh://root@127.0.0.1:1/system"));
}

}  // namespace
}  // namespace kiln
