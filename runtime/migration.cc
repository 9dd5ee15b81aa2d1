#include "runtime/migration.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/file_hash_cache.h"
#include "base/files.h"
#include "base/hash.h"
#include "base/interrupt.h"
#include "base/size.h"
#include "base/subprocess.h"
#include "runtime/hypervisor_command.h"
#include "runtime/image_transfer.h"
#include "runtime/instance_manager.h"
#include "runtime/instance_plan.h"
#include "runtime/ssh_target.h"
#include "runtime/supervisor.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr int kProtocol = 1;
constexpr size_t kMaxHeader = 1 << 20;
constexpr uint64_t kMaxSeed = 256ull << 20;

double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// One of the image's files, as the instance uses it: disk0, kernel, initrd.
struct ImageFile {
  std::string role;
  fs::path path;
  std::string sha256;
  uint64_t size = 0;
};

Result<std::vector<ImageFile>> image_files(const InstanceStore& store, const InstanceSpec& spec) {
  std::vector<ImageFile> files;
  for (size_t i = 0; i < spec.disks.size(); ++i) files.push_back({fmt::format("disk{}", i), spec.disks[i].base});
  if (!spec.kernel.empty()) files.push_back({"kernel", spec.kernel});
  if (!spec.initrd.empty()) files.push_back({"initrd", spec.initrd});
  FileHashCache hashes = store.file_hashes();
  for (ImageFile& file : files) {
    // One that came with an instance migrated in is named by its hash,
    // checked when it arrived.
    bool received = file.path.parent_path() == store.images_root() && is_sha256_hex(file.path.filename().string());
    if (received) {
      file.sha256 = file.path.filename().string();
    } else {
      KILN_ASSIGN(file.sha256, hashes.sha256(file.path));
    }
    std::error_code ec;
    file.size = fs::file_size(file.path, ec);
    if (ec) return fail_errno("cannot size", file.path.string(), ec.value());
  }
  return files;
}

// What a migration cannot carry.
Result<> check_migratable(const InstanceStore& store, const InstanceRecord& record) {
  const std::string& name = record.spec.name;
  if (record.spec.backend != BackendKind::kQemu)
    return fail(ErrorKind::kBadInput, "{} runs on the uml backend, which cannot migrate (UML has no way to move a "
                "running guest); an instance booted with --backend qemu can", name);
  if (record.state != InstanceState::kRunning && record.state != InstanceState::kPaused)
    return fail(ErrorKind::kBadInput, "{} is {}: only a running or paused instance migrates", name,
                state_name(record.state));
  if (!InstanceLock::is_held(store.paths(name)))
    return fail(ErrorKind::kBadInput, "{} is not running (its supervisor is gone)", name);
  for (const NicSpec& nic : record.spec.network.nics)
    if (nic.kind != NetworkKind::kUser)
      return fail(ErrorKind::kBadInput, "{} is on kiln network {}: kiln migrates instances on user networking only "
                  "(a kiln network is this host's own)", name, nic.network);
  if (!record.spec.network.published.empty() || record.spec.network.ssh_port)
    return fail(ErrorKind::kBadInput, "{} publishes ports of this host (--publish, --ssh-port), which do not move "
                "with it; kiln migrates instances that publish none", name);
  return {};
}

// A command running on the target through the ssh connection: what the
// source writes to it, and the JSON lines it answers with. Lines that are
// not JSON are ssh's or the remote kiln's messages, kept for errors.
class RemoteSession {
 public:
  static Result<RemoteSession> start(const SshTarget& target, const std::vector<std::string>& remote) {
    Command command;
    command.argv = target.command(remote);
    KILN_ASSIGN(Spawned spawned, spawn(command));
    return RemoteSession(spawned, target.uri().text);
  }
  RemoteSession(RemoteSession&& other) noexcept
      : pid_(std::exchange(other.pid_, -1)), in_(std::move(other.in_)), out_(std::move(other.out_)),
        where_(std::move(other.where_)), said_(std::move(other.said_)), pending_(std::move(other.pending_)) {}
  ~RemoteSession() {
    if (pid_ <= 0) return;
    in_ = UniqueFd();
    ::kill(-pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }

  int input() const { return in_.get(); }
  Result<> write(std::string_view data) { return write_all(in_.get(), data.data(), data.size(), where_); }
  // Ends what the session reads; the remote side sees the stream end.
  void close_input() { in_ = UniqueFd(); }

  // The next JSON reply; fails on {"error": ...}, on the end of the
  // session and after `timeout`.
  Result<json> reply(std::chrono::seconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (true) {
      size_t end = pending_.find('\n');
      if (end != std::string::npos) {
        std::string line = pending_.substr(0, end);
        pending_.erase(0, end + 1);
        json parsed = json::parse(line, nullptr, false);
        if (parsed.is_object() && parsed.contains("error"))
          return fail(ErrorKind::kFailed, "{}: {}", where_, parsed["error"].get<std::string>());
        if (parsed.is_object()) return parsed;
        said_ += line + "\n";
        continue;
      }
      KILN_TRY(check_interrupted());
      if (Clock::now() > deadline) return fail(ErrorKind::kFailed, "{}: no answer within {} s", where_, timeout.count());
      pollfd p{out_.get(), POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buffer[4096];
      ssize_t n = ::read(out_.get(), buffer, sizeof buffer);
      if (n > 0) {
        pending_.append(buffer, static_cast<size_t>(n));
        continue;
      }
      std::string said = key_lines(said_ + pending_);
      return fail(ErrorKind::kFailed, "{}: {}", where_, said.empty() ? "the connection ended" : said);
    }
  }

  // Waits for the remote command to end; fails unless it ended well.
  Result<> finish() {
    close_input();
    std::string rest;
    char buffer[4096];
    ssize_t n;
    while ((n = ::read(out_.get(), buffer, sizeof buffer)) > 0) rest.append(buffer, static_cast<size_t>(n));
    int status = 0;
    ::waitpid(std::exchange(pid_, -1), &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
    std::string said = key_lines(said_ + pending_ + rest);
    return fail(ErrorKind::kFailed, "{}: {}", where_, said.empty() ? "the remote command failed" : said);
  }

 private:
  RemoteSession(const Spawned& spawned, std::string where)
      : pid_(spawned.pid), in_(spawned.in), out_(spawned.out), where_(std::move(where)) {}
  pid_t pid_;
  UniqueFd in_, out_;
  std::string where_, said_, pending_;
};

Result<> send_missing_files(const SshTarget& target, const std::vector<ImageFile>& files, const json& missing,
                            MigrationOutcome& outcome, Reporter& reporter) {
  for (const ImageFile& file : files) {
    if (std::find(missing.begin(), missing.end(), file.sha256) == missing.end()) continue;
    if (std::find(outcome.sent_files.begin(), outcome.sent_files.end(), file.path.string()) != outcome.sent_files.end())
      continue;
    KILN_ASSIGN(uint64_t allocated, allocated_bytes(file.path));
    reporter.step("image", fmt::format("sending {} ({} of data)", file.path.string(), format_size(allocated)));
    KILN_ASSIGN(RemoteSession session, RemoteSession::start(target, {"kiln", "migrate-target", "image", file.sha256,
                                                                     std::to_string(file.size)}));
    KILN_TRY(send_image_file(file.path, session.input(), [&](uint64_t sent) { reporter.progress(sent, allocated); }));
    KILN_TRY(session.finish());
    reporter.done();
    outcome.sent_files.push_back(file.path.string());
    outcome.image_bytes_sent += allocated;
  }
  return {};
}

// Free space the target must have: the image data it lacks, and the data
// the guest wrote over the image.
Result<uint64_t> space_needed(const InstanceStore& store, const InstanceRecord& record,
                              const std::vector<ImageFile>& files, const json& missing) {
  uint64_t needed = 0;
  for (const ImageFile& file : files)
    if (std::find(missing.begin(), missing.end(), file.sha256) != missing.end()) {
      KILN_ASSIGN(uint64_t bytes, allocated_bytes(file.path));
      needed += bytes;
    }
  InstancePaths paths = store.paths(record.spec.name);
  for (size_t i = 0; i < record.spec.disks.size(); ++i) {
    KILN_ASSIGN(uint64_t bytes, allocated_bytes(paths.overlay(i, BackendKind::kQemu)));
    needed += bytes;
  }
  return needed;
}

// The receiving end's first words: the record, the image files by hash,
// then the seed disk and UEFI variables, whose sizes it gives.
Result<std::string> migration_header(const InstanceStore& store, const InstanceRecord& record,
                                     const std::vector<ImageFile>& files, std::string& seed, std::string& vars) {
  InstancePaths paths = store.paths(record.spec.name);
  KILN_ASSIGN(seed, read_file(paths.seed));
  if (record.spec.firmware) {
    KILN_ASSIGN(vars, read_file(paths.state_dir / "OVMF_VARS.fd"));
  }
  json roles = json::object();
  for (const ImageFile& file : files) roles[file.role] = file.sha256;
  json header = {{"protocol", kProtocol}, {"record", to_json(record)}, {"files", roles},
                 {"seed_bytes", seed.size()}, {"vars_bytes", vars.size()}};
  return header.dump() + "\n";
}

}  // namespace

Result<MigrationOutcome> migrate_instance(const InstanceStore& store, const std::string& name, const std::string& uri,
                                          bool live, Reporter& reporter) {
  auto started = Clock::now();
  KILN_ASSIGN(InstanceRecord record, store.load(name));
  KILN_TRY(check_migratable(store, record));
  KILN_ASSIGN(SshUri ssh_uri, parse_ssh_uri(uri));
  MigrationOutcome outcome;
  outcome.target = uri;
  reporter.step("connect", uri);
  KILN_ASSIGN(SshTarget target, SshTarget::connect(ssh_uri));
  reporter.done();
  KILN_ASSIGN(std::vector<ImageFile> files, image_files(store, record.spec));

  std::vector<std::string> probe = {"kiln", "migrate-target", "probe", "--name", name};
  if (record.spec.kvm) probe.push_back("--kvm");
  for (const ImageFile& file : files) probe.push_back(file.sha256);
  KILN_ASSIGN(Completed probed, target.run(probe));
  json answer = json::parse(probed.out, nullptr, false);
  if (!answer.is_object() || answer.value("protocol", 0) != kProtocol)
    return fail(ErrorKind::kFailed, "{}: its kiln does not speak kiln's migration protocol {} (it said: {})", uri,
                kProtocol, key_lines(probed.out + probed.err));
  json missing = answer.value("missing", json::array());
  KILN_ASSIGN(uint64_t needed, space_needed(store, record, files, missing));
  uint64_t free_bytes = answer.value("free_bytes", uint64_t{0});
  if (free_bytes < needed)
    return fail(ErrorKind::kFailed, "{}: {} has {} free, and {} needs {} there", uri,
                answer.value("images", std::string("its image store")), format_size(free_bytes), name,
                format_size(needed));
  KILN_TRY(send_missing_files(target, files, missing, outcome, reporter));

  reporter.step("migrate", fmt::format("{} to {}{}", name, uri, live ? ", live" : ""));
  std::string seed, vars;
  KILN_ASSIGN(std::string header, migration_header(store, record, files, seed, vars));
  KILN_ASSIGN(RemoteSession receiver, RemoteSession::start(target, {"kiln", "migrate-target", "receive"}));
  KILN_TRY(receiver.write(header));
  KILN_TRY(receiver.write(seed));
  KILN_TRY(receiver.write(vars));
  KILN_ASSIGN(json listening, receiver.reply(std::chrono::seconds(120)));
  fs::path local = target.local_socket("migration.sock");
  KILN_TRY(target.forward_unix_socket(local, listening.value("listening", "")));

  // Up to here the source is untouched; if the stream fails, qemu keeps
  // the guest running here, and the receiver, seeing its input end,
  // removes what it made.
  auto sent = ask(store, name, fmt::format("{} unix:{}", live ? "migrate-live" : "migrate-stopped", local.string()));
  if (!sent)
    return std::unexpected(std::move(sent.error()).with_context(fmt::format("{} runs on here", name)));
  auto stream_ended = Clock::now();
  json report = json::parse(*sent, nullptr, false);
  outcome.stream_ms = report.value("total_ms", 0.0);
  outcome.qemu_downtime_ms = report.value("downtime_ms", 0.0);
  outcome.ram_bytes = report.value("ram_bytes", uint64_t{0});
  outcome.disk_bytes = report.value("disk_bytes", uint64_t{0});

  auto committed = [&]() -> Result<> {
    KILN_TRY(receiver.reply(std::chrono::seconds(120)));  // {"loaded": true}
    KILN_TRY(receiver.write("commit\n"));
    KILN_TRY(receiver.reply(std::chrono::seconds(60)));  // {"running": true}
    return {};
  }();
  if (!committed) {
    // The target discarded its copy when it said why; else the guest may
    // run there, and this copy stays stopped for the user to decide.
    return fail(ErrorKind::kFailed, "{}: the guest's state went to {}, but it was not started there: {}; it is "
                "stopped here: `kiln unpause {}` runs it here again once you know it does not run there",
                name, uri, committed.error().message, name);
  }
  outcome.handover_ms = ms_between(stream_ended, Clock::now());
  KILN_TRY(request(store, name, "let-go"));
  KILN_TRY(wait_gone(store, name, std::chrono::seconds(60)));
  (void)receiver.finish();
  outcome.total_ms = ms_between(started, Clock::now());
  reporter.done(fmt::format("downtime {:.0f} ms", outcome.downtime_ms()));
  return outcome;
}

Result<std::string> probe_migration_target(const InstanceStore& store, const std::string& name, bool kvm,
                                           const std::vector<std::string>& image_hashes) {
  KILN_TRY(check_instance_name(name));
  if (fs::exists(store.paths(name).record))
    return fail(ErrorKind::kBadInput, "an instance named {} exists here already", name);
  KILN_ASSIGN(std::string qemu, find_program(kQemuBinary));
  if (kvm && !real_host(store)->kvm(qemu).works)
    return fail(ErrorKind::kBadInput, "{} runs under KVM, and KVM does not work here", name);
  json missing = json::array();
  for (const std::string& hash : image_hashes) {
    if (!is_sha256_hex(hash)) return fail(ErrorKind::kBadInput, "\"{}\" is not a SHA-256", hash);
    if (!fs::exists(store.images_root() / hash)) missing.push_back(hash);
  }
  std::error_code ec;
  fs::create_directories(store.images_root(), ec);
  if (ec) return fail_errno("cannot create", store.images_root().string(), ec.value());
  struct statvfs vfs;
  if (::statvfs(store.images_root().c_str(), &vfs) != 0) return fail_errno("statvfs", store.images_root().string(), errno);
  json answer = {{"protocol", kProtocol}, {"missing", missing}, {"qemu", qemu},
                 {"images", store.images_root().string()},
                 {"free_bytes", static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize}};
  return answer.dump();
}

namespace {

Result<std::string> read_line(int fd, size_t limit) {
  std::string line;
  char c;
  while (true) {
    ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("read", "the migration's input", errno);
    if (n == 0) return fail(ErrorKind::kFailed, "the source went away");
    if (c == '\n') return line;
    if (line.size() >= limit) return fail(ErrorKind::kBadInput, "a header line longer than {} bytes", limit);
    line += c;
  }
}

Result<std::string> read_bytes(int fd, uint64_t size) {
  std::string data(size, '\0');
  size_t got = 0;
  while (got < size) {
    ssize_t n = ::read(fd, data.data() + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(ErrorKind::kFailed, "the source went away in the middle of the seed disk");
    got += static_cast<size_t>(n);
  }
  return data;
}

Result<> say(int out, const json& message) {
  std::string line = message.dump() + "\n";
  return write_all(out, line.data(), line.size(), "the migration's output");
}

// The instance as the source had it, its image files those of this host.
Result<IncomingInstance> read_incoming(const InstanceStore& store, int in) {
  KILN_ASSIGN(std::string line, read_line(in, kMaxHeader));
  json header = json::parse(line, nullptr, false);
  if (!header.is_object() || header.value("protocol", 0) != kProtocol)
    return fail(ErrorKind::kBadInput, "not a kiln migration header of protocol {}", kProtocol);
  IncomingInstance incoming;
  KILN_ASSIGN(incoming.record, record_from_json(header.at("record"), "the migration header"));
  InstanceSpec& spec = incoming.record.spec;
  KILN_TRY(check_instance_name(spec.name));
  json files = header.value("files", json::object());
  auto local = [&](const std::string& role, fs::path& path) -> Result<> {
    std::string hash = files.value(role, "");
    if (!is_sha256_hex(hash) || !fs::exists(store.images_root() / hash))
      return fail(ErrorKind::kBadInput, "the image's {} is not here ({})", role, hash);
    path = store.images_root() / hash;
    return {};
  };
  for (size_t i = 0; i < spec.disks.size(); ++i) KILN_TRY(local(fmt::format("disk{}", i), spec.disks[i].base));
  if (!spec.kernel.empty()) KILN_TRY(local("kernel", spec.kernel));
  if (!spec.initrd.empty()) KILN_TRY(local("initrd", spec.initrd));
  uint64_t seed_bytes = header.value("seed_bytes", uint64_t{0}), vars_bytes = header.value("vars_bytes", uint64_t{0});
  if (seed_bytes == 0 || seed_bytes > kMaxSeed || vars_bytes > kMaxSeed)
    return fail(ErrorKind::kBadInput, "a seed disk of {} bytes and UEFI variables of {}", seed_bytes, vars_bytes);
  KILN_ASSIGN(incoming.seed, read_bytes(in, seed_bytes));
  KILN_ASSIGN(incoming.ovmf_vars, read_bytes(in, vars_bytes));
  incoming.socket = store.paths(spec.name).state_dir / "migration.sock";
  // Its processes' mark, and how this receiver tells the instance it made
  // from one of the same name that a later attempt made.
  incoming.record.process_mark = random_hex(8);
  return incoming;
}

// Whether the source has gone (its end of the input closed) while it had
// nothing to say.
bool source_gone(int in) {
  pollfd p{in, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

// This receiver's instance, not one of the same name made since.
std::optional<InstanceRecord> own_instance(const InstanceStore& store, const std::string& name, const std::string& mark) {
  auto record = store.load(name);
  if (!record || record->process_mark != mark) return std::nullopt;
  return *record;
}

// Waits until `arrived` says so, the instance is gone, or the source is.
Result<> wait_for_instance(const InstanceStore& store, const std::string& name, const std::string& mark, int in,
                           const std::string& what, const std::function<bool(const InstanceRecord&)>& arrived) {
  while (true) {
    KILN_TRY(check_interrupted());
    auto record = own_instance(store, name, mark);
    if (!record) return fail(ErrorKind::kFailed, "{}: the instance ended here", what);
    if (arrived(*record)) return {};
    if (record->state == InstanceState::kCrashed) return fail(ErrorKind::kFailed, "{}: {}", what, record->last_event);
    if (source_gone(in)) return fail(ErrorKind::kFailed, "{}: the source gave up", what);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

Result<> receive_migration(const InstanceStore& store, int in, int out, Reporter& reporter) {
  auto incoming = read_incoming(store, in);
  if (!incoming) {
    (void)say(out, {{"error", incoming.error().message}});
    return std::unexpected(incoming.error());
  }
  const std::string name = incoming->record.spec.name;
  // Until the guest runs here, any failure takes away what was made.
  const std::string mark = incoming->record.process_mark;
  struct Discard {
    const InstanceStore& store;
    const std::string& name;
    const std::string& mark;
    bool armed = false;
    ~Discard() {
      if (armed && own_instance(store, name, mark)) (void)destroy_with_kept_log(store, name);
    }
  } discard{store, name, mark};
  auto received = [&]() -> Result<> {
    if (fs::exists(store.paths(name).record))
      return fail(ErrorKind::kBadInput, "an instance named {} exists here already", name);
    discard.armed = true;
    KILN_TRY(start_incoming(store, *incoming, reporter));
    KILN_TRY(wait_for_instance(store, name, mark, in, "waiting for qemu", [&](const InstanceRecord&) {
      return fs::exists(incoming->socket);
    }));
    KILN_TRY(say(out, {{"listening", incoming->socket.string()}}));
    KILN_TRY(wait_for_instance(store, name, mark, in, "receiving the guest", [](const InstanceRecord& record) {
      return record.state == InstanceState::kPaused && record.last_event == kMigratedInEvent;
    }));
    KILN_TRY(say(out, {{"loaded", true}}));
    KILN_ASSIGN(std::string word, read_line(in, 64));
    if (word != "commit") return fail(ErrorKind::kBadInput, "the source said \"{}\", not commit", word);
    KILN_TRY(request(store, name, "unpause"));
    discard.armed = false;
    return say(out, {{"running", true}});
  }();
  if (!received) (void)say(out, {{"error", received.error().message}});
  return received;
}

}  // namespace kiln
