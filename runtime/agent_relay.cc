#include "runtime/agent_relay.h"

#include <atomic>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
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

// A random session number to count on from (never 0, which is the
// channel's own), far from where other relays count.
uint32_t first_session() {
  uint32_t number = 0;
  while (number == 0)
    if (::getrandom(&number, sizeof number, 0) != sizeof number) number = static_cast<uint32_t>(::getpid());
  return number;
}

// One end of the relay: a socket, what was read from it and not yet cut
// into frames, and what waits to be written to it.
struct Peer {
  UniqueFd fd;
  FrameDecoder decoder;
  std::string out;
  uint64_t written = 0;  // bytes sent so far
  bool greeted = false;  // a client: has had the agent's kHello
  bool opened = false;   // a client: has sent its kOpen on to the agent

  // Writes what it can without blocking, up to `limit` bytes; false when
  // the peer is gone.
  bool flush(size_t limit = SIZE_MAX) {
    while (!out.empty() && limit > 0) {
      ssize_t n = ::send(fd.get(), out.data(), std::min(out.size(), limit), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      out.erase(0, static_cast<size_t>(n));
      written += static_cast<size_t>(n);
      limit -= static_cast<size_t>(n);
    }
    return true;
  }

  // Appends what is there to `into`; false at end of stream or error.
  bool fill(std::string& into) {
    char buffer[64 * 1024];
    while (true) {
      ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, MSG_DONTWAIT);
      if (n > 0) {
        into.append(buffer, static_cast<size_t>(n));
        if (static_cast<size_t>(n) < sizeof buffer) return true;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
  }
};

// The channel to the agent: a peer with a window of unacknowledged bytes,
// and, once its stream could not be followed, the bytes searched for the
// restarted agent's kHello.
struct Channel : Peer {
  size_t window = 0;
  uint64_t acked = 0;
  bool out_of_step = false;
  std::string search;

  size_t room() const {
    uint64_t in_flight = written - acked;
    return in_flight < window ? static_cast<size_t>(window - in_flight) : 0;
  }
  bool flush_window() { return flush(room()); }
};

// How the agent's kHello begins after its length: session 0, kHello, a
// JSON object. An agent that lost the stream restarts and says it again.
constexpr std::string_view kHelloMark{"\0\0\0\0\x01{", 6};

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

  void post_attach(UniqueFd channel, size_t window, bool ask_hello) {
    std::lock_guard lock(mutex_);
    pending_channel_ = std::move(channel);
    pending_window_ = window;
    pending_ask_hello_ = ask_hello;
    pending_detach_.reset();
    wake();
  }

  bool take_lost() { return lost_.exchange(false); }

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
    size_t window = 0;
    bool ask_hello = false;
    {
      std::lock_guard lock(mutex_);
      channel.swap(pending_channel_);
      gone.swap(pending_detach_);
      window = pending_window_;
      ask_hello = pending_ask_hello_;
    }
    if (gone) drop_channel(*gone);
    if (channel) {
      drop_channel("the instance restarted while the command ran");
      channel_.emplace();
      channel_->fd = std::move(*channel);
      channel_->window = window;
      ::fcntl(channel_->fd.get(), F_SETFL, O_NONBLOCK);
      agent_version_ = 0;
      if (ask_hello) channel_->out += encode_frame(0, FrameType::kHello, nlohmann::json{{"version", kExecProtocolVersion}}.dump());
    }
  }

  std::vector<pollfd> watched() {
    std::vector<pollfd> fds = {{wake_.get(), POLLIN, 0}, {listener_.get(), POLLIN, 0}};
    size_t toward_clients = 0;
    for (const auto& [session, client] : clients_) toward_clients = std::max(toward_clients, client.out.size());
    if (channel_) {
      short events = toward_clients < kHighWater ? POLLIN : 0;
      if (!channel_->out.empty() && channel_->room() > 0) events |= POLLOUT;
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
    client.greeted = true;
    client.out += encode_frame(0, FrameType::kHello, nlohmann::json{{"version", agent_version_}}.dump());
    client.flush();
  }

  void serve_channel(short revents) {
    if ((revents & POLLOUT) && !channel_->flush_window()) return lose_channel("the channel to the guest broke");
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
      std::string bytes;
      bool open = channel_->fill(bytes);
      take_from_agent(bytes);
      // UML's line keeps the socket open across a guest reboot; qemu's
      // socket closes when qemu goes: either way the supervisor detaches.
      if (!open) return lose_channel("the channel to the guest closed");
    }
  }

  void take_from_agent(std::string_view bytes) {
    if (channel_->out_of_step) {
      channel_->search.append(bytes);
      size_t mark = channel_->search.find(kHelloMark, 4);
      if (mark == std::string::npos) {
        // Keep only what could be the start of a mark split across reads.
        size_t keep = kHelloMark.size() + 4;
        if (channel_->search.size() > keep) channel_->search.erase(0, channel_->search.size() - keep);
        return;
      }
      channel_->out_of_step = false;
      channel_->decoder = FrameDecoder();
      channel_->decoder.feed(std::string_view(channel_->search).substr(mark - 4));
      channel_->search.clear();
    } else {
      channel_->decoder.feed(bytes);
    }
    while (channel_) {
      auto frame = channel_->decoder.next();
      if (!frame) return lose_step("the guest's exec agent sent a malformed frame: " + frame.error());
      if (!*frame) return;
      from_agent(std::move(**frame));
    }
  }

  // The agent's stream cannot be followed: the agent, which has then lost
  // it too, restarts; the relay waits for its kHello.
  void lose_step(const std::string& why) {
    end_sessions(why + "; the agent restarts");
    agent_version_ = 0;
    channel_->out.clear();
    channel_->out_of_step = true;
    channel_->search.clear();
  }

  void from_agent(Frame frame) {
    if (frame.session == 0) {
      if (frame.type == FrameType::kAck) return take_ack(frame.payload);
      if (frame.type == FrameType::kHello) return take_hello(frame.payload);
      return;
    }
    auto client = clients_.find(frame.session);
    if (client == clients_.end() || !client->second.fd) return;
    client->second.out += encode_frame(frame.session, frame.type, frame.payload);
    client->second.flush();
  }

  void take_ack(std::string_view payload) {
    auto bytes = decode_ack(payload);
    if (!bytes) return;
    channel_->acked = std::min(channel_->acked + *bytes, channel_->written);
    if (!channel_->flush_window()) lose_channel("the channel to the guest broke");
  }

  // The agent has the channel: the first time, or after a restart that
  // lost whatever was under way.
  // The agent's reply to the relay's own kHello, from the run that greeted
  // it already (on its own, as it started or got its channel back),
  // restarted nothing.
  void take_hello(std::string_view payload) {
    auto hello = nlohmann::json::parse(payload, nullptr, false);
    std::string run = hello.is_object() && hello.contains("run") && hello["run"].is_string() ? hello["run"] : "";
    bool reply = hello.is_object() && hello.value("reply", false);
    if (agent_version_ != 0 && reply && !run.empty() && run == agent_run_) return;
    if (agent_version_ != 0) {
      end_sessions("the guest's exec agent restarted");
      channel_->out.clear();
    }
    channel_->acked = channel_->written;
    agent_run_ = run;
    agent_version_ = hello.is_object() ? hello.value("version", 1) : 1;
    for (auto& [session, client] : clients_)
      if (client.fd && !client.greeted) greet(client);
  }

  void serve_client(int fd, short revents) {
    for (auto& [session, client] : clients_) {
      if (client.fd.get() != fd) continue;
      if ((revents & POLLOUT) && !client.flush()) return forget(session, client);
      if (revents & (POLLIN | POLLHUP | POLLERR)) {
        std::string bytes;
        bool open = client.fill(bytes);
        client.decoder.feed(bytes);
        while (true) {
          auto frame = client.decoder.next();
          if (!frame) return forget(session, client);
          if (!*frame) break;
          to_agent(session, client, std::move(**frame));
          if (!client.fd) return;
        }
        if (!open) return forget(session, client);
      }
      return;
    }
  }

  void to_agent(uint32_t session, Peer& client, Frame frame) {
    if (frame.type == FrameType::kHello) return;  // the agent greeted the relay already
    if (!channel_ || agent_version_ == 0) {
      client.out += error_frame(session, channel_ ? "the guest's exec agent is not answering" : "the instance is not running");
      client.flush();
      client.fd = UniqueFd();
      return;
    }
    if (frame.type == FrameType::kOpen) client.opened = true;
    channel_->out += encode_frame(session, frame.type, frame.payload);
    if (!channel_->flush_window()) lose_channel("the channel to the guest broke");
  }

  // A client went away: its command is killed in the guest.
  void forget(uint32_t session, Peer& client) {
    client.fd = UniqueFd();
    if (channel_ && agent_version_ && client.opened) {
      channel_->out += encode_frame(session, FrameType::kClose, "");
      channel_->flush_window();
    }
  }

  // Every command under way ends with `why`; clients still waiting for the
  // agent's kHello wait on.
  void end_sessions(const std::string& why) {
    for (auto& [session, client] : clients_) {
      if (!client.fd || !client.opened) continue;
      client.out += error_frame(session, why);
      client.flush();
      client.fd = UniqueFd();  // the error reached the socket buffer, or the client is gone
    }
  }

  // The hypervisor's end went away by itself (not by detach): said to
  // the supervisor, which may make a new one.
  void lose_channel(const std::string& why) {
    drop_channel(why);
    lost_ = true;
  }

  void drop_channel(const std::string& why) {
    if (!channel_) return;
    channel_.reset();
    agent_version_ = 0;
    for (auto& [session, client] : clients_) {
      if (!client.fd) continue;
      client.out += error_frame(session, why);
      client.flush();
      client.fd = UniqueFd();
    }
  }

  UniqueFd listener_;
  UniqueFd wake_;
  std::optional<Channel> channel_;
  std::map<uint32_t, Peer> clients_;
  // Not 1: a relay before this one (the instance's previous host, an
  // earlier `kiln exec --connect`) may have left commands running in the
  // guest under the numbers it gave, which the agent still holds.
  uint32_t next_session_ = first_session();
  int agent_version_ = 0;  // 0: no kHello from the agent on this channel yet
  std::string agent_run_;  // the run of the agent its kHello named

  std::mutex mutex_;
  bool stop_ = false;
  std::atomic<bool> lost_{false};
  std::optional<UniqueFd> pending_channel_;
  size_t pending_window_ = 0;
  bool pending_ask_hello_ = false;
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

void AgentRelay::attach(UniqueFd channel, size_t window, bool ask_hello) {
  loop_->post_attach(std::move(channel), window, ask_hello);
}

void AgentRelay::detach(const std::string& why) { loop_->post_detach(why); }

bool AgentRelay::take_lost_channel() { return loop_->take_lost(); }

}  // namespace kiln
