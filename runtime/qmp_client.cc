#include "runtime/qmp_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "base/interrupt.h"

namespace kiln {
namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 100));
}

}  // namespace

Result<QmpClient> QmpClient::connect(const std::filesystem::path& socket_path, std::chrono::milliseconds timeout) {
  std::string name = socket_path.string();
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (name.size() >= sizeof address.sun_path)
    return fail(ErrorKind::kFailed, "{}: socket path too long", name);
  std::memcpy(address.sun_path, name.c_str(), name.size() + 1);
  auto deadline = Clock::now() + timeout;
  while (true) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return fail_errno("socket", name, errno);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
      QmpClient client(std::move(fd), name);
      KILN_ASSIGN(nlohmann::json greeting, client.receive(deadline));
      if (!greeting.contains("QMP"))
        return fail(ErrorKind::kFailed, "{}: not a QMP greeting: {}", name, greeting.dump());
      KILN_TRY(client.execute("qmp_capabilities"));
      return client;
    }
    // QEMU creates the socket a moment after it starts.
    if ((errno != ENOENT && errno != ECONNREFUSED) || Clock::now() > deadline)
      return fail_errno("cannot connect to QMP", name, errno);
    ::usleep(10 * 1000);
  }
}

Result<> QmpClient::send(const nlohmann::json& message, int fd_to_pass) {
  std::string text = message.dump() + "\n";
  iovec io{text.data(), text.size()};
  msghdr header{};
  header.msg_iov = &io;
  header.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (fd_to_pass >= 0) {
    header.msg_control = control;
    header.msg_controllen = sizeof control;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&header);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd_to_pass, sizeof(int));
  }
  ssize_t sent = ::sendmsg(socket_.get(), &header, MSG_NOSIGNAL);
  if (sent < 0) return fail_errno("cannot send to QMP", name_, errno);
  if (static_cast<size_t>(sent) < text.size())
    return write_all(socket_.get(), text.data() + sent, text.size() - sent, name_);
  return {};
}

Result<nlohmann::json> QmpClient::receive(Clock::time_point deadline) {
  while (true) {
    size_t newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      auto message = nlohmann::json::parse(line, nullptr, false);
      if (message.is_discarded()) return fail(ErrorKind::kFailed, "{}: QEMU sent something that is not JSON", name_);
      return message;
    }
    KILN_TRY(check_interrupted());
    if (Clock::now() >= deadline) return fail(ErrorKind::kFailed, "{}: no answer from QEMU in time", name_);
    pollfd p{socket_.get(), POLLIN, 0};
    int ready = ::poll(&p, 1, remaining_ms(deadline));
    if (ready < 0 && errno != EINTR) return fail_errno("poll", name_, errno);
    if (ready <= 0) continue;
    char chunk[65536];
    ssize_t n = ::read(socket_.get(), chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("cannot read from QMP", name_, errno);
    if (n == 0) return fail(ErrorKind::kFailed, "{}: QEMU closed the connection", name_);
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

Result<nlohmann::json> QmpClient::await_reply(Clock::time_point deadline) {
  while (true) {
    KILN_ASSIGN(nlohmann::json message, receive(deadline));
    if (message.contains("event")) {
      events_.push_back(std::move(message));
      continue;
    }
    if (message.contains("error")) {
      const auto& error = message["error"];
      return fail(ErrorKind::kFailed, "QEMU refused: {}", error.value("desc", error.dump()));
    }
    if (message.contains("return")) return message["return"];
    return fail(ErrorKind::kFailed, "{}: unexpected QMP message {}", name_, message.dump());
  }
}

Result<nlohmann::json> QmpClient::execute(const std::string& command, const nlohmann::json& arguments,
                                          std::chrono::milliseconds timeout) {
  nlohmann::json message = {{"execute", command}};
  if (!arguments.is_null()) message["arguments"] = arguments;
  KILN_TRY(send(message));
  return await_reply(Clock::now() + timeout);
}

Result<nlohmann::json> QmpClient::execute_with_fd(const std::string& command, const nlohmann::json& arguments,
                                                  int fd) {
  nlohmann::json message = {{"execute", command}, {"arguments", arguments}};
  KILN_TRY(send(message, fd));
  return await_reply(Clock::now() + std::chrono::seconds(30));
}

Result<nlohmann::json> QmpClient::wait_event(const std::string& name, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (true) {
    for (auto it = events_.begin(); it != events_.end(); ++it) {
      if (it->value("event", "") == name) {
        nlohmann::json event = std::move(*it);
        events_.erase(it);
        return event;
      }
    }
    KILN_ASSIGN(nlohmann::json message, receive(deadline));
    if (message.contains("event")) events_.push_back(std::move(message));
  }
}

std::deque<nlohmann::json> QmpClient::take_events() { return std::exchange(events_, {}); }

Result<> QmpClient::poll(std::chrono::milliseconds timeout) {
  // What is there already is read even with no time to wait: the
  // supervisor calls this when the socket is readable, and a poll that
  // read nothing would leave it readable, the supervisor spinning and
  // QEMU's events (SHUTDOWN among them) unseen.
  auto deadline = Clock::now() + timeout;
  while (true) {
    if (buffer_.find('\n') == std::string::npos) {
      pollfd p{socket_.get(), POLLIN, 0};
      int ready = ::poll(&p, 1, remaining_ms(deadline));
      if (ready < 0 && errno != EINTR) return fail_errno("poll", name_, errno);
      if (ready <= 0) {
        if (Clock::now() >= deadline) return {};
        continue;
      }
    }
    KILN_ASSIGN(nlohmann::json message, receive(Clock::now() + std::chrono::milliseconds(100)));
    if (message.contains("event")) events_.push_back(std::move(message));
  }
}

}  // namespace kiln
