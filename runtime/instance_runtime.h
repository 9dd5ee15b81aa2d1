// InstanceRuntime: where instances run, as the lifecycle commands see it:
// kiln's own runtime on this machine (supervisors, InstanceStore), or a
// libvirt host (`--connect URI`, or $KILN_CONNECT). xm's verbs, the
// console, save and restore, and the exec channel act alike on either, so
// each command is written once against this seam. `kiln list`, `boot` and
// `migrate` say or take more on one side than the other, and keep a way
// each.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "base/error.h"
#include "runtime/guest_exec.h"

namespace kiln {

class InstanceRuntime {
 public:
  virtual ~InstanceRuntime() = default;

  // shutdown, reboot, pause or unpause; a non-zero `wait` waits for the
  // instance to stop (shutdown) as long as that.
  virtual Result<> request(const std::string& name, const std::string& verb, std::chrono::seconds wait) = 0;
  // Stops it at once and removes it, with what it owns there.
  virtual Result<> destroy(const std::string& name) = 0;
  // The instance's console on this terminal, until Ctrl-] (or its end).
  virtual Result<> console(const std::string& name) = 0;
  virtual Result<> save(const std::string& name, const std::string& file) = 0;
  // Starts the instance saved in `file` again; what to tell the user.
  virtual Result<std::string> restore(const std::string& file) = 0;
  // Where `kiln exec` and `kiln cp` run their commands.
  virtual std::unique_ptr<ExecTarget> exec_target() = 0;
};

// The runtime `connect` names (a --connect value): a libvirt host, or
// without one (and without $KILN_CONNECT) kiln's own.
std::unique_ptr<InstanceRuntime> instance_runtime(const std::string& connect);

}  // namespace kiln
