// `kiln boot` and xm's lifecycle on the default image, for real: UML and
// qemu (TCG here, as KVM does not work on these hosts), readiness, list,
// pause, save and restore, shutdown, several instances at once, Xen configs,
// and what happens on bad input and when a hypervisor is killed.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/console_session.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using testing::ProcessResult;
using testing::read_text;

const std::filesystem::path kImage = std::filesystem::path(KILN_INTEGRATION_DIR) / "default";

// Each test gets its own instance state and disk directories, and destroys
// whatever it left running.
class BootTest : public ::testing::Test {
 protected:
  std::vector<std::string> env() const {
    return {"KILN_RUNTIME_DIR=" + (dir_ / "run").string(), "KILN_STATE_DIR=" + (dir_ / "state").string()};
  }
  ProcessResult kiln(std::vector<std::string> args) const { return testing::run_kiln(args, env()); }

  ProcessResult boot(const std::string& name, std::vector<std::string> more) {
    names_.push_back(name);
    std::vector<std::string> args = {"boot", kImage.string(), "--name", name, "--detach", "--wait-ready=240", "--json"};
    args.insert(args.end(), more.begin(), more.end());
    return kiln(args);
  }

  nlohmann::json list() const {
    auto result = kiln({"list", "--json"});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return nlohmann::json::parse(result.out);
  }

  nlohmann::json find(const std::string& name) const {
    for (const auto& instance : list())
      if (instance["name"] == name) return instance;
    return nullptr;
  }

  std::string console(const std::string& name) const { return read_text(dir_ / "run" / name / "console.log"); }

  // Waits for `name` to be listed in `state` (or, with "", no longer listed).
  ::testing::AssertionResult listed_as(const std::string& name, const std::string& state) const {
    return testing::wait_for(
        [&] {
          auto instance = find(name);
          return state.empty() ? instance.is_null() : !instance.is_null() && instance["state"] == state;
        },
        std::chrono::seconds(120), [&] { return kiln({"list", "--json"}).out; });
  }

  // The live host processes of instance `name`, one line each: every one
  // whose command line or open files name its state or disk directory, as
  // the hypervisor's (and all of UML's helpers') do.
  std::vector<std::string> processes_of(const std::string& name) const {
    return testing::processes_naming({(dir_ / "run" / name).string() + "/", (dir_ / "state/instances" / name).string() + "/"});
  }
  std::string processes_text(const std::string& name) const {
    std::string out;
    for (const std::string& line : processes_of(name)) out += line + "\n";
    return out;
  }

  bool gone(const std::string& name) const {
    return !std::filesystem::exists(dir_ / "run" / name) && !std::filesystem::exists(dir_ / "state/instances" / name);
  }

  void TearDown() override {
    for (const std::string& name : names_) kiln({"destroy", name});
  }

  testing::ScratchDir dir_;
  std::vector<std::string> names_;
};

// A TCP port on the loopback that nothing listens on right now.
int unused_tcp_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof address;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), size), 0);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size), 0);
  ::close(fd);
  return ntohs(address.sin_port);
}

TEST_F(BootTest, UmlInstanceBootsToReadyIsListedAndShutsDownCleanly) {
  auto result = boot("uml1", {"--backend", "uml", "--net", "none"});
  ASSERT_EQ(result.exit_code, 0) << result.err << console("uml1");
  auto booted = testing::last_json_line(result.out);
  EXPECT_GT(booted["ready_seconds"].get<double>(), 0);
  EXPECT_GT(booted["create_ms"].get<double>(), 0);  // how fast is bench/boot.sh's business
  auto listed = find("uml1");
  ASSERT_FALSE(listed.is_null());
  EXPECT_EQ(listed["state"], "running");
  EXPECT_EQ(listed["state_letter"], "r");
  EXPECT_EQ(listed["backend"], "uml");
  EXPECT_EQ(listed["guest"]["hostname"], "uml1");
  EXPECT_EQ(listed["guest"]["machine_id"], listed["machine_id"]);
  EXPECT_EQ(listed["guest"]["ssh_host_keys"], "kiln");
  EXPECT_EQ(listed["ssh_host_keys"].size(), 2u);
  // A qemu instance of the same image starts beside it: UML's lock on the
  // image does not stop it.
  names_.push_back("beside");
  auto beside = kiln({"boot", kImage.string(), "--name", "beside", "--backend", "qemu", "--net", "none", "--detach"});
  EXPECT_EQ(beside.exit_code, 0) << beside.err;
  EXPECT_EQ(kiln({"destroy", "beside"}).exit_code, 0);
  // UML runs on one host CPU, where its ptrace round trips are cheapest.
  std::string status = read_text("/proc/" + std::to_string(listed["hypervisor_pid"].get<int>()) + "/status");
  auto cpus = status.substr(status.find("Cpus_allowed_list:"));
  cpus = cpus.substr(0, cpus.find('\n'));
  EXPECT_THAT(cpus, ::testing::MatchesRegex("Cpus_allowed_list:\\s+[0-9]+")) << status;
  auto shutdown = kiln({"shutdown", "uml1", "--wait=60"});
  EXPECT_EQ(shutdown.exit_code, 0) << shutdown.err;
  EXPECT_TRUE(list().empty());
  EXPECT_TRUE(gone("uml1"));
}

TEST_F(BootTest, QemuInstancePausesSavesRestoresAndKeepsItsProcesses) {
  testing::write_text(dir_ / "tick.sh",
                      "#!/bin/sh\n( i=0; while :; do echo \"TICK $i\" > /dev/console; i=$((i+1)); sleep 1; done ) "
                      ">/dev/null 2>&1 &\n");
  std::filesystem::permissions(dir_ / "tick.sh", std::filesystem::perms::owner_all);
  std::string port = std::to_string(unused_tcp_port());
  auto result =
      boot("qemu1", {"--backend", "qemu", "--ssh-port", port, "--firstboot", (dir_ / "tick.sh").string()});
  ASSERT_EQ(result.exit_code, 0) << result.err << console("qemu1");
  EXPECT_THAT(result.err, HasSubstr("qemu with TCG: KVM does not work here"));
  // sshd is up at ready, with the host key kiln made and showed: the guest
  // made none of its own.
  auto booted = testing::last_json_line(result.out);
  ASSERT_EQ(booted["ssh_host_keys"].size(), 2u) << result.out;
  EXPECT_EQ(find("qemu1")["guest"]["ssh_host_keys"], "kiln");
  std::string shown = booted["ssh_host_keys"][0]["public_key"];
  // sshd re-executes itself for each connection: under TCG on a loaded host
  // its first answer took longer than ssh-keyscan's default 5 s (seen in CI).
  auto scanned = testing::run_program({"ssh-keyscan", "-T", "90", "-t", "ed25519", "-p", port, "127.0.0.1"});
  EXPECT_THAT(scanned.out, HasSubstr(shown.substr(0, shown.rfind(' ')))) << scanned.err;
  auto listed = find("qemu1");
  EXPECT_EQ(listed["backend"], "qemu");
  EXPECT_EQ(listed["guest"]["mac"], listed["mac"]);
  EXPECT_THAT(listed["mac"].get<std::string>(), ::testing::StartsWith("00:16:3e:"));

  ASSERT_EQ(kiln({"pause", "qemu1"}).exit_code, 0);
  EXPECT_EQ(find("qemu1")["state_letter"], "p");
  ASSERT_EQ(kiln({"unpause", "qemu1"}).exit_code, 0);
  EXPECT_EQ(find("qemu1")["state_letter"], "r");

  auto ticks = [](const std::string& text) {
    std::vector<int> out;
    for (size_t at = 0; (at = text.find("TICK ", at)) != std::string::npos; at += 5)
      out.push_back(std::stoi(text.substr(at + 5)));
    return out;
  };
  ASSERT_TRUE(testing::wait_for([&] { return ticks(console("qemu1")).size() >= 3; }, std::chrono::seconds(120),
                                [&] { return testing::tail(console("qemu1")); }));
  std::vector<int> before = ticks(console("qemu1"));
  auto save = kiln({"save", "qemu1", (dir_ / "qemu1.save").string()});
  ASSERT_EQ(save.exit_code, 0) << save.err;
  // Saved, it is listed as such, and its disks wait for the restore.
  auto saved = find("qemu1");
  ASSERT_FALSE(saved.is_null());
  EXPECT_EQ(saved["state"], "saved");
  EXPECT_EQ(saved["saved_to"], (dir_ / "qemu1.save").string());
  EXPECT_TRUE(std::filesystem::exists(dir_ / "state/instances/qemu1/disk0.qcow2"));
  auto restore = kiln({"restore", (dir_ / "qemu1.save").string()});
  ASSERT_EQ(restore.exit_code, 0) << restore.err;
  // The loop started before the save goes on counting after the restore: a
  // fresh process would start again from 0.
  std::vector<int> after;
  ASSERT_TRUE(testing::wait_for(
      [&] {
        after = ticks(console("qemu1"));
        return !after.empty() && after.back() > before.back();
      },
      std::chrono::seconds(120), [&] { return testing::tail(console("qemu1")); }));
  EXPECT_GE(after.front(), before.back());
  EXPECT_TRUE(std::is_sorted(after.begin(), after.end()));
  // Once running on from the save, the disks are no longer the saved ones.
  auto again = kiln({"restore", (dir_ / "qemu1.save").string()});
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_THAT(again.err, HasSubstr("its disks are no longer the ones saved with it"));
  EXPECT_EQ(find("qemu1")["state"], "running");
  auto shutdown = kiln({"shutdown", "qemu1", "--wait=120"});
  EXPECT_EQ(shutdown.exit_code, 0) << shutdown.err;
  EXPECT_TRUE(gone("qemu1"));
}

// What `kiln save` leaves, the overlays its save file needs, is owned:
// listed, its name taken, removed by `kiln destroy`, after which the save
// file is refused rather than restored over missing or other disks.
TEST_F(BootTest, ASavedInstanceKeepsItsNameAndDisksUntilDestroyed) {
  names_.push_back("kept");
  auto started = kiln({"boot", kImage.string(), "--name", "kept", "--backend", "qemu", "--net", "none", "--detach"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  auto save = kiln({"save", "kept", (dir_ / "kept.save").string()});
  ASSERT_EQ(save.exit_code, 0) << save.err;
  EXPECT_EQ(find("kept")["state"], "saved");
  auto table = kiln({"list"});
  EXPECT_THAT(table.out, HasSubstr("saved to " + (dir_ / "kept.save").string()));
  auto reused = kiln({"boot", kImage.string(), "--name", "kept", "--backend", "qemu", "--net", "none", "--detach"});
  EXPECT_EQ(reused.exit_code, 2);
  EXPECT_THAT(reused.err, HasSubstr("an instance named kept is saved in " + (dir_ / "kept.save").string()));
  EXPECT_TRUE(std::filesystem::exists(dir_ / "state/instances/kept/disk0.qcow2"));
  EXPECT_EQ(kiln({"destroy", "kept"}).exit_code, 0);
  EXPECT_TRUE(gone("kept"));
  EXPECT_TRUE(list().empty());
  EXPECT_TRUE(std::filesystem::exists(dir_ / "kept.save"));  // the user's file stays
  auto restore = kiln({"restore", (dir_ / "kept.save").string()});
  EXPECT_EQ(restore.exit_code, 2);
  EXPECT_THAT(restore.err, HasSubstr("kept cannot be restored from it, as its disks are no longer the ones saved"));
}

TEST_F(BootTest, FiveInstancesOfOneImageEachWithItsOwnIdentity) {
  std::string bridge = "kilnt" + std::to_string(::getpid() % 100000);
  ASSERT_EQ(testing::run_program({"ip", "link", "add", bridge, "type", "bridge"}).exit_code, 0);
  std::vector<std::thread> boots;
  std::vector<ProcessResult> results(5);
  for (int i = 0; i < 5; ++i) names_.push_back("web" + std::to_string(i));
  for (int i = 0; i < 5; ++i)
    boots.emplace_back([&, i] {
      results[i] = kiln({"boot", kImage.string(), "--name", names_[i], "--backend", "uml", "--net", "tap:" + bridge,
                         "--detach", "--wait-ready=300", "--json"});
    });
  for (auto& thread : boots) thread.join();
  for (int i = 0; i < 5; ++i) ASSERT_EQ(results[i].exit_code, 0) << names_[i] << ": " << results[i].err;
  auto instances = list();
  ASSERT_EQ(instances.size(), 5u);
  std::set<std::string> macs, machine_ids, hostnames;
  for (const auto& instance : instances) {
    EXPECT_EQ(instance["state"], "running");
    EXPECT_EQ(instance["guest"]["hostname"], instance["name"]);
    EXPECT_EQ(instance["guest"]["mac"], instance["mac"]);
    EXPECT_EQ(instance["guest"]["machine_id"], instance["machine_id"]);
    macs.insert(instance["guest"]["mac"]);
    machine_ids.insert(instance["guest"]["machine_id"]);
    hostnames.insert(instance["guest"]["hostname"]);
  }
  EXPECT_EQ(macs.size(), 5u);
  EXPECT_EQ(machine_ids.size(), 5u);
  EXPECT_EQ(hostnames.size(), 5u);
  for (const auto& name : names_) EXPECT_EQ(kiln({"destroy", name}).exit_code, 0);
  testing::run_program({"ip", "link", "del", bridge});
  EXPECT_TRUE(list().empty());
}

TEST_F(BootTest, XenDomainConfigBootsTheSameImage) {
  // The whole disk as xvda, the root on its second partition, as the
  // image's own NAME.xl.cfg names them.
  testing::write_text(dir_ / "web.cfg", "name = \"xenweb\"\nmemory = 384\nvcpus = 1\n"
                                        "kernel = \"" + (kImage / "vmlinuz").string() + "\"\n"
                                        "ramdisk = \"" + (kImage / "initrd.img").string() + "\"\n"
                                        "disk = ['file:" + (kImage / "disk.raw").string() + ",xvda,w']\n"
                                        "vif = [ 'mac=00:16:3e:00:00:10' ]\n"
                                        "root = \"/dev/xvda2 ro\"\nextra = \"console=hvc0\"\n"
                                        "builder = 'linux'\non_crash = 'preserve'\nkeymap = 'de'\n");
  names_.push_back("xenweb");
  // Its vif, without a bridge, is a NIC on user networking with the vif's MAC.
  auto result = kiln({"boot", (dir_ / "web.cfg").string(), "--backend", "uml", "--detach", "--wait-ready=240"});
  ASSERT_EQ(result.exit_code, 0) << result.err << console("xenweb");
  EXPECT_THAT(result.err, HasSubstr("web.cfg:12:1: 'keymap' is not acted on: kiln's guests have no display"));
  EXPECT_THAT(result.err, HasSubstr("web.cfg:4:1: 'kernel' and 'ramdisk' are not used by the uml backend"));
  auto listed = find("xenweb");
  EXPECT_EQ(listed["memory_mib"], 384);
  EXPECT_EQ(listed["mac"], "00:16:3e:00:00:10");
  EXPECT_EQ(listed["guest"]["hostname"], "debian");  // the domain's filesystem names it
}

TEST_F(BootTest, ConsoleReachesTheGuestAndCtrlBracketDetaches) {
  ASSERT_EQ(boot("talk", {"--backend", "uml", "--net", "none"}).exit_code, 0);
  testing::ConsoleSession session({"talk"}, env());
  ASSERT_TRUE(session.wait_for("login:", "\n", 180)) << session.output() << console("talk");
  session.type("root\n");
  EXPECT_TRUE(session.wait_for("Password:", "", 60)) << session.output();
  session.type("\035");  // Ctrl-]
  EXPECT_EQ(session.wait_exit(30), 0);
  EXPECT_EQ(find("talk")["state"], "running");  // detaching leaves it running
}

TEST_F(BootTest, OnRebootDestroyEndsTheInstanceWhenTheGuestReboots) {
  ASSERT_EQ(boot("once", {"--backend", "uml", "--net", "none", "--on-reboot", "destroy"}).exit_code, 0);
  ASSERT_EQ(kiln({"reboot", "once"}).exit_code, 0);
  EXPECT_TRUE(testing::wait_for([&] { return gone("once"); }, std::chrono::seconds(120),
                                [&] { return testing::tail(console("once")); }));
}

TEST_F(BootTest, OnCrashPreserveKeepsACrashedGuestForInspection) {
  testing::write_text(dir_ / "panic.sh", "#!/bin/sh\necho c > /proc/sysrq-trigger\n");
  std::filesystem::permissions(dir_ / "panic.sh", std::filesystem::perms::owner_all);
  names_.push_back("crashy");
  auto result = kiln({"boot", kImage.string(), "--name", "crashy", "--backend", "uml", "--net", "none",
                      "--on-crash", "preserve", "--firstboot", (dir_ / "panic.sh").string(), "--detach",
                      "--wait-ready=240"});
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.err, HasSubstr("crashy crashed before it was ready: the guest kernel panicked: sysrq triggered "
                                    "crash; on_crash = preserve"));
  EXPECT_THAT(result.err, HasSubstr("Kernel panic - not syncing: sysrq triggered crash"));
  auto listed = find("crashy");
  EXPECT_EQ(listed["state_letter"], "c");
  EXPECT_THAT(console("crashy"), HasSubstr("Kernel panic"));
  auto destroyed = kiln({"destroy", "crashy"});
  EXPECT_EQ(destroyed.exit_code, 0) << destroyed.err;
  EXPECT_TRUE(gone("crashy"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "state/logs/crashy.console.log"));  // destroy takes the kept log too
}

TEST_F(BootTest, QemuBootsTheDiskThroughUefiFirmware) {
  auto result = boot("uefi", {"--backend", "qemu", "--firmware", "--net", "none"});
  ASSERT_EQ(result.exit_code, 0) << result.err << console("uefi");
  auto listed = find("uefi");
  // No kernel command line to carry the identity: the agent applies it from the seed.
  EXPECT_EQ(listed["guest"]["hostname"], "uefi");
  EXPECT_THAT(console("uefi"), HasSubstr("KILN-READY"));
}

TEST_F(BootTest, ForegroundBootShowsTheConsoleAndCtrlCShutsTheGuestDown) {
  names_.push_back("fg");
  pid_t pid = ::fork();
  if (pid == 0) {
    for (const std::string& variable : env()) ::putenv(strdup(variable.c_str()));
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::execl(testing::kiln_binary().c_str(), "kiln", "boot", kImage.c_str(), "--name", "fg", "--backend", "uml",
            "--net", "none", "--wait-ready=240", nullptr);
    _exit(127);
  }
  ASSERT_TRUE(testing::wait_for([&] { return !find("fg")["ready_seconds"].is_null(); }, std::chrono::seconds(240),
                                [&] { return testing::tail(console("fg")); }));
  ::kill(pid, SIGINT);
  int status = 0;
  ASSERT_TRUE(testing::wait_for([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, std::chrono::seconds(120),
                                [&] { return "kiln boot still runs after Ctrl-C\n" + testing::tail(console("fg")); }));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(gone("fg"));
}

TEST_F(BootTest, BadInputIsRefusedWithoutLeavingState) {
  auto unknown = kiln({"boot", kImage.string(), "--backend", "xen"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("--backend"));
  auto memory = kiln({"boot", kImage.string(), "--name", "big", "--memory", "4T"});
  EXPECT_EQ(memory.exit_code, 2);
  EXPECT_THAT(memory.err, HasSubstr("more than this host has"));
  testing::write_text(dir_ / "nokernel.cfg",
                      "name = \"x\"\nkernel = \"/nowhere/vmlinuz\"\ndisk = ['file:/nowhere/root.img,xvda1,w']\n");
  auto kernel = kiln({"boot", (dir_ / "nokernel.cfg").string()});
  EXPECT_EQ(kernel.exit_code, 2);
  EXPECT_THAT(kernel.err, HasSubstr("nokernel.cfg:2:1: kernel /nowhere/vmlinuz: no such file"));
  // A kernel qemu cannot load: qemu exits at once, and kiln boot says why
  // instead of reporting a start.
  testing::write_text(dir_ / "garbage-vmlinuz", std::string(4096, 'x'));
  testing::write_text(dir_ / "badkernel.cfg", "name = \"badkernel\"\nkernel = \"" + (dir_ / "garbage-vmlinuz").string() +
                                                 "\"\ndisk = ['file:" + (kImage / "disk.raw").string() + ",xvda,w']\n");
  auto garbage = kiln({"boot", (dir_ / "badkernel.cfg").string(), "--backend", "qemu", "--net", "none", "--detach"});
  EXPECT_EQ(garbage.exit_code, 1);
  EXPECT_THAT(garbage.err, HasSubstr("badkernel did not start: qemu did not start"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "state/instances/badkernel"));
  auto console = kiln({"console", "nobody"});
  EXPECT_EQ(console.exit_code, 2);
  EXPECT_THAT(console.err, HasSubstr("no instance named nobody"));
  EXPECT_TRUE(list().empty());
  EXPECT_FALSE(std::filesystem::exists(dir_ / "state/instances/big"));
}

TEST_F(BootTest, ANameInUseIsRefusedAndTheFirstInstanceGoesOn) {
  ASSERT_EQ(boot("twice", {"--backend", "uml", "--net", "none"}).exit_code, 0);
  auto again = kiln({"boot", kImage.string(), "--name", "twice", "--backend", "uml", "--detach"});
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_THAT(again.err, HasSubstr("an instance named twice is already running"));
  EXPECT_EQ(find("twice")["state"], "running");
}

// `kill -9` of a UML instance's main process leaves its helpers running
// (each guest address space is a host process, and so are the I/O and SIGIO
// threads and slirp), reparented to init, one spinning. The supervisor
// notices the death and ends them all; with on_crash=preserve the instance
// stays, crashed, until destroyed.
TEST_F(BootTest, AHypervisorKilledFromOutsideIsNoticedAndCleanedUp) {
  ASSERT_EQ(boot("victim", {"--backend", "uml", "--net", "user", "--on-crash", "preserve"}).exit_code, 0)
      << console("victim");
  int pid = find("victim")["hypervisor_pid"];
  ASSERT_GT(pid, 0);
  ASSERT_GE(processes_of("victim").size(), 4u) << "UML's helpers and slirp, besides its main process:\n"
                                               << processes_text("victim");
  ::kill(pid, SIGKILL);
  ASSERT_TRUE(listed_as("victim", "crashed"));
  auto listed = find("victim");
  EXPECT_EQ(listed["state_letter"], "c");
  EXPECT_THAT(listed["last_event"].get<std::string>(), HasSubstr("killed by signal 9"));
  EXPECT_THAT(console("victim"), ::testing::ContainsRegex("ended [0-9]+ processes the hypervisor left running"));
  EXPECT_TRUE(testing::wait_for([&] { return processes_of("victim").empty(); }, std::chrono::seconds(60),
                                [&] { return processes_text("victim"); }));
  auto console = kiln({"console", "victim"});
  EXPECT_EQ(console.exit_code, 2);
  EXPECT_THAT(console.err, HasSubstr("victim is not running (state: crashed)"));
  EXPECT_EQ(kiln({"destroy", "victim"}).exit_code, 0);
  EXPECT_TRUE(gone("victim"));
}

// The same without anyone to notice: the supervisor is killed too, and
// `kiln list` finds the instance dead, says so once, and ends what is left.
TEST_F(BootTest, ListEndsTheProcessesOfAnInstanceWhoseSupervisorDied) {
  ASSERT_EQ(boot("headless", {"--backend", "uml", "--net", "none"}).exit_code, 0) << console("headless");
  auto record = nlohmann::json::parse(read_text(dir_ / "run/headless/instance.json"));
  ASSERT_GE(processes_of("headless").size(), 3u) << processes_text("headless");
  int supervisor = record["supervisor_pid"];
  ::kill(supervisor, SIGKILL);
  ::kill(record["hypervisor_pid"].get<int>(), SIGKILL);
  // Dead, even if left a zombie: its parent is init, which may not reap.
  std::string stat = "/proc/" + std::to_string(supervisor) + "/stat";
  ASSERT_TRUE(testing::wait_for([&] { return read_text(stat).find(") Z") != std::string::npos || !std::filesystem::exists(stat); },
                                std::chrono::seconds(30), [&] { return read_text(stat); }));
  auto listed = find("headless");
  ASSERT_FALSE(listed.is_null());
  EXPECT_EQ(listed["state"], "crashed");
  EXPECT_EQ(listed["last_event"], "its supervisor process died");
  EXPECT_TRUE(testing::wait_for([&] { return processes_of("headless").empty(); }, std::chrono::seconds(60),
                                [&] { return processes_text("headless"); }));
  EXPECT_TRUE(list().empty());
  EXPECT_TRUE(gone("headless"));
}

// qemu is one process, but the supervisor's clean-up is the same.
TEST_F(BootTest, AKilledQemuLeavesNoProcessBehind) {
  names_.push_back("q9");
  auto started = kiln({"boot", kImage.string(), "--name", "q9", "--backend", "qemu", "--net", "none", "--detach"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  int pid = find("q9")["hypervisor_pid"];
  ASSERT_GT(pid, 0);
  ASSERT_FALSE(processes_of("q9").empty());
  ::kill(pid, SIGKILL);
  EXPECT_TRUE(listed_as("q9", ""));  // on_crash=destroy
  EXPECT_TRUE(testing::wait_for([&] { return processes_of("q9").empty(); }, std::chrono::seconds(60),
                                [&] { return processes_text("q9"); }));
  EXPECT_TRUE(gone("q9"));
}

TEST_F(BootTest, SaveIsRefusedOnUmlWithAClearReason) {
  ASSERT_EQ(boot("nosave", {"--backend", "uml", "--net", "none"}).exit_code, 0);
  auto save = kiln({"save", "nosave", (dir_ / "x.save").string()});
  EXPECT_NE(save.exit_code, 0);
  EXPECT_THAT(save.err, HasSubstr("save is not supported by the uml backend"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "x.save"));
  EXPECT_EQ(find("nosave")["state"], "running");
}

}  // namespace
}  // namespace kiln
