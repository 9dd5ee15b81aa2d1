// QmpClient: kiln's client for QEMU's machine protocol over a unix socket.
// It does the capabilities handshake, runs commands and waits for their
// replies, keeps the asynchronous events that arrive meanwhile for
// wait_event(), and passes file descriptors (SCM_RIGHTS) for `getfd`, which
// is how save and restore hand QEMU a file without a shell.
#pragma once

#include <chrono>
#include <deque>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/files.h"

namespace kiln {

class QmpClient {
 public:
  // Connects, reads the greeting and negotiates capabilities.
  static Result<QmpClient> connect(const std::filesystem::path& socket,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // Runs a command; returns its "return" value, or an error with QEMU's
  // "desc" when it answered with one.
  Result<nlohmann::json> execute(const std::string& command, const nlohmann::json& arguments = nullptr,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Runs a command and sends `fd` along with it (for getfd/add-fd).
  Result<nlohmann::json> execute_with_fd(const std::string& command, const nlohmann::json& arguments, int fd);

  // The next event named `name` (already received or arriving before the
  // timeout); other events stay queued.
  Result<nlohmann::json> wait_event(const std::string& name, std::chrono::milliseconds timeout);
  // Every event received so far, oldest first; the queue is emptied.
  std::deque<nlohmann::json> take_events();
  // Reads whatever arrived within `timeout` into the event queue; fails when
  // QEMU closed the connection.
  Result<> poll(std::chrono::milliseconds timeout);

  int fd() const { return socket_.get(); }

 private:
  explicit QmpClient(UniqueFd socket, std::string name) : socket_(std::move(socket)), name_(std::move(name)) {}
  Result<> send(const nlohmann::json& message, int fd_to_pass = -1);
  // The next message, waiting at most until `deadline`.
  Result<nlohmann::json> receive(std::chrono::steady_clock::time_point deadline);
  Result<nlohmann::json> await_reply(std::chrono::steady_clock::time_point deadline);

  UniqueFd socket_;
  std::string name_;
  std::string buffer_;
  std::deque<nlohmann::json> events_;
};

}  // namespace kiln
