// A libvirt domain's serial console, through libvirt's console stream
// (virDomainOpenConsole), so that it works on a remote host as on this
// one. The boot reads the stream itself for the ready report; `kiln
// console --connect` gets it as a socket, the form kiln's console relay
// reads and writes for its own instances too.
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

// The console stream bridged to a socket by two threads, one each way,
// since a libvirt stream is no file descriptor to poll.
class LibvirtConsole {
 public:
  static Result<std::unique_ptr<LibvirtConsole>> open(virConnectPtr connection, virDomainPtr domain,
                                                      const std::string& name);
  ~LibvirtConsole();
  LibvirtConsole(const LibvirtConsole&) = delete;
  LibvirtConsole& operator=(const LibvirtConsole&) = delete;

  // Reads give the guest's output (end of file once the console closes);
  // writes go to the guest.
  int fd() const { return ours_.get(); }

 private:
  LibvirtConsole(LibvirtStream stream, UniqueFd ours, UniqueFd theirs);
  void from_guest();
  void to_guest();

  LibvirtStream stream_;
  UniqueFd ours_, theirs_;
  std::thread from_guest_, to_guest_;
};

}  // namespace kiln
