#include "runtime/agent_relay.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/unix_socket.h"
#include "formats/image/guest_protocol.h"

namespace kiln {
namespace {

// Past this much unsent data toward one side, the relay stops reading from
// the other: memory stays bounded when a client or the guest is slow.
constexpr size_t kHighWater = 8u << 20;

// One end of the relay: a socket, what was read from it and not yet cut
// into frames, and what waits to be written to it.
struct Peer {
  UniqueFd fd;
  FrameDecoder decoder;
  std::string out;

  // Writes what it can without blocking; false when the peer is gone.
  bool flush() {
    while (!out.empty()) {
      ssize_t n = ::send(fd.get(), out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      out.erase(0, static_cast<size_t>(n));
    }
    return true;
  }

  // Reads what is there into the decoder; false at end of stream or error.
  bool fill() {
    char buffer[64 * 1024];
    while (true) {
      ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, MSG_DONTWAIT);
      if (n > 0) {
        decoder.feed(std::string_view(buffer, static_cast<size_t>(n)));
        if (static_cast<size_t>(n) < sizeof buffer) return true;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
  }
};

std::string error_frame(uint32_t session, const std::string& message) {
  return encode_frame(session, FrameType::kError, nlohmann::json{{"message", message}}.dump());
}

}  // namespace

class AgentRelay::Loop {
 public:
  explicit Loop(UniqueFd listener) : listener_(std::move(listener)), wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

  void run() {
    while (!stopping()) {
      take_requests();
      std::vector<pollfd> fds = watched();
      ::poll(fds.data(), fds.size(), 1000);
      for (const pollfd& p : fds) {
        if (p.revents == 0) continue;
        if (p.fd == wake_.get()) {
          uint64_t count;
          while (::read(wake_.get(), &count, sizeof count) > 0) {}
        } else if (p.fd == listener_.get()) {
          accept_clients();
        } else if (channel_ && p.fd == channel_->fd.get()) {
          serve_channel(p.revents);
        } else {
          serve_client(p.fd, p.revents);
        }
      }
      std::erase_if(clients_, [](const auto& entry) { return !entry.second.fd; });
    }
  }

  void post_attach(UniqueFd channel) {
    std::lock_guard lock(mutex_);
    pending_channel_ = std::move(channel);
    pending_detach_.reset();
    wake();
  }

  void post_detach(const std::string& why) {
    std::lock_guard lock(mutex_);
    pending_detach_ = why;
    pending_channel_.reset();
    wake();
  }

  void stop() {
    std::lock_guard lock(mutex_);
    stop_ = true;
    wake();
  }

 private:
  void wake() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
  }

  bool stopping() {
    std::lock_guard lock(mutex_);
    return stop_;
  }

  void take_requests() {
    std::optional<UniqueFd> channel;
    std::optional<std::string> gone;
    {
      std::lock_guard lock(mutex_);
      channel.swap(pending_channel_);
      gone.swap(pending_detach_);
    }
    if (gone) drop_channel(*gone);
    if (channel) {
      drop_channel("the instance restarted while the command ran");
      channel_.emplace();
      channel_->fd = std::move(*channel);
      ::fcntl(channel_->fd.get(), F_SETFL, O_NONBLOCK);
      agent_version_ = 0;
      channel_->out += encode_frame(0, FrameType::kHello,
                                    nlohmann::json{{"version", kExecProtocolVersion}}.dump());
    }
  }

  std::vector<pollfd> watched() {
    std::vector<pollfd> fds = {{wake_.get(), POLLIN, 0}, {listener_.get(), POLLIN, 0}};
    size_t toward_clients = 0;
    for (const auto& [session, client] : clients_) toward_clients = std::max(toward_clients, client.out.size());
    if (channel_) {
      short events = toward_clients < kHighWater ? POLLIN : 0;
      if (!channel_->out.empty()) events |= POLLOUT;
      fds.push_back({channel_->fd.get(), events, 0});
    }
    bool channel_full = channel_ && channel_->out.size() >= kHighWater;
    for (const auto& [session, client] : clients_) {
      short events = channel_full ? 0 : POLLIN;
      if (!client.out.empty()) events |= POLLOUT;
      fds.push_back({client.fd.get(), events, 0});
    }
    return fds;
  }

  void accept_clients() {
    while (true) {
      int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) return;
      uint32_t session = next_session_++;
      if (next_session_ == 0) next_session_ = 1;
      Peer& client = clients_[session];
      client.fd = UniqueFd(fd);
      if (agent_version_) greet(client);
    }
  }

  void greet(Peer& client) {
    client.out += encode_frame(0, FrameType::kHello, nlohmann::json{{"version", agent_version_}}.dump());
    client.flush();
  }

  void serve_channel(short revents) {
    if (revents & POLLOUT) {
      if (!channel_->flush()) return drop_channel("the channel to the guest broke");
    }
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
      bool open = channel_->fill();
      while (true) {
        auto frame = channel_->decoder.next();
        if (!frame) return drop_channel("the guest's agent sent a malformed frame: " + frame.error());
        if (!*frame) break;
        from_agent(std::move(**frame));
      }
      // UML's line keeps the socket open across a guest reboot; qemu's
      // socket closes when qemu goes: either way the supervisor detaches.
      if (!open) return drop_channel("the channel to the guest closed");
    }
  }

  void from_agent(Frame frame) {
    if (frame.session == 0) {
      if (frame.type != FrameType::kHello) return;
      auto hello = nlohmann::json::parse(frame.payload, nullptr, false);
      bool first = agent_version_ == 0;
      agent_version_ = hello.is_object() ? hello.value("version", 1) : 1;
      if (first)
        for (auto& [session, client] : clients_) greet(client);
      return;
    }
    auto client = clients_.find(frame.session);
    if (client == clients_.end() || !client->second.fd) return;
    client->second.out += encode_frame(frame.session, frame.type, frame.payload);
    client->second.flush();
  }

  void serve_client(int fd, short revents) {
    for (auto& [session, client] : clients_) {
      if (client.fd.get() != fd) continue;
      if ((revents & POLLOUT) && !client.flush()) return forget(session, client);
      if (revents & (POLLIN | POLLHUP | POLLERR)) {
        bool open = client.fill();
        while (true) {
          auto frame = client.decoder.next();
          if (!frame) return forget(session, client);
          if (!*frame) break;
          to_agent(session, std::move(**frame));
        }
        if (!open) return forget(session, client);
      }
      return;
    }
  }

  void to_agent(uint32_t session, Frame frame) {
    if (frame.type == FrameType::kHello) return;  // the relay greeted the agent already
    if (!channel_) {
      Peer& client = clients_[session];
      client.out += error_frame(session, "the instance is not running");
      client.flush();
      return;
    }
    channel_->out += encode_frame(session, frame.type, frame.payload);
    if (!channel_->flush()) drop_channel("the channel to the guest broke");
  }

  // A client went away: its command is killed in the guest.
  void forget(uint32_t session, Peer& client) {
    client.fd = UniqueFd();
    if (channel_) {
      channel_->out += encode_frame(session, FrameType::kClose, "");
      channel_->flush();
    }
  }

  void drop_channel(const std::string& why) {
    if (!channel_) return;
    channel_.reset();
    agent_version_ = 0;
    for (auto& [session, client] : clients_) {
      if (!client.fd) continue;
      client.out += error_frame(session, why);
      client.flush();
      client.fd = UniqueFd();  // the error reached the socket buffer, or the client is gone
    }
  }

  UniqueFd listener_;
  UniqueFd wake_;
  std::optional<Peer> channel_;
  std::map<uint32_t, Peer> clients_;
  uint32_t next_session_ = 1;
  int agent_version_ = 0;  // 0: no kHello from the agent on this channel yet

  std::mutex mutex_;
  bool stop_ = false;
  std::optional<UniqueFd> pending_channel_;
  std::optional<std::string> pending_detach_;
  std::thread thread_;
  friend class AgentRelay;
};

AgentRelay::AgentRelay(std::unique_ptr<Loop> loop) : loop_(std::move(loop)) {}

Result<std::unique_ptr<AgentRelay>> AgentRelay::start(const std::filesystem::path& socket_path) {
  KILN_ASSIGN(UniqueFd listener, listen_unix(socket_path));
  auto loop = std::make_unique<Loop>(std::move(listener));
  if (!loop->wake_) return fail_errno("eventfd", socket_path.string(), errno);
  Loop* running = loop.get();
  loop->thread_ = std::thread([running] { running->run(); });
  return std::unique_ptr<AgentRelay>(new AgentRelay(std::move(loop)));
}

AgentRelay::~AgentRelay() {
  loop_->stop();
  loop_->thread_.join();
}

void AgentRelay::attach(UniqueFd channel) { loop_->post_attach(std::move(channel)); }

void AgentRelay::detach(const std::string& why) { loop_->post_detach(why); }

}  // namespace kiln
