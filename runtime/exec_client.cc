#include "runtime/exec_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/interrupt.h"
#include "base/unix_socket.h"

namespace kiln {
namespace {

using Clock = std::chrono::steady_clock;

// Input is sent in frames no larger than this: with several sessions on one
// channel, none waits long behind another's data.
constexpr size_t kInputPiece = 64 * 1024;

class Session {
 public:
  Session(UniqueFd socket, const ExecIo& io, std::string name)
      : socket_(std::move(socket)), io_(io), name_(std::move(name)) {}

  Result<> wait_greeting(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (true) {
      KILN_ASSIGN(std::optional<Frame> frame, next_frame(deadline));
      if (!frame)
        return fail(ErrorKind::kFailed,
                    "{}: the guest's exec agent did not answer within {} s. An image baked by a kiln without "
                    "`kiln exec` has none: bake it again",
                    name_, std::chrono::duration_cast<std::chrono::seconds>(timeout).count());
      if (frame->type == FrameType::kHello) return {};
      if (frame->type == FrameType::kError) return failed_frame(*frame);
    }
  }

  // Queues a frame; serve() writes it as the relay takes it.
  void send(FrameType type, std::string_view payload) { pending_ += encode_frame(0, type, payload); }

  Result<ExecExit> serve() {
    bool input_open = io_.stdin_fd >= 0;
    if (!input_open) send(FrameType::kStdin, "");
    while (true) {
      // Output is read while input waits for the relay: a command that
      // echoes what it is given never blocks on kiln.
      std::vector<pollfd> fds = {{socket_.get(), static_cast<short>(POLLIN | (pending_.empty() ? 0 : POLLOUT)), 0}};
      if (input_open && pending_.size() < kInputPiece) fds.push_back({io_.stdin_fd, POLLIN, 0});
      if (io_.resize_fd >= 0) fds.push_back({io_.resize_fd, POLLIN, 0});
      // The command dies with the connection when kiln is interrupted.
      if (::poll(fds.data(), fds.size(), 200) < 0 && errno != EINTR) return fail_errno("poll", name_, errno);
      KILN_TRY(check_interrupted());
      for (const pollfd& p : fds) {
        if (p.revents == 0) continue;
        if (p.fd == socket_.get()) {
          if (p.revents & POLLOUT) KILN_TRY(flush());
          if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
          KILN_ASSIGN(std::optional<ExecExit> exit, take_output());
          if (exit) return *exit;
        } else if (p.fd == io_.resize_fd) {
          forward_resize();
        } else {
          KILN_ASSIGN(input_open, forward_input());
        }
      }
    }
  }

 private:
  Result<> flush() {
    while (!pending_.empty()) {
      ssize_t n = ::send(socket_.get(), pending_.data(), pending_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return {};
      if (n < 0 && errno == EINTR) continue;
      if (n < 0)
        return fail(ErrorKind::kFailed, "{}: the instance's supervisor closed the exec connection ({})", name_,
                    std::strerror(errno));
      pending_.erase(0, static_cast<size_t>(n));
    }
    return {};
  }

  // The next frame, or nothing at the deadline.
  Result<std::optional<Frame>> next_frame(Clock::time_point deadline) {
    while (true) {
      KILN_TRY(check_interrupted());
      auto frame = decoder_.next();
      if (!frame) return fail(ErrorKind::kFailed, "{}: a malformed frame from the relay: {}", name_, frame.error());
      if (*frame) return frame.value();
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return std::nullopt;
      pollfd p{socket_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      KILN_TRY(receive());
    }
  }

  Result<> receive() {
    char buffer[256 * 1024];
    ssize_t n = ::recv(socket_.get(), buffer, sizeof buffer, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return {};
    if (n < 0) return fail_errno("receive", name_, errno);
    if (n == 0)
      return fail(ErrorKind::kFailed, "{}: the instance's supervisor closed the exec connection (the instance stopped?)",
                  name_);
    decoder_.feed(std::string_view(buffer, static_cast<size_t>(n)));
    return {};
  }

  Result<std::optional<ExecExit>> take_output() {
    KILN_TRY(receive());
    while (true) {
      auto frame = decoder_.next();
      if (!frame) return fail(ErrorKind::kFailed, "{}: a malformed frame from the relay: {}", name_, frame.error());
      if (!*frame) return std::optional<ExecExit>();
      switch ((*frame)->type) {
        case FrameType::kStdout:
          if (io_.out) KILN_TRY(io_.out((*frame)->payload));
          break;
        case FrameType::kStderr:
          if (io_.err) KILN_TRY(io_.err((*frame)->payload));
          break;
        case FrameType::kExit: {
          auto exit = decode_exec_exit((*frame)->payload);
          if (!exit) return fail(ErrorKind::kFailed, "{}: {}", name_, exit.error());
          return std::optional<ExecExit>(*exit);
        }
        case FrameType::kError:
          return failed_frame(**frame);
        default:
          break;
      }
    }
  }

  std::unexpected<Error> failed_frame(const Frame& frame) {
    auto json = nlohmann::json::parse(frame.payload, nullptr, false);
    std::string message = json.is_object() ? json.value("message", frame.payload) : frame.payload;
    return fail(ErrorKind::kFailed, "{}: {}", name_, message);
  }

  // Forwards what stdin has; false once it ended (and the guest was told).
  Result<bool> forward_input() {
    char buffer[kInputPiece];
    ssize_t n = ::read(io_.stdin_fd, buffer, sizeof buffer);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (n < 0) return fail_errno("read", "standard input", errno);
    send(FrameType::kStdin, std::string_view(buffer, static_cast<size_t>(n)));
    return n > 0;
  }

  void forward_resize() {
    signalfd_siginfo info;
    while (::read(io_.resize_fd, &info, sizeof info) == sizeof info) {}
    auto [rows, cols] = io_.window_size();
    send(FrameType::kResize, nlohmann::json{{"rows", rows}, {"cols", cols}}.dump());
  }

  UniqueFd socket_;
  const ExecIo& io_;
  std::string name_;
  FrameDecoder decoder_;
  std::string pending_;  // frames the relay has not taken yet
};

}  // namespace

Result<ExecExit> run_in_guest(const std::filesystem::path& socket, const std::string& instance,
                              const ExecRequest& request, const ExecIo& io,
                              std::chrono::milliseconds greeting_timeout) {
  auto connected = connect_unix(socket);
  if (!connected)
    return fail(ErrorKind::kFailed, "{}: its supervisor does not serve exec ({}); is the instance running?", instance,
                connected.error().message);
  Session session(std::move(*connected), io, instance);
  KILN_TRY(session.wait_greeting(greeting_timeout));
  session.send(FrameType::kOpen, encode_exec_request(request));
  return session.serve();
}

}  // namespace kiln
