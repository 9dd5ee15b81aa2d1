// AgentRelay: the host's end of the exec channel (formats/image/guest_protocol.h).
// It runs on a thread of the instance's supervisor, which hands it the
// channel each time the hypervisor starts (UML: a socket pair on the ssl1
// line; qemu: the virtio-serial port's socket). `kiln exec` clients connect
// to exec.sock and speak the same frames with session 0; the relay gives
// each connection a session number of its own, so that many commands share
// the one channel, and passes frames both ways. A client first gets the
// agent's kHello, once the agent has said it; if the hypervisor stops or
// the agent restarts, every open session ends with a kError.
//
// Toward the agent the relay keeps no more than the channel's window of
// bytes unacknowledged (kAck); a client that sends faster waits, and so
// does the relay's memory.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>

#include "base/error.h"
#include "base/files.h"

namespace kiln {

// How many bytes may be on their way to the agent: UML's serial line must
// never fill (see guest_protocol.h); a virtio-serial port takes a lot.
inline constexpr size_t kSerialLineWindow = 2048;
inline constexpr size_t kVirtioPortWindow = 1u << 20;

class AgentRelay {
 public:
  // Listens on `socket_path` and serves on a thread of its own.
  static Result<std::unique_ptr<AgentRelay>> start(const std::filesystem::path& socket_path);
  ~AgentRelay();

  // A new channel to the guest (the hypervisor started), on which the
  // relay waits for the agent's kHello. Sessions open on an earlier channel end.
  // `ask_hello`: the guest was running already (restored, migrated in), its
  // agent greeted another relay: the relay asks it to say kHello again.
  void attach(UniqueFd channel, size_t window, bool ask_hello = false);
  // The hypervisor stopped: the channel goes, and with it every session.
  void detach(const std::string& why);
  // Whether the channel closed by itself since the last call (qemu's end
  // of a virtio port can close while qemu runs on; a new connection to
  // its socket makes a new channel).
  bool take_lost_channel();

  class Loop;

 private:
  explicit AgentRelay(std::unique_ptr<Loop> loop);
  std::unique_ptr<Loop> loop_;
};

}  // namespace kiln
