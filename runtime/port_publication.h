// PortPublication: `--publish [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]`, as
// docker and podman spell it, read and written in one place, and the check
// that the host port is free before any guest starts.
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"
#include "runtime/instance.h"

namespace kiln {

// Errors name the flag and its text: "--publish 80:x: ...".
Result<PortPublication> parse_publication(std::string_view text);

// "127.0.0.1:8080:80/tcp": what parse_publication reads back.
std::string publication_text(const PortPublication& port);

// Whether the two want one host port: the same port and protocol, on the
// same address or on every address (0.0.0.0).
bool publications_clash(const PortPublication& a, const PortPublication& b);

// Binds the host side for a moment: a port another program holds (or one
// this host has no such address for) is an error that says so.
Result<> check_host_port_free(const PortPublication& port);

}  // namespace kiln
