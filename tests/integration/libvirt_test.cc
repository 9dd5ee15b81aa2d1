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
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <future>
#include <algorithm>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/hash.h"
#include "tests/integration/console_session.h"
#include "tests/integration/loopback_sshd.h"
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

// Whether process `pid` still runs: a zombie has ended (PID 1 here may be
// slow to reap what it inherits from a daemon's double fork).
bool still_runs(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  std::string stat = testing::read_text(fmt::format("/proc/{}/stat", pid));
  size_t after_name = stat.rfind(')');
  return after_name == std::string::npos || stat.compare(after_name, 3, ") Z") != 0;
}

// Ends daemon `pid`: SIGTERM, and SIGKILL if it has not gone in 30 s.
void end_daemon(pid_t pid) {
  ::kill(pid, SIGTERM);
  if (!testing::wait_for([&] { return !still_runs(pid); }, std::chrono::seconds(30), [] { return ""; })) {
    ::kill(pid, SIGKILL);
    testing::wait_for([&] { return !still_runs(pid); }, std::chrono::seconds(5), [] { return ""; });
  }
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
  // Waits for each to be gone before the lock is let go: the next test,
  // finding a libvirtd still ending, would talk to it as it vanished (seen
  // in CI: its socket gone 30 s into the next test's wait).
  ~LibvirtDaemons() {
    for (auto daemon = started_.rbegin(); daemon != started_.rend(); ++daemon) {
      std::ifstream pid_file("/run/" + *daemon + ".pid");
      pid_t pid = 0;
      if (pid_file >> pid && pid > 1) end_daemon(pid);
    }
  }
  ::testing::AssertionResult up() const { return up_; }

 private:
  testing::HostWideLock lock_;
  std::vector<std::string> started_;
  ::testing::AssertionResult up_ = ::testing::AssertionSuccess();
};

// A second libvirt host on this machine, reached over ssh as a remote one
// is: libvirtd in a mount namespace of its own, with its own state, pool
// and host UUID (tests/integration/second_libvirt_host.sh), and an sshd of
// the test's own in that namespace, where virt-ssh-helper reaches it.
class SecondLibvirtHost {
 public:
  SecondLibvirtHost() {
    std::string script = testing::source_path("tests/integration/second_libvirt_host.sh").string();
    std::string dir = dir_.path().string(), log = (dir_ / "daemon.log").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      execl("/bin/sh", "sh", script.c_str(), dir.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    up_ = testing::wait_for([this] { return fs::exists(dir_ / "ready"); }, std::chrono::seconds(60),
                            [this] { return testing::read_text(dir_ / "daemon.log"); });
    if (!up_) return;
    sshd_ = std::make_unique<testing::LoopbackSshd>(
        std::vector<std::string>{}, std::vector<std::string>{"nsenter", fmt::format("--mount=/proc/{}/ns/mnt", pid_),
                                                             "--"});
    up_ = sshd_->up();
  }
  ~SecondLibvirtHost() {
    // Its guests first: libvirtd leaves them running when it ends.
    if (sshd_ && sshd_->up()) {
      ProcessResult names = testing::run_program({"virsh", "-c", uri(), "list", "--all", "--name"});
      std::istringstream lines(names.out);
      for (std::string name; std::getline(lines, name);)
        if (!name.empty()) {
          testing::run_program({"virsh", "-c", uri(), "destroy", name});
          testing::run_program({"virsh", "-c", uri(), "undefine", name});
        }
    }
    sshd_.reset();
    // And any qemu of it left, found by its libvirtd's pid files: libvirtd
    // leaves its guests running when it ends.
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(fmt::format("/proc/{}/root/run/libvirt/qemu", pid_), ec))
      if (entry.path().extension() == ".pid")
        if (std::string pid = testing::read_text(entry.path()); !pid.empty() && std::stoi(pid) > 1)
          ::kill(std::stoi(pid), SIGKILL);
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    // The daemons themselves, should one have outlived the script's end
    // (seen once: a libvirtd busy with a guest that hung).
    for (const char* daemon : {"libvirtd", "virtlogd"}) {
      std::string pid = testing::read_text(dir_ / (std::string(daemon) + ".pid"));
      if (pid.empty() || std::stoi(pid) <= 1) continue;
      if (pid_t daemon_pid = std::stoi(pid); still_runs(daemon_pid)) end_daemon(daemon_pid);
    }
  }
  ::testing::AssertionResult up() const { return up_; }
  std::string uri() const { return "qemu+ssh://" + sshd_->uri_tail("/system"); }
  // Kills (SIGKILL) its qemu of domain `name`, found by the pid file its
  // libvirtd keeps in its own /run/libvirt; whether there was one.
  bool kill_qemu(const std::string& name) const {
    std::string pid = testing::read_text(fmt::format("/proc/{}/root/run/libvirt/qemu/{}.pid", pid_, name));
    return !pid.empty() && ::kill(std::stoi(pid), SIGKILL) == 0;
  }
  // Where its pool's volumes are, seen from this namespace.
  fs::path pool_dir() const { return dir_ / "lib/images/kiln"; }

 private:
  testing::ScratchDir dir_;
  pid_t pid_ = -1;
  std::unique_ptr<testing::LoopbackSshd> sshd_;
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

// kiln on this machine's libvirtd: root, libvirt installed, the daemons up
// for the test's life. Each test has kiln state of its own, and the
// instances it names are destroyed at its end, wherever it left them.
class LibvirtKilnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "qemu:///system and starting libvirtd need root";
    if (testing::run_program({"sh", "-c", "command -v libvirtd virsh virtlogd"}).exit_code != 0)
      GTEST_SKIP() << "libvirt-daemon-system is not installed (scripts/install-deps.sh installs it)";
    daemons_ = std::make_unique<LibvirtDaemons>();
    ASSERT_TRUE(daemons_->up());
  }
  void TearDown() override {
    for (const std::string& name : names_) testing::run_kiln({"destroy", name, "--connect", kUri}, env_);
  }

  testing::ScratchDir dir_;
  std::vector<std::string> env_ = {"KILN_RUNTIME_DIR=" + (dir_ / "run").string(),
                                   "KILN_STATE_DIR=" + (dir_ / "state").string()};
  std::vector<std::string> names_;

 private:
  std::unique_ptr<LibvirtDaemons> daemons_;
};

// `kiln boot --json` prints its progress as JSON lines, the result last.
// The instances `kiln list --connect` shows, by name: their state and
// ready time.
std::map<std::string, nlohmann::json> listed(const std::vector<std::string>& env, const std::string& uri = kUri) {
  std::map<std::string, nlohmann::json> out;
  ProcessResult list = testing::run_kiln({"list", "--connect", uri, "--json"}, env);
  EXPECT_EQ(list.exit_code, 0) << list.err;
  if (list.exit_code == 0)
    for (const auto& instance : nlohmann::json::parse(list.out)) out[instance["name"]] = instance;
  return out;
}

TEST_F(LibvirtKilnTest, KilnBootsThroughLibvirtUploadsAnImageOnceAndActsOnItsOwnDomainsOnly) {
  std::string web = fmt::format("lvweb{}", ::getpid()), db = fmt::format("lvdb{}", ::getpid());
  std::string other = fmt::format("notkiln{}", ::getpid());
  names_ = {web, db};
  struct Undefine {
    std::string name;
    ~Undefine() { virsh({"undefine", name}); }
  } undefine{other};
  // A domain kiln did not make, which kiln leaves alone.
  testing::write_text(dir_ / "other.xml", fmt::format("<domain type='qemu'><name>{}</name><memory unit='MiB'>64</memory>"
                                                     "<os><type arch='x86_64'>hvm</type></os></domain>", other));
  ASSERT_EQ(virsh({"define", (dir_ / "other.xml").string()}).exit_code, 0);

  ProcessResult booted = testing::run_kiln(
      {"boot", kImage.string(), "--name", web, "--connect", kUri, "--wait-ready=300", "--json"}, env_);
  ASSERT_EQ(booted.exit_code, 0) << booted.err;
  auto outcome = testing::last_json_line(booted.out);
  EXPECT_GT(outcome["ready_seconds"].get<double>(), 0);
  EXPECT_THAT(booted.err, HasSubstr("libvirt at qemu:///system"));
  // db on a libvirt network of the host's (--net NAME names one there),
  // where libvirt's DHCP leases it an address, and it reaches the host. A name the
  // host has no network of is refused with the ones it has.
  std::string lan = fmt::format("kilnlan{}", ::getpid());
  testing::write_text(dir_ / "lan.xml", fmt::format("<network><name>{}</name><bridge name='kl{}'/>"
                                                    "<ip address='192.168.213.1' netmask='255.255.255.0'><dhcp>"
                                                    "<range start='192.168.213.10' end='192.168.213.50'/></dhcp></ip>"
                                                    "</network>", lan, ::getpid() % 100000));
  ASSERT_EQ(virsh({"net-create", (dir_ / "lan.xml").string()}).exit_code, 0);
  struct DestroyNetwork {
    std::string name;
    ~DestroyNetwork() { virsh({"net-destroy", name}); }
  } destroy_lan{lan};
  ProcessResult no_lan =
      testing::run_kiln({"boot", kImage.string(), "--name", db, "--connect", kUri, "--net", "nosuchlan"}, env_);
  EXPECT_EQ(no_lan.exit_code, 2);
  EXPECT_THAT(no_lan.err, HasSubstr("has no libvirt network named nosuchlan (it has: "));
  EXPECT_THAT(no_lan.err, HasSubstr(lan));
  // The same image again: nothing but its own seed goes to the host.
  ProcessResult again =
      testing::run_kiln({"boot", kImage.string(), "--name", db, "--connect", kUri, "--net", lan, "--json"}, env_);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(testing::last_json_line(again.out)["uploaded"], nlohmann::json::array());

  auto instances = listed(env_);
  EXPECT_FALSE(instances.contains(other));
  ASSERT_TRUE(instances.contains(web));
  EXPECT_EQ(instances[web]["id"], outcome["id"]);
  EXPECT_EQ(instances[web]["state"], "running");
  EXPECT_GT(instances[web]["ready_seconds"].get<double>(), 0);
  ProcessResult dumped = virsh({"dumpxml", web});
  testing::write_text(dir_ / "web.xml", dumped.out);
  ProcessResult valid = testing::run_program({"virt-xml-validate", (dir_ / "web.xml").string(), "domain"});
  EXPECT_EQ(valid.exit_code, 0) << valid.out << valid.err;

  // Commands and files through the domain's exec channel, as with kiln's
  // own instances: exit code, stdout and stderr apart; a copy in and out
  // with its mode.
  ProcessResult ran = testing::run_kiln(
      {"exec", web, "--connect", kUri, "--", "sh", "-c", "cat /etc/hostname; echo to-stderr >&2; exit 3"}, env_);
  EXPECT_EQ(ran.exit_code, 3) << ran.err;
  EXPECT_EQ(ran.out, web + "\n");
  EXPECT_EQ(ran.err, "to-stderr\n");
  testing::write_text(dir_ / "script.sh", "#!/bin/sh\necho copied\n");
  fs::permissions(dir_ / "script.sh", fs::perms(0751));
  ProcessResult copied_in = testing::run_kiln({"cp", (dir_ / "script.sh").string(), web + ":/root/", "--connect", kUri}, env_);
  ASSERT_EQ(copied_in.exit_code, 0) << copied_in.err;
  EXPECT_EQ(testing::run_kiln({"exec", web, "--connect", kUri, "--", "/root/script.sh"}, env_).out, "copied\n");
  ProcessResult copied_out =
      testing::run_kiln({"cp", web + ":/root/script.sh", (dir_ / "back.sh").string(), "--connect", kUri}, env_);
  ASSERT_EQ(copied_out.exit_code, 0) << copied_out.err;
  EXPECT_EQ(testing::read_text(dir_ / "back.sh"), "#!/bin/sh\necho copied\n");
  EXPECT_EQ(fs::status(dir_ / "back.sh").permissions(), fs::perms(0751));
  // One client at a time holds a libvirt channel: a second is told so
  // while the first runs on to its end.
  ProcessResult sleeper;
  std::thread sleeping([&] {
    sleeper = testing::run_kiln({"exec", web, "--connect", kUri, "--", "sh", "-c", "sleep 6; echo slept"}, env_);
  });
  std::this_thread::sleep_for(std::chrono::seconds(3));
  ProcessResult second = testing::run_kiln({"exec", web, "--connect", kUri, "--", "true"}, env_);
  sleeping.join();
  EXPECT_EQ(sleeper.exit_code, 0) << sleeper.err;
  EXPECT_EQ(sleeper.out, "slept\n");
  EXPECT_EQ(second.exit_code, 255);
  EXPECT_THAT(second.err, HasSubstr("one client at a time"));
  // db's boot did not wait for it: exec waits for its agent's greeting.
  ProcessResult waited =
      testing::run_kiln({"exec", db, "--connect", kUri, "--wait-ready=300", "--", "cat", "/etc/hostname"}, env_);
  EXPECT_EQ(waited.exit_code, 0) << waited.err;
  EXPECT_EQ(waited.out, db + "\n");
  ProcessResult leased = testing::run_kiln(
      {"exec", db, "--connect", kUri, "--", "sh", "-c",
       "for i in $(seq 60); do ip -4 -o addr show eth0 | grep -q 'inet 192.168.213.' && break; sleep 1; done; "
       "ip -4 -o addr show eth0"}, env_);
  std::smatch address;
  ASSERT_TRUE(std::regex_search(leased.out, address, std::regex("inet (192\\.168\\.213\\.[0-9]+)/24")))
      << leased.out << leased.err;
  EXPECT_THAT(virsh({"net-dhcp-leases", lan}).out, HasSubstr(address[1].str() + "/24"));
  ProcessResult pinged =
      testing::run_kiln({"exec", db, "--connect", kUri, "--", "ping", "-c", "1", "-W", "5", "192.168.213.1"}, env_);
  EXPECT_EQ(pinged.exit_code, 0) << pinged.out << pinged.err;

  ASSERT_EQ(testing::run_kiln({"pause", web, "--connect", kUri}, env_).exit_code, 0);
  EXPECT_EQ(listed(env_)[web]["state"], "paused");
  ProcessResult paused = testing::run_kiln({"exec", web, "--connect", kUri, "--", "true"}, env_);
  EXPECT_EQ(paused.exit_code, 255);
  EXPECT_THAT(paused.err, HasSubstr("is paused"));
  ASSERT_EQ(testing::run_kiln({"unpause", web, "--connect", kUri}, env_).exit_code, 0);
  EXPECT_EQ(listed(env_)[web]["state"], "running");
  ProcessResult shut = testing::run_kiln({"shutdown", web, "--connect", kUri, "--wait=120"}, env_);
  ASSERT_EQ(shut.exit_code, 0) << shut.err;
  EXPECT_EQ(listed(env_)[web]["state"], "stopped");
  ProcessResult refused = testing::run_kiln({"pause", other, "--connect", kUri}, env_);
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.err, HasSubstr("has no instance named " + other));

  for (const std::string& name : {web, db})
    ASSERT_EQ(testing::run_kiln({"destroy", name, "--connect", kUri}, env_).exit_code, 0) << name;
  // Only its own: the host may have other kiln instances, not the test's.
  auto left = listed(env_);
  EXPECT_FALSE(left.contains(web) || left.contains(db));
  ProcessResult volumes = virsh({"vol-list", "kiln"});
  EXPECT_THAT(volumes.out, Not(HasSubstr(web + ".")));
  EXPECT_THAT(volumes.out, Not(HasSubstr(db + ".")));
}

// Two boots of an image the host does not have yet, at once: one uploads
// each volume, the other waits for it and uploads nothing, and the volume
// holds the file whole.
TEST_F(LibvirtKilnTest, TwoBootsOfANewImageAtOnceUploadItOnce) {
  std::string a = fmt::format("lvup{}a", ::getpid()), b = fmt::format("lvup{}b", ::getpid());
  names_ = {a, b};
  // The image, with an initrd of its own (zeros after the archive, which
  // the kernel skips), so that its volume is new to the host.
  fs::path image = dir_ / "image";
  ASSERT_EQ(testing::run_program({"cp", "-a", "--sparse=always", kImage.string(), image.string()}).exit_code, 0);
  {
    std::ofstream initrd(image / "initrd.img", std::ios::binary | std::ios::app);
    std::string zeros(1 << 20, '\0');
    for (int i = 0; i < 96; ++i) initrd.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  }
  // The volume's name, as kiln gives it (its content), so that it goes
  // however the test ends.
  auto digest = file_digest_hex(image / "initrd.img");
  ASSERT_TRUE(digest) << digest.error().message;
  std::string volume = fmt::format("image-{}-initrd.img", digest->substr(0, 32));
  struct DeleteVolumes {
    std::string name;
    ~DeleteVolumes() {
      for (const std::string& each : {name, name + ".done", name + ".uploading"})
        virsh({"vol-delete", each, "--pool", "kiln"});
    }
  } cleanup{volume};
  ProcessResult booted[2];
  {
    std::thread first([&] {
      booted[0] = testing::run_kiln({"boot", image.string(), "--name", a, "--connect", kUri, "--json"}, env_);
    });
    booted[1] = testing::run_kiln({"boot", image.string(), "--name", b, "--connect", kUri, "--json"}, env_);
    first.join();
  }
  std::vector<std::string> uploaded;
  for (const ProcessResult& boot : booted) {
    ASSERT_EQ(boot.exit_code, 0) << boot.err;
    nlohmann::json outcome = testing::last_json_line(boot.out);
    for (const auto& name : outcome["uploaded"]) uploaded.push_back(name);
  }
  EXPECT_EQ(std::count(uploaded.begin(), uploaded.end(), volume), 1) << fmt::format("{}", fmt::join(uploaded, " "));
  EXPECT_EQ(virsh({"vol-list", "kiln"}).out.find(volume + ".uploading"), std::string::npos);
  ProcessResult downloaded = virsh({"vol-download", volume, (dir_ / "back.img").string(), "--pool", "kiln"});
  ASSERT_EQ(downloaded.exit_code, 0) << downloaded.err;
  EXPECT_EQ(testing::run_program({"cmp", (dir_ / "back.img").string(), (image / "initrd.img").string()}).exit_code, 0);
}

// The tick numbers a guest's console showed, each on a whole line.
std::vector<int> ticks(const std::string& console) {
  static const std::regex tick("kiln-tick ([0-9]+)[\r\n]");
  std::vector<int> out;
  for (std::sregex_iterator it(console.begin(), console.end(), tick), end; it != end; ++it)
    out.push_back(std::stoi((*it)[1]));
  return out;
}

// Attaches `kiln console --connect`, waits for two whole ticks, detaches
// with Ctrl-]; what it saw. Enter, typed after two silent seconds, wakes a
// guest whose serial output stalled: seen twice in ten runs here, once at
// a boot (where Enter brought the login prompt) and once after a move,
// through libvirt's pty console only, never through kiln's own.
std::string console_until_ticks(const std::string& name, const std::string& uri, const std::vector<std::string>& env) {
  testing::ConsoleSession session({name, "--connect", uri}, env);
  bool seen = testing::wait_for(
      [&] {
        session.wait_for("\n", "\r", 3);
        return ticks(session.output()).size() >= 2;
      },
      std::chrono::seconds(60), [&] { return testing::tail(session.output()); });
  EXPECT_TRUE(seen);
  session.type("\035");
  EXPECT_EQ(session.wait_exit(30), 0) << "kiln console did not detach on Ctrl-]";
  return session.output();
}

std::vector<int> ticks_on_console(const std::string& name, const std::string& uri,
                                  const std::vector<std::string>& env) {
  return ticks(console_until_ticks(name, uri, env));
}

// kiln console, save and restore through libvirt, of a guest booted
// through UEFI firmware (--firmware). The guest's first-boot script counts on its console every second from its first boot on: a
// restored guest goes on counting from where it was saved, where one booted
// afresh would not count at all (the script runs at the first boot only).
TEST_F(LibvirtKilnTest, ConsoleSaveAndRestoreGoOnWithTheSameGuestAndDestroyLeavesNothing) {
  std::string name = fmt::format("lvsave{}", ::getpid());
  names_.push_back(name);
  testing::write_text(dir_ / "ticker.sh", "#!/bin/sh\n( n=0; while :; do echo \"<2>kiln-tick $n\" > /dev/kmsg; "
                                         "n=$((n+1)); sleep 1; done ) >/dev/null 2>&1 &\n");
  fs::permissions(dir_ / "ticker.sh", fs::perms(0755));
  ProcessResult booted = testing::run_kiln({"boot", kImage.string(), "--name", name, "--connect", kUri, "--firmware",
                                            "--firstboot", (dir_ / "ticker.sh").string(), "--wait-ready=300", "--json"},
                                           env_);
  ASSERT_EQ(booted.exit_code, 0) << booted.err;
  std::string id = testing::last_json_line(booted.out)["id"];
  // Through UEFI firmware, without Secure Boot, the disk's own boot loader
  // starting the kernel (nothing of it uploaded); the exec agent found its
  // channel in the SMBIOS OEM string.
  ProcessResult dumped = virsh({"dumpxml", name});
  EXPECT_THAT(dumped.out, HasSubstr("<loader"));
  EXPECT_THAT(dumped.out, Not(HasSubstr("<kernel>")));
  EXPECT_THAT(dumped.out, HasSubstr("<entry>kiln.agent=virtio:org.kiln.exec.0</entry>"));
  ProcessResult efi = testing::run_kiln({"exec", name, "--connect", kUri, "--", "sh", "-c",
                                         "test -d /sys/firmware/efi && cat /proc/cmdline"}, env_);
  EXPECT_EQ(efi.exit_code, 0) << efi.err;
  EXPECT_THAT(efi.out, Not(HasSubstr("kiln.agent=")));

  std::vector<int> before = ticks_on_console(name, kUri, env_);
  ASSERT_GE(before.size(), 2u);
  EXPECT_EQ(before.back(), before[before.size() - 2] + 1);
  fs::path file = dir_ / "saved";
  ProcessResult saved = testing::run_kiln({"save", name, file.string(), "--connect", kUri}, env_);
  ASSERT_EQ(saved.exit_code, 0) << saved.err;
  EXPECT_TRUE(fs::exists(file));
  EXPECT_EQ(listed(env_)[name]["state"], "saved");
  EXPECT_THAT(virsh({"domstate", name}).out, HasSubstr("shut off"));
  ProcessResult no_console = testing::run_kiln({"console", name, "--connect", kUri}, env_);
  EXPECT_EQ(no_console.exit_code, 2);
  EXPECT_THAT(no_console.err, HasSubstr("is not running (state: saved)"));

  ProcessResult restored = testing::run_kiln({"restore", file.string(), "--connect", kUri}, env_);
  ASSERT_EQ(restored.exit_code, 0) << restored.err;
  EXPECT_THAT(restored.out, HasSubstr(name + " restored on qemu:///system"));
  auto instance = listed(env_)[name];
  EXPECT_EQ(instance["state"], "running");
  EXPECT_EQ(instance["id"], id);
  EXPECT_GT(instance["ready_seconds"].get<double>(), 0);
  std::vector<int> after = ticks_on_console(name, kUri, env_);
  ASSERT_FALSE(after.empty());
  EXPECT_GT(after.front(), before.back()) << "the guest counts from 0 again: it was booted, not restored";
  ProcessResult twice = testing::run_kiln({"restore", file.string(), "--connect", kUri}, env_);
  EXPECT_EQ(twice.exit_code, 2);
  EXPECT_THAT(twice.err, HasSubstr(name + " is running"));

  ASSERT_EQ(testing::run_kiln({"save", name, file.string(), "--connect", kUri}, env_).exit_code, 0);
  ProcessResult destroyed = testing::run_kiln({"destroy", name, "--connect", kUri}, env_);
  ASSERT_EQ(destroyed.exit_code, 0) << destroyed.err;
  EXPECT_FALSE(listed(env_).contains(name));
  EXPECT_NE(virsh({"domstate", name}).exit_code, 0);
  EXPECT_THAT(virsh({"vol-list", "kiln"}).out, Not(HasSubstr(name + ".")));
  ProcessResult gone = testing::run_kiln({"restore", file.string(), "--connect", kUri}, env_);
  EXPECT_EQ(gone.exit_code, 2);
  EXPECT_THAT(gone.err, HasSubstr(name + " was saved in it, and is gone since"));
}

// Removes the pool's volumes of the files of `image`, as named by their
// content, so that the next boot of it uploads them.
void forget_image_volumes(const fs::path& image) {
  for (const auto& entry : fs::directory_iterator(image)) {
    if (!entry.is_regular_file()) continue;
    ProcessResult sum = testing::run_program({"sha256sum", entry.path().string()});
    ASSERT_EQ(sum.exit_code, 0) << sum.err;
    std::string volume = fmt::format("image-{}-{}", sum.out.substr(0, 32), entry.path().filename().string());
    for (const std::string& name : {volume, volume + ".done"}) virsh({"vol-delete", "--pool", "kiln", name});
  }
}

// The same through qemu+ssh, to an sshd of the test's own on loopback
// standing in for a second host: libvirt's ssh transport, virt-ssh-helper
// on the far side, the image sent over it once.
TEST_F(LibvirtKilnTest, BootsOverSshUploadingTheImageOnceAndListsAndDestroysThere) {
  testing::LoopbackSshd sshd;
  ASSERT_TRUE(sshd.up());
  std::string uri = "qemu+ssh://" + sshd.uri_tail("/system");
  std::string first = fmt::format("lvssh{}a", ::getpid()), second = fmt::format("lvssh{}b", ::getpid());
  names_ = {first, second};
  forget_image_volumes(kImage);

  ProcessResult booted = testing::run_kiln(
      {"boot", kImage.string(), "--name", first, "--connect", uri, "--wait-ready=300", "--json"}, env_);
  ASSERT_EQ(booted.exit_code, 0) << booted.err;
  auto outcome = testing::last_json_line(booted.out);
  EXPECT_GT(outcome["ready_seconds"].get<double>(), 0);
  std::vector<std::string> uploaded = outcome["uploaded"];
  EXPECT_THAT(uploaded, ::testing::Contains(::testing::EndsWith("-disk.raw")));
  EXPECT_EQ(std::count_if(uploaded.begin(), uploaded.end(), [](const std::string& v) { return v.starts_with("image-"); }),
            static_cast<long>(uploaded.size()));
  ProcessResult again = testing::run_kiln({"boot", kImage.string(), "--name", second, "--connect", uri}, env_);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr(second + " started on " + uri));
  EXPECT_THAT(again.out, HasSubstr("no image uploaded"));

  auto there = listed(env_, uri);
  ASSERT_TRUE(there.contains(first) && there.contains(second));
  EXPECT_EQ(there[first]["state"], "running");
  EXPECT_EQ(there[first]["connect"], uri);

  for (const std::string& name : {first, second}) {
    ProcessResult destroyed = testing::run_kiln({"destroy", name, "--connect", uri}, env_);
    EXPECT_EQ(destroyed.exit_code, 0) << name << destroyed.err;
  }
  auto after = listed(env_, uri);
  EXPECT_FALSE(after.contains(first) || after.contains(second));
  ProcessResult volumes = virsh({"vol-list", "kiln"});
  EXPECT_THAT(volumes.out, Not(HasSubstr(first + ".")));
  EXPECT_THAT(volumes.out, Not(HasSubstr(second + ".")));
}

// A script for --firstboot: every second the guest's console shows its
// boot id and a count, from its first boot on, and /run/kiln-tick holds the
// count; it first writes a file named by its boot id to its disk.
void write_ticker(const fs::path& path) {
  testing::write_text(path, "#!/bin/sh\nid=$(cat /proc/sys/kernel/random/boot_id)\n"
                            "echo \"kiln-written-at-$id\" > /root/marker; sync\n"
                            "( n=0; while :; do echo \"<2>kiln-boot $id\" > /dev/kmsg; "
                            "echo \"<2>kiln-tick $n\" > /dev/kmsg; echo $n > /run/kiln-tick; n=$((n+1)); sleep 1; "
                            "done ) >/dev/null 2>&1 &\n");
  fs::permissions(path, fs::perms(0755));
}

// The guest's boot id and count, read through `kiln exec --connect`: after
// a move, the exec channel on the new host. (Its serial console, libvirt's
// pty, stayed silent after a move now and then under the whole suite's
// load, qemu's serial device no longer sending, while the guest counted
// on.)
std::pair<std::string, int> count_by_exec(const std::string& name, const std::string& uri,
                                          const std::vector<std::string>& env) {
  ProcessResult read = testing::run_kiln({"exec", name, "--connect", uri, "--wait-ready=60", "--", "sh", "-c",
                                          "cat /proc/sys/kernel/random/boot_id /run/kiln-tick"}, env);
  EXPECT_EQ(read.exit_code, 0) << read.err;
  std::istringstream lines(read.out);
  std::string boot_id;
  int tick = -1;
  lines >> boot_id >> tick;
  return {boot_id, tick};
}

std::string boot_id_in(const std::string& console) {
  static const std::regex boot("kiln-boot ([0-9a-f-]{36})");
  std::smatch found;
  return std::regex_search(console, found, boot) ? found[1].str() : "";
}

// kiln migrate between two libvirt hosts, each reached over ssh: this
// machine's libvirtd, and a second one with its own state and pool. The
// guest counts from its first boot on (read on its console, then by kiln
// exec through each host's channel): it runs on the other host after the
// move, what it wrote to its disk before the move is in its
// overlay there, and back here it goes on counting under the same boot id. The image goes
// to the second host once; the way back sends none. A move whose target
// dies half-way leaves the guest running where it was and nothing there.
TEST_F(LibvirtKilnTest, MigratesLiveToAnotherLibvirtHostAndBackWithTheSameGuestAndItsWrites) {
  SecondLibvirtHost second;
  ASSERT_TRUE(second.up());
  testing::LoopbackSshd first_sshd;
  ASSERT_TRUE(first_sshd.up());
  std::string here = "qemu+ssh://" + first_sshd.uri_tail("/system"), there = second.uri();
  std::string name = fmt::format("lvmig{}", ::getpid());
  names_.push_back(name);
  write_ticker(dir_ / "ticker.sh");
  ProcessResult booted = testing::run_kiln({"boot", kImage.string(), "--name", name, "--connect", here, "--firstboot",
                                            (dir_ / "ticker.sh").string(), "--wait-ready=300", "--json"}, env_);
  ASSERT_EQ(booted.exit_code, 0) << booted.err;
  std::string id = testing::last_json_line(booted.out)["id"];
  std::string console = console_until_ticks(name, here, env_);
  std::string boot_id = boot_id_in(console);
  ASSERT_FALSE(boot_id.empty()) << testing::tail(console);
  int last_tick = ticks(console).back();

  ProcessResult unnamed = testing::run_kiln({"migrate", name, "--to", there}, env_);
  EXPECT_EQ(unnamed.exit_code, 2);
  EXPECT_THAT(unnamed.err, HasSubstr("a libvirt host; name the instance's own with --connect"));
  ProcessResult to_kiln = testing::run_kiln({"migrate", name, "--connect", here, "--to", "ssh://root@127.0.0.1"}, env_);
  EXPECT_EQ(to_kiln.exit_code, 2);
  EXPECT_THAT(to_kiln.err, HasSubstr("an ssh:// target is another kiln host"));

  ProcessResult moved = testing::run_kiln({"migrate", name, "--connect", here, "--to", there, "--live", "--json"}, env_);
  ASSERT_EQ(moved.exit_code, 0) << moved.err;
  auto outcome = testing::last_json_line(moved.out);
  EXPECT_EQ(outcome["by"], "libvirt");
  EXPECT_GT(outcome["downtime_ms"].get<double>(), 0);
  EXPECT_GT(outcome["ram_bytes"].get<uint64_t>(), 0u);
  std::vector<std::string> sent = outcome["sent_files"];
  EXPECT_THAT(sent, ::testing::Contains(::testing::EndsWith("-disk.raw")));
  EXPECT_FALSE(listed(env_, here).contains(name));
  auto arrived = listed(env_, there);
  ASSERT_TRUE(arrived.contains(name));
  EXPECT_EQ(arrived[name]["state"], "running");
  EXPECT_EQ(arrived[name]["id"], id);
  EXPECT_THAT(virsh({"vol-list", "kiln"}).out, Not(HasSubstr(name + ".")));
  // It runs there, the same guest counting on, and takes commands there.
  auto [there_id, there_tick] = count_by_exec(name, there, env_);
  EXPECT_EQ(there_id, boot_id);
  EXPECT_GT(there_tick, last_tick);
  last_tick = there_tick;
  auto cpu_ns = [&] {
    ProcessResult stats = testing::run_program({"virsh", "-c", there, "domstats", "--cpu-total", name});
    std::smatch found;
    static const std::regex time("cpu\\.time=([0-9]+)");
    return std::regex_search(stats.out, found, time) ? std::stoull(found[1].str()) : 0ull;
  };
  uint64_t cpu_before = cpu_ns();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_GT(cpu_ns(), cpu_before) << "the guest does not run on the second host";
  std::string overlay = testing::read_text(second.pool_dir() / (name + ".disk0.qcow2"));
  EXPECT_THAT(overlay, HasSubstr("kiln-written-at-" + boot_id)) << "what the guest wrote before the move is not there";

  ProcessResult back = testing::run_kiln({"migrate", name, "--connect", there, "--to", here, "--json"}, env_);
  ASSERT_EQ(back.exit_code, 0) << back.err;
  EXPECT_EQ(testing::last_json_line(back.out)["sent_files"], nlohmann::json::array());
  EXPECT_FALSE(listed(env_, there).contains(name));
  auto [back_id, back_tick] = count_by_exec(name, here, env_);
  EXPECT_EQ(back_id, boot_id);
  EXPECT_GT(back_tick, last_tick);

  // The target's qemu killed while the guest goes to it.
  auto attempt = std::async(std::launch::async, [&] {
    return testing::run_kiln({"migrate", name, "--connect", here, "--to", there, "--live"}, env_);
  });
  bool killed = testing::wait_for([&] { return second.kill_qemu(name); }, std::chrono::seconds(120),
                                  [] { return std::string("no qemu took the guest in on the second host"); });
  ProcessResult failed = attempt.get();
  EXPECT_TRUE(killed);
  EXPECT_NE(failed.exit_code, 0);
  EXPECT_THAT(failed.err, HasSubstr("it runs on at " + here));
  EXPECT_EQ(listed(env_, here)[name]["state"], "running");
  EXPECT_FALSE(listed(env_, there).contains(name));
  for (const auto& entry : fs::directory_iterator(second.pool_dir()))
    EXPECT_FALSE(entry.path().filename().string().starts_with(name + ".")) << entry.path();
  EXPECT_EQ(count_by_exec(name, here, env_).first, boot_id);
}

// What libvirt cannot do for kiln yet is refused by name before anything
// reaches a host, and a host that cannot be reached is an error naming it.
TEST(LibvirtTest, WhatItCannotDoAndAnUnreachableHostAreClearErrors) {
  testing::ScratchDir dir;
  std::vector<std::string> env = {"KILN_RUNTIME_DIR=" + (dir / "run").string(),
                                  "KILN_STATE_DIR=" + (dir / "state").string()};
  for (const auto& [flags, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--publish", "8080:80"}, "--publish with --connect qemu:///system: libvirt forwards no ports"},
           {{"--ssh-port", "2222"}, "--ssh-port with --connect qemu:///system: libvirt forwards no ports"},
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
