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

// Where a command reaches an instance that can take one.
struct ExecEndpoint {
  std::filesystem::path socket;  // an exec.sock (runtime/agent_relay.h)
  std::chrono::milliseconds greeting{0};  // how long its agent may take to greet
  // UML: a directory the guest can mount with hostfs, where `kiln cp`
  // stages data (see CopyInput); empty elsewhere.
  std::filesystem::path inbox_root;
};

// The instances commands run in. kiln's own (OwnExecTarget): a supervisor
// serves each one's exec.sock. A libvirt host's (runtime/libvirt_exec.h):
// the domain's exec channel, relayed by this process.
class ExecTarget {
 public:
  virtual ~ExecTarget() = default;
  // Instance `name` as one that can run a command now (waited for as
  // `wait` says), or an error saying why not: paused, stopped, not ready,
  // no exec agent in its image.
  virtual Result<ExecEndpoint> reach(const std::string& name, const ExecWait& wait) = 0;
};

class OwnExecTarget : public ExecTarget {
 public:
  explicit OwnExecTarget(InstanceStore store) : store_(std::move(store)) {}
  Result<ExecEndpoint> reach(const std::string& name, const ExecWait& wait) override;

 private:
  InstanceStore store_;
};

// What the guest's ready report said of its exec agent (its protocol
// version, "none", or "" from an image older than the agent), as an error
// when there is none.
Result<> check_exec_agent(const std::string& name, const std::string& exec);

Result<ExecExit> exec_in_instance(ExecTarget& target, const std::string& name, const ExecRequest& request,
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
Result<> copy_with_guest(ExecTarget& target, const CopyRequest& request, const ExecWait& wait);

}  // namespace kiln
