#include "runtime/libvirt_stream.h"

#include <sys/socket.h>
#include <unistd.h>

namespace kiln {

Result<LibvirtStream> open_console_stream(virConnectPtr connection, virDomainPtr domain, const std::string& name) {
  LibvirtStream stream(virStreamNew(connection, 0));
  if (!stream || virDomainOpenConsole(domain, nullptr, stream.get(), VIR_DOMAIN_CONSOLE_FORCE) != 0)
    return std::unexpected(libvirt_error(fmt::format("opening the console of {}", name)));
  return stream;
}

Result<LibvirtStream> open_channel_stream(virConnectPtr connection, virDomainPtr domain, const std::string& name,
                                          const std::string& channel) {
  LibvirtStream stream(virStreamNew(connection, 0));
  if (!stream || virDomainOpenChannel(domain, channel.c_str(), stream.get(), 0) != 0)
    return std::unexpected(libvirt_error(fmt::format("opening the channel {} of {}", channel, name)));
  return stream;
}

Result<std::unique_ptr<LibvirtStreamSocket>> LibvirtStreamSocket::bridge(LibvirtStream stream,
                                                                         const std::string& what) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return fail_errno("socketpair", what, errno);
  return std::unique_ptr<LibvirtStreamSocket>(
      new LibvirtStreamSocket(std::move(stream), UniqueFd(pair[0]), UniqueFd(pair[1])));
}

LibvirtStreamSocket::LibvirtStreamSocket(LibvirtStream stream, UniqueFd ours, UniqueFd theirs)
    : stream_(std::move(stream)), ours_(std::move(ours)), theirs_(std::move(theirs)) {
  from_guest_ = std::thread([this] { from_guest(); });
  to_guest_ = std::thread([this] { to_guest(); });
}

// Aborting the stream ends a receive under way; shutting their end ends
// the read of it (ours may have been handed on, and closed since).
LibvirtStreamSocket::~LibvirtStreamSocket() {
  virStreamAbort(stream_.get());
  ::shutdown(theirs_.get(), SHUT_RDWR);
  from_guest_.join();
  to_guest_.join();
}

void LibvirtStreamSocket::from_guest() {
  char buffer[4096];
  int got;
  while ((got = virStreamRecv(stream_.get(), buffer, sizeof buffer)) > 0)
    if (!write_all(theirs_.get(), buffer, static_cast<size_t>(got), "a libvirt stream")) break;
  ::shutdown(theirs_.get(), SHUT_WR);  // the reader sees the stream close
}

void LibvirtStreamSocket::to_guest() {
  char buffer[4096];
  ssize_t got;
  while ((got = ::read(theirs_.get(), buffer, sizeof buffer)) > 0) {
    for (ssize_t sent = 0; sent < got;) {
      int n = virStreamSend(stream_.get(), buffer + sent, static_cast<size_t>(got - sent));
      if (n < 0) return;
      sent += n;
    }
  }
}

Result<std::unique_ptr<LibvirtStreamSocket>> open_console_socket(virConnectPtr connection, virDomainPtr domain,
                                                                 const std::string& name) {
  KILN_ASSIGN(LibvirtStream stream, open_console_stream(connection, domain, name));
  return LibvirtStreamSocket::bridge(std::move(stream), "the console of " + name);
}

}  // namespace kiln
