#include "runtime/snapshot.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>

#include <nlohmann/json.hpp>

#include "base/files.h"
#include "base/hash.h"
#include "base/interrupt.h"
#include "base/size.h"
#include "base/stale_temps.h"
#include "base/subprocess.h"
#include "crypto/secret.h"
#include "formats/image/guest_protocol.h"
#include "runtime/exec_client.h"
#include "runtime/hypervisor_command.h"
#include "runtime/instance_manager.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kEntryFile = "snapshot.json";
constexpr std::chrono::minutes kReadyTimeout{10};
constexpr std::chrono::seconds kAgentTimeout{30};

Result<std::optional<SnapshotEntry>> read_entry(const fs::path& dir) {
  auto text = read_file(dir / kEntryFile);
  if (!text) return std::optional<SnapshotEntry>();
  auto json = nlohmann::json::parse(*text, nullptr, false);
  if (!json.is_object()) return fail(ErrorKind::kBadInput, "{}: not a snapshot record", (dir / kEntryFile).string());
  SnapshotEntry entry;
  entry.key = dir.filename().string();
  entry.dir = dir;
  entry.image = json.value("image", "");
  entry.memory_mib = json.value("memory_mib", uint64_t{0});
  entry.vcpus = json.value("vcpus", 0);
  entry.qemu = json.value("qemu", "");
  entry.made_at = json.value("made_at", int64_t{0});
  entry.seed_size = json.value("seed_size", uint64_t{0});
  entry.qemu_identity = json.value("qemu_identity", "");
  for (auto [field, map] : {std::pair{"sha256", &entry.sha256}, std::pair{"image_sha256", &entry.image_sha256}})
    if (json.contains(field) && json[field].is_object())
      for (const auto& [file, hash] : json[field].items())
        if (hash.is_string()) (*map)[file] = hash.get<std::string>();
  std::error_code ec;
  for (const auto& [file, hash] : entry.sha256) {
    uint64_t size = fs::file_size(dir / file, ec);
    if (!ec) entry.bytes += size;
  }
  return std::optional<SnapshotEntry>(std::move(entry));
}

nlohmann::json entry_json(const SnapshotEntry& entry) {
  return {{"image", entry.image},       {"memory_mib", entry.memory_mib}, {"vcpus", entry.vcpus},
          {"qemu", entry.qemu},         {"made_at", entry.made_at},       {"seed_size", entry.seed_size},
          {"sha256", entry.sha256},     {"image_sha256", entry.image_sha256},
          {"qemu_identity", entry.qemu_identity}};
}

// The files of an image an instance boots: its disk, kernel and initramfs.
std::vector<fs::path> image_files(const InstanceSpec& spec) {
  return {spec.disks.front().base, spec.kernel, spec.initrd};
}

Result<std::string> qemu_version(const InstanceSpec& spec) {
  Command version;
  version.argv = {std::string(architecture_of(spec).qemu_system), "--version"};
  KILN_ASSIGN(Completed done, system_runner().run(version));
  return std::string(done.out.substr(0, done.out.find('\n')));
}

// Moves `from` to `to`, copying across filesystems (the instance store and
// the cache may be on different ones).
Result<> move_file(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  if (!ec) return {};
  if (ec != std::errc::cross_device_link) return fail_errno("cannot move", from.string(), ec.value());
  KILN_ASSIGN(UniqueFd in, open_file(from, O_RDONLY | O_CLOEXEC));
  KILN_ASSIGN(UniqueFd out, open_file(to, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  uint64_t size = fs::file_size(from);
  if (::ftruncate(out.get(), static_cast<off_t>(size)) != 0) return fail_errno("cannot size", to.string(), errno);
  KILN_TRY(copy_sparse(in.get(), 0, out.get(), 0, size, from.string()));
  fs::remove(from, ec);
  return {};
}

// Runs the agent's `action` in the instance, as root, and fails with what
// it said when it does not succeed.
Result<> agent_action(const InstanceStore& store, const std::string& name, std::vector<std::string> argv) {
  ExecRequest request;
  request.argv = std::move(argv);
  request.argv.insert(request.argv.begin(), std::string(kAgentScriptPath));
  std::string errors;
  ExecIo io;
  io.out = [](std::string_view) -> Result<> { return {}; };
  io.err = [&errors](std::string_view text) -> Result<> {
    errors.append(text);
    return {};
  };
  KILN_ASSIGN(ExecExit exit, run_in_guest(store.paths(name).exec_socket, name, request, io, kAgentTimeout));
  // The agent's usage line: an image baked before kiln made snapshots.
  if (shell_exit_code(exit) == 2 && errors.find("usage: kiln-agent") != std::string::npos)
    return fail(ErrorKind::kBadInput, "{}: the image's kiln agent predates snapshots (it has no {}): bake the image "
                "again with this kiln", name, request.argv[1]);
  if (shell_exit_code(exit) != 0)
    return fail(ErrorKind::kFailed, "{}: kiln-agent {} failed in the guest (exit {}){}{}", name, request.argv[1],
                shell_exit_code(exit), errors.empty() ? "" : ": ", errors);
  return {};
}

}  // namespace

std::optional<SnapshotEntry> SnapshotStore::find(const std::string& key) const {
  auto entry = read_entry(root_ / key);
  return entry ? *entry : std::nullopt;
}

std::vector<SnapshotEntry> SnapshotStore::list() const {
  std::vector<SnapshotEntry> out;
  std::error_code ec;
  for (const auto& item : fs::directory_iterator(root_, ec)) {
    if (item.path().filename().string().starts_with(".")) continue;
    if (auto entry = find(item.path().filename().string())) out.push_back(std::move(*entry));
  }
  std::ranges::sort(out, [](const SnapshotEntry& a, const SnapshotEntry& b) { return a.made_at > b.made_at; });
  return out;
}

Result<> SnapshotStore::remove(const std::string& key) const { return remove_tree(root_ / key); }

void SnapshotStore::remove_leftovers() const { remove_stale_temp_dirs(root_, "making"); }

Result<SnapshotLock> SnapshotStore::lock(const std::string& key) const {
  std::error_code ec;
  fs::create_directories(root_, ec);
  if (ec) return fail_errno("cannot create", root_.string(), ec.value());
  fs::path file = root_ / ("." + key + ".lock");
  KILN_ASSIGN(UniqueFd fd, open_file(file, O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return fail_errno("cannot lock", file.string(), errno);
    KILN_TRY(check_interrupted());
  }
  return fd;
}

std::string snapshot_refusal(const InstanceSpec& spec) {
  if (spec.backend != BackendKind::kQemu) return "snapshots are resumed by qemu, and this instance runs under UML";
  if (spec.architecture != "amd64") return fmt::format("kiln makes snapshots of amd64 images only (this one is {})",
                                                       spec.architecture);
  if (spec.firmware) return "an instance booted through UEFI firmware is not resumed from a snapshot";
  if (spec.network.nics.size() > static_cast<size_t>(kSnapshotNicSlots))
    return fmt::format("a snapshot's machine has room for {} NICs, and this instance has {}", kSnapshotNicSlots,
                       spec.network.nics.size());
  if (spec.disks.size() != 1) return "only an image directory's single disk is resumed from a snapshot";
  return {};
}

Result<std::string> snapshot_key(const InstanceSpec& spec, const FileHashCache& hashes) {
  Hasher hasher;
  hasher.field("kiln snapshot 1").field(KILN_VERSION);
  for (const fs::path& file : image_files(spec)) {
    KILN_ASSIGN(std::string hash, hashes.sha256(file));
    hasher.field(hash);
  }
  const Architecture& arch = architecture_of(spec);
  KILN_ASSIGN(std::string qemu, program_identity(arch.qemu_system));
  hasher.field(std::to_string(spec.memory_mib)).field(std::to_string(spec.vcpus));
  hasher.field(arch.qemu_machine).field(spec.kvm ? "host" : arch.tcg_cpu).field(spec.kvm ? "kvm" : "tcg");
  hasher.field(qemu).field(fmt::format("NIC slots {}", kSnapshotNicSlots));
  return hasher.hex_digest();
}

Result<SnapshotEntry> make_snapshot(const InstanceStore& store, const SnapshotStore& snapshots,
                                    const BootRequest& request, const std::string& key, Reporter& reporter) {
  std::error_code ec;
  fs::create_directories(snapshots.root(), ec);
  if (ec) return fail_errno("cannot create", snapshots.root().string(), ec.value());
  snapshots.remove_leftovers();
  KILN_ASSIGN(TempDir making, create_tagged_temp_dir(snapshots.root(), "making"));

  BootRequest neutral;
  neutral.source = request.source;
  neutral.name = "snapshot-" + key.substr(0, 12);
  neutral.backend = "qemu";
  neutral.memory_mib = request.memory_mib;
  neutral.vcpus = request.vcpus;
  neutral.networks = {"none"};
  neutral.snapshot_machine = true;
  const std::string& name = neutral.name;
  reporter.step("snapshot", fmt::format("booting {} once to ready, to save it", request.source));
  KILN_ASSIGN(BootOutcome booted, boot_instance(store, neutral, reporter));
  // Gone afterwards, made or not.
  struct Destroy {
    const InstanceStore& store;
    const std::string& name;
    ~Destroy() { (void)destroy_instance(store, name); }
  } destroy{store, name};
  KILN_TRY(wait_ready(store, name, kReadyTimeout));
  KILN_TRY(agent_action(store, name, {std::string(kAgentQuiesceCommand)}));
  const InstancePaths paths = store.paths(name);
  SnapshotEntry entry;
  entry.key = key;
  entry.image = fs::absolute(request.source).string();
  entry.memory_mib = booted.record.spec.memory_mib;
  entry.vcpus = booted.record.spec.vcpus;
  entry.seed_size = fs::file_size(paths.seed, ec);
  entry.made_at = static_cast<int64_t>(std::time(nullptr));
  KILN_ASSIGN(entry.qemu, qemu_version(booted.record.spec));
  KILN_ASSIGN(entry.qemu_identity, program_identity(architecture_of(booted.record.spec).qemu_system));
  FileHashCache hashes = store.file_hashes();
  for (const fs::path& file : image_files(booted.record.spec)) {
    KILN_ASSIGN(entry.image_sha256[fs::absolute(file).string()], hashes.sha256(file));
  }
  KILN_TRY(save_instance(store, name, making.path() / "state.save"));
  KILN_TRY(move_file(paths.overlay(0, BackendKind::kQemu), making.path() / "disk0.qcow2"));
  for (const char* file : {"state.save", "disk0.qcow2"}) {
    KILN_ASSIGN(entry.sha256[file], file_digest_hex(making.path() / file));
    entry.bytes += fs::file_size(making.path() / file);
  }
  KILN_TRY(write_file_atomic(making.path() / kEntryFile, entry_json(entry).dump(2) + "\n"));
  entry.dir = snapshots.root() / key;
  KILN_TRY(install_directory(std::move(making), entry.dir));
  reporter.done(fmt::format("{} ({})", key.substr(0, 12), format_size(entry.bytes)));
  return entry;
}

Result<> become_instance(const InstanceStore& store, const InstanceSpec& spec) {
  KILN_ASSIGN(Secret entropy, Secret::random(64));
  static constexpr char kHex[] = "0123456789abcdef";
  std::vector<std::string> resume = {std::string(kAgentResumeCommand), ""};
  for (size_t i = 0; i < entropy.size(); ++i) {
    auto byte = static_cast<unsigned char>(entropy.data()[i]);
    resume[1] += kHex[byte >> 4];
    resume[1] += kHex[byte & 15];
  }
  // The NICs the supervisor plugged in: the agent waits for each.
  for (const NicSpec& nic : spec.network.nics) resume.push_back(nic.mac);
  KILN_TRY(agent_action(store, spec.name, resume));
  // The time is read as late as it can be: the call that carries it is short.
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  return agent_action(store, spec.name,
                      {std::string(kAgentReadyAtCommand), fmt::format("{}.{:09}", now.tv_sec, now.tv_nsec)});
}

Result<> verify_snapshot(const SnapshotEntry& entry, const FileHashCache& hashes) {
  for (const char* file : {"state.save", "disk0.qcow2"}) {
    auto recorded = entry.sha256.find(file);
    if (recorded == entry.sha256.end())
      return fail(ErrorKind::kBadInput, "snapshot {}: its record lists no sha256 for {}", entry.key, file);
    auto actual = hashes.sha256(entry.dir / file);
    if (!actual) return fail(ErrorKind::kBadInput, "snapshot {}: {}", entry.key, actual.error().message);
    if (*actual != recorded->second)
      return fail(ErrorKind::kBadInput, "snapshot {}: {} changed since it was made (sha256 {} instead of {})",
                  entry.key, file, actual->substr(0, 16), recorded->second.substr(0, 16));
  }
  return {};
}

std::string snapshot_staleness(const SnapshotEntry& entry, const FileHashCache& hashes) {
  if (entry.image_sha256.empty()) return "made by an earlier kiln (no record of its image's files)";
  for (const auto& [file, recorded] : entry.image_sha256) {
    std::error_code ec;
    if (!fs::exists(file, ec)) return fmt::format("{} is gone", file);
    auto hash = hashes.sha256(file);
    if (!hash || *hash != recorded) return fmt::format("{} changed", file);
  }
  for (const auto& [file, hash] : entry.sha256)
    if (!fs::exists(entry.dir / file)) return fmt::format("its {} is missing", file);
  // The identity begins with the program's path.
  std::string qemu = entry.qemu_identity.substr(0, entry.qemu_identity.find(' '));
  if (auto identity = program_identity(qemu); !identity || *identity != entry.qemu_identity)
    return fmt::format("{} was replaced since", qemu);
  return {};
}

}  // namespace kiln
