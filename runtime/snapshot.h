// Snapshot: a baked image booted once to ready under qemu with no instance's
// personality on it, quiesced by its agent and saved with qemu's migration
// (runtime/save_file.h), kept content-addressed in the snapshot store beside
// the stage cache; and new instances resumed from it instead of booted. Each
// resumed instance gets its own overlay over the snapshot's disk, its own
// seed disk and a new VM generation ID (the guest kernel reseeds on the
// change), and its agent then makes the machine that instance (hostname,
// machine id, ssh host keys, keys and files, the host's clock and entropy:
// builder/guest_agent.cc, "resume") before it reports ready.
//
// A snapshot belongs to one image (the sha256 of its disk, kernel and
// initramfs), one VM shape (memory, vCPUs, machine, CPU model, KVM or TCG)
// and one qemu (its binary: path, inode, size, mtime); anything else has another key, and an
// instance boots normally, saying why, where a snapshot cannot serve it
// (UEFI, UML, another architecture, more NICs than it has slots for).
//
// The snapshot's machine has no NIC, and its network daemons are down (the
// guest agent's no-NICs flag); it has kSnapshotNicSlots free PCIe hotplug
// slots instead. A resumed instance's NICs are plugged into them once qemu
// has loaded the snapshot, and its agent starts the network daemons once
// the machine has its new machine id (from which DHCP's client id comes). A snapshot whose files no
// longer have the sha256 they were made with is refused and removed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/file_hash_cache.h"
#include "base/files.h"
#include "base/reporter.h"
#include "runtime/instance.h"
#include "runtime/instance_plan.h"
#include "runtime/instance_store.h"

namespace kiln {

inline constexpr int kSnapshotNicSlots = 4;

struct SnapshotEntry {
  std::string key;
  std::filesystem::path dir;
  std::string image;  // the image directory it was made from
  uint64_t memory_mib = 0;
  int vcpus = 0;
  std::string qemu;  // qemu's version line
  int64_t made_at = 0;
  uint64_t seed_size = 0;  // the seed disk it was made with; resumed ones need the same
  uint64_t bytes = 0;      // its files' sizes
  std::map<std::string, std::string> sha256;  // file name → its sha256
  // What its key was made of that can go stale: the image's files (path →
  // sha256) and qemu's binary (program_identity).
  std::map<std::string, std::string> image_sha256;
  std::string qemu_identity;

  std::filesystem::path state() const { return dir / "state.save"; }
  std::filesystem::path disk() const { return dir / "disk0.qcow2"; }
};

// Held while a snapshot is looked for, made or removed: two boots of a new
// image at once make its snapshot once.
using SnapshotLock = UniqueFd;

class SnapshotStore {
 public:
  explicit SnapshotStore(std::filesystem::path root) : root_(std::move(root)) {}
  const std::filesystem::path& root() const { return root_; }

  // Waits for the lock of snapshot `key` (Ctrl-C ends the wait).
  Result<SnapshotLock> lock(const std::string& key) const;
  std::optional<SnapshotEntry> find(const std::string& key) const;
  std::vector<SnapshotEntry> list() const;  // newest first
  Result<> remove(const std::string& key) const;
  // Removes what killed makes left (their temporary directories).
  void remove_leftovers() const;

 private:
  std::filesystem::path root_;
};

// Why an instance of `spec` cannot resume from a snapshot ("" when it can).
std::string snapshot_refusal(const InstanceSpec& spec);

// The key of the snapshot an instance of `spec` resumes from.
Result<std::string> snapshot_key(const InstanceSpec& spec, const FileHashCache& hashes);

// Makes the snapshot of `request`'s image and shape under `key`: boots an
// instance ("snapshot-KEY"), waits for it to be ready, quiesces and saves
// it, and keeps its disk; the instance is gone afterwards, whatever happens.
Result<SnapshotEntry> make_snapshot(const InstanceStore& store, const SnapshotStore& snapshots,
                                    const BootRequest& request, const std::string& key, Reporter& reporter);

// Makes the instance of `spec`, just resumed from a snapshot, itself: its
// agent takes its seed disk's personality, the host's entropy, its NICs
// (once they show) and the host's clock, and reports ready.
Result<> become_instance(const InstanceStore& store, const InstanceSpec& spec);

// The snapshot's files checked against the sha256 they were made with.
Result<> verify_snapshot(const SnapshotEntry& entry, const FileHashCache& hashes);

// Why no instance will resume from `entry` any more ("" when one may): its
// image was removed or changed, or qemu was replaced. `kiln snapshot prune`
// removes those.
std::string snapshot_staleness(const SnapshotEntry& entry, const FileHashCache& hashes);

}  // namespace kiln
