#include "runtime/guest_hosts_sync.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>

#include "base/files.h"
#include "formats/image/guest_protocol.h"
#include "runtime/exec_client.h"

namespace kiln {
namespace {

constexpr std::chrono::seconds kGreetingTimeout{10};

GuestHostsSync::Outcome push(const std::filesystem::path& socket, const std::string& lines) {
  using Outcome = GuestHostsSync::Outcome;
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) return Outcome::kFailed;
  UniqueFd read_end(ends[0]);
  {
    UniqueFd write_end(ends[1]);
    // A pipe holds 64 KiB: a /24's hosts lines are a fraction of it.
    if (!write_all(write_end.get(), lines.data(), lines.size(), "a pipe")) return Outcome::kFailed;
  }
  ExecRequest request{.argv = {std::string(kAgentScriptPath), std::string(kAgentHostsCommand)}};
  ExecIo io{.stdin_fd = read_end.get(),
            .out = [](std::string_view) -> Result<> { return {}; },
            .err = [](std::string_view) -> Result<> { return {}; }};
  auto ended = run_in_guest(socket, socket.parent_path().filename().string(), request, io, kGreetingTimeout);
  if (!ended) return Outcome::kFailed;
  return ended->code == 0 && ended->signal == 0 ? Outcome::kTaken : Outcome::kRefused;
}

}  // namespace

GuestHostsSync::~GuestHostsSync() {
  if (push_.valid()) push_.wait();
}

std::string GuestHostsSync::wanted() const {
  std::string lines;
  for (const std::filesystem::path& source : sources_)
    if (auto text = read_file(source)) lines += *text;
  return lines;
}

void GuestHostsSync::poll(bool guest_ready) {
  if (push_.valid()) {
    if (push_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return;
    switch (push_.get()) {
      case Outcome::kTaken: taken_ = pushing_; break;
      case Outcome::kRefused: refused_ = pushing_; break;
      case Outcome::kFailed: break;  // the channel: tried again next turn
    }
  }
  if (!guest_ready) {
    taken_.reset();
    refused_.clear();
    return;
  }
  std::string lines = wanted();
  if (lines == taken_ || lines == refused_) return;
  pushing_ = lines;
  push_ = std::async(std::launch::async, push, exec_socket_, lines);
}

}  // namespace kiln
