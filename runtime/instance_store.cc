#include "runtime/instance_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <regex>
#include <set>

#include "runtime/uml_sandbox.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

Result<InstanceRecord> read_record(const fs::path& path) {
  KILN_ASSIGN(std::string text, read_file(path));
  auto json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded()) return fail(ErrorKind::kFailed, "{}: damaged instance record", path.string());
  return record_from_json(json, path.string());
}

constexpr std::string_view kKeptLogSuffix = ".console.log";

fs::path env_path(const char* name) {
  const char* value = std::getenv(name);
  return value && *value ? fs::path(value) : fs::path();
}

}  // namespace

fs::path InstancePaths::overlay(size_t index, BackendKind backend) const {
  return disk_dir / fmt::format("disk{}.{}", index, backend == BackendKind::kQemu ? "qcow2" : "cow");
}

InstanceStore InstanceStore::open() {
  fs::path state = env_path("KILN_RUNTIME_DIR");
  fs::path disks = env_path("KILN_STATE_DIR");
  bool root = ::geteuid() == 0;
  if (state.empty()) {
    fs::path runtime = env_path("XDG_RUNTIME_DIR");
    state = root || runtime.empty() ? fs::path(root ? "/run/kiln" : "/tmp/kiln-" + std::to_string(::geteuid()))
                                    : runtime / "kiln";
  }
  if (disks.empty()) {
    fs::path xdg = env_path("XDG_STATE_HOME");
    fs::path home = env_path("HOME");
    disks = root ? fs::path("/var/lib/kiln")
                 : (xdg.empty() ? home / ".local/state" : xdg) / "kiln";
  }
  return InstanceStore(state, disks / "instances", disks / "logs");
}

InstancePaths InstanceStore::paths(const std::string& name) const {
  InstancePaths p;
  p.state_dir = state_root_ / name;
  p.record = p.state_dir / "instance.json";
  p.lock = p.state_dir / "lock";
  p.console_socket = p.state_dir / "console.sock";
  p.console_log = p.state_dir / "console.log";
  p.qmp_socket = p.state_dir / "qmp.sock";
  p.qmp_events_socket = p.state_dir / "qmp-events.sock";
  p.exec_socket = p.state_dir / "exec.sock";
  p.agent_socket = p.state_dir / "agent.sock";
  p.uml_dir = p.state_dir / "uml";
  p.seed = p.state_dir / "seed.img";
  p.disk_dir = disk_root_ / name;
  p.saved_record = p.disk_dir / "saved.json";
  p.kept_console_log = log_root_ / (name + std::string(kKeptLogSuffix));
  return p;
}

Result<InstanceRecord> InstanceStore::load(const std::string& name) const {
  InstancePaths p = paths(name);
  auto record = read_record(p.record);
  if (record || fs::exists(p.record)) return record;
  if (fs::exists(p.saved_record)) return load_saved(name);
  return fail(ErrorKind::kBadInput, "no instance named {} (see `kiln list`)", name);
}

Result<> InstanceStore::save(const InstanceRecord& record) const {
  return write_file_atomic(paths(record.spec.name).record, to_json(record).dump(2) + "\n");
}

std::vector<std::string> InstanceStore::names() const {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(state_root_, ec))
    if (entry.is_directory(ec) && fs::exists(entry.path() / "instance.json", ec))
      out.insert(entry.path().filename().string());
  for (const auto& entry : fs::directory_iterator(disk_root_, ec))
    if (entry.is_directory(ec) && fs::exists(entry.path() / "saved.json", ec))
      out.insert(entry.path().filename().string());
  return {out.begin(), out.end()};
}

Result<> InstanceStore::remove(const std::string& name, bool keep_disks) const {
  InstancePaths p = paths(name);
  if (!keep_disks && !fs::exists(p.saved_record)) KILN_TRY(remove_tree(p.disk_dir));
  auto record = load(name);
  if (record && !record->spec.id.empty() && std::all_of(record->spec.id.begin(), record->spec.id.end(), ::isxdigit))
    KILN_TRY(remove_tree(uml_memory_dir(record->spec.id)));
  return remove_tree(p.state_dir);
}

Result<InstanceRecord> InstanceStore::load_saved(const std::string& name) const {
  InstancePaths p = paths(name);
  if (!fs::exists(p.saved_record))
    return fail(ErrorKind::kBadInput, "no saved instance named {}: its disks were restored or destroyed since", name);
  return read_record(p.saved_record);
}

Result<> InstanceStore::mark_saved(const InstanceRecord& record) const {
  return write_file_atomic(paths(record.spec.name).saved_record, to_json(record).dump(2) + "\n");
}

Result<> InstanceStore::forget_saved(const std::string& name) const {
  std::error_code ec;
  fs::path marker = paths(name).saved_record;
  if (!fs::remove(marker, ec) && ec) return fail_errno("cannot remove", marker.string(), ec.value());
  return {};
}

Result<fs::path> InstanceStore::keep_console_log(const std::string& name) const {
  KILN_TRY(check_instance_name(name));
  InstancePaths p = paths(name);
  KILN_ASSIGN(std::string log, read_file(p.console_log));
  std::error_code ec;
  fs::create_directories(log_root_, ec);
  if (ec) return fail_errno("cannot create", log_root_.string(), ec.value());
  KILN_TRY(write_file_atomic(p.kept_console_log, log, 0600));
  // The oldest go first; the one just kept is the newest.
  std::vector<std::pair<fs::file_time_type, fs::path>> kept;
  for (const std::string& other : kept_log_names()) {
    fs::path path = paths(other).kept_console_log;
    if (path != p.kept_console_log) kept.emplace_back(fs::last_write_time(path, ec), path);
  }
  std::sort(kept.begin(), kept.end());
  size_t excess = kept.size() + 1 > kKeptConsoleLogs ? kept.size() + 1 - kKeptConsoleLogs : 0;
  for (size_t i = 0; i < excess; ++i) fs::remove(kept[i].second, ec);
  return p.kept_console_log;
}

std::vector<std::string> InstanceStore::kept_log_names() const {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(log_root_, ec)) {
    std::string file = entry.path().filename().string();
    if (!file.ends_with(kKeptLogSuffix) || !entry.is_regular_file(ec)) continue;
    std::string name = file.substr(0, file.size() - kKeptLogSuffix.size());
    if (check_instance_name(name)) out.insert(name);
  }
  return {out.begin(), out.end()};
}

Result<bool> InstanceStore::remove_kept_console_log(const std::string& name) const {
  KILN_TRY(check_instance_name(name));
  fs::path path = paths(name).kept_console_log;
  std::error_code ec;
  bool removed = fs::remove(path, ec);
  if (ec) return fail_errno("cannot remove", path.string(), ec.value());
  return removed;
}

Result<InstanceLock> InstanceLock::acquire(const InstancePaths& paths, const std::string& name) {
  std::error_code ec;
  fs::create_directories(paths.state_dir, ec);
  if (ec) return fail_errno("cannot create", paths.state_dir.string(), ec.value());
  KILN_ASSIGN(UniqueFd fd, open_file(paths.lock, O_RDWR | O_CREAT, 0600));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      return fail(ErrorKind::kBadInput, "an instance named {} is already running (see `kiln list`)", name);
    return fail_errno("cannot lock", paths.lock.string(), errno);
  }
  return InstanceLock(std::move(fd));
}

bool InstanceLock::is_held(const InstancePaths& paths) {
  auto fd = open_file(paths.lock, O_RDWR);
  if (!fd) return false;
  if (::flock(fd->get(), LOCK_EX | LOCK_NB) == 0) {
    ::flock(fd->get(), LOCK_UN);
    return false;
  }
  return errno == EWOULDBLOCK;
}

Result<> check_instance_name(std::string_view name) {
  static const std::regex pattern("[A-Za-z0-9][A-Za-z0-9_.-]{0,31}");
  if (std::regex_match(name.begin(), name.end(), pattern)) return {};
  return fail(ErrorKind::kBadInput,
              "bad instance name \"{}\": expected 1 to 32 letters, digits, '.', '_' or '-', starting "
              "with a letter or digit",
              name);
}

}  // namespace kiln
