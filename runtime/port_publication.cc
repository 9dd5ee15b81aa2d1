#include "runtime/port_publication.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "base/files.h"
#include "base/ipv4_subnet.h"

namespace kiln {
namespace {

std::optional<uint16_t> port_number(std::string_view text) {
  unsigned value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value == 0 || value > 65535) return std::nullopt;
  return static_cast<uint16_t>(value);
}

}  // namespace

Result<PortPublication> parse_publication(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return fail(ErrorKind::kBadInput, "--publish {}: {}; expected [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp], "
                "e.g. 8080:80 or 127.0.0.1:5353:53/udp", text, why);
  };
  PortPublication port;
  std::string_view rest = text;
  if (size_t slash = rest.rfind('/'); slash != std::string_view::npos) {
    port.protocol = std::string(rest.substr(slash + 1));
    if (port.protocol != "tcp" && port.protocol != "udp") return bad("the protocol must be tcp or udp");
    rest = rest.substr(0, slash);
  }
  size_t last = rest.rfind(':');
  if (last == std::string_view::npos) return bad("no guest port");
  std::string_view guest = rest.substr(last + 1);
  rest = rest.substr(0, last);
  std::string_view host = rest;
  if (size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    port.host_address = std::string(rest.substr(0, colon));
    host = rest.substr(colon + 1);
    if (!parse_ipv4(port.host_address))
      return bad(fmt::format("'{}' is not an IPv4 address", port.host_address));
  }
  auto host_port = port_number(host);
  if (!host_port) return bad(fmt::format("'{}' is not a port (1-65535)", host));
  auto guest_port = port_number(guest);
  if (!guest_port) return bad(fmt::format("'{}' is not a port (1-65535)", guest));
  port.host_port = *host_port;
  port.guest_port = *guest_port;
  return port;
}

std::string publication_text(const PortPublication& port) {
  return fmt::format("{}:{}:{}/{}", port.host_address, port.host_port, port.guest_port, port.protocol);
}

bool publications_clash(const PortPublication& a, const PortPublication& b) {
  return a.host_port == b.host_port && a.protocol == b.protocol &&
         (a.host_address == b.host_address || a.host_address == "0.0.0.0" || b.host_address == "0.0.0.0");
}

Result<> check_host_port_free(const PortPublication& port) {
  UniqueFd fd(::socket(AF_INET, (port.protocol == "udp" ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno("socket", "--publish " + publication_text(port), errno);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port.host_port);
  address.sin_addr.s_addr = htonl(parse_ipv4(port.host_address).value_or(INADDR_LOOPBACK));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    int error = errno;
    if (error == EADDRINUSE)
      return fail(ErrorKind::kBadInput, "--publish {}: {}:{}/{} is already in use on this host",
                  publication_text(port), port.host_address, port.host_port, port.protocol);
    return fail(ErrorKind::kBadInput, "--publish {}: cannot use {}:{} on this host: {}", publication_text(port),
                port.host_address, port.host_port, std::strerror(error));
  }
  return {};
}

}  // namespace kiln
