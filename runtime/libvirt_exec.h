// LibvirtExecTarget: `kiln exec`, `kiln cp` with `--connect URI`. A libvirt
// domain kiln booted has the exec agent's virtio-serial channel on a
// socket of libvirt's, which virDomainOpenChannel reaches from anywhere the
// URI does. This process relays it as a supervisor relays its instance's:
// an AgentRelay of its own, listening on a private socket, holds the
// channel (bridged from the libvirt stream), so the exec client and the
// copy commands are the very ones kiln's own instances use.
//
// libvirt lets one stream hold a channel at a time: two `kiln exec
// --connect` into one domain at once get a clear refusal for the second,
// not a cut-off first.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "base/files.h"
#include "runtime/agent_relay.h"
#include "runtime/guest_exec.h"
#include "runtime/libvirt_host.h"
#include "runtime/libvirt_stream.h"

namespace kiln {

class LibvirtExecTarget : public ExecTarget {
 public:
  explicit LibvirtExecTarget(std::string uri) : uri_(std::move(uri)) {}
  // The channel is opened once, by the first reach(), and serves every
  // command after it.
  Result<ExecEndpoint> reach(const std::string& name, const ExecWait& wait) override;

 private:
  // How long the agent may take to greet, once the domain is one that can
  // run a command: running, with the channel, its agent known or awaited.
  Result<std::chrono::milliseconds> greeting_wait(const std::string& name, virDomainPtr domain,
                                                  const ExecWait& wait);
  Result<> open_channel(const std::string& name, virDomainPtr domain);

  std::string uri_;
  std::string name_;  // the domain whose channel is open, and where it is relayed
  std::optional<ExecEndpoint> endpoint_;
  // Declared in the order they are made; destroyed in reverse: the relay
  // lets go of the channel before the bridge ends, before the connection.
  std::optional<LibvirtHost> host_;
  std::optional<TempDir> socket_dir_;
  std::unique_ptr<LibvirtStreamSocket> channel_;
  std::unique_ptr<AgentRelay> relay_;
};

}  // namespace kiln
