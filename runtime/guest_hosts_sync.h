// GuestHostsSync: keeps a running guest's /etc/hosts naming the instances
// on its socket networks. Such a network has no DNS server, and an
// instance that joins after a guest booted is not on that guest's seed
// disk, so the supervisor asks this, each turn of its loop, to push the
// networks' hosts files (runtime/network_manager.h) to the guest agent
// whenever they differ from what the guest last took. A push runs on a
// thread of its own through the exec channel, as `kiln exec` would.
#pragma once

#include <filesystem>
#include <future>
#include <optional>
#include <string>
#include <vector>

namespace kiln {

class GuestHostsSync {
 public:
  GuestHostsSync(std::vector<std::filesystem::path> sources, std::filesystem::path exec_socket)
      : sources_(std::move(sources)), exec_socket_(std::move(exec_socket)) {}
  ~GuestHostsSync();

  // `guest_ready`: the agent is up (after a reboot the guest has only the
  // seed disk's names again, so a guest not ready has nothing yet).
  void poll(bool guest_ready);

  enum class Outcome { kTaken, kRefused, kFailed };

 private:
  std::string wanted() const;

  std::vector<std::filesystem::path> sources_;
  std::filesystem::path exec_socket_;
  std::optional<std::string> taken_;  // what the guest last took
  std::string refused_;  // what it last refused (an agent older than this kiln): not tried again
  std::string pushing_;
  std::future<Outcome> push_;
};

}  // namespace kiln
