// MconsoleClient: talks to a User-Mode Linux kernel's management console, a
// unix datagram socket in the instance's umid directory. It is how kiln
// pauses (stop), resumes (go), halts, reboots and queries a UML guest, the
// way uml_mconsole does, without needing that tool.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

#include "base/error.h"
#include "base/files.h"

namespace kiln {

class MconsoleClient {
 public:
  explicit MconsoleClient(std::filesystem::path socket) : socket_(std::move(socket)) {}

  // Sends one command ("version", "stop", "go", "halt", "reboot", "cad",
  // "sysrq s"...) and returns the guest's whole reply.
  Result<std::string> command(const std::string& text,
                              std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;

 private:
  std::filesystem::path socket_;
};

}  // namespace kiln
