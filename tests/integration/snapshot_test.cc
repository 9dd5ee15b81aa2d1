// `kiln boot --from-snapshot` and `kiln snapshot`, for real, under qemu (TCG
// here): instances resumed from one snapshot of the default image come out
// as different machines, a changed snapshot is refused and the instance
// boots, and a snapshot serves one VM shape only. The tests share one
// snapshot store in the integration directory (the store's lock makes the
// snapshot once); a test that damages a snapshot works on a copy of it.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <future>
#include <tuple>

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
const fs::path kSharedSnapshots = fs::path(KILN_INTEGRATION_DIR) / "snapshot-cache";

class SnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (testing::run_program({"sh", "-c", "command -v qemu-system-x86_64"}).exit_code != 0)
      GTEST_SKIP() << "qemu-system-x86 is not installed (scripts/install-deps.sh installs it)";
  }
  void TearDown() override {
    for (const std::string& name : names_) kiln({"destroy", name});
    for (const std::string& name : networks_) kiln({"network", "rm", name});
  }

  std::vector<std::string> env() const {
    return {"KILN_RUNTIME_DIR=" + (dir_ / "run").string(), "KILN_STATE_DIR=" + (dir_ / "state").string(),
            "KILN_CACHE=" + cache_.string()};
  }
  ProcessResult kiln(std::vector<std::string> args) const { return testing::run_kiln(args, env()); }

  // Not thread-safe: two at once are named in names_ first (see below).
  // Without a NIC unless `more` gives one.
  ProcessResult resume(const std::string& name, std::vector<std::string> more = {}) {
    if (std::find(names_.begin(), names_.end(), name) == names_.end()) names_.push_back(name);
    std::vector<std::string> args = {"boot", kImage.string(), "--name", name, "--from-snapshot",
                                     "--detach", "--wait-ready=300", "--json"};
    if (std::find(more.begin(), more.end(), "--net") == more.end()) args.insert(args.end(), {"--net", "none"});
    args.insert(args.end(), more.begin(), more.end());
    return kiln(args);
  }

  // A kiln network (a bridge, nftables, dnsmasq) named for this process.
  std::string network() {
    std::string name = fmt::format("ksnap{}", ::getpid() % 100000);
    ProcessResult made = kiln({"network", "create", name, "--subnet", fmt::format("10.78.{}.0/24", ::getpid() % 200)});
    EXPECT_EQ(made.exit_code, 0) << made.err;
    networks_.push_back(name);
    return name;
  }

  // What `command` prints in instance `name`, run by sh.
  std::string in_guest(const std::string& name, const std::string& command) const {
    ProcessResult result = kiln({"exec", name, "--", "sh", "-c", command});
    EXPECT_EQ(result.exit_code, 0) << name << ": " << command << "\n" << result.err;
    std::string out = result.out;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }

  // The shared snapshot of the default image (1024 MiB, its vCPUs), made by
  // whichever test comes first.
  // Those of earlier builds' images, stale now, are pruned first.
  nlohmann::json shared_snapshot() const {
    std::vector<std::string> shared_env = {"KILN_RUNTIME_DIR=" + (dir_ / "run").string(),
                                           "KILN_STATE_DIR=" + (dir_ / "state").string(),
                                           "KILN_CACHE=" + kSharedSnapshots.string()};
    ProcessResult pruned = testing::run_kiln({"snapshot", "prune"}, shared_env);
    EXPECT_EQ(pruned.exit_code, 0) << pruned.err;
    ProcessResult made = testing::run_kiln({"snapshot", "make", kImage.string(), "--json"}, shared_env);
    EXPECT_EQ(made.exit_code, 0) << made.err;
    return testing::last_json_line(made.out);
  }

  testing::ScratchDir dir_;
  fs::path cache_ = kSharedSnapshots;
  std::vector<std::string> names_, networks_;
};

TEST_F(SnapshotTest, TwoInstancesResumedAtOnceAreTwoDifferentMachinesWithTheHostsClock) {
  if (::geteuid() != 0) GTEST_SKIP() << "a kiln network is a bridge, nftables and dnsmasq: root only";
  nlohmann::json snapshot = shared_snapshot();
  ASSERT_TRUE(snapshot.is_object());
  std::string key = snapshot["key"].get<std::string>().substr(0, 12);
  std::string lan = network();
  uint16_t ssh_a = testing::free_loopback_port(), ssh_b = testing::free_loopback_port();
  while (ssh_b == ssh_a) ssh_b = testing::free_loopback_port();

  names_ = {"snap-a", "snap-b"};  // before the threads: resume() reads names_ in each
  auto first = std::async(std::launch::async, [&] {
    return resume("snap-a", {"--net", lan, "--publish", fmt::format("127.0.0.1:{}:22", ssh_a)});
  });
  auto second = std::async(std::launch::async, [&] {
    return resume("snap-b", {"--net", lan, "--publish", fmt::format("127.0.0.1:{}:22", ssh_b)});
  });
  ProcessResult a = first.get(), b = second.get();
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  nlohmann::json ready_a = testing::last_json_line(a.out), ready_b = testing::last_json_line(b.out);
  for (const nlohmann::json* ready : {&ready_a, &ready_b})
    EXPECT_THAT(ready->value("backend_reason", ""), HasSubstr("resumed from snapshot " + key));

  // Each is the instance kiln made, not the snapshot's machine.
  for (const auto& [name, ready, port] : {std::tuple{"snap-a", &ready_a, ssh_a}, std::tuple{"snap-b", &ready_b, ssh_b}}) {
    EXPECT_EQ(in_guest(name, "hostname"), name);
    EXPECT_EQ(in_guest(name, "cat /etc/machine-id"), (*ready)["machine_id"].get<std::string>());
    std::string fingerprint = in_guest(name, "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2");
    EXPECT_EQ(fingerprint, (*ready)["ssh_host_keys"][0]["fingerprint"].get<std::string>()) << name;
    // Its NIC, plugged in once it was resumed, has the MAC kiln gave it.
    EXPECT_EQ(in_guest(name, "cat /sys/class/net/eth0/address"), (*ready)["mac"].get<std::string>());
    // sshd serves the new key (it re-read its keys on SIGHUP), through the
    // port published on the new NIC.
    std::string want = (*ready)["ssh_host_keys"][0]["public_key"].get<std::string>().substr(12, 60);
    ProcessResult scanned;
    EXPECT_TRUE(testing::wait_for(
        [&] {
          scanned = testing::run_program(
              {"ssh-keyscan", "-T", "5", "-t", "ed25519", "-p", std::to_string(port), "127.0.0.1"});
          return scanned.out.find(want) != std::string::npos;
        },
        std::chrono::seconds(60), [&] { return scanned.out + scanned.err; }))
        << name;
  }
  EXPECT_NE(ready_a["mac"], ready_b["mac"]);
  // Each has the address kiln gave it on the network, once its network
  // daemons (down in the snapshot) have started.
  std::string address = "ip -4 -o addr show dev eth0 | awk '{print $4}'";
  for (const auto& [name, ready] : {std::pair{"snap-a", &ready_a}, std::pair{"snap-b", &ready_b}}) {
    std::string given = (*ready)["network"]["nics"][0]["address"], seen;
    EXPECT_TRUE(testing::wait_for([&] { return (seen = in_guest(name, address)) == given; }, std::chrono::seconds(60),
                                  [&] { return std::string(name) + " has " + seen + ", not " + given; }));
  }
  EXPECT_NE(ready_a["network"]["nics"][0]["address"], ready_b["network"]["nics"][0]["address"]);
  EXPECT_NE(in_guest("snap-a", "cat /etc/machine-id"), in_guest("snap-b", "cat /etc/machine-id"));
  EXPECT_NE(ready_a["ssh_host_keys"][0]["fingerprint"], ready_b["ssh_host_keys"][0]["fingerprint"]);
  // The kernel's random state: no shared stream after the resume.
  std::string random = "od -An -tx1 -N64 /dev/urandom | tr -d ' \\n'";
  EXPECT_NE(in_guest("snap-a", random), in_guest("snap-b", random));
  // The clock was stepped to the host's, not left at the snapshot's.
  for (const char* name : {"snap-a", "snap-b"}) {
    long guest = std::stol(in_guest(name, "date +%s"));
    EXPECT_LE(std::labs(guest - static_cast<long>(std::time(nullptr))), 2) << name;
  }
  // No RSA key half-made in the snapshot: each makes its own after resume.
  ASSERT_TRUE(testing::wait_for(
      [&] {
        return kiln({"exec", "snap-a", "--", "test", "-s", "/etc/ssh/ssh_host_rsa_key.pub"}).exit_code == 0 &&
               kiln({"exec", "snap-b", "--", "test", "-s", "/etc/ssh/ssh_host_rsa_key.pub"}).exit_code == 0;
      },
      std::chrono::seconds(240), [] { return "no RSA host key yet"; }));
  std::string rsa = "ssh-keygen -lf /etc/ssh/ssh_host_rsa_key.pub | cut -d' ' -f2";
  EXPECT_NE(in_guest("snap-a", rsa), in_guest("snap-b", rsa));
  // Note: /proc/sys/kernel/random/boot_id is the snapshot's in both: the
  // kernel fixes it at its first read, which systemd makes early in the
  // snapshot's own boot; no step in the guest can change it.
}

TEST_F(SnapshotTest, ResumedInstanceRebootsAsARealBootAndIsDestroyedLeavingNothing) {
  nlohmann::json snapshot = shared_snapshot();
  ASSERT_TRUE(snapshot.is_object());
  ProcessResult resumed = resume("snap-r");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  std::string boot_id = in_guest("snap-r", "cat /proc/sys/kernel/random/boot_id");
  ProcessResult reboot = kiln({"reboot", "snap-r"});
  ASSERT_EQ(reboot.exit_code, 0) << reboot.err;
  ASSERT_TRUE(testing::wait_for(
      [&] {
        ProcessResult id = kiln({"exec", "snap-r", "--", "cat", "/proc/sys/kernel/random/boot_id"});
        return id.exit_code == 0 && !id.out.empty() && id.out.find(boot_id) == std::string::npos;
      },
      std::chrono::seconds(300), [&] { return kiln({"list"}).out; }));
  EXPECT_EQ(in_guest("snap-r", "hostname"), "snap-r");
  ProcessResult destroyed = kiln({"destroy", "snap-r"});
  ASSERT_EQ(destroyed.exit_code, 0) << destroyed.err;
  for (const fs::path& left : {dir_ / "run/snap-r", dir_ / "state/instances/snap-r"})
    EXPECT_FALSE(fs::exists(left)) << left << ": " << ::testing::PrintToString(testing::list_tree(left));
  // The snapshot itself is untouched by its instances.
  ProcessResult listed = kiln({"snapshot", "list", "--json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  int found = 0;
  for (const auto& entry : nlohmann::json::parse(listed.out))
    if (entry["key"] == snapshot["key"]) {
      ++found;
      EXPECT_EQ(entry["stale"], "") << entry.dump();
    }
  EXPECT_EQ(found, 1) << listed.out;
  ProcessResult verified = kiln({"snapshot", "make", kImage.string(), "--json"});
  ASSERT_EQ(verified.exit_code, 0) << verified.err;
  EXPECT_EQ(testing::last_json_line(verified.out)["made"], false) << "its files still have their sha256";
}

TEST_F(SnapshotTest, AChangedSnapshotIsRefusedRemovedAndTheInstanceBootsInstead) {
  nlohmann::json snapshot = shared_snapshot();
  ASSERT_TRUE(snapshot.is_object());
  // A private copy of the shared snapshot, one byte of its saved memory changed.
  cache_ = dir_ / "cache";
  fs::path copy = cache_ / "snapshots" / snapshot["key"].get<std::string>();
  fs::create_directories(copy.parent_path());
  ASSERT_EQ(testing::run_program({"cp", "-a", snapshot["path"].get<std::string>(), copy.string()}).exit_code, 0);
  {
    int fd = ::open((copy / "state.save").c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    char byte = 0;
    off_t at = static_cast<off_t>(fs::file_size(copy / "state.save") / 2);
    ASSERT_EQ(::pread(fd, &byte, 1, at), 1);
    byte = static_cast<char>(byte ^ 0x5a);
    ASSERT_EQ(::pwrite(fd, &byte, 1, at), 1);
    ::close(fd);
  }
  ProcessResult booted = resume("snap-c");
  ASSERT_EQ(booted.exit_code, 0) << booted.err;
  EXPECT_THAT(booted.err, HasSubstr("state.save changed since it was made"));
  EXPECT_THAT(booted.err, HasSubstr("booting instead"));
  EXPECT_THAT(testing::last_json_line(booted.out).value("backend_reason", ""), Not(HasSubstr("resumed from snapshot")));
  EXPECT_FALSE(fs::exists(copy)) << "the changed snapshot is removed";
  EXPECT_EQ(in_guest("snap-c", "hostname"), "snap-c");
}

TEST_F(SnapshotTest, ASnapshotServesOneMemorySizeAndAnotherSizeGetsItsOwn) {
  nlohmann::json snapshot = shared_snapshot();
  ASSERT_TRUE(snapshot.is_object());
  ASSERT_EQ(snapshot["memory_mib"], 1024);
  std::string key = snapshot["key"].get<std::string>().substr(0, 12);
  // A private store holding only the shared 1024 MiB snapshot.
  cache_ = dir_ / "cache";
  fs::create_directories(cache_ / "snapshots");
  ASSERT_EQ(testing::run_program({"cp", "-a", snapshot["path"].get<std::string>(),
                                  (cache_ / "snapshots" / snapshot["key"].get<std::string>()).string()})
                .exit_code,
            0);
  ProcessResult small = resume("snap-m", {"--memory", "512M"});
  ASSERT_EQ(small.exit_code, 0) << small.err;
  std::string reason = testing::last_json_line(small.out).value("backend_reason", "");
  EXPECT_THAT(reason, HasSubstr("resumed from snapshot"));
  EXPECT_THAT(reason, Not(HasSubstr(key)));
  long kib = std::stol(in_guest("snap-m", "sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo"));
  EXPECT_LT(kib, 512 * 1024);
  EXPECT_GT(kib, 400 * 1024);
  ProcessResult listed = kiln({"snapshot", "list", "--json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  nlohmann::json entries = nlohmann::json::parse(listed.out);
  ASSERT_EQ(entries.size(), 2u) << listed.out;
  EXPECT_EQ(entries[0]["memory_mib"], 512);
  EXPECT_EQ(entries[1]["memory_mib"], 1024);
  // Pruning keeps both (neither is stale); --all removes both.
  ProcessResult pruned = kiln({"snapshot", "prune", "--json"});
  ASSERT_EQ(pruned.exit_code, 0) << pruned.err;
  EXPECT_TRUE(nlohmann::json::parse(pruned.out)["removed"].empty()) << pruned.out;
  pruned = kiln({"snapshot", "prune", "--all"});
  ASSERT_EQ(pruned.exit_code, 0) << pruned.err;
  listed = kiln({"snapshot", "list", "--json"});
  EXPECT_EQ(listed.out, "[]\n");
  for (const auto& entry : entries) EXPECT_FALSE(fs::exists(entry["path"].get<std::string>()));
}

TEST_F(SnapshotTest, KilnRunResumesRunsTheCommandAndLeavesNoInstance) {
  ASSERT_TRUE(shared_snapshot().is_object());
  ProcessResult ran = kiln({"run", kImage.string(), "--name", "snap-run", "--from-snapshot", "--net", "none",
                            "--json", "--", "sh", "-c", "hostname; exit 3"});
  EXPECT_EQ(ran.exit_code, 3) << ran.err;
  EXPECT_EQ(ran.out, "snap-run\n");
  EXPECT_THAT(ran.err, HasSubstr("resumed from snapshot"));
  nlohmann::json report = testing::last_json_line(ran.err);
  ASSERT_TRUE(report.is_object()) << ran.err;
  EXPECT_EQ(report["exit_code"], 3);
  EXPECT_EQ(kiln({"list", "--json"}).out, "[]\n");
  EXPECT_FALSE(fs::exists(dir_ / "run/snap-run"));
  EXPECT_FALSE(fs::exists(dir_ / "state/instances/snap-run"));
}

TEST_F(SnapshotTest, WhatNoSnapshotCanServeBootsAndSaysWhy) {
  ProcessResult uml = resume("snap-u", {"--backend", "uml"});
  ASSERT_EQ(uml.exit_code, 0) << uml.err;
  EXPECT_THAT(uml.err, HasSubstr("--from-snapshot: snapshots are resumed by qemu, and --backend uml was asked for; "
                                 "booting instead"));
  ProcessResult make = kiln({"snapshot", "make", (dir_ / "no-such-image").string()});
  EXPECT_NE(make.exit_code, 0);
  EXPECT_THAT(make.err, HasSubstr("no-such-image"));
  ProcessResult libvirt = kiln({"boot", kImage.string(), "--from-snapshot", "--connect", "qemu:///system"});
  EXPECT_EQ(libvirt.exit_code, 2);
  EXPECT_THAT(libvirt.err, HasSubstr("--from-snapshot: kiln's own runtime resumes snapshots, not libvirt"));
}

}  // namespace
}  // namespace kiln
