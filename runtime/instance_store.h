// InstanceStore: where instances live. State (the record, the lock, the
// console and QMP sockets, the console log) goes under /run/kiln as root or
// $XDG_RUNTIME_DIR/kiln otherwise: it dies with the host, as a running VM
// does. Writable disks (overlays) go under /var/lib/kiln/instances, or
// $XDG_STATE_HOME/kiln/instances, because they are large and --persistent
// ones must outlive a reboot. KILN_RUNTIME_DIR and KILN_STATE_DIR override
// both (tests). A saved instance (`kiln save`) keeps its record beside its
// overlays, which it needs as much as its save file does and which, like
// that file, outlive a host reboot: until `kiln restore` takes them back,
// or `kiln destroy` removes them, it is listed, and its name is taken.
// The console log of an instance that crashed, or that was not ready in
// time, is kept beside the disks as logs/NAME.console.log: the instance may
// be gone (on_crash = destroy, `kiln run`), and the log is what says why.
// It stays until `kiln destroy NAME` removes it (or a later instance of the
// name replaces it), and at most kKeptConsoleLogs are kept, the oldest
// going first, each as large as the supervisor lets a console log grow.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/file_hash_cache.h"
#include "base/files.h"
#include "runtime/instance.h"

namespace kiln {

struct InstancePaths {
  std::filesystem::path state_dir;
  std::filesystem::path record;
  std::filesystem::path lock;
  std::filesystem::path console_socket;
  std::filesystem::path console_log;
  std::filesystem::path qmp_socket;         // for kiln's commands
  std::filesystem::path qmp_events_socket;  // held by the supervisor
  std::filesystem::path exec_socket;        // `kiln exec` clients, served by the supervisor's AgentRelay
  std::filesystem::path agent_socket;       // qemu's end of the exec channel, held by the supervisor
  std::filesystem::path uml_dir;            // UML's umid directory parent
  std::filesystem::path seed;               // the personality disk
  std::filesystem::path disk_dir;
  std::filesystem::path saved_record;       // in disk_dir, while saved
  std::filesystem::path kept_console_log;   // outlives the instance (see above)
  std::filesystem::path overlay(size_t index, BackendKind backend) const;
};

// How many kept console logs there may be, of instances gone or not.
inline constexpr size_t kKeptConsoleLogs = 32;

class InstanceStore {
 public:
  static InstanceStore open();
  // Kept logs go to `log_root`, by default a "logs" beside `disk_root`.
  InstanceStore(std::filesystem::path state_root, std::filesystem::path disk_root,
                std::filesystem::path log_root = {})
      : state_root_(std::move(state_root)),
        disk_root_(std::move(disk_root)),
        log_root_(log_root.empty() ? disk_root_.parent_path() / "logs" : std::move(log_root)) {}

  const std::filesystem::path& state_root() const { return state_root_; }
  // The sha256 of the large files instances are made from (images' disks,
  // snapshots), remembered beside the instances' state.
  FileHashCache file_hashes() const { return FileHashCache(state_root_ / ".file-hashes"); }
  // Image files that reached this host with a migrated instance, each named
  // by its SHA-256 (runtime/image_transfer).
  std::filesystem::path images_root() const { return disk_root_.parent_path() / "images"; }
  InstancePaths paths(const std::string& name) const;

  // The instance's record: the live one, else the saved one.
  Result<InstanceRecord> load(const std::string& name) const;
  Result<> save(const InstanceRecord& record) const;
  // Names of every instance, live or saved, sorted.
  std::vector<std::string> names() const;
  // Removes the state directory, and the disks unless `keep_disks` or they
  // are saved.
  Result<> remove(const std::string& name, bool keep_disks) const;

  // A saved instance's record, or why there is none.
  Result<InstanceRecord> load_saved(const std::string& name) const;
  // Records that the instance's overlays belong to the save file named in
  // `record.saved_to`.
  Result<> mark_saved(const InstanceRecord& record) const;
  // The overlays belong to the instance again (restored) or to no one
  // (destroyed).
  Result<> forget_saved(const std::string& name) const;

  // Copies the instance's console log, as it is now, to its kept place,
  // replacing one kept before, then drops the oldest kept logs beyond
  // kKeptConsoleLogs. Returns where it is kept.
  Result<std::filesystem::path> keep_console_log(const std::string& name) const;
  // Names that have a kept console log, sorted.
  std::vector<std::string> kept_log_names() const;
  // Removes the kept console log of `name`; says whether there was one.
  Result<bool> remove_kept_console_log(const std::string& name) const;

 private:
  std::filesystem::path state_root_;
  std::filesystem::path disk_root_;
  std::filesystem::path log_root_;
};

// The instance lock, held by the supervisor for the instance's whole life:
// a second instance of the same name, or `list`, can tell a live instance
// from one whose supervisor died.
class InstanceLock {
 public:
  // Takes the lock, or fails (kBadInput) naming the instance when it is held.
  static Result<InstanceLock> acquire(const InstancePaths& paths, const std::string& name);
  static bool is_held(const InstancePaths& paths);
  int fd() const { return fd_.get(); }
  // Hands the lock's descriptor to a child process (the supervisor).
  int release() { return fd_.release(); }

 private:
  explicit InstanceLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

// Checks a name for an instance: it names files and a UML umid.
Result<> check_instance_name(std::string_view name);

}  // namespace kiln
