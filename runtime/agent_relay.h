// AgentRelay: the host's end of the exec channel (formats/image/guest_protocol.h).
// It runs on a thread of the instance's supervisor, which hands it the
// channel each time the hypervisor starts (UML: a socket pair on the ssl1
// line; qemu: the virtio-serial port's socket). `kiln exec` clients connect
// to exec.sock and speak the same frames with session 0; the relay gives
// each connection a session number of its own, so that many commands share
// the one channel, and passes frames both ways. A client first gets the
// agent's kHello, once the agent has said it; if the hypervisor stops, every
// open session ends with a kError.
#pragma once

#include <filesystem>
#include <memory>

#include "base/error.h"
#include "base/files.h"

namespace kiln {

class AgentRelay {
 public:
  // Listens on `socket_path` and serves on a thread of its own.
  static Result<std::unique_ptr<AgentRelay>> start(const std::filesystem::path& socket_path);
  ~AgentRelay();

  // A new channel to the guest (the hypervisor started); the relay greets
  // the agent on it. Sessions open on an earlier channel end.
  void attach(UniqueFd channel);
  // The hypervisor stopped: the channel goes, and with it every session.
  void detach(const std::string& why);

  class Loop;

 private:
  explicit AgentRelay(std::unique_ptr<Loop> loop);
  std::unique_ptr<Loop> loop_;
};

}  // namespace kiln
