// A libvirt domain's character devices, through libvirt's streams, so that
// they work on a remote host as on this one: the serial console
// (virDomainOpenConsole) and a virtio-serial channel (virDomainOpenChannel,
// kiln's exec channel). A stream is no file descriptor to poll, so
// LibvirtStreamSocket bridges one to a socket: `kiln console --connect`
// reads and writes it as kiln's console relay does its own instances', and
// `kiln exec --connect` hands it to an AgentRelay as the channel to the guest.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "base/error.h"
#include "base/files.h"
#include "runtime/libvirt_host.h"

namespace kiln {

// The console stream of `domain` (blocking reads). It takes the console
// from any other session: one left open by a kiln that was killed would
// otherwise keep the user out until libvirt noticed.
Result<LibvirtStream> open_console_stream(virConnectPtr connection, virDomainPtr domain, const std::string& name);

// The stream of the domain's virtio-serial channel named `channel`. It is
// not taken from another session: that would cut a command off mid-way.
Result<LibvirtStream> open_channel_stream(virConnectPtr connection, virDomainPtr domain, const std::string& name,
                                          const std::string& channel);

// A stream bridged to a socket by two threads, one each way.
class LibvirtStreamSocket {
 public:
  // `what` names the stream in errors ("the console of web").
  static Result<std::unique_ptr<LibvirtStreamSocket>> bridge(LibvirtStream stream, const std::string& what);
  ~LibvirtStreamSocket();
  LibvirtStreamSocket(const LibvirtStreamSocket&) = delete;
  LibvirtStreamSocket& operator=(const LibvirtStreamSocket&) = delete;

  // Reads give what the guest sent (end of file once the stream closes);
  // writes go to the guest.
  int fd() const { return ours_.get(); }
  // The socket itself, for a user that owns it from now on (an AgentRelay
  // does); the bridge goes on until this object is destroyed.
  UniqueFd release() { return std::move(ours_); }

 private:
  LibvirtStreamSocket(LibvirtStream stream, UniqueFd ours, UniqueFd theirs);
  void from_guest();
  void to_guest();

  LibvirtStream stream_;
  UniqueFd ours_, theirs_;
  std::thread from_guest_, to_guest_;
};

// The console stream, bridged.
Result<std::unique_ptr<LibvirtStreamSocket>> open_console_socket(virConnectPtr connection, virDomainPtr domain,
                                                                 const std::string& name);

}  // namespace kiln
