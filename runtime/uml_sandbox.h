// UmlSandbox: the files a UML instance may touch on the host. UML's guest
// kernel is a host process, running as kiln's user, and Debian's linux.uml
// has hostfs built in: without a fence, root in any guest could mount the
// host's whole filesystem (`mount -t hostfs none /mnt`) and read or write
// it. Landlock fences the UML process to what it needs: its binary, the
// instance's disk directory (overlays, and what `kiln cp` stages there for
// the guest to mount), its runtime directory, a private tmpfs
// directory for guest memory, and a few devices. Landlock does not cover
// chmod, chown or utimes, so when kiln runs as root UML also gets a mount
// namespace of its own in which every mount is read-only but the
// directories it writes.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/files.h"
#include "runtime/instance.h"
#include "runtime/instance_store.h"

namespace kiln {

class UmlSandbox {
 public:
  // The ruleset for `spec`, built before the fork; an error when this
  // kernel has no Landlock, since UML would then run unfenced.
  static Result<UmlSandbox> prepare(const InstanceSpec& spec, const InstancePaths& paths,
                                    const std::vector<std::string>& programs);

  // In the child, between fork and exec: only async-signal-safe calls.
  bool enter() const;

  // Where UML keeps guest memory (TMPDIR): private to the instance.
  const std::filesystem::path& memory_dir() const { return memory_dir_; }

 private:
  UniqueFd ruleset_;
  std::filesystem::path memory_dir_;
  std::vector<std::filesystem::path> writable_;  // stay writable in UML's read-only mount namespace
  bool own_mounts_ = false;
  std::shared_ptr<void> remove_memory_dir_;  // rmdir when the last copy goes
};

// The tmpfs directory that holds the guest memory of the instance with
// this id while UML runs (TMPDIR); InstanceStore::remove takes it away,
// even after a supervisor that was killed.
std::filesystem::path uml_memory_dir(const std::string& instance_id);

// Whether this kernel offers Landlock, and if not, why.
Result<> landlock_available();

}  // namespace kiln
