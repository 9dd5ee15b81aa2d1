// GuestExec: what `kiln exec`, `kiln cp` and `kiln run` do with a running
// instance, on the exec channel (runtime/exec_client.h). It checks the
// instance first, so that a paused, stopped or unready instance, or an image
// without the exec agent, gets an error that says so instead of a hang.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

#include "base/error.h"
#include "runtime/exec_client.h"
#include "runtime/instance_store.h"

namespace kiln {

// How long a command waits for an instance that is still booting, and for
// its agent's greeting.
struct ExecWait {
  std::chrono::milliseconds ready{0};  // 0: the instance must be ready already
  std::chrono::milliseconds greeting{std::chrono::seconds(15)};
};

Result<ExecExit> exec_in_instance(const InstanceStore& store, const std::string& name, const ExecRequest& request,
                                  const ExecIo& io, const ExecWait& wait);

// `kiln cp`: one side is the host, the other the guest, as NAME:PATH.
struct CopyRequest {
  std::string instance;
  std::filesystem::path host_path;
  std::string guest_path;
  bool to_guest = true;
  bool recursive = false;
};

// Copies a file (modes kept) or, with `recursive`, a directory tree. The
// copy lands under a temporary name beside its destination and is renamed
// into place only once complete, on either side: a full disk leaves no
// half-written file under the final name. A destination that is an existing
// directory receives the source under its own name, as cp does.
Result<> copy_with_guest(const InstanceStore& store, const CopyRequest& request, const ExecWait& wait);

}  // namespace kiln
